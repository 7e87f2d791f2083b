import numpy as np

import bpnn


def test_api_of_the_readme_trains_and_predicts(rng):
    X = rng.normal(size=(200, 20)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)
    model = bpnn.Sequential([bpnn.Dense(32, init="he_normal"), bpnn.ReLU(),
                             bpnn.Dense(4, init="xavier_uniform")], input_shape=(20,), seed=0)
    out = model.forward(X[:8], training=True)
    assert out.shape == (8, 4) and out.dtype == np.float32
    grad_x = model.backward(np.ones_like(out))
    assert grad_x.shape == (8, 20)
    assert [n for n, _, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    trainer = bpnn.Trainer(model, loss="softmax_cross_entropy", optimizer=bpnn.optim.Adam(lr=1e-2))
    history = trainer.fit(X, y, epochs=30, batch_size=32, validation_split=0.2, verbose=False)
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert model.predict(X).shape == (200, 4)
    assert trainer.evaluate(X, y)["accuracy"] > 0.9
