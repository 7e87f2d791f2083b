"""Health verdicts: each fires on a network built to have the problem, names the layer and
the epoch, and stays silent on healthy networks."""
import math
import warnings

import numpy as np
import pytest

import bpnn
from bpnn.diagnostics import LayerStats, Thresholds, Verdict, diagnose

pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")


@pytest.fixture(scope="module")
def digits():
    from bpnn.data import load_digits

    X, y = load_digits()
    return X[:600], y[:600]


def _train(digits, init, act, depth=8, width=48, epochs=6, optimizer=None, bias="zeros", seed=0,
           out_init=None):
    X, y = digits
    layers = []
    for _ in range(depth):
        layers += [bpnn.Dense(width, init=init, bias_init=bias), bpnn.nn.layers.get(act)]
    layers.append(bpnn.Dense(10, init=out_init or init))
    model = bpnn.Sequential(layers, input_shape=(64,), seed=seed)
    stats = LayerStats()
    trainer = bpnn.Trainer(model, optimizer=optimizer or bpnn.optim.SGD(lr=0.05, momentum=0.9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = trainer.fit(X, y, epochs=epochs, batch_size=32, callbacks=[stats], verbose=False)
    return diagnose(stats, history), stats, history


def _kinds(verdicts):
    return {v.kind for v in verdicts}


def test_vanishing_gradients_in_a_deep_sigmoid_stack(digits):
    verdicts, stats, _ = _train(digits, "xavier_uniform", "sigmoid", depth=10)
    v = next(v for v in verdicts if v.kind == "vanishing_gradients")
    assert v.layer == "0" and v.epoch == 0 and v.value < 1e-2
    assert "layer 0 (Dense 64→48)" in v.message and "at initialization" in v.message
    # the statistic behind it: the backpropagated gradient shrinks layer after layer
    _, delta = stats.series("delta_rms")
    dense = [i for i, d in enumerate(stats.layers) if d["has_weight"]]
    assert np.all(np.diff(delta[0, dense]) > 0)


def test_exploding_gradients_with_a_too_large_init(digits):
    big = {"class_name": "normal", "config": {"std": 0.5}}
    verdicts, _, history = _train(digits, big, "relu", depth=8, optimizer=bpnn.optim.SGD(lr=1e-4),
                                  epochs=2, out_init="xavier_uniform")
    v = next(v for v in verdicts if v.kind == "exploding_gradients")
    assert v.layer == "0" and v.epoch == 0 and v.value > 1e2
    assert "exploding gradients at initialization" in v.message and "layer 16 (Dense 48→10)" in v.message


def test_divergence_is_a_verdict_naming_the_epoch(digits):
    big = {"class_name": "normal", "config": {"std": 0.5}}
    verdicts, _, history = _train(digits, big, "relu", depth=8, optimizer=bpnn.optim.SGD(lr=0.1),
                                  out_init="xavier_uniform")
    assert history.stopped_reason is not None
    v = next(v for v in verdicts if v.kind == "non_finite_loss")
    assert v.epoch == 1 and "non-finite loss" in v.message
    assert "exploding_gradients" in _kinds(verdicts)


def test_dead_relu_layers(digits):
    verdicts, _, _ = _train(digits, "he_normal", "relu", depth=4, bias={"class_name": "constant",
                                                                         "config": {"value": -3.0}})
    dead = [v for v in verdicts if v.kind == "dead_layer"]
    assert [v.layer for v in dead] == ["1", "3", "5", "7"]
    assert all(v.epoch == 0 and v.value == 1.0 for v in dead)
    assert "layer 1 (ReLU): 100% of its ReLUs are dead" in dead[0].message


def test_saturated_tanh_layers(digits):
    big = {"class_name": "normal", "config": {"std": 0.5}}
    verdicts, stats, _ = _train(digits, big, "tanh", depth=4, epochs=2)
    sat = [v for v in verdicts if v.kind == "saturated_layer"]
    assert sat and all(v.value >= 0.5 for v in sat)
    names = {v.layer for v in sat}
    assert names <= {"1", "3", "5", "7"} and "3" in names
    assert "saturated" in sat[0].message and "Tanh" in sat[0].message


@pytest.mark.parametrize("init", ["zeros", {"class_name": "constant", "config": {"value": 0.05}}])
def test_unbroken_symmetry_after_zero_or_constant_init(digits, init):
    verdicts, _, _ = _train(digits, init, "tanh", depth=3, epochs=5)
    sym = [v for v in verdicts if v.kind == "unbroken_symmetry"]
    assert [v.layer for v in sym] == ["0", "2", "4"]  # every hidden Dense layer, not the output layer
    assert all(v.epoch == 0 for v in sym)
    assert "all 48 units compute the same value from initialization to epoch 5" in sym[0].message


def test_loss_plateau_at_chance(digits):
    verdicts, _, history = _train(digits, "zeros", "relu", depth=3, epochs=6)
    v = next(v for v in verdicts if v.kind == "loss_plateau")
    assert v.layer is None and v.epoch == 1
    assert f"ln 10 = {math.log(10):.4g}" in v.message and "from epoch 1 to epoch 6" in v.message


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_healthy_networks_get_no_verdict(digits, seed):
    verdicts, _, history = _train(digits, "he_normal", "relu", depth=3, width=64, epochs=8, seed=seed,
                                  optimizer=bpnn.optim.SGD(lr=0.05, momentum=0.9), out_init="xavier_uniform")
    assert history["loss"][-1] < 0.3
    assert verdicts == [], [str(v) for v in verdicts]


def test_healthy_tanh_network_gets_no_verdict(digits):
    verdicts, _, history = _train(digits, "xavier_uniform", "tanh", depth=3, width=64, epochs=8)
    assert history["loss"][-1] < 0.3
    assert verdicts == [], [str(v) for v in verdicts]


def test_plateau_rule_on_loss_curves():
    t = Thresholds(plateau_epochs=4)
    assert [v.kind for v in diagnose(history=[2.3, 2.3, 2.301, 2.299, 2.3], thresholds=t)] == ["loss_plateau"]
    assert diagnose(history=[2.3, 1.2, 0.6, 0.3, 0.2, 0.15, 0.149, 0.149, 0.149], thresholds=t) == []  # converged
    assert diagnose(history=[2.3, 2.0, 1.7, 1.4, 1.1], thresholds=t) == []


def test_verdicts_round_trip_as_plain_data():
    v = Verdict("dead_layer", "3", 2, 0.9, "layer 3 (ReLU): 90% ...")
    assert Verdict.from_dict(v.to_dict()) == v
    assert str(v) == v.message


def test_one_pass_statistics_give_the_verdicts_at_initialization(digits):
    # diagnose(layer_statistics(...)): the one record of a single forward/backward pass is
    # read as the statistics at initialization (it used to be ignored: no verdict at all).
    from bpnn.diagnostics import layer_statistics

    X, y = digits

    def deep(act, init):
        layers = []
        for _ in range(10):
            layers += [bpnn.Dense(48, init=init), bpnn.nn.layers.get(act)]
        return bpnn.Sequential(layers + [bpnn.Dense(10)], input_shape=(64,), seed=0)

    st = layer_statistics(deep("sigmoid", "xavier_uniform"), X[:256], y[:256])
    v = next(v for v in diagnose(st) if v.kind == "vanishing_gradients")
    assert v.layer == "0" and v.epoch == 0 and v.value < 1e-2 and "at initialization" in v.message
    first, last = st["record"]["layers"]["0"]["delta_rms"], st["record"]["layers"]["20"]["delta_rms"]
    assert v.value == pytest.approx(first / last)
    assert "vanishing_gradients" not in _kinds(diagnose(layer_statistics(deep("relu", "he_normal"), X[:256], y[:256])))
