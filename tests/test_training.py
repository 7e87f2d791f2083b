"""The training loop: reproducibility, accuracy on digits, gradient-descent modes,
freezing, non-finite losses and callbacks."""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest

import bpnn
from bpnn.data import load_digits, train_test_split


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def params_of(model):
    return [(name, p.copy()) for name, p, _ in model.named_parameters()]


def assert_params_equal(a, b):
    assert [n for n, _ in a] == [n for n, _ in b]
    for (name, x), (_, y) in zip(a, b):
        np.testing.assert_array_equal(x, y, err_msg=name)


# --------------------------------------------------------------------------- reproducibility
def _train_with_dropout(X, y, seed, trainer_seed=None, epochs=3):
    model = bpnn.Sequential([bpnn.Dense(32, init="he_normal"), bpnn.ReLU(), bpnn.Dropout(0.3),
                             bpnn.Dense(10)], seed=seed)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=1e-2), seed=trainer_seed)
    history = trainer.fit(X, y, epochs=epochs, batch_size=32, shuffle=True, verbose=False)
    return model, history


def test_same_seed_gives_bit_identical_training(digits):
    X, y = digits[0][:500], digits[1][:500]
    m1, h1 = _train_with_dropout(X, y, seed=11)
    m2, h2 = _train_with_dropout(X, y, seed=11)
    assert_params_equal(params_of(m1), params_of(m2))
    assert h1["loss"] == h2["loss"]
    m3, _ = _train_with_dropout(X, y, seed=12)
    assert not np.allclose(m1[0].params["weight"], m3[0].params["weight"])


def test_shuffling_and_dropout_follow_the_seeds(digits):
    X, y = digits[0][:500], digits[1][:500]
    # same model seed (same init), different shuffling seeds: different trajectories
    a, _ = _train_with_dropout(X, y, seed=11, trainer_seed=1)
    b, _ = _train_with_dropout(X, y, seed=11, trainer_seed=2)
    c, _ = _train_with_dropout(X, y, seed=11, trainer_seed=1)
    assert_params_equal(params_of(a), params_of(c))
    assert not np.allclose(a[0].params["weight"], b[0].params["weight"])
    # dropout masks come from the model's generator: training mode is random, eval is not
    model = bpnn.Sequential([bpnn.Dropout(0.5)], input_shape=(1000,), seed=3)
    x = np.ones((2, 1000), dtype=np.float32)
    out1, out2 = model.forward(x, training=True), model.forward(x, training=True)
    assert not np.array_equal(out1, out2)
    again = bpnn.Sequential([bpnn.Dropout(0.5)], input_shape=(1000,), seed=3)
    np.testing.assert_array_equal(again.forward(x, training=True), out1)
    np.testing.assert_array_equal(model.forward(x, training=False), x)


# --------------------------------------------------------------------------- accuracy
def test_digits_64_100_10_reaches_97_percent(digits):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=True, seed=0)
    assert len(X_test) == 450 and len(X_train) == 1347
    # stratified: every class holds ~25 % of its samples in the test set
    frac = np.bincount(y_test, minlength=10) / np.bincount(y, minlength=10)
    assert np.all(np.abs(frac - 0.25) < 0.02)
    model = bpnn.Sequential([bpnn.Dense(100, init="he_normal"), bpnn.ReLU(), bpnn.Dense(10)], seed=0)
    trainer = bpnn.Trainer(model, loss="softmax_cross_entropy", optimizer=bpnn.optim.Adam(lr=1e-3))
    history = trainer.fit(X_train, y_train, epochs=50, batch_size=16, verbose=False)
    assert [layer.output_shape for layer in model.layers] == [(100,), (100,), (10,)]
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    result = trainer.evaluate(X_test, y_test)
    accuracy = float(np.mean(trainer.predict(X_test).argmax(axis=1) == y_test))
    assert result["accuracy"] == pytest.approx(accuracy)
    assert accuracy >= 0.97


# --------------------------------------------------------------------------- modes
N_MODES = 150


@pytest.mark.parametrize("batch_size, steps_per_epoch, lr", [
    ("full", 1, 0.5), ("full_batch", 1, 0.5), ("batch", 1, 0.5), (10_000, 1, 0.5),
    ("stochastic", N_MODES, 0.01), ("online", N_MODES, 0.01), (1, N_MODES, 0.01),
    (32, math.ceil(N_MODES / 32), 0.1), (50, 3, 0.1),
])
def test_gradient_descent_modes(digits, batch_size, steps_per_epoch, lr):
    X, y = digits[0][:N_MODES], digits[1][:N_MODES]
    model = bpnn.Sequential([bpnn.Dense(16, init="he_normal"), bpnn.Tanh(), bpnn.Dense(10)], seed=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=lr))
    batch_sizes = []

    class Sizes(bpnn.Callback):
        def on_batch_end(self, batch, logs=None):
            batch_sizes.append(logs["size"])

    epochs = 4
    start = trainer.evaluate(X, y)["loss"]
    history = trainer.fit(X, y, epochs=epochs, batch_size=batch_size, callbacks=[Sizes()], verbose=False)
    assert trainer.optimizer.step_count == epochs * steps_per_epoch
    assert len(batch_sizes) == epochs * steps_per_epoch
    assert sum(batch_sizes) == epochs * N_MODES  # every sample once per epoch
    assert history["loss"][-1] < history["loss"][0]
    assert trainer.evaluate(X, y)["loss"] < start


@pytest.mark.parametrize("bad", ["minibatch", 0, -3, 2.5])
def test_bad_batch_size_is_rejected(digits, bad):
    X, y = digits[0][:20], digits[1][:20]
    trainer = bpnn.Trainer(bpnn.Sequential([bpnn.Dense(10)], seed=0))
    with pytest.raises(ValueError, match="batch_size"):
        trainer.fit(X, y, batch_size=bad, verbose=False)


def test_full_batch_step_is_plain_gradient_descent_on_the_mean_loss(digits):
    # One full-batch SGD step equals θ − η ∇L over the whole set, whatever the shuffling.
    X, y = digits[0][:120].astype(np.float64), digits[1][:120]
    def model():
        return bpnn.Sequential([bpnn.Dense(10, init="he_normal")], seed=4, dtype="float64")
    ref = model()
    ref.build((64,), ref.rng, ref.dtype)
    w0, b0 = ref[0].params["weight"].copy(), ref[0].params["bias"].copy()
    z = X @ w0 + b0
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1  # ∂L/∂z = (softmax − onehot)/N
    g = p / len(y)
    expected_w, expected_b = w0 - 0.3 * X.T @ g, b0 - 0.3 * g.sum(0)
    m = model()
    bpnn.Trainer(m, optimizer=bpnn.optim.SGD(lr=0.3)).fit(X, y, epochs=1, batch_size="full", verbose=False)
    np.testing.assert_allclose(m[0].params["weight"], expected_w, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(m[0].params["bias"], expected_b, rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------- freezing
@pytest.mark.parametrize("frozen", [0, 2, 4])
def test_frozen_layer_keeps_its_weights(digits, frozen):
    X, y = digits[0][:300], digits[1][:300]
    layers = [bpnn.Dense(32), bpnn.Tanh(), bpnn.Dense(32), bpnn.Tanh(), bpnn.Dense(10)]
    layers[frozen] = bpnn.Dense(32 if frozen < 4 else 10, trainable=False)
    model = bpnn.Sequential(layers, input_shape=(64,), seed=0)
    before = {i: {k: v.copy() for k, v in model[i].params.items()} for i in (0, 2, 4)}
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=1e-2))
    history = trainer.fit(X, y, epochs=3, batch_size=32, verbose=False)
    assert history["loss"][-1] < history["loss"][0]
    for i in (0, 2, 4):
        for k, v in model[i].params.items():
            if i == frozen:
                np.testing.assert_array_equal(v, before[i][k], err_msg=f"frozen layer {i} {k} changed")
            else:  # trainable layers change — including those *below* a frozen one
                assert np.abs(v - before[i][k]).max() > 1e-3, f"layer {i} {k} did not train"
    # the optimizer only holds the trainable parameters
    names = model.flat_parameters().names
    assert not any(n.startswith(f"{frozen}.") for n in names) and len(names) == 4


def test_gradient_below_a_frozen_layer_is_unchanged_by_freezing(digits):
    X, y = digits[0][:64].astype(np.float64), digits[1][:64]

    def make(trainable):
        return bpnn.Sequential([bpnn.Dense(32), bpnn.Tanh(), bpnn.Dense(32, trainable=trainable), bpnn.Tanh(),
                                bpnn.Dense(10)], input_shape=(64,), seed=5, dtype="float64")

    grads = []
    for trainable in (True, False):
        model = make(trainable)
        loss = bpnn.SoftmaxCrossEntropy()
        loss.forward(model.forward(X, training=True), y)
        model.backward(loss.backward(), input_grad=False)
        grads.append({k: v.copy() for k, v in model[0].grads.items()})
    for k in grads[0]:
        assert np.abs(grads[0][k]).max() > 0
        np.testing.assert_array_equal(grads[1][k], grads[0][k])


def test_freezing_and_unfreezing_between_fits(digits):
    X, y = digits[0][:300], digits[1][:300]
    model = bpnn.Sequential([bpnn.Dense(32), bpnn.Tanh(), bpnn.Dense(10)], input_shape=(64,), seed=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.1, momentum=0.9))
    trainer.fit(X, y, epochs=1, batch_size=32, verbose=False)
    model[0].trainable = False
    w = model[0].params["weight"].copy()
    w2 = model[2].params["weight"].copy()
    trainer.fit(X, y, epochs=2, batch_size=32, verbose=False)
    np.testing.assert_array_equal(model[0].params["weight"], w)
    assert np.abs(model[2].params["weight"] - w2).max() > 1e-3
    model[0].trainable = True
    trainer.fit(X, y, epochs=1, batch_size=32, verbose=False)
    assert np.abs(model[0].params["weight"] - w).max() > 1e-4


# --------------------------------------------------------------------------- non-finite loss
class Snapshots(bpnn.Callback):
    def __init__(self):
        self.params = {}
        self.ended = False

    def on_epoch_end(self, epoch, logs=None):
        assert all(math.isfinite(v) for v in logs.values())
        self.params[epoch] = params_of(self.trainer.model)

    def on_train_end(self, logs=None):
        self.ended = True


def _fit_until_nan(model, X, Y, loss, lr, epochs=6):
    trainer = bpnn.Trainer(model, loss=loss, optimizer=bpnn.optim.SGD(lr=lr))
    snaps = Snapshots()
    initial = params_of(model) if model.built else None
    with np.errstate(all="ignore"), pytest.warns(bpnn.NonFiniteLossWarning) as record:
        history = trainer.fit(X, Y, epochs=epochs, batch_size=32, callbacks=[snaps], verbose=False)
    messages = [str(w.message) for w in record if issubclass(w.category, bpnn.NonFiniteLossWarning)]
    assert len(messages) == 1
    assert snaps.ended, "callbacks get on_train_end when training stops on a non-finite loss"
    assert trainer.stop_training
    return history, snaps, initial, messages[0]


def test_divergence_stops_warns_and_restores_the_best_epoch(digits):
    X, y = digits[0][:400], digits[1][:400]
    Y = np.eye(10, dtype=np.float32)[y]
    model = bpnn.Sequential([bpnn.Dense(32, init="he_normal"), bpnn.Tanh(), bpnn.Dense(10)],
                            input_shape=(64,), seed=0)
    steps = math.ceil(400 / 32)
    # fine for two epochs, then a learning rate that blows the squared error up
    history, snaps, _, message = _fit_until_nan(model, X, Y, "mse", lambda s: 0.05 if s < 2 * steps else 50.0)
    assert len(history.epoch) == 2 < 6  # stopped during epoch 2
    assert re.search(r"epoch 2, batch \d+", message), message
    assert re.search(r"'\d+\.(weight|bias)'", message), message  # names a parameter
    assert history.stopped_reason == message
    for _, p in params_of(model):
        assert np.isfinite(p).all()
    best = int(np.argmin(history["loss"]))
    assert f"restored from epoch {best}" in message
    assert_params_equal(params_of(model), snaps.params[best])


def test_non_finite_gradient_is_named_and_initial_weights_restored(digits):
    X, y = digits[0][:200], digits[1][:200]
    model = bpnn.Sequential([bpnn.Dense(32, init="he_normal"), bpnn.ReLU(), bpnn.Dense(10)],
                            input_shape=(64,), seed=0)
    history, _, initial, message = _fit_until_nan(model, X, y, "softmax_cross_entropy", 1e30)
    assert history.epoch == []
    assert re.search(r"epoch 0, batch \d+", message), message
    # weights near 1e30 after one step: the first Dense still gives finite outputs
    # (~1e32 in float32), the second overflows
    assert "layer '2' (Dense): its output is non-finite, its input finite" in message, message
    assert "before training" in message
    assert_params_equal(params_of(model), initial)


# --------------------------------------------------------------------------- callbacks
def test_callback_sees_epoch_logs_and_can_stop_training(digits):
    X, y = digits
    X_train, X_val, y_train, y_val = train_test_split(X[:600], y[:600], test_size=0.25, seed=0)
    events = []

    class Recorder(bpnn.Callback):
        def __init__(self):
            self.logs = []
            self.batches = 0

        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            events.append(f"epoch_begin {epoch}")
            self.trainer.optimizer.lr = 0.01 * (epoch + 1)  # an LR callback

        def on_batch_end(self, batch, logs=None):
            self.batches += 1
            assert math.isfinite(logs["loss"])

        def on_epoch_end(self, epoch, logs=None):
            events.append(f"epoch_end {epoch}")
            self.logs.append(dict(logs))
            if epoch == 2:
                self.trainer.stop_training = True

        def on_train_end(self, logs=None):
            events.append("train_end")

    model = bpnn.Sequential([bpnn.Dense(32, init="he_normal"), bpnn.ReLU(), bpnn.Dense(10)], seed=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.5))
    rec = Recorder()
    history = trainer.fit(X_train, y_train, epochs=20, batch_size=50, validation_data=(X_val, y_val),
                          callbacks=[rec], verbose=False)
    assert rec.trainer is trainer
    assert history.epoch == [0, 1, 2]
    assert events == ["train_begin", "epoch_begin 0", "epoch_end 0", "epoch_begin 1", "epoch_end 1",
                      "epoch_begin 2", "epoch_end 2", "train_end"]
    assert rec.batches == 3 * 9 == trainer.optimizer.step_count
    assert len(rec.logs) == 3
    for epoch, logs in enumerate(rec.logs):
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(logs)
        assert logs["lr"] == pytest.approx(0.01 * (epoch + 1))
        assert all(math.isfinite(v) for v in logs.values())
    assert [logs["loss"] for logs in rec.logs] == history["loss"]
    assert rec.logs[-1]["loss"] < rec.logs[0]["loss"]
    # val_ values are the model's evaluation on the validation set after the epoch
    final = trainer.evaluate(X_val, y_val)
    assert rec.logs[-1]["val_loss"] == pytest.approx(final["loss"], rel=1e-6)
    assert rec.logs[-1]["val_accuracy"] == pytest.approx(final["accuracy"])


def test_validation_split_takes_the_last_fraction(digits):
    X, y = digits[0][:200], digits[1][:200]
    model = bpnn.Sequential([bpnn.Dense(10)], seed=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.1))
    history = trainer.fit(X, y, epochs=2, batch_size="full", validation_split=0.25, verbose=False)
    assert trainer.optimizer.step_count == 2
    final = trainer.evaluate(X[150:], y[150:])
    assert history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-6)


def test_epoch_loss_is_the_sample_weighted_mean_of_batch_losses(digits):
    X, y = digits[0][:110], digits[1][:110]  # batches of 50, 50, 10
    model = bpnn.Sequential([bpnn.Dense(10)], seed=0)
    seen = []

    class Batches(bpnn.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append((logs["loss"], logs["size"]))

    history = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.1)).fit(
        X, y, epochs=1, batch_size=50, callbacks=[Batches()], verbose=False)
    assert [s for _, s in seen] == [50, 50, 10]
    assert history["loss"][0] == pytest.approx(sum(v * s for v, s in seen) / 110, rel=1e-12)


def test_non_callback_objects_are_rejected(digits):
    X, y = digits[0][:20], digits[1][:20]
    trainer = bpnn.Trainer(bpnn.Sequential([bpnn.Dense(10)], seed=0))
    with pytest.raises(ValueError, match="callbacks"):
        trainer.fit(X, y, callbacks=[object()], verbose=False)


def test_no_warnings_in_a_normal_run(digits):
    X, y = digits[0][:100], digits[1][:100]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bpnn.Trainer(bpnn.Sequential([bpnn.Dense(10)], seed=0)).fit(X, y, epochs=2, verbose=False)


def test_build_without_arguments_uses_the_models_seed_and_dtype():
    import bpnn

    def make():
        m = bpnn.Sequential([bpnn.Dense(3), bpnn.Tanh(), bpnn.Dense(2)], seed=7, dtype="float64")
        m.build((4,))
        return m

    a, b = make(), make()
    for (_, pa, _), (_, pb, _) in zip(a.named_parameters(), b.named_parameters()):
        assert pa.dtype == np.float64
        np.testing.assert_array_equal(pa, pb)


def test_a_trained_model_is_freed_as_soon_as_it_is_dropped():
    """No reference cycles hold a model after training (its trainer's History points back
    to the trainer weakly): models and their layers' buffers go as soon as the last
    reference does, not at the garbage collector's next full pass."""
    import gc
    import weakref

    from bpnn import nn

    x = np.random.default_rng(0).random((16, 1, 8, 8))
    y = np.arange(16) % 3
    gc.collect()
    gc.disable()
    try:
        model = bpnn.Sequential([nn.Conv2D(4, 3, padding=1), nn.BatchNorm(), nn.ReLU(),
                                 nn.Residual([nn.Conv2D(4, 3, padding=1), nn.ReLU()]),
                                 nn.GlobalAvgPool2D(), nn.Dense(3)], input_shape=(1, 8, 8), seed=0)
        trainer = bpnn.Trainer(model, optimizer="adam")
        history = trainer.fit(x, y, epochs=2, batch_size=8, verbose=False)
        assert history.trainer is trainer
        refs = [weakref.ref(model), weakref.ref(trainer)] + [weakref.ref(m) for m in model.layers]
        del model, trainer
        assert [r() for r in refs] == [None] * len(refs)
        assert history.trainer is None
    finally:
        gc.enable()


def test_data_dependent_init_is_owned_by_the_layer(rng):
    """``needs_data_init`` / ``mark_data_initialized()``: the one public place that says
    whether a layer still waits for LSUV's data step (the Trainer and model loading use it)."""
    model = bpnn.Sequential([bpnn.Dense(4, init="lsuv"), bpnn.Tanh(), bpnn.Dense(2)], input_shape=(3,), seed=0)
    assert [m.needs_data_init for m in model.layers] == [True, False, False]
    bpnn.Trainer(model, loss="mse", metrics=[]).fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), epochs=0,
                                                    verbose=False)
    assert not any(m.needs_data_init for m in model.modules())
    with pytest.raises(AttributeError):
        model[0].needs_data_init = True
    other = bpnn.Dense(4, init="lsuv")
    other.mark_data_initialized()
    assert not other.needs_data_init
