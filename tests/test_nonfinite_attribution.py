"""A non-finite loss is blamed on the layer where the values broke, not on the first
parameter (every gradient is NaN once the loss is)."""
import warnings

import numpy as np
import pytest

import bpnn

LAYERS = (0, 2, 5, 7)  # the Dense layers of the model below


def _model():
    return bpnn.Sequential([bpnn.Dense(8), bpnn.ReLU(), bpnn.Dense(8), bpnn.BatchNorm(), bpnn.ReLU(),
                            bpnn.Dense(8), bpnn.ReLU(), bpnn.Dense(3)], input_shape=(6,), seed=0)


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 6)).astype(np.float32), rng.normal(size=(64, 3)).astype(np.float32)


def _message(model, lr=0.01, epochs=1, batch_size=64, callbacks=()):
    X, Y = _data()
    trainer = bpnn.Trainer(model, loss="mse", optimizer=bpnn.optim.SGD(lr=lr))
    with warnings.catch_warnings(record=True) as record, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        trainer.fit(X, Y, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=False,
                    callbacks=list(callbacks))
    messages = [str(w.message) for w in record if issubclass(w.category, bpnn.NonFiniteLossWarning)]
    assert len(messages) == 1, messages
    return messages[0]


@pytest.mark.parametrize("layer", LAYERS)
def test_an_infinite_weight_is_named(layer):
    model = _model()
    model[layer].params["weight"][1, 2] = np.inf
    assert f"at fault: parameter '{layer}.weight' is non-finite" in _message(model)


def test_an_infinite_batchnorm_scale_is_named():
    model = _model()
    name = next(n for n, _, _ in model.named_parameters() if n.startswith("3."))
    dict(((n, p) for n, p, _ in model.named_parameters()))[name][0] = np.inf
    assert f"at fault: parameter '{name}' is non-finite" in _message(model)


@pytest.mark.parametrize("layer", LAYERS)
def test_the_first_layer_whose_output_overflows_is_named(layer):
    """Finite weights of 3e38 overflow the layer's output; every later output is
    non-finite too, and every gradient, but the message names that layer."""
    model = _model()
    model[layer].params["weight"][...] = 3e38
    message = _message(model)
    assert f"at fault: layer '{layer}' (Dense): its output is non-finite, its input finite" in message


class _WeightsBeforeEachBatch(bpnn.Callback):
    def on_batch_begin(self, batch, logs=None):
        self.state = self.trainer.model.state_dict()


def _expected_culprit(state, xb):
    """The rule, worked independently on the weights the failing batch saw."""
    model = _model()
    model.load_state_dict(state)
    params = list(model.named_parameters())
    for name, p, _ in params:
        if not np.isfinite(p).all():
            return f"parameter '{name}' is non-finite"
    x = xb
    with np.errstate(all="ignore"):
        for i, layer in enumerate(model.layers):
            x = layer.forward(x, training=True)
            if not np.isfinite(x).all():
                return f"layer '{i}' ({type(layer).__name__}): its output is non-finite"
        loss = bpnn.losses.get("mse")
        loss.forward(x, _data()[1][:len(xb)])
        model.backward(loss.backward(), input_grad=False)
    for name, _, g in reversed(params):
        if not np.isfinite(g).all():
            return f"the gradient of '{name}' is non-finite"
    return "the loss overflowed"


@pytest.mark.parametrize("lr", [1e3, 1e6, 1e10])
def test_a_too_large_learning_rate_names_the_layer_where_values_broke(lr):
    spy = _WeightsBeforeEachBatch()
    X, _ = _data()
    message = _message(_model(), lr=lr, epochs=20, batch_size=16, callbacks=[spy])
    batch = int(message.split("batch ")[1].split(" ")[0])
    expected = _expected_culprit(spy.state, X[batch * 16:(batch + 1) * 16])
    assert f"at fault: {expected}" in message, (expected, message)
    assert "'0.weight'" not in message or "'0.weight'" in expected
