"""The initialization lab reproduces published findings on real data (scikit-learn's digits),
each checked on statistics that bpnn computes, not only drawn."""
import math
import warnings

import numpy as np
import pytest

import bpnn
from bpnn.diagnostics import LayerStats, diagnose, layer_statistics

pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")


@pytest.fixture(scope="module")
def digits():
    from bpnn.data import load_digits

    return load_digits()


def _mlp(init, act, depth, width, seed=0):
    layers = []
    for _ in range(depth):
        layers += [bpnn.Dense(width, init=init), bpnn.nn.layers.get(act)]
    layers.append(bpnn.Dense(10, init=init))
    return bpnn.Sequential(layers, input_shape=(64,), seed=seed)


def _hidden_dense(stats):
    return [d["name"] for d in stats["layers"] if d["has_weight"]][:-1]


# Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward neural
# networks", section 4.2.2 and Figure 7: with the "standard" initialization
# W ~ U[−1/√n, 1/√n] (n = fan_in; Var W = 1/(3n)) the variance of the back-propagated gradient
# ∂Cost/∂s shrinks layer by layer towards the input (each tanh layer multiplies it by about
# n·Var W = 1/3), while the normalized initialization Var W = 2/(n_in + n_out) keeps it about
# constant. Network: 5 hidden tanh layers of 1000 units, at initialization.
STANDARD = {"class_name": "variance_scaling", "config": {"scale": 1 / 3, "mode": "fan_in", "distribution": "uniform"}}


def test_standard_init_is_glorots_uniform_1_over_sqrt_n():
    w = bpnn.init.get(STANDARD)((1000, 1000), np.random.default_rng(0))
    assert np.abs(w).max() <= 1 / math.sqrt(1000) and np.abs(w).max() > 0.99 / math.sqrt(1000)


def test_glorot_bengio_2010_backpropagated_gradient_variance(digits):
    X, y = digits
    variances = {}
    for name, init in (("standard", STANDARD), ("normalized", "xavier_uniform")):
        st = layer_statistics(_mlp(init, "tanh", depth=5, width=1000), X[:400], y[:400])
        variances[name] = np.array([st["record"]["layers"][n]["delta_std"] ** 2 for n in _hidden_dense(st)])
    std, norm = variances["standard"], variances["normalized"]
    assert len(std) == 5
    # standard: shrinks toward the input at every layer, by more than 10x over the five layers
    assert np.all(np.diff(std) > 0), std
    assert std[-1] / std[0] > 10
    # normalized (Xavier): within a factor 2 across all five layers
    assert norm.max() / norm.min() < 2, norm


# He, Zhang, Ren & Sun (2015), "Delving deep into rectifiers", section 2.2 and Figure 3: a
# 30-layer ReLU network initialized with Var W = 2/n converges, while Var W = 1/n (the
# Xavier-like "1/fan_in" init) halves the signal variance at every layer and stalls.
def _he_run(digits, init, seed=0):
    X, y = digits
    model = _mlp(init, "relu", depth=30, width=64, seed=seed)
    at_init = layer_statistics(model, X[:256], y[:256])
    stats = LayerStats(every=2, bins=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.002, momentum=0.9))
    history = trainer.fit(X, y, epochs=6, batch_size=32, callbacks=[stats], verbose=False)
    return at_init, history, stats


def test_he_2015_thirty_relu_layers_train_with_he_init_and_stall_with_1_over_fan_in(digits):
    ln10 = math.log(10)
    he_init, he_hist, _ = _he_run(digits, "he_normal")
    le_init, le_hist, le_stats = _he_run(digits, "lecun_normal")
    # He: the loss falls well below chance
    assert he_hist["loss"][-1] < 0.6 * ln10, he_hist["loss"]
    assert he_hist["accuracy"][-1] > 0.5
    # 1/fan_in: the loss stays at ln 10, the loss of a uniform guess over ten classes
    assert all(abs(v - ln10) < 0.01 for v in le_hist["loss"]), le_hist["loss"]
    assert le_hist["accuracy"][-1] < 0.2
    # why, on the computed statistics: the ReLU outputs' std across 30 layers
    def relu_std(st):
        return np.array([st["record"]["layers"][d["name"]]["out_std"] for d in st["layers"] if d["kind"] == "relu"])

    he_std, le_std = relu_std(he_init), relu_std(le_init)
    assert len(he_std) == 30
    assert 0.2 < he_std[-1] / he_std[0] < 5                # preserved by 2/n
    assert le_std[-1] / le_std[0] < 1e-3                   # ≈ (1/√2)^29 ≈ 4e-5 with 1/n
    # and the health verdicts say so in words
    kinds = {v.kind for v in diagnose(le_stats, le_hist)}
    assert {"vanishing_gradients", "loss_plateau"} <= kinds


# Zero initialization: every hidden unit of a layer gets the same input weights and the same
# gradient, so the units stay identical however long one trains (the symmetry problem).
# "Identical" up to float32 rounding: BLAS kernels sum different output columns in different
# orders, so units drift apart by rounding alone (relative spread up to ~1e-5 after 5 epochs
# here), while units that learned different features differ by order 1.
SAME_UNITS = 1e-4


def _rel_spread(a, axis):
    scale = float(np.abs(a).max())
    return float(np.ptp(a, axis=axis).max()) / scale if scale else 0.0


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_zero_init_leaves_all_hidden_units_of_a_layer_identical(digits, act):
    X, y = digits
    model = _mlp("zeros", act, depth=3, width=16)
    stats = LayerStats()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.5, momentum=0.9)).fit(
            X, y, epochs=5, batch_size=64, callbacks=[stats], verbose=False)
    dense = [m for m in model.layers if isinstance(m, bpnn.Dense)]
    moved = False
    for layer in dense[:-1]:
        W, b = layer.params["weight"], layer.params["bias"]
        assert _rel_spread(W, 1) <= SAME_UNITS   # all columns (units) identical
        assert _rel_spread(b, 0) <= SAME_UNITS
        moved |= bool(np.abs(b).max() > 0) or bool(np.abs(W).max() > 0)
    out_W, out_b = dense[-1].params["weight"], dense[-1].params["bias"]
    assert _rel_spread(out_W, 0) <= SAME_UNITS   # every hidden unit sends the same weights on
    assert _rel_spread(out_b, 0) > 0.1           # ... while the ten output units did learn
    if act == "sigmoid":                         # (tanh(0) = 0: there the hidden layers stay 0)
        assert moved and _rel_spread(out_W, 1) > 0.1
    # the statistics and the verdict see the same thing
    last = stats.records[-1]["layers"]
    assert all(last[n]["unit_spread"] <= SAME_UNITS for n in ("0", "2", "4"))
    assert {v.layer for v in diagnose(stats) if v.kind == "unbroken_symmetry"} == {"0", "2", "4"}
