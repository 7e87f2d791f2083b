"""The formula variants of the BP articles bpnn serves, and their two-layer network.

The articles write the squared error as ½Σe² averaged over the batch, Adam without bias
correction, and "dropout" on the weights with a keep probability p
(``mask = (rand < p) / p``). bpnn has each of them under its own name —
``MSE(reduction="half_mean")``, ``Adam(bias_correction=False)``, ``DropConnect(units, p)``
— and these tests show that a NumPy script written the articles' way and bpnn take the
same steps: hand-worked golden numbers for each piece, then a whole network trained
both ways to the same weights.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

import bpnn
from bpnn import optim
from bpnn.nn import Dense, DropConnect, ReLU, Sequential, layers


# --------------------------------------------------------------------------- MSE half_mean
def test_golden_mse_half_mean():
    # pred − target = e = [[1, 2], [2, 4]]  (N = 2 samples, K = 2 outputs)
    #   per sample ½Σ_k e²:  ½(1 + 4) = 2.5,   ½(4 + 16) = 10
    #   L = (2.5 + 10) / 2 = 6.25             (averaged over the samples, not the 4 entries)
    #   ∂L/∂pred = e / N = [[0.5, 1], [1, 2]]
    loss = bpnn.MSE(reduction="half_mean")
    pred = np.array([[1.0, 2.0], [3.0, 5.0]])
    target = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert float(loss(pred, target)) == 6.25
    np.testing.assert_array_equal(loss.backward(), [[0.5, 1.0], [1.0, 2.0]])
    # the other reductions of the same e (Σe² = 25), for contrast:
    #   mean Σe²/(N·K) = 25/4 (the same number only because K = 2 makes N·K = 2N),
    #   half_sum ½Σe² = 12.5, sum Σe² = 25
    assert float(bpnn.MSE("mean")(pred, target)) == 6.25
    assert float(bpnn.MSE("half_sum")(pred, target)) == 12.5
    assert float(bpnn.MSE("sum")(pred, target)) == 25.0


def test_mse_half_mean_differs_from_mean_when_outputs_are_not_one():
    # K = 3 outputs, N = 1: mean divides Σe² by 3, half_mean by 2 (½, one sample)
    pred, target = np.array([[1.0, 1.0, 1.0]]), np.zeros((1, 3))
    assert float(bpnn.MSE("mean")(pred, target)) == 1.0
    assert float(bpnn.MSE("half_mean")(pred, target)) == 1.5


def test_mse_half_mean_config_round_trip():
    loss = bpnn.losses.get({"class_name": "mse", "config": {"reduction": "half_mean"}})
    assert loss.reduction == "half_mean"
    assert bpnn.losses.losses.serialize(loss) == {"class_name": "mse", "config": {"reduction": "half_mean"}}


# --------------------------------------------------------------------------- DropConnect
class _FixedUniform:
    """Stands in for the layer's Generator: ``random`` returns the given U."""

    def __init__(self, u):
        self.u = np.asarray(u, dtype=np.float64)

    def random(self, size=None, dtype=np.float64):
        assert tuple(size) == self.u.shape
        return self.u.astype(dtype)


def _drop_connect_2x2(p=0.5):
    layer = DropConnect(2, p=p)
    layer.build((2,), 0, np.float64)
    layer.params["weight"][...] = [[1.0, 2.0], [3.0, 4.0]]
    layer.params["bias"][...] = [0.5, -0.5]
    return layer


def test_golden_drop_connect_with_a_fixed_mask():
    # p = 0.5 (keep probability), U = [[0.1, 0.7], [0.9, 0.2]]:
    #   M = [U < p] / p = [[1, 0], [0, 1]] / 0.5 = [[2, 0], [0, 2]]
    #   W̃ = W ⊙ M = [[1·2, 2·0], [3·0, 4·2]] = [[2, 0], [0, 8]]
    # x = [[1, 1], [2, −1]],  b = [0.5, −0.5]
    #   y = x W̃ + b:  row 1: [2 + 0, 0 + 8] + b = [2.5, 7.5]
    #                 row 2: [4 + 0, 0 − 8] + b = [4.5, −8.5]
    # G = ∂L/∂y = [[1, 0], [0, 1]]:
    #   xᵀG = [[1, 2], [1, −1]];  ∂L/∂W = (xᵀG) ⊙ M = [[2, 0], [0, −2]]
    #   ∂L/∂b = Σ_n G_n = [1, 1]
    #   ∂L/∂x = G W̃ᵀ = W̃ᵀ = [[2, 0], [0, 8]]
    layer = _drop_connect_2x2()
    layer.rng = _FixedUniform([[0.1, 0.7], [0.9, 0.2]])
    x = np.array([[1.0, 1.0], [2.0, -1.0]])
    np.testing.assert_array_equal(layer.forward(x, training=True), [[2.5, 7.5], [4.5, -8.5]])
    gx = layer.backward(np.eye(2))
    np.testing.assert_array_equal(layer.grads["weight"], [[2.0, 0.0], [0.0, -2.0]])
    np.testing.assert_array_equal(layer.grads["bias"], [1.0, 1.0])
    np.testing.assert_array_equal(gx, [[2.0, 0.0], [0.0, 8.0]])
    # the stored weight is untouched: the mask lives in this step only
    np.testing.assert_array_equal(layer.params["weight"], [[1.0, 2.0], [3.0, 4.0]])


def test_drop_connect_is_dense_at_inference():
    # evaluation: y = x W + b = [[1 + 3, 2 + 4], [2 − 3, 4 − 4]] + b = [[4.5, 5.5], [−0.5, −0.5]]
    layer = _drop_connect_2x2()
    x = np.array([[1.0, 1.0], [2.0, -1.0]])
    state = copy.deepcopy(layer.rng.bit_generator.state)
    np.testing.assert_array_equal(layer.forward(x, training=False), [[4.5, 5.5], [-0.5, -0.5]])
    assert layer.rng.bit_generator.state == state, "inference must not draw random numbers"
    dense = Dense(2)
    dense.build((2,), 0, np.float64)
    dense.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(layer.forward(x), dense.forward(x))


def test_drop_connect_p_1_keeps_every_weight_in_training():
    layer = _drop_connect_2x2(p=1.0)
    x = np.array([[1.0, 1.0], [2.0, -1.0]])
    np.testing.assert_array_equal(layer.forward(x, training=True), layer.forward(x, training=False))


def test_drop_connect_masks_come_from_the_models_seeded_generator():
    def masks(seed):
        model = Sequential([DropConnect(40, p=0.3), ReLU(), Dense(2)], input_shape=(50,), seed=seed,
                           dtype="float64")
        x = np.ones((3, 50))
        out = []
        for _ in range(2):
            model.forward(x, training=True)
            out.append(np.asarray(model[0]._mask).copy())
        return out

    a, b, c = masks(7), masks(7), masks(8)
    np.testing.assert_array_equal(a[0], b[0])  # same seed, same masks
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])  # a fresh mask every forward pass
    assert not np.array_equal(a[0], c[0])  # another seed, other masks
    kept = a[0] != 0
    assert set(np.unique(a[0])) == {0.0, 1 / 0.3}  # survivors scaled by 1/p
    assert abs(kept.mean() - 0.3) < 0.03  # p is the keep probability (2000 weights)


def test_drop_connect_and_dropout_name_opposite_probabilities():
    # Dropout(rate) drops with probability rate; DropConnect(p) keeps with probability p.
    x = np.ones((200, 50))
    drop = Sequential([bpnn.Dropout(0.8)], input_shape=(50,), seed=0, dtype="float64")
    assert abs((np.asarray(drop.forward(x, training=True)) != 0).mean() - 0.2) < 0.02
    dc = Sequential([DropConnect(50, p=0.8)], input_shape=(50,), seed=0, dtype="float64")
    dc.forward(x, training=True)
    assert abs((np.asarray(dc[0]._mask) != 0).mean() - 0.8) < 0.03
    for cls in (bpnn.Dropout, DropConnect):
        assert "keep" in cls.__doc__ and "drop" in cls.__doc__.lower()


def test_drop_connect_config_round_trip_and_registry_names():
    layer = DropConnect(5, p=0.7, use_bias=False, init="he_normal")
    cfg = layers.serialize(layer)
    assert cfg["class_name"] == "drop_connect" and cfg["config"]["p"] == 0.7
    again = layers.get(cfg)
    assert type(again) is DropConnect and layers.serialize(again) == cfg and repr(again) == repr(layer)
    assert layers.lookup("dropconnect") is DropConnect


def test_drop_connect_jacobian_equals_dense_and_it_trains(kernels):
    # evaluation-mode Jacobian (Levenberg–Marquardt) equals that of the same Dense network
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3))
    a = Sequential([DropConnect(4, p=0.5), bpnn.Tanh(), Dense(2)], input_shape=(3,), seed=1, dtype="float64")
    b = Sequential([Dense(4), bpnn.Tanh(), Dense(2)], input_shape=(3,), seed=1, dtype="float64")
    b.load_state_dict(a.state_dict())
    ya, ja = bpnn.nn.jacobian(a, x)
    yb, jb = bpnn.nn.jacobian(b, x)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(ja, jb)
    # and a few epochs of training lower the loss
    y = np.tanh(x @ rng.standard_normal((3, 2)))
    trainer = bpnn.Trainer(a, loss="mse", optimizer=optim.Adam(lr=0.02), metrics=[])
    hist = trainer.fit(x, y, epochs=60, batch_size="full", verbose=False)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]


# --------------------------------------------------------------------------- the two-layer network
# The articles' network, in plain NumPy as they write it: weights (n_in, n_out) drawn
# with He's σ = √(2/n_in), no biases, ReLU after the hidden layer, the error
# e = out − y backpropagated as δ and each gradient divided by the batch size m (the
# gradient of ½Σe² averaged over the batch), full-batch updates. Their class also puts
# a ReLU on the output; both forms are checked.
def _articles_forward(ws, x, relu_output):
    acts = [x]
    for i, w in enumerate(ws):
        z = acts[-1] @ w
        last = i == len(ws) - 1
        acts.append(np.maximum(z, 0.0) if (relu_output or not last) else z)
    return acts


def _articles_gradients(ws, x, y, relu_output):
    acts = _articles_forward(ws, x, relu_output)
    m = x.shape[0]
    delta = acts[-1] - y
    if relu_output:
        delta = delta * (acts[-1] > 0)
    grads = [None] * len(ws)
    for i in range(len(ws) - 1, -1, -1):
        grads[i] = acts[i].T @ delta / m
        if i:
            delta = (delta @ ws[i].T) * (acts[i] > 0)
    return grads


def _articles_sgd(ws, x, y, lr, epochs, relu_output):
    ws = [w.copy() for w in ws]
    for _ in range(epochs):
        for w, g in zip(ws, _articles_gradients(ws, x, y, relu_output)):
            w -= lr * g
    return ws


def _articles_adam(ws, x, y, lr, epochs, relu_output, b1=0.9, b2=0.999, eps=1e-8):
    # m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  W ← W − η m/(√v + ε): no bias correction
    ws = [w.copy() for w in ws]
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    for _ in range(epochs):
        for w, g, m, v in zip(ws, _articles_gradients(ws, x, y, relu_output), ms, vs):
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            w -= lr * m / (np.sqrt(v) + eps)
    return ws


def _problem(n=16, n_in=4, hidden=8, n_out=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in))
    y = np.abs(rng.standard_normal((n, n_out)))  # non-negative: a ReLU output can reach them
    ws = [rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, hidden)),  # He initialization
          rng.normal(0.0, np.sqrt(2.0 / hidden), (hidden, n_out))]
    return x, y, ws


def _bpnn_network(ws, relu_output):
    hidden, n_out = ws[0].shape[1], ws[1].shape[1]
    layers_ = [Dense(hidden, use_bias=False, init="he_normal"), ReLU(), Dense(n_out, use_bias=False,
                                                                              init="he_normal")]
    if relu_output:
        layers_.append(ReLU())
    model = Sequential(layers_, input_shape=(ws[0].shape[0],), seed=0, dtype="float64")
    model[0].params["weight"][...] = ws[0]  # the same starting weights
    model[2].params["weight"][...] = ws[1]
    return model


def _train_bpnn(ws, x, y, optimizer, epochs, relu_output):
    model = _bpnn_network(ws, relu_output)
    trainer = bpnn.Trainer(model, loss=bpnn.MSE(reduction="half_mean"), optimizer=optimizer, metrics=[])
    trainer.fit(x, y, epochs=epochs, batch_size="full", shuffle=False, verbose=False)
    return [np.asarray(model[0].params["weight"]), np.asarray(model[2].params["weight"])]


@pytest.mark.parametrize("relu_output", [False, True], ids=["linear_output", "relu_output"])
@pytest.mark.parametrize("n", [16, 13], ids=["batch16", "batch13"])
def test_articles_network_with_gradient_descent_trains_to_the_same_weights(relu_output, n, kernels):
    x, y, ws = _problem(n=n)
    lr, epochs = 0.05, 20
    ours = _train_bpnn(ws, x, y, optim.SGD(lr=lr), epochs, relu_output)
    theirs = _articles_sgd(ws, x, y, lr, epochs, relu_output)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert not np.allclose(theirs[0], ws[0]), "the weights did not move"


@pytest.mark.parametrize("relu_output", [False, True], ids=["linear_output", "relu_output"])
def test_articles_network_with_their_adam_trains_to_the_same_weights(relu_output, kernels):
    x, y, ws = _problem()
    lr, epochs = 0.01, 20
    ours = _train_bpnn(ws, x, y, optim.Adam(lr=lr, bias_correction=False), epochs, relu_output)
    theirs = _articles_adam(ws, x, y, lr, epochs, relu_output)
    # bpnn updates the moments in torch's lerp form, m ← m + (1 − β₁)(g − m), which rounds
    # differently from β₁m + (1 − β₁)g; Adam's sign-like steps keep that at the last bits
    # of weights of size ~1 (seen: 4e-14 absolute on a weight crossing zero).
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # the bias-corrected default takes other steps: the flag is what makes them equal
    corrected = _train_bpnn(ws, x, y, optim.Adam(lr=lr), epochs, relu_output)
    assert not np.allclose(corrected[0], theirs[0], rtol=1e-6)
