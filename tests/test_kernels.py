"""The compiled kernels and their NumPy fallbacks compute the same thing."""
import numpy as np
import pytest

from bpnn import _kernels, optim
from bpnn._kernels import optim as optim_kernels
from bpnn._kernels import relu as relu_kernels


def _adam_reference(g, m, v, vmax, b1, b2, eps, t):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    if vmax is not None:
        vmax = np.maximum(vmax, v)
    denom = np.sqrt(v if vmax is None else vmax) / np.sqrt(1 - b2**t) + eps
    return (m / (1 - b1**t)) / denom, m, v, vmax


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_direction_matches_the_formula(kernels, dtype, amsgrad, rng):
    n = 1001
    m = rng.normal(size=n).astype(dtype)
    v = rng.random(n).astype(dtype)
    vmax = (v + rng.random(n) * (rng.random(n) < 0.5)).astype(dtype) if amsgrad else None
    g = rng.normal(size=n).astype(dtype)
    expected = _adam_reference(g.astype(np.float64), m.astype(np.float64), v.astype(np.float64),
                               None if vmax is None else vmax.astype(np.float64), 0.8, 0.99, 1e-3, 3)
    u = g.copy()
    optim_kernels.adam_direction(u, m, v, vmax, 0.8, 0.99, 1e-3, 3, np.empty_like(u))
    # float32 rounding of the moment updates: compare on the scale of the values
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-13, 0)
    for got, want in zip((u, m, v, vmax), expected):
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def test_axpy(kernels, rng):
    y, x = rng.normal(size=300), rng.normal(size=300)
    want = y - 0.3 * x
    optim_kernels.axpy(y, -0.3, x, np.empty_like(y))
    np.testing.assert_allclose(y, want, rtol=1e-15)


def test_the_switch_changes_the_path():
    before = _kernels.enabled()
    try:
        _kernels.set_enabled(False)
        assert not _kernels.enabled()
        assert not _kernels.use_compiled(np.zeros(3))
    finally:
        _kernels.set_enabled(before)


def test_adam_with_eps_zero_and_a_zero_gradient_gives_nan_like_torch_not_an_exception(kernels):
    u = np.array([0.0, 1.0])
    m, v = np.zeros(2), np.zeros(2)
    with np.errstate(invalid="ignore", divide="ignore"):
        optim_kernels.adam_direction(u, m, v, None, 0.9, 0.999, 0.0, 1, np.empty(2))
    assert np.isnan(u[0]) and np.isfinite(u[1])


# The one-pass optimizer steps (used with numba) against the transform chain they replace.
FUSED = {
    "sgd": lambda: optim.SGD(lr=0.1),
    "sgd_wd": lambda: optim.SGD(lr=0.1, weight_decay=0.01),
    "momentum": lambda: optim.SGD(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "nesterov": lambda: optim.SGD(lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda: optim.Adam(lr=0.01),
    "adam_l2": lambda: optim.Adam(lr=0.01, weight_decay=0.1),
    "adamw": lambda: optim.AdamW(lr=0.01, weight_decay=0.1),
    "chain": lambda: optim.Optimizer(lr=0.1),
    # gradients of norm ~8: clipped to 0.5 (and to 50: untouched)
    "adam_clip": lambda: optim.Adam(lr=0.01, weight_decay=0.1, clip_norm=0.5),
    "adamw_no_clip": lambda: optim.AdamW(lr=0.01, clip_norm=50.0),
    "nesterov_clip": lambda: optim.SGD(lr=0.1, momentum=0.9, nesterov=True, clip_norm=0.5),
    "sgd_clip": lambda: optim.SGD(lr=0.1, clip_norm=0.5),
}


@pytest.mark.parametrize("name", list(FUSED))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_optimizer_steps_equal_the_transform_chain(name, dtype, rng):
    pytest.importorskip("numba", reason="numba (bpnn[fast]) is not installed")
    import bpnn

    def run(fused):
        model = bpnn.Sequential([bpnn.Dense(7), bpnn.Tanh(), bpnn.Dense(3)], input_shape=(5,), seed=1, dtype=dtype)
        opt = FUSED[name]().attach(model)
        assert opt._fused is not None
        if not fused:
            opt._fused = None  # force the chain of update() calls
        flat = model.flat_parameters()
        grads = np.random.default_rng(0).normal(size=(6, flat.grads.size))
        for g in grads:
            flat.grads[...] = g
            opt.step()
            np.testing.assert_array_equal(flat.grads, g.astype(dtype))  # the fused pass leaves it alone
        return flat.params.copy()

    before = _kernels.enabled()
    _kernels.set_enabled(True)
    try:
        fused, chain = run(True), run(False)
    finally:
        _kernels.set_enabled(before)
    rtol = 2e-6 if dtype == "float32" else 1e-13
    # float32 rounding of the two orders of operations, on the scale of the parameters (~1)
    np.testing.assert_allclose(fused, chain, rtol=rtol, atol=rtol)


def test_chains_without_a_fused_step_take_the_chain(rng):
    import bpnn

    model = bpnn.Sequential([bpnn.Dense(3)], input_shape=(2,), seed=0)
    for opt in (bpnn.optim.Adam(clip_value=1.0), bpnn.optim.Adam(amsgrad=True), bpnn.optim.RMSprop(),
                bpnn.optim.SGD(momentum=0.9, momentum_form="classic")):
        assert opt.attach(model)._fused is None, opt


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "2d"])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_on_both_paths_and_layouts_matches_the_formula(kernels, layout, training, rng):
    import bpnn

    shape = (5, 3) if layout == "2d" else (4, 3, 5, 6)
    x = rng.normal(2.0, 3.0, size=shape)
    if layout == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    g = rng.normal(size=shape)
    bn = bpnn.BatchNorm(momentum=0.2)
    bn.build(shape[1:], np.random.default_rng(0), np.float64)
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    bn.params["weight"][...], bn.params["bias"][...] = gamma, beta
    bn.buffers["running_mean"][...], bn.buffers["running_var"][...] = rng.normal(size=3), rng.random(3) + 0.5
    rm0, rv0 = bn.buffers["running_mean"].copy(), bn.buffers["running_var"].copy()
    axes = (0,) + tuple(range(2, x.ndim))
    b = (1, 3) + (1,) * (x.ndim - 2)
    m = x.size // 3
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = rm0, rv0
    xhat = (x - mean.reshape(b)) / np.sqrt(var.reshape(b) + bn.eps)
    y = bn.forward(x, training=training)
    np.testing.assert_allclose(y, gamma.reshape(b) * xhat + beta.reshape(b), rtol=1e-12, atol=1e-12)
    dx = bn.backward(g)
    dgamma, dbeta = (g * xhat).sum(axis=axes), g.sum(axis=axes)
    scale = (gamma / np.sqrt(var + bn.eps)).reshape(b)
    if training:
        want = scale / m * (m * g - dbeta.reshape(b) - xhat * dgamma.reshape(b))
        np.testing.assert_allclose(bn.buffers["running_mean"], 0.8 * rm0 + 0.2 * mean, rtol=1e-12)
        np.testing.assert_allclose(bn.buffers["running_var"], 0.8 * rv0 + 0.2 * var * m / (m - 1), rtol=1e-12)
    else:
        want = g * scale
    np.testing.assert_allclose(dx, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.grads["weight"], dgamma, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.grads["bias"], dbeta, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layout", ["c", "channels_last", "strided", "mixed"])
def test_relu_and_its_backward_on_every_layout(kernels, layout, rng):
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    g = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    x[0, 0, 0, :3] = [np.nan, 0.0, -0.0]
    if layout == "channels_last":
        x, g = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) for a in (x, g))
    elif layout == "strided":
        x, g = x[:, ::2], g[:, ::2]
    elif layout == "mixed":  # gradient and output stored differently
        g = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    y = relu_kernels.relu(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))  # NaN passes through, as np.maximum
    assert np.isnan(y[0, 0, 0, 0])
    np.testing.assert_array_equal(relu_kernels.relu_backward(g, y), np.where(y > 0, g, 0))


def test_a_transform_subclass_that_changes_update_is_not_fused():
    import bpnn
    from bpnn.optim.transforms import ScaleByAdam

    class SignAdam(ScaleByAdam):
        def update(self, u, state, params, t, lr):
            return np.sign(super().update(u, state, params, t, lr), out=u)

    model = bpnn.Sequential([bpnn.Dense(3)], input_shape=(2,), seed=0)
    assert bpnn.optim.Optimizer([SignAdam()], lr=0.1).attach(model)._fused is None
    assert bpnn.optim.Optimizer([ScaleByAdam()], lr=0.1).attach(model)._fused is not None


def test_compiled_kernels_are_found_again_by_numbas_disk_cache():
    """numba's cache index hashes a kernel's closure cells, and compiled helpers held in a
    closure pickle differently in every process: kernels built inside a factory were
    compiled again by every process (about 1 s each) and added a cache file each time.
    Every compiled kernel is therefore a module-level function without closure."""
    pytest.importorskip("numba")
    from numba.core.registry import CPUDispatcher

    from bpnn._kernels import batchnorm, compiler, gemm, stats, windows  # noqa: F401 (their kernels register)

    tiles = {name: f for name, f in vars(gemm.tiles()).items() if isinstance(f, CPUDispatcher)}
    widths = gemm.tiles().WIDTHS
    assert {f"{loop}_{bits}" for loop in ("gemm", "conv_rows", "conv_weight_grad") for bits in widths} <= set(tiles)
    kernels = {f"{k.py_func.__module__}.{k.__name__}": k.dispatcher for k in compiler.registered()}
    assert {f"bpnn._kernels.{name}" for name in ("windows._im2col", "windows._column_taps", "optim._adam",
                                                 "batchnorm._stats", "relu._relu", "stats.param", "stats.hist")
            } <= set(kernels)
    compiled = {**kernels, **tiles}
    assert {name: d.py_func.__closure__ for name, d in compiled.items() if d.py_func.__closure__} == {}
    # the tile product's driver alone is compiled in every process: loaded from the cache
    # it ran at about half the speed (see bpnn._kernels.gemm_tiles.gemm)
    uncached = {name for name, d in compiled.items() if d._cache.__class__.__name__ != "FunctionCache"}
    assert uncached == {f"gemm_{bits}" for bits in widths}, "cache=True on every other kernel"


# Batch norm's row kernels run over chunks of ⌈256 / C⌉ rows with per-channel vectors
# repeated per row; these shapes leave a partial chunk, one row, one channel, C > 256.
@pytest.mark.parametrize("m, c", [(1, 1), (3, 5), (17, 16), (50, 16), (100, 6), (7, 300), (1000, 1), (513, 32)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_row_kernels_match_their_formulas(kernels, m, c, dtype, rng):
    from bpnn._kernels import batchnorm as k

    x = (rng.normal(size=(m, c)) * 3 + rng.normal(size=c) * 10).astype(dtype)
    g = rng.normal(size=(m, c)).astype(dtype)
    x64 = x.astype(np.float64)
    mean, var = k.rows_stats(x)
    np.testing.assert_allclose(mean, x64.mean(axis=0), rtol=1e-12, atol=1e-12)
    # (the NumPy fallback takes the deviations in the data's dtype; the kernels in float64)
    rtol = 1e-6 if dtype == np.float32 and not _kernels.enabled() else 1e-10
    np.testing.assert_allclose(var, ((x64 - x64.mean(axis=0)) ** 2).mean(axis=0), rtol=rtol, atol=1e-12)
    center, inv, gamma, beta = (rng.normal(size=c).astype(dtype) for _ in range(4))
    xhat = (x - center) * inv
    y, kept = k.rows_apply(x, center, inv, gamma, beta)
    assert kept is None if _kernels.enabled() else np.array_equal(kept, xhat)  # NumPy keeps its x̂
    np.testing.assert_array_equal(y, xhat * gamma + beta)  # the same operations, element by element
    dbeta, dgamma = k.rows_grad_sums(g, x, center, inv)
    np.testing.assert_allclose(dbeta, g.astype(np.float64).sum(axis=0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dgamma, (g * xhat).astype(np.float64).sum(axis=0), rtol=1e-10, atol=1e-10)
    a, shift, slope = (rng.normal(size=c).astype(dtype) for _ in range(3))
    dx = k.rows_input_grad(g, x, center, inv, a, shift, slope)
    np.testing.assert_array_equal(dx, a * g - shift - xhat * slope)


def test_batchnorm_statistics_keep_their_digits_far_from_zero(kernels, rng):
    # values 1e4 ± 1e-2: a plain Σx² − (Σx)²/m would lose every digit of the variance
    from bpnn._kernels import batchnorm as k

    x = 1e4 + 1e-2 * rng.normal(size=(4000, 16))
    mean, var = k.rows_stats(x)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(var, x.var(axis=0), rtol=1e-7)
