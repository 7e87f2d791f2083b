"""Per-layer statistics: the Probe, LayerStats and layer_statistics compute what they claim."""
import math

import numpy as np
import pytest

import bpnn
from bpnn.diagnostics import LayerStats, Probe, layer_statistics, named_leaves
from bpnn.diagnostics.probe import SIGMOID_SATURATION, TANH_SATURATION, output_stats
from bpnn.diagnostics.stats import histogram, histogram_edges


def _mlp(act="tanh", init="xavier_uniform", widths=(12, 9), n_in=5, n_out=4, seed=0, dtype="float64"):
    layers = []
    for w in widths:
        layers += [bpnn.Dense(w, init=init), bpnn.nn.layers.get(act)]
    layers.append(bpnn.Dense(n_out, init=init))
    return bpnn.Sequential(layers, input_shape=(n_in,), seed=seed, dtype=dtype)


def _data(rng, n=40, n_in=5, n_out=4):
    X = rng.normal(size=(n, n_in))
    y = np.arange(n) % n_out
    return X, y


def test_named_leaves_follow_named_parameters():
    model = bpnn.Sequential([bpnn.Dense(3), bpnn.ReLU(), bpnn.Residual([bpnn.Dense(3), bpnn.Tanh()]),
                             bpnn.Dense(2)], input_shape=(3,), seed=0)
    names = [n for n, _ in named_leaves(model)]
    assert names == ["0", "1", "2.block.0", "2.block.1", "3"]
    param_layers = {p.rsplit(".", 1)[0] for p, _, _ in model.named_parameters()}
    assert param_layers <= set(names)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    expected = model.forward(x, training=True)
    block = model[2].block
    with Probe(model) as probe:  # nested containers: the residual block's leaves are observed too
        np.testing.assert_array_equal(model.forward(x, training=True), expected)
        model.backward(np.ones_like(expected), input_grad=False)
    assert model[2].block is block and block.layers[0].__class__.__name__ == "Dense"
    assert probe.entries["2.block.0"]["delta_rms"] > 0 and "out_std" in probe.entries["2.block.1"]
    alone = bpnn.Dense(3)
    alone.build((2,))
    with Probe(alone) as probe:  # a model that is itself a leaf
        alone.backward(alone.forward(np.ones((2, 2), dtype=np.float32), training=True))
    assert "delta_rms" in probe.entries["dense"] and "forward" not in vars(alone)


def test_probe_restores_modules_and_changes_nothing(rng):
    X, y = _data(rng)
    model = _mlp()
    loss = bpnn.losses.get("softmax_cross_entropy")
    out_plain = model.forward(X, training=True)
    loss.forward(out_plain, y)
    model.backward(loss.backward(), input_grad=False)
    grads_plain = [g.copy() for _, _, g in model.named_parameters()]
    layers = list(model.layers)
    with Probe(model) as probe:
        assert all(type(a).__name__ == "_Observed" for a in model.layers)  # stand-ins, leaves untouched
        out = model.forward(X, training=True)
        loss.forward(out, y)
        model.backward(loss.backward(), input_grad=False)
    np.testing.assert_array_equal(out, out_plain)
    for (_, _, g), g0 in zip(model.named_parameters(), grads_plain):
        np.testing.assert_array_equal(g, g0)
    assert all(a is b for a, b in zip(model.layers, layers))
    for _, m in named_leaves(model):
        assert "forward" not in vars(m) and "backward" not in vars(m)
    assert set(probe.entries) == {"0", "1", "2", "3", "4"}
    assert all("out_std" in e for e in probe.entries.values())


def test_layer_statistics_match_a_manual_forward_and_backward(rng, kernels):
    X, y = _data(rng)
    model = _mlp()
    st = layer_statistics(model, X, y)
    rec = st["record"]["layers"]
    # Manual pass, float64.
    W0, b0 = model[0].params["weight"], model[0].params["bias"]
    W2, b2 = model[2].params["weight"], model[2].params["bias"]
    W4, b4 = model[4].params["weight"], model[4].params["bias"]
    s0 = X @ W0 + b0
    h1 = np.tanh(s0)
    s2 = h1 @ W2 + b2
    h3 = np.tanh(s2)
    z = h3 @ W4 + b4
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d4 = p.copy()
    d4[np.arange(len(y)), y] -= 1
    d4 /= len(y)
    d3 = d4 @ W4.T
    d2 = d3 * (1 - h3**2)
    d1 = d2 @ W2.T
    d0 = d1 * (1 - h1**2)
    for name, out in (("0", s0), ("1", h1), ("2", s2), ("3", h3), ("4", z)):
        assert rec[name]["out_mean"] == pytest.approx(out.mean(), rel=1e-9, abs=1e-12)
        assert rec[name]["out_std"] == pytest.approx(out.std(), rel=1e-9)
    for name, d in (("0", d0), ("2", d2), ("4", d4)):  # δ at the weighted layers
        assert rec[name]["delta_std"] == pytest.approx(d.std(), rel=1e-7)
        assert rec[name]["delta_rms"] == pytest.approx(math.sqrt((d**2).mean()), rel=1e-7)
    gW2 = h1.T @ d2
    assert rec["2"]["grad_norm"] == pytest.approx(np.linalg.norm(gW2), rel=1e-9)
    assert rec["2"]["grad_std"] == pytest.approx(gW2.std(), rel=1e-7)
    assert rec["2"]["weight_rms"] == pytest.approx(math.sqrt((W2**2).mean()), rel=1e-9)
    assert "delta_rms" not in rec["1"]  # at an activation δ is the next layer's input gradient
    assert st["record"]["loss"] == pytest.approx(-np.log(p[np.arange(len(y)), y]).mean(), rel=1e-9)
    assert [d["name"] for d in st["layers"]] == ["0", "1", "2", "3", "4"]


def test_saturation_dead_and_spread_definitions(kernels):
    y = np.array([[0.005, 0.5, 0.995, 0.2], [0.01, 0.99, 0.3, 0.0126]])
    frac = np.mean((y < SIGMOID_SATURATION) | (y > 1 - SIGMOID_SATURATION))
    assert output_stats(y, "sigmoid")["saturation"] == pytest.approx(frac)
    # y(1 - y) < 0.05 * 0.25 for 0.005, 0.995, 0.01, 0.99 and 0.0126 (just below 0.01266)
    assert frac == pytest.approx(5 / 8)
    t = np.array([[0.98, -0.99, 0.5, 0.0]])
    assert output_stats(t, "tanh")["saturation"] == pytest.approx(0.5)
    assert 1 - TANH_SATURATION**2 == pytest.approx(0.05)
    r = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    s = output_stats(r, "relu")
    assert s["dead_fraction"] == pytest.approx(1 / 3)    # unit 0 never fires
    assert s["zero_fraction"] == pytest.approx(6 / 9)
    same = np.repeat(np.array([[0.3], [-1.2]]), 5, axis=1)
    assert output_stats(same, "dense")["unit_spread"] == 0.0
    assert output_stats(same + np.array([0, 0, 0, 0, 1e-3]), "dense")["unit_spread"] > 1e-4
    conv = np.zeros((2, 3, 4, 4))
    conv[:, 1] = 1.0
    assert output_stats(conv, "relu")["dead_fraction"] == pytest.approx(2 / 3)  # per channel


def test_histogram_equals_numpy(rng, kernels):
    w = rng.normal(size=(64, 33)).astype(np.float32)
    h = histogram(w, 30)
    counts, edges = np.histogram(w, bins=30)
    assert h["counts"] == counts.tolist()
    np.testing.assert_allclose(histogram_edges(h), edges, rtol=1e-6, atol=1e-6)  # numpy: float32 edges
    z = histogram(np.zeros((4, 4)), 10)
    assert sum(z["counts"]) == 16 and (z["lo"], z["hi"]) == (-0.5, 0.5)


def _fit(model, X, y, cb, epochs=4, batch_size=10, optimizer=None, **kw):
    trainer = bpnn.Trainer(model, optimizer=optimizer or bpnn.optim.SGD(lr=0.1))
    return trainer.fit(X, y, epochs=epochs, batch_size=batch_size, callbacks=[cb] if cb else [], verbose=False,
                       **kw)


def test_layer_stats_records_and_training_is_unchanged(rng, kernels):
    X, y = _data(rng)
    m1, m2 = _mlp(seed=3), _mlp(seed=3)
    stats = LayerStats(every=2)
    h1 = _fit(m1, X, y, stats, epochs=5)
    h2 = _fit(m2, X, y, None, epochs=5)
    assert h1.history == h2.history  # observing does not change training, bit for bit
    for (_, a, _), (_, b, _) in zip(m1.named_parameters(), m2.named_parameters()):
        np.testing.assert_array_equal(a, b)
    assert [r["epoch"] for r in stats.records] == [0, 2, 4, 5]  # init, every 2nd epoch, the last
    assert [r["step"] for r in stats.records] == [0, 7, 15, 19]  # 4 batches per epoch
    assert stats.records[1]["progress"] == pytest.approx(1.75)
    epochs, vals = stats.series("delta_rms")
    assert vals.shape == (4, 5) and np.isfinite(vals[:, [0, 2, 4]]).all()
    for _, m in named_leaves(m1):
        assert "forward" not in vars(m) and "backward" not in vars(m)


def test_update_ratio_is_the_step_over_the_weights(rng, kernels):
    # Plain SGD: the step is lr * grad, so ||ΔW|| / ||W|| = lr ||g|| / ||W_before||.
    X, y = _data(rng)
    model = _mlp(seed=1)
    w_before = model[2].params["weight"].copy()
    stats = LayerStats()
    _fit(model, X, y, stats, epochs=1, batch_size=40, optimizer=bpnn.optim.SGD(lr=0.3))
    rec = stats.records[0]["layers"]["2"]
    assert rec["update_ratio"] == pytest.approx(0.3 * rec["grad_norm"] / np.linalg.norm(w_before), rel=1e-9)
    assert sum(rec["hist"]["counts"]) == w_before.size


def test_full_batch_mode_records_init_once(rng):
    X, y = _data(rng)
    stats = LayerStats()
    _fit(_mlp(), X, y, stats, epochs=3, batch_size="full")
    assert [r["epoch"] for r in stats.records] == [0, 2, 3]


def test_layer_stats_arguments_are_checked():
    with pytest.raises(ValueError, match="every"):
        LayerStats(every=0)
    with pytest.raises(ValueError, match="bins"):
        LayerStats(bins=-1)


def test_switched_off_nothing_is_installed(rng):
    X, y = _data(rng)
    model = _mlp()
    trainer = bpnn.Trainer(model, optimizer="sgd")
    trainer.fit(X, y, epochs=1, verbose=False)
    cbs = bpnn.train.CallbackList([bpnn.History()], trainer)
    assert not cbs.wants_batch_hooks  # the Trainer skips the batch hooks entirely
    for _, m in named_leaves(model):
        assert "forward" not in vars(m)


def test_compiled_and_numpy_statistics_agree(rng):
    pytest.importorskip("numba", reason="numba (bpnn[fast]) is not installed")
    from bpnn import _kernels
    from bpnn.diagnostics.stats import param_stats

    X, y = _data(rng, n=64)
    for act in ("relu", "tanh", "sigmoid"):
        model = _mlp(act=act, dtype="float32", seed=4)
        _fit(model, X, y, None, epochs=2, batch_size=16)
        before = model[2].params["weight"] * 1.01
        results = {}
        for flag in (True, False):
            _kernels.set_enabled(flag)
            try:
                st = layer_statistics(model, X, y, bins=9)["record"]["layers"]
                st["2"].update(param_stats(model[2], before.copy(), 9))
                results[flag] = st
            finally:
                _kernels.set_enabled(True)
        for name, ea in results[True].items():
            eb = results[False][name]
            assert ea.keys() == eb.keys(), name
            for key, va in ea.items():
                if key == "_dead" or key == "hist":
                    assert np.array_equal(va, eb[key]) if key == "_dead" else va == eb[key], (name, key)
                elif va is not None:
                    assert va == pytest.approx(eb[key], rel=1e-4, abs=1e-7), (act, name, key)


def test_weight_histograms_are_spread_over_training(rng):
    X, y = _data(rng)
    stats = LayerStats(histograms=2)  # every ⌈5 / 2⌉ = 3 epochs, plus initialization and the end
    _fit(_mlp(), X, y, stats, epochs=5)
    with_hist = [r["epoch"] for r in stats.records if "hist" in r["layers"]["0"]]
    assert [r["epoch"] for r in stats.records] == [0, 1, 2, 3, 4, 5] and with_hist == [0, 3, 5]
