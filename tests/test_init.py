"""Initializers: sample statistics against their formulas and against torch.nn.init,
fans and gains against PyTorch, and the three behaviours initialization exists for —
symmetry breaking, He et al.'s variance preservation through depth, and LSUV."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

import bpnn
from bpnn import init
from bpnn.data import load_digits

# Shapes big enough (~200k entries) for tight sampling tolerances.
# Dense weights are (n_in, n_out) in bpnn; torch.nn.Linear stores (out, in).
# Conv kernels are OIHW in both libraries.
DENSE = (400, 500)
CONV = (128, 64, 5, 5)
SHAPES = {"dense": DENSE, "conv": CONV}


def torch_layout(kind, shape):
    return (shape[1], shape[0]) if kind == "dense" else shape


def reference_fans(kind, shape):
    """Fans of a bpnn weight of ``shape``, computed by PyTorch on its own layout."""
    return torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(torch_layout(kind, shape)))


def bpnn_draw(initializer, shape, seed=0):
    w = initializer(shape, np.random.default_rng(seed), "float64")
    assert isinstance(w, np.ndarray) and w.shape == shape and w.dtype == np.float64
    return w


def torch_draw(fn, kind, shape, seed=0):
    torch.manual_seed(seed)
    t = torch.empty(torch_layout(kind, shape), dtype=torch.float64)
    with torch.no_grad():
        fn(t)
    return t.numpy()


# --------------------------------------------------------------------------- cases
# One entry per registered initializer (canonical names; aliases are checked to resolve
# to the same class). Each case is (bpnn instance, torch.nn.init call on torch's layout,
# distribution the formula promises); the last two take the fans (fan_in, fan_out).
def case(make, torch_init, expect):
    return {"make": make, "torch": torch_init, "expect": expect}


def T(fn, *args, **kwargs):
    """A torch.nn.init call that needs no fans (torch computes its own)."""
    return lambda t, fi, fo: fn(t, *args, **kwargs)


def _const(value):
    return lambda fi, fo: {"dist": "constant", "value": value}


def _normal(mean, std):
    return {"dist": "normal", "mean": mean, "std": std}


def _uniform(limit_or_low, high=None):
    low, high = (-limit_or_low, limit_or_low) if high is None else (limit_or_low, high)
    return {"dist": "uniform", "low": low, "high": high}


def _ortho(gain):
    return lambda fi, fo: {"dist": "orthogonal", "gain": gain}


def _trunc(mean, std, a, b):
    dist = scipy.stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    return {"dist": "truncated", "mean": float(dist.mean()), "std": float(dist.std()), "low": a, "high": b}


# std of N(0, 1) truncated to [−2, 2], from scipy (bpnn hard-codes 0.87962566103423978)
TRUNC2_STD = float(scipy.stats.truncnorm(-2, 2).std())


def _vs_case(scale, mode, distribution):
    def std(fi, fo):
        return math.sqrt(scale / {"fan_in": fi, "fan_out": fo, "fan_avg": (fi + fo) / 2}[mode])

    def make():
        return init.VarianceScaling(scale, mode, distribution)

    if distribution == "normal":
        return case(make, lambda t, fi, fo: torch.nn.init.normal_(t, 0.0, std(fi, fo)),
                    lambda fi, fo: _normal(0.0, std(fi, fo)))
    if distribution == "uniform":  # U(−l, l), l = √3 σ
        return case(make, lambda t, fi, fo: torch.nn.init.uniform_(t, -math.sqrt(3) * std(fi, fo),
                                                                   math.sqrt(3) * std(fi, fo)),
                    lambda fi, fo: _uniform(math.sqrt(3) * std(fi, fo)))
    # Keras' truncated form: N(0, σ'²) cut at ±2σ' with σ' = σ / TRUNC2_STD, so that the
    # variance after truncation is exactly scale / fan.
    def sp(fi, fo):
        return std(fi, fo) / TRUNC2_STD

    return case(make,
                lambda t, fi, fo: torch.nn.init.trunc_normal_(t, 0.0, sp(fi, fo), -2 * sp(fi, fo), 2 * sp(fi, fo)),
                lambda fi, fo: {"dist": "truncated", "mean": 0.0, "std": std(fi, fo),
                                "low": -2 * sp(fi, fo), "high": 2 * sp(fi, fo)})


TANH = 5.0 / 3.0
nn_init = torch.nn.init

CASES = {
    "zeros": [case(init.Zeros, T(nn_init.zeros_), _const(0.0))],
    "constant": [case(lambda: init.Constant(0.37), T(nn_init.constant_, 0.37), _const(0.37))],
    "ones": [case(init.Ones, T(nn_init.ones_), _const(1.0))],
    "uniform": [
        case(init.Uniform, T(nn_init.uniform_), lambda fi, fo: _uniform(0.0, 1.0)),
        case(lambda: init.Uniform(-0.3, 0.7), T(nn_init.uniform_, -0.3, 0.7), lambda fi, fo: _uniform(-0.3, 0.7)),
    ],
    "normal": [
        case(init.Normal, T(nn_init.normal_), lambda fi, fo: _normal(0.0, 1.0)),
        case(lambda: init.Normal(0.5, 0.2), T(nn_init.normal_, 0.5, 0.2), lambda fi, fo: _normal(0.5, 0.2)),
    ],
    "small_normal": [case(init.SmallNormal, T(nn_init.normal_, 0.0, 0.01), lambda fi, fo: _normal(0.0, 0.01))],
    "truncated_normal": [
        case(init.TruncatedNormal, T(nn_init.trunc_normal_), lambda fi, fo: _trunc(0.0, 1.0, -2.0, 2.0)),
        # an asymmetric interval around a shifted mean: the bounds are absolute, as torch's
        case(lambda: init.TruncatedNormal(0.5, 2.0, -1.0, 3.0), T(nn_init.trunc_normal_, 0.5, 2.0, -1.0, 3.0),
             lambda fi, fo: _trunc(0.5, 2.0, -1.0, 3.0)),
    ],
    "variance_scaling": [_vs_case(*args) for args in [
        (1.0, "fan_in", "truncated_normal"), (2.0, "fan_out", "normal"), (3.0, "fan_avg", "uniform"),
        (0.5, "fan_avg", "truncated_normal"), (1.0, "fan_in", "uniform"), (1.0, "fan_out", "normal")]],
    # Glorot: l = gain·√(6 / (fan_in + fan_out)), σ = gain·√(2 / (fan_in + fan_out))
    "xavier_uniform": [
        case(init.XavierUniform, T(nn_init.xavier_uniform_), lambda fi, fo: _uniform(math.sqrt(6 / (fi + fo)))),
        case(lambda: init.XavierUniform(TANH), T(nn_init.xavier_uniform_, TANH),
             lambda fi, fo: _uniform(TANH * math.sqrt(6 / (fi + fo)))),
    ],
    "xavier_normal": [
        case(init.XavierNormal, T(nn_init.xavier_normal_), lambda fi, fo: _normal(0.0, math.sqrt(2 / (fi + fo)))),
        case(lambda: init.XavierNormal(TANH), T(nn_init.xavier_normal_, TANH),
             lambda fi, fo: _normal(0.0, TANH * math.sqrt(2 / (fi + fo)))),
    ],
    # He: gain² = 2 / (1 + a²); l = gain·√(3 / fan), σ = gain / √fan
    "he_uniform": [
        case(init.HeUniform, T(nn_init.kaiming_uniform_), lambda fi, fo: _uniform(math.sqrt(6 / fi))),
        case(lambda: init.HeUniform(0.2, "fan_out"), T(nn_init.kaiming_uniform_, a=0.2, mode="fan_out"),
             lambda fi, fo: _uniform(math.sqrt(3 * 2 / (1 + 0.2**2) / fo))),
    ],
    "he_normal": [
        case(init.HeNormal, T(nn_init.kaiming_normal_), lambda fi, fo: _normal(0.0, math.sqrt(2 / fi))),
        case(lambda: init.HeNormal(mode="fan_out", nonlinearity="relu"),
             T(nn_init.kaiming_normal_, mode="fan_out", nonlinearity="relu"),
             lambda fi, fo: _normal(0.0, math.sqrt(2 / fo))),
        case(lambda: init.HeNormal(nonlinearity="tanh"), T(nn_init.kaiming_normal_, nonlinearity="tanh"),
             lambda fi, fo: _normal(0.0, TANH / math.sqrt(fi))),
    ],
    # LeCun: Var = 1/fan_in. torch has no lecun_*; kaiming with nonlinearity="linear" is it.
    "lecun_uniform": [case(init.LecunUniform, T(nn_init.kaiming_uniform_, nonlinearity="linear"),
                           lambda fi, fo: _uniform(math.sqrt(3 / fi)))],
    "lecun_normal": [case(init.LecunNormal, T(nn_init.kaiming_normal_, nonlinearity="linear"),
                          lambda fi, fo: _normal(0.0, math.sqrt(1 / fi)))],
    "orthogonal": [
        case(init.Orthogonal, T(nn_init.orthogonal_), _ortho(1.0)),
        case(lambda: init.Orthogonal(TANH), T(nn_init.orthogonal_, TANH), _ortho(TANH)),
    ],
    # LSUV's data-free part is an orthogonal pre-initialization (its data step is tested below).
    "lsuv": [case(lambda: init.LSUV(gain=1.5), T(nn_init.orthogonal_, 1.5), _ortho(1.5))],
    "identity": "special",  # square 2-d only: see test_identity_* below
    "sparse": "special",  # k nonzero inputs a unit: see test_sparse_* below
}


def _check_against(w, exp, n):
    """Assert the sample ``w`` follows the distribution ``exp`` (tolerances ≳ 6 sampling σ)."""
    dist = exp["dist"]
    if dist == "constant":
        np.testing.assert_array_equal(w, exp["value"])
        return
    if dist == "orthogonal":
        _check_orthogonal(w, exp["gain"])
        return
    if dist in ("normal", "truncated"):
        mean, std = exp["mean"], exp["std"]
        assert abs(w.mean() - mean) < 6 * std / math.sqrt(n), (w.mean(), mean)
        assert w.std() == pytest.approx(std, rel=0.015)
        if dist == "normal":
            # tails: a normal sample of this size reaches beyond 3.5σ on both sides (~46 expected each)
            assert w.max() > mean + 3.5 * std and w.min() < mean - 3.5 * std
            assert scipy.stats.kurtosis(w.ravel()) == pytest.approx(0.0, abs=0.1)
        else:
            assert w.min() >= exp["low"] and w.max() <= exp["high"]
            span = exp["high"] - exp["low"]
            assert w.min() < exp["low"] + 0.01 * span and w.max() > exp["high"] - 0.01 * span
        return
    if dist == "uniform":
        low, high = exp["low"], exp["high"]
        span = high - low
        assert w.min() >= low and w.max() <= high
        assert w.min() < low + 1e-3 * span and w.max() > high - 1e-3 * span
        assert abs(w.mean() - (low + high) / 2) < 6 * span / math.sqrt(12 * n)
        assert w.std() == pytest.approx(span / math.sqrt(12), rel=0.01)
        return
    raise AssertionError(f"unknown distribution kind {dist!r}")


def _check_orthogonal(w, gain):
    flat = w.reshape(w.shape[0], -1)
    rows, cols = flat.shape
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), atol=1e-10)


@pytest.mark.parametrize("kind", ["dense", "conv"])
@pytest.mark.parametrize("name", init.registry.names())
def test_initializer_statistics_match_formula_and_torch(name, kind):
    if name not in CASES:
        pytest.fail(f"initializer {name!r} is registered but has no case in tests/test_init.py: "
                    f"add one to CASES (its bpnn instance, the torch.nn.init equivalent and the formula)")
    if CASES[name] == "special":
        return  # see the dedicated tests
    shape = SHAPES[kind]
    fi, fo = reference_fans(kind, shape)
    n = math.prod(shape)
    for c in CASES[name]:
        initializer = c["make"]()
        assert type(initializer) is init.registry.lookup(name), "the case must test the registered class"
        exp = c["expect"](fi, fo)
        w = bpnn_draw(initializer, shape)
        _check_against(w, exp, n)
        # The same distribution as torch.nn.init's for the same weight (in torch's layout).
        t = torch_draw(lambda tensor: c["torch"](tensor, fi, fo), kind, shape)
        _check_against(t, exp, n)  # the formula is torch's too
        if exp["dist"] == "constant":
            np.testing.assert_array_equal(w, torch_layout_back(t, kind))
        elif exp["dist"] == "orthogonal":
            # both are gain · (semi-)orthogonal (checked above), hence the same Frobenius norm
            assert np.linalg.norm(w) == pytest.approx(np.linalg.norm(t), rel=1e-10)
        else:
            assert w.std() == pytest.approx(t.std(), rel=0.02)
            assert abs(w.mean() - t.mean()) < 8 * t.std() / math.sqrt(n) + 1e-12
            if exp["dist"] != "normal":
                span = t.max() - t.min()
                assert w.min() == pytest.approx(t.min(), abs=0.01 * span)
                assert w.max() == pytest.approx(t.max(), abs=0.01 * span)


def torch_layout_back(t, kind):
    return t.T if kind == "dense" else t


@pytest.mark.parametrize("name", init.registry.names(aliases=True))
def test_registry_names_and_aliases_resolve(name):
    obj = init.get(name)
    assert isinstance(obj, init.Initializer)
    canonical = type(obj).registry_name
    assert canonical in CASES, f"add a case for {canonical!r} to tests/test_init.py"
    # config round trip gives an equivalent initializer
    again = init.get(init.serialize(obj))
    assert type(again) is type(obj) and again.get_config() == obj.get_config()


def test_random_initializers_follow_the_seed():
    for name in ("he_normal", "xavier_uniform", "orthogonal", "truncated_normal"):
        a = bpnn_draw(init.get(name), (30, 40), seed=5)
        b = bpnn_draw(init.get(name), (30, 40), seed=5)
        c = bpnn_draw(init.get(name), (30, 40), seed=6)
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)


def test_float32_draws_are_the_float64_draws_rounded():
    w64 = init.HeNormal()((20, 30), np.random.default_rng(3), "float64")
    w32 = init.HeNormal()((20, 30), np.random.default_rng(3), "float32")
    assert w32.dtype == np.float32
    np.testing.assert_array_equal(w32, w64.astype(np.float32))


@pytest.mark.parametrize("shape", [(300, 200), (200, 300), (64, 16, 3, 3), (8, 64, 3, 3)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_is_orthonormal_times_gain(shape, gain):
    w = bpnn_draw(init.Orthogonal(gain), shape, seed=1)
    flat = w.reshape(shape[0], -1)
    rows, cols = flat.shape
    if rows >= cols:   # tall: orthonormal columns, QᵀQ = gain² I
        np.testing.assert_allclose(flat.T @ flat, gain**2 * np.eye(cols), atol=1e-10)
    else:              # wide: orthonormal rows, QQᵀ = gain² I
        np.testing.assert_allclose(flat @ flat.T, gain**2 * np.eye(rows), atol=1e-10)


def test_orthogonal_is_uniformly_distributed_not_biased_by_qr_signs():
    # Haar-distributed Q has E[Q_ii] = 0; without the sign(diag R) correction the QR
    # routine's convention biases the diagonal.
    diags = np.array([np.diag(bpnn_draw(init.Orthogonal(), (4, 4), seed=s)) for s in range(2000)])
    assert np.abs(diags.mean(axis=0)).max() < 0.06


def test_orthogonal_rejects_vectors():
    with pytest.raises(ValueError, match="shape"):
        init.Orthogonal()((5,), np.random.default_rng(0))


@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_identity_is_eye_like_torch(gain):
    w = bpnn_draw(init.Identity(gain), (7, 7))
    np.testing.assert_array_equal(w, gain * np.eye(7))
    t = torch.empty(7, 7, dtype=torch.float64)
    torch.nn.init.eye_(t)
    np.testing.assert_array_equal(w, gain * t.numpy())
    assert type(init.get("identity")) is init.Identity and type(init.get("eye")) is init.Identity


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (3, 3, 3), (5,)])
def test_identity_rejects_non_square(shape):
    with pytest.raises(ValueError, match="square"):
        init.Identity()(shape, np.random.default_rng(0))


def _units(w):
    """A weight as (units, fan_in): Dense columns, conv output channels."""
    return w.T if w.ndim == 2 else w.reshape(w.shape[0], -1)


@pytest.mark.parametrize("shape", [(200, 300), (16, 8, 3, 3)])
def test_sparse_gives_every_unit_k_standard_normal_inputs(shape):
    w = bpnn_draw(init.Sparse(), shape)
    units = _units(w)
    np.testing.assert_array_equal((units != 0).sum(axis=1), 15)
    values = units[units != 0]
    n = values.size
    assert abs(values.mean()) < 6 / math.sqrt(n) and values.std() == pytest.approx(1.0, rel=6 / math.sqrt(2 * n))
    assert scipy.stats.kstest(values, "norm").pvalue > 1e-4
    fan_in = units.shape[1]
    assert w.var() == pytest.approx(15 / fan_in, rel=0.15)  # Var(W) = std² k / fan_in
    # which inputs: each unit its own draw, every input about as often (k / fan_in of the units)
    assert len({tuple(np.flatnonzero(u)) for u in units}) == units.shape[0]
    hits = (units != 0).sum(axis=0)
    expected = units.shape[0] * 15 / fan_in
    assert scipy.stats.chisquare(hits, np.full(fan_in, expected)).pvalue > 1e-4


def test_sparse_options_seed_and_small_fan_in():
    w = bpnn_draw(init.Sparse(nonzero=4, std=0.5), (50, 400))
    units = _units(w)
    np.testing.assert_array_equal((units != 0).sum(axis=1), 4)
    assert units[units != 0].std() == pytest.approx(0.5, rel=0.1)
    np.testing.assert_array_equal(bpnn_draw(init.Sparse(), (40, 30), seed=3), bpnn_draw(init.Sparse(), (40, 30), seed=3))
    assert not np.array_equal(bpnn_draw(init.Sparse(), (40, 30), seed=3), bpnn_draw(init.Sparse(), (40, 30), seed=4))
    assert np.count_nonzero(bpnn_draw(init.Sparse(), (10, 6))) == 60  # fan_in 10 < 15: every input
    assert init.get({"class_name": "sparse", "config": {"nonzero": 4, "std": 0.5}}).get_config() == \
        {"nonzero": 4, "std": 0.5}


@pytest.mark.parametrize("kwargs, match", [({"nonzero": 0}, "nonzero: got 0"), ({"nonzero": 2.5}, "nonzero: got 2.5"),
                                           ({"std": 0.0}, "std: got 0.0"), ({"std": -1}, "std: got -1")])
def test_sparse_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        init.Sparse(**kwargs)


def test_sparse_needs_a_weight_not_a_vector():
    with pytest.raises(ValueError, match=r"shape: got \(5,\); sparse init needs a weight"):
        init.Sparse()((5,), np.random.default_rng(0))


def test_lecun_variance_is_one_over_fan_in():
    for shape, fan_in in [((500, 400), 500), ((64, 32, 3, 3), 32 * 9)]:
        for cls in (init.LecunNormal, init.LecunUniform):
            w = bpnn_draw(cls(), shape)
            assert w.var() == pytest.approx(1.0 / fan_in, rel=0.02)


def test_truncated_normal_stays_within_bounds_for_narrow_intervals():
    w = bpnn_draw(init.TruncatedNormal(0.0, 1.0, 1.0, 1.5), (300, 300))
    assert w.min() >= 1.0 and w.max() <= 1.5
    exp = _trunc(0.0, 1.0, 1.0, 1.5)
    assert w.mean() == pytest.approx(exp["mean"], abs=0.005)
    assert w.std() == pytest.approx(exp["std"], rel=0.02)


# --------------------------------------------------------------------------- fans, gains
@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (1, 7), (6, 4, 3), (16, 8, 3, 3), (4, 2, 3, 5, 7), (2, 3, 1, 1)])
def test_compute_fans_equals_torch(shape):
    kind = "dense" if len(shape) == 2 else "conv"
    assert init.compute_fans(shape) == tuple(reference_fans(kind, shape))
    if len(shape) == 2:  # (n_in, n_out): fan_in is the first axis
        assert init.compute_fans(shape) == (shape[0], shape[1])


def test_compute_fans_of_vectors_and_bad_shapes():
    assert init.compute_fans((7,)) == (7, 7)
    for bad in [(), (3, 0), (0,)]:
        with pytest.raises(ValueError, match="shape"):
            init.compute_fans(bad)


# torch.nn.init.calculate_gain's documented nonlinearities
TORCH_NONLINEARITIES = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                        "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]


@pytest.mark.parametrize("nonlinearity", TORCH_NONLINEARITIES)
def test_calculate_gain_equals_torch(nonlinearity):
    assert init.calculate_gain(nonlinearity) == pytest.approx(torch.nn.init.calculate_gain(nonlinearity), rel=1e-15)


@pytest.mark.parametrize("param", [None, 0.2, 0, 1, 3, 0.01])
def test_calculate_gain_leaky_relu_slopes_equal_torch(param):
    assert init.calculate_gain("leaky_relu", param) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", param), rel=1e-15)


@pytest.mark.parametrize("args", [("leaky_relu", "x"), ("leaky_relu", True), ("softmax", None), ("ReLU", None)])
def test_calculate_gain_rejects_what_torch_rejects(args):
    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain(*args)
    with pytest.raises(ValueError):
        init.calculate_gain(*args)


# --------------------------------------------------------------------------- symmetry
def _digits_subset(n=600):
    X, y = load_digits()
    return X[:n].astype(np.float64), y[:n]


def _hidden_net(initializer, seed=0):
    # Sigmoid hidden units: with all-zero weights tanh/ReLU would leave every hidden
    # output at 0 and no gradient would ever reach the hidden weights; sigmoid(0) = ½
    # lets them train, so the test shows they move yet stay identical.
    return bpnn.Sequential([bpnn.Dense(12, init=initializer), bpnn.Sigmoid(),
                            bpnn.Dense(12, init=initializer), bpnn.Sigmoid(),
                            bpnn.Dense(10, init=initializer)], input_shape=(64,), seed=seed, dtype="float64")


def _train(model, X, y, epochs=6):
    trainer = bpnn.Trainer(model, loss="softmax_cross_entropy",
                           optimizer=bpnn.optim.SGD(lr=0.5, momentum=0.9), seed=0)
    before = [model[i].params["weight"].copy() for i in (0, 2)]
    history = trainer.fit(X, y, epochs=epochs, batch_size=32, verbose=False)
    return history, before


@pytest.mark.parametrize("initializer", [init.Zeros(), init.Constant(0.5), init.Constant(0.05)],
                         ids=["zeros", "constant_0.5", "constant_0.05"])
def test_constant_init_never_breaks_symmetry(initializer):
    X, y = _digits_subset()
    model = _hidden_net(initializer)
    assert model[0].params["weight"].dtype == np.float64
    history, before = _train(model, X, y)
    for i, w0 in zip((0, 2), before):
        w = model[i].params["weight"]
        # the hidden weights did move (by far more than rounding) ...
        assert np.abs(w - w0).max() > 1e-6, f"layer {i}: the hidden weights did not train"
        # ... yet every hidden unit (column) is still the same function of the input
        spread = np.ptp(w, axis=1).max()
        assert spread <= 1e-9 * max(1.0, np.abs(w).max()), f"layer {i}: columns differ by {spread}"
        b = model[i].params["bias"]
        assert np.ptp(b) <= 1e-9 * max(1.0, np.abs(b).max())


def test_he_init_breaks_symmetry():
    X, y = _digits_subset()
    model = _hidden_net("he_normal")
    history, _ = _train(model, X, y)
    assert history["loss"][-1] < history["loss"][0]
    for i in (0, 2):
        w = model[i].params["weight"]
        # the columns are distinct: every pair of hidden units differs
        d = np.abs(w[:, :, None] - w[:, None, :]).max(axis=0)
        off = d[~np.eye(w.shape[1], dtype=bool)]
        assert off.min() > 1e-2
    # and the symmetric network is stuck far from it
    sym = _hidden_net(init.Constant(0.5))
    sym_hist, _ = _train(sym, X, y)
    assert history["loss"][-1] < 0.5 * sym_hist["loss"][-1]


# --------------------------------------------------------------------------- He et al. 2015
def _preactivation_moments(initializer, depth=50, width=256, seed=0):
    model = bpnn.Sequential([m for _ in range(depth) for m in (bpnn.Dense(width, init=initializer), bpnn.ReLU())],
                            input_shape=(width,), seed=seed, dtype="float64")
    x = np.random.default_rng(seed + 100).standard_normal((128, width))
    moments = []
    for layer in model.layers:
        x = layer.forward(x)
        if isinstance(layer, bpnn.Dense):
            moments.append(float(np.mean(x * x)))
    return np.array(moments)


def test_he_init_preserves_second_moment_through_50_relu_layers():
    he = _preactivation_moments("he_normal")
    assert 0.25 <= he[-1] / he[0] <= 4.0
    # no layer collapses or explodes on the way
    assert he.min() / he[0] > 0.1 and he.max() / he[0] < 10


@pytest.mark.parametrize("initializer", [init.VarianceScaling(1.0, "fan_in", "normal"), init.LecunNormal()],
                         ids=["variance_scaling_1_fan_in", "lecun_normal"])
def test_one_over_fan_in_variance_vanishes_with_relu(initializer):
    m = _preactivation_moments(initializer)
    ratio = m[-1] / m[0]
    assert ratio < 1e-6
    # each ReLU layer halves it: 2^-49 ≈ 1.8e-15, up to the finite-width fluctuation
    assert 1e-17 < ratio < 1e-13


# --------------------------------------------------------------------------- LSUV
def _lsuv_net(seed=0):
    return bpnn.Sequential([bpnn.Dense(64, init="lsuv"), bpnn.Tanh(),
                            bpnn.Dense(48, init="lsuv"), bpnn.ReLU(),
                            bpnn.Dense(32, init="lsuv"), bpnn.Tanh(),
                            bpnn.Dense(32, init="lsuv"), bpnn.Tanh(),
                            bpnn.Dense(10, init="lsuv")], input_shape=(64,), seed=seed, dtype="float64")


def _dense_output_variances(model, x):
    out = []
    for layer in model.layers:
        x = layer.forward(x)
        if isinstance(layer, bpnn.Dense):
            out.append(float(x.var()))
    return np.array(out)


def test_lsuv_gives_unit_variance_outputs():
    X, _ = load_digits(scale=False)  # raw pixels 0..16: far from unit variance at first
    x = X[:300].astype(np.float64)
    model = _lsuv_net()
    before = _dense_output_variances(model, x)
    assert np.abs(before - 1).max() > 1.0, "the test needs a batch the orthogonal init does not already fit"
    result = init.lsuv(model, x)
    after = _dense_output_variances(model, x)
    assert np.all(np.abs(after - 1) < 0.05), after
    assert sorted(result) == list(range(5))
    np.testing.assert_allclose([result[i] for i in range(5)], after, rtol=1e-10)
    # LSUV only rescales: every weight stays an orthogonal matrix times a scalar
    for layer in model.layers:
        if isinstance(layer, bpnn.Dense):
            w = layer.params["weight"]
            rows, cols = w.shape
            gram = w.T @ w if rows >= cols else w @ w.T
            np.testing.assert_allclose(gram, gram[0, 0] * np.eye(min(rows, cols)), atol=1e-8 * gram[0, 0])


def test_lsuv_skips_layers_not_marked_unless_asked():
    X, _ = load_digits(scale=False)
    x = X[:300].astype(np.float64)
    model = bpnn.Sequential([bpnn.Dense(32, init="he_normal"), bpnn.Tanh(), bpnn.Dense(10, init="lsuv")],
                            input_shape=(64,), seed=0, dtype="float64")
    w0 = model[0].params["weight"].copy()
    init.lsuv(model, x)
    np.testing.assert_array_equal(model[0].params["weight"], w0)
    assert abs(_dense_output_variances(model, x)[1] - 1) < 0.05
    init.lsuv(model, x, only_lsuv=False)
    assert np.all(np.abs(_dense_output_variances(model, x) - 1) < 0.05)


def test_trainer_runs_lsuv_once_before_training():
    X, y = load_digits(scale=False)
    x, yy = X[:400].astype(np.float64), y[:400]  # ≤ 512 rows: the Trainer's init batch is all of x
    model = _lsuv_net()
    assert np.abs(_dense_output_variances(model, x) - 1).max() > 1.0
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.01))
    history = trainer.fit(x, yy, epochs=0, verbose=False)
    assert history.epoch == []
    after = _dense_output_variances(model, x)
    assert np.all(np.abs(after - 1) < 0.05), after
    # The layers are marked: a second fit does not redo LSUV.
    model[0].params["weight"] *= 3.0
    w = model[0].params["weight"].copy()
    trainer.fit(x, yy, epochs=0, verbose=False)
    np.testing.assert_array_equal(model[0].params["weight"], w)


def test_the_registry_has_its_own_name_and_the_module_is_not_hidden():
    import bpnn.init.initializers as module

    assert bpnn.init.initializers is module            # the module, no longer the registry object
    assert module.HeNormal is init.HeNormal
    assert init.registry.lookup("he_normal") is init.HeNormal
    config = init.serialize(init.HeNormal())
    assert config == {"class_name": "he_normal", "config": init.HeNormal().get_config()}
    assert type(init.get(config)) is init.HeNormal
    assert module.serialize is init.serialize and module.get is init.get


@pytest.mark.parametrize("spelling", ["names", "lookup", "register", "classes", "kind", "initializers"])
def test_the_registry_under_its_old_name_still_works_and_warns(spelling):
    with pytest.warns(DeprecationWarning, match=r"bpnn\.init\.initializers.* is deprecated.*bpnn\.init\.registry"):
        value = getattr(bpnn.init.initializers, spelling)
    expected = init.registry if spelling == "initializers" else getattr(init.registry, spelling)
    assert value == expected
    with pytest.warns(DeprecationWarning):
        from bpnn.init.initializers import initializers
    assert initializers is init.registry
    with pytest.warns(DeprecationWarning):
        assert bpnn.init.initializers.names(aliases=True) == init.registry.names(aliases=True)


def test_an_unknown_attribute_of_the_module_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bpnn.init.initializers.nope  # noqa: B018
