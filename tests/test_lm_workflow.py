"""The classic MATLAB-style workflow around Levenberg–Marquardt: mapminmax scaling,
train/validation/test division, Nguyen–Widrow initialization and the classic plots."""
from __future__ import annotations

import numpy as np
import pytest

import bpnn
from bpnn.data import (
    Division, MinMaxScaler, divide, divideblock, divideind, divideint, dividerand, dividetrain, mapminmax,
)
from bpnn.init.nguyen_widrow import nguyen_widrow
from bpnn.train import LMTrainer


# ----------------------------------------------------------------------------- mapminmax
def test_minmax_maps_columns_to_minus_one_one_and_back(rng):
    x = rng.uniform(-5, 20, (50, 3)) * np.array([1.0, 100.0, 0.01])
    y, ps = mapminmax(x)
    np.testing.assert_allclose(y.min(axis=0), -1.0)
    np.testing.assert_allclose(y.max(axis=0), 1.0)
    # MATLAB's formula, by hand: y = (ymax − ymin)(x − xmin)/(xmax − xmin) + ymin
    lo, hi = x.min(axis=0), x.max(axis=0)
    np.testing.assert_allclose(y, 2 * (x - lo) / (hi - lo) - 1, rtol=1e-13)
    np.testing.assert_allclose(ps.inverse_transform(y), x, rtol=1e-13)
    x2 = rng.uniform(-50, 50, (7, 3))
    np.testing.assert_allclose(ps.transform(x2), 2 * (x2 - lo) / (hi - lo) - 1, rtol=1e-12)


def test_minmax_constant_column_passes_through_and_custom_range():
    x = np.array([[1.0, 7.0], [3.0, 7.0], [2.0, 7.0]])
    s = MinMaxScaler((0, 1)).fit(x)
    np.testing.assert_allclose(s.transform(x), [[0.0, 7.0], [1.0, 7.0], [0.5, 7.0]])
    np.testing.assert_allclose(s.inverse_transform(s.transform(x)), x)
    one_d = MinMaxScaler().fit_transform(np.array([2, 4, 6]))
    np.testing.assert_allclose(one_d, [-1.0, 0.0, 1.0])
    assert one_d.ndim == 1 and one_d.dtype == np.float64


def test_minmax_errors():
    with pytest.raises(ValueError, match="feature_range: got"):
        MinMaxScaler((1, -1))
    with pytest.raises(RuntimeError, match="call fit first"):
        MinMaxScaler().transform(np.ones((2, 2)))
    with pytest.raises(ValueError, match="x: has 3 features, the scaler was fitted on 2"):
        MinMaxScaler().fit(np.ones((2, 2))).transform(np.ones((2, 3)))


# ----------------------------------------------------------------------------- division
@pytest.mark.parametrize("fn", [dividerand, divideblock, divideint])
def test_divisions_are_a_partition_with_the_matlab_counts(fn):
    n = 101
    d = fn(n) if fn is not dividerand else fn(n, rng=0)
    assert isinstance(d, Division)
    assert (len(d.train), len(d.val), len(d.test)) == (71, 15, 15)
    every = np.concatenate(d)
    assert sorted(every.tolist()) == list(range(n))
    assert all(np.all(np.diff(part) > 0) for part in d), "indices are sorted"


def test_dividerand_is_random_but_seeded_and_block_is_in_order():
    a, b, c = dividerand(60, rng=1), dividerand(60, rng=1), dividerand(60, rng=2)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a.train, c.train)
    assert not np.array_equal(a.train, np.arange(42)), "a random division is not the first block"
    blk = divideblock(20, 0.5, 0.25, 0.25)
    assert blk.train.tolist() == list(range(10)) and blk.test.tolist() == list(range(15, 20))


def test_divideint_interleaves_every_stretch():
    d = divideint(100)
    for part in (d.val, d.test):  # every fifth of the data holds validation and test samples
        assert all(((part >= lo) & (part < lo + 20)).sum() >= 2 for lo in range(0, 100, 20))


def test_divideind_divide_and_errors():
    d = divideind(10, [0, 1, 2, 3], [4, 5], [9])
    assert d.train.tolist() == [0, 1, 2, 3] and d.val.tolist() == [4, 5] and d.test.tolist() == [9]
    assert divide(10, ([0, 1, 2], [3], [])).train.tolist() == [0, 1, 2]
    assert len(divide(10, "none").train) == 10 and len(dividetrain(5).val) == 0
    assert np.array_equal(divide(30, "dividerand", rng=3).val, dividerand(30, rng=3).val)
    with pytest.raises(ValueError, match="overlap"):
        divideind(10, [0, 1], [1, 2])
    with pytest.raises(ValueError, match=r"indices must lie in 0..9"):
        divideind(10, [0, 10])
    with pytest.raises(ValueError, match="division: got 'rand'"):
        divide(10, "rand")
    with pytest.raises(ValueError, match="leave no training sample"):
        dividerand(2, 0.1, 0.45, 0.45)
    x, t = np.arange(10.0)[:, None], np.arange(10.0)
    (xa, xb, xc), (ta, tb, tc) = d.take(x, t)
    assert xa.ravel().tolist() == ta.tolist() == [0, 1, 2, 3] and tc.tolist() == [9]


# ----------------------------------------------------------------------------- Nguyen–Widrow
def test_nguyen_widrow_norms_and_spread_biases():
    model = bpnn.Sequential([bpnn.Dense(10), bpnn.Tanh(), bpnn.Dense(6), bpnn.Sigmoid(), bpnn.Dense(2)],
                            input_shape=(3,), seed=0, dtype="float64")
    out_before = model[4].params["weight"].copy()
    nguyen_widrow(model)
    w = model[0].params["weight"]
    beta = 0.7 * 10 ** (1 / 3)
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), beta, rtol=1e-12)
    b = model[0].params["bias"]
    np.testing.assert_allclose(np.abs(b), beta * np.abs(np.linspace(-1, 1, 10)), rtol=1e-12)
    # second layer: tanh outputs lie in [−1, 1]: no range mapping, magnitude 0.7·6^(1/10)
    np.testing.assert_allclose(np.linalg.norm(model[2].params["weight"], axis=0), 0.7 * 6 ** 0.1, rtol=1e-12)
    np.testing.assert_array_equal(model[4].params["weight"], out_before), "linear output keeps its init"


def test_nguyen_widrow_input_range_is_the_same_network_on_raw_inputs(rng):
    lo, hi = np.array([-3.0, 10.0]), np.array([5.0, 30.0])
    raw = bpnn.Sequential([bpnn.Dense(5), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(2,), seed=4, dtype="float64")
    scaled = bpnn.Sequential([bpnn.Dense(5), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(2,), seed=4, dtype="float64")
    nguyen_widrow(raw, rng=7, input_range=(lo, hi))
    nguyen_widrow(scaled, rng=7)
    x = rng.uniform(lo, hi, (20, 2))
    z = 2 * (x - lo) / (hi - lo) - 1
    np.testing.assert_allclose(raw.predict(x), scaled.predict(z), rtol=1e-12, atol=1e-12)


def test_nguyen_widrow_needs_a_built_sequential():
    with pytest.raises(RuntimeError, match="build the model first"):
        nguyen_widrow(bpnn.Sequential([bpnn.Dense(2), bpnn.Tanh()]))
    with pytest.raises(ValueError, match="Sequential model"):
        nguyen_widrow(bpnn.Dense(3))


def test_the_whole_matlab_workflow_in_bpnn(rng):
    # x, t in original units -> mapminmax both -> dividerand -> trainlm -> outputs in t's units
    x = rng.uniform(0, 10, (150, 2))
    t = 50 + 5 * np.sin(x[:, :1] / 2) + 0.2 * x[:, 1:] ** 2
    xs, ps_x = mapminmax(x)
    ts, ps_t = mapminmax(t)
    div = dividerand(len(x), rng=0)
    (xtr, xva, xte), (ttr, tva, tte) = div.take(xs, ts)
    model = bpnn.Sequential([bpnn.Dense(10), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(2,), seed=0, dtype="float64")
    nguyen_widrow(model)
    rec = LMTrainer(model).fit(xtr, ttr, validation_data=(xva, tva), test_data=(xte, tte), division=div)
    assert rec.stop in ("Validation stop.", "Minimum gradient reached.", "Maximum MU reached.",
                        "Maximum epoch reached.")
    assert rec.train_ind.tolist() == div.train.tolist()
    y = ps_t.inverse_transform(model.predict(ps_x.transform(x)))
    r = np.corrcoef(y.ravel(), t.ravel())[0, 1]
    assert r > 0.999 and rec.best_tperf < 1e-3


# ----------------------------------------------------------------------------- plots
@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (120, 1))
    t = np.sin(3 * x) + 0.05 * rng.standard_normal(x.shape)
    div = dividerand(120, rng=0)
    (a, b, c), (d, e, f) = div.take(x, t)
    model = bpnn.Sequential([bpnn.Dense(8), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(1,), seed=0, dtype="float64")
    nguyen_widrow(model)
    rec = LMTrainer(model, "br", epochs=30).fit(a, d, validation_data=(b, e), test_data=(c, f))
    sets = {"Training": (d, model.predict(a)), "Validation": (e, model.predict(b)), "Test": (f, model.predict(c))}
    return rec, sets


def test_performance_and_train_state_plots(trained, tmp_path):
    pytest.importorskip("matplotlib")
    from bpnn import plotting

    rec, _ = trained
    fig = plotting.plot_performance(rec)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert {"Training", "Validation", "Test"} <= set(labels)
    train_line = ax.get_lines()[labels.index("Training")]
    np.testing.assert_allclose(train_line.get_ydata(), rec.perf)
    fig.savefig(tmp_path / "perf.png")
    fig = plotting.plot_train_state(rec)
    assert len(fig.axes) == 4, "gradient, mu, validation fails and γ (BR)"
    np.testing.assert_allclose(fig.axes[3].get_lines()[0].get_ydata(), rec.gamk)
    fig.savefig(tmp_path / "state.png")
    assert (tmp_path / "perf.png").stat().st_size > 1000


def test_regression_plot_reports_r_per_set(trained):
    pytest.importorskip("matplotlib")
    from bpnn import plotting

    _, sets = trained
    fig = plotting.plot_regression(sets)
    assert len(fig.axes) == 3
    for ax, (name, (t, y)) in zip(fig.axes, sets.items()):
        r = np.corrcoef(t.ravel(), y.ravel())[0, 1]
        assert ax.get_title() == f"{name}: R = {r:.5f}"
    fig = plotting.plot_error_histogram(sets, bins=15)
    counts = sum(p.get_height() for p in fig.axes[0].patches)
    assert counts == sum(len(t) for t, _ in sets.values())


def test_confusion_matrix_counts_and_plot():
    pytest.importorskip("matplotlib")
    from bpnn import plotting

    c, labels = plotting.confusion_matrix(["a", "b", "b", "c", "a"], ["a", "b", "c", "c", "b"])
    assert labels.tolist() == ["a", "b", "c"]
    assert c.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    fig = plotting.plot_confusion(["a", "b", "b", "c", "a"], ["a", "b", "c", "c", "b"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "60.0%" in texts  # overall accuracy 3/5 in the corner
    assert "1\n20.0%" in texts


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_plots_from_an_estimator_and_bad_input():
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    from bpnn import plotting
    from bpnn.sklearn import BPNNRegressor

    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (60, 2))
    est = BPNNRegressor(5, solver="adam", max_iter=20, early_stopping=True, random_state=0).fit(X, X.sum(1))
    fig = plotting.plot_performance(est)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), est.loss_curve_)
    with pytest.raises(ValueError, match="record: got int"):
        plotting.plot_performance(3)


def test_the_plots_live_in_report_and_bpnn_plotting_still_imports_them():
    import bpnn.plotting
    import bpnn.report.plotting as home
    from bpnn.plotting import plot_confusion, plot_performance

    assert plot_performance is home.plot_performance and plot_confusion is home.plot_confusion
    for name in bpnn.plotting.__all__:
        assert getattr(bpnn.plotting, name) is getattr(home, name)
