"""Fused CPU kernels for the hot loops, compiled with numba when it is installed.

numba is optional (``pip install "bpnn[fast]"``): every kernel has a NumPy fallback
with the same arithmetic, and the test suite runs both. Setting the environment
variable ``BPNN_DISABLE_NUMBA=1`` forces the fallbacks. The kernels are used only for
NumPy arrays; other backends take the fallback path (written with ``backend.xp``).

Measured reason (one epoch of 784-256-128-10, batch 32, Adam): the update written as
NumPy vector operations makes ~15 passes over the parameter vector and took about 30 %
of the epoch; fused into one pass it costs a third of that.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

from . import _threads, backend

_available = importlib.util.find_spec("numba") is not None
_active = _available and os.environ.get("BPNN_DISABLE_NUMBA", "") in ("", "0")
_compiled = None  # name -> compiled kernel, compiled on first use so `import bpnn` stays fast


def enabled() -> bool:
    """Whether the compiled kernels are in use (numba importable and not disabled)."""
    return _active


def set_enabled(flag: bool) -> None:
    """Switch between the compiled kernels and the NumPy fallbacks (tests run both)."""
    global _active
    if flag and not _available:
        raise ImportError("the compiled kernels need numba: pip install 'bpnn[fast]'")
    _active = bool(flag)


def _adam_kernel(u, m, v, c1, b2, c2, eps, inv_bc1, inv_bc2_sqrt):
    # c1 = 1 − β₁, c2 = 1 − β₂; every scalar comes in the arrays' dtype, so float32
    # parameters are updated in float32 arithmetic as the NumPy path (NEP 50) and
    # torch do. No branch and no aliased array in the loop, so it vectorizes: with the
    # AMSGrad branch inside (a separate kernel now) the float32 update was 8x slower.
    for i in range(u.shape[0]):
        g = u[i]
        mi = m[i] + c1 * (g - m[i])
        vi = b2 * v[i] + c2 * (g * g)
        m[i] = mi
        v[i] = vi
        u[i] = (mi * inv_bc1) / (np.sqrt(vi) * inv_bc2_sqrt + eps)


def _amsgrad_kernel(u, m, v, vmax, c1, b2, c2, eps, inv_bc1, inv_bc2_sqrt):
    for i in range(u.shape[0]):
        g = u[i]
        mi = m[i] + c1 * (g - m[i])
        vi = b2 * v[i] + c2 * (g * g)
        m[i] = mi
        v[i] = vi
        vm = max(vmax[i], vi)
        vmax[i] = vm
        u[i] = (mi * inv_bc1) / (np.sqrt(vm) * inv_bc2_sqrt + eps)


def _adam_step_kernel(p, g, m, v, c1, b2, c2, eps, inv_bc1, inv_bc2_sqrt, lr, wd, dwd, gs):
    # The whole Adam step in one pass (7 streams: read p g m v, write p m v) instead of
    # copy + direction + axpy (11 streams): g' = s g + λ θ (s: the clipping factor, 1
    # without); moments; θ ← θ − η (û + λ_d θ).
    for i in range(p.shape[0]):
        pi = p[i]
        gi = g[i] * gs + wd * pi
        mi = m[i] + c1 * (gi - m[i])
        vi = b2 * v[i] + c2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] = pi - lr * ((mi * inv_bc1) / (np.sqrt(vi) * inv_bc2_sqrt + eps) + dwd * pi)


def _sgd_step_kernel(p, g, lr, wd, dwd, gs):
    for i in range(p.shape[0]):
        pi = p[i]
        p[i] = pi - lr * (g[i] * gs + wd * pi + dwd * pi)


def _momentum_step_kernel(p, g, buf, lr, wd, dwd, mu, damp1, first, nesterov, gs):
    # torch.optim.SGD: b₁ = g', b_t = μ b + (1 − τ) g'; d = g' + μ b (Nesterov) or b.
    for i in range(p.shape[0]):
        pi = p[i]
        gi = g[i] * gs + wd * pi
        b = gi if first else mu * buf[i] + damp1 * gi
        buf[i] = b
        d = gi + mu * b if nesterov else b
        p[i] = pi - lr * (d + dwd * pi)


def _axpy_kernel(y, a, x):
    for i in range(y.shape[0]):
        y[i] += a * x[i]


def _l2_kernel(g, w, lam):
    total = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        total += wi * wi
        g[i] += lam * wi
    return total


def _l1_kernel(g, w, lam):
    total = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        total += abs(wi)
        g[i] += lam * np.sign(wi)
    return total


# Batch normalization over the rows of a C-contiguous (M, C) array: the channels-last
# layout of the image layers, and plain (N, C) inputs. Flat arrays and unsigned indices
# (with signed ones numba tests every index for wrap-around); per-channel sums in float64.
def _bn_stats_kernel(x, m, c, mean, var):
    # mean, var come zeroed
    uc = np.uint64(c)
    for i in range(np.uint64(m)):
        b = i * uc
        for j in range(uc):
            mean[j] += x[b + j]
    for j in range(uc):
        mean[j] /= m
    for i in range(np.uint64(m)):
        b = i * uc
        for j in range(uc):
            d = x[b + j] - mean[j]
            var[j] += d * d
    for j in range(uc):
        var[j] /= m


def _bn_apply_kernel(x, m, c, shift, inv, gamma, beta, xhat, y):
    # x̂ = (x − shift)·inv,  y = γ x̂ + β   (per channel, all in the arrays' dtype)
    uc = np.uint64(c)
    for i in range(np.uint64(m)):
        b = i * uc
        for j in range(uc):
            h = (x[b + j] - shift[j]) * inv[j]
            xhat[b + j] = h
            y[b + j] = h * gamma[j] + beta[j]


def _bn_grad_sums_kernel(g, xhat, m, c, dbeta, dgamma):
    # dbeta, dgamma come zeroed
    uc = np.uint64(c)
    for i in range(np.uint64(m)):
        b = i * uc
        for j in range(uc):
            gj = g[b + j]
            dbeta[j] += gj
            dgamma[j] += gj * xhat[b + j]


def _bn_input_grad_kernel(g, xhat, m, c, a, shift, slope, dx):
    # ∂L/∂x = a·G − shift − x̂·slope  with a = γ/σ, shift = a ∂L/∂β / m, slope = a ∂L/∂γ / m
    uc = np.uint64(c)
    for i in range(np.uint64(m)):
        b = i * uc
        for j in range(uc):
            dx[b + j] = a[j] * g[b + j] - shift[j] - xhat[b + j] * slope[j]


def _relu_kernel(x, y):
    # y = max(x, 0) with NaN passed on (as np.maximum and torch.relu)
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = 0 if v < 0 else v


def _relu_backward_kernel(g, y, dx):
    # ∂L/∂x = ∂L/∂y where y > 0, else 0 (torch's threshold_backward)
    for i in range(g.shape[0]):
        dx[i] = g[i] if y[i] > 0 else 0


def _kernels():
    """The compiled kernels (numba compiles on first call and caches them on disk).

    No parallel loops: numba's parallel threads and BLAS's threads spin-wait on the same
    cores, and a parallel update made every matrix product of the step ~3x slower here.
    Batch norm over large batches of images calls its kernels from several threads
    instead, each over its own rows (``_row_parts``, :mod:`bpnn._threads`).
    """
    global _compiled
    if _compiled is None:
        import numba

        # error_model="numpy": no divide-by-zero check, so the loops vectorize (Adam: 4.5x faster)
        jit = numba.njit(fastmath=False, cache=True, nogil=True, error_model="numpy")
        # The penalty sums may be reassociated (float64 partial sums in SIMD lanes): 3x faster.
        reduce = numba.njit(fastmath={"reassoc"}, cache=True, nogil=True, error_model="numpy")
        _compiled = {"adam": jit(_adam_kernel), "amsgrad": jit(_amsgrad_kernel), "axpy": jit(_axpy_kernel),
                     "adam_step": jit(_adam_step_kernel), "sgd_step": jit(_sgd_step_kernel),
                     "momentum_step": jit(_momentum_step_kernel),
                     "l2": reduce(_l2_kernel), "l1": reduce(_l1_kernel),
                     "bn_stats": jit(_bn_stats_kernel), "bn_apply": jit(_bn_apply_kernel),
                     "bn_grad_sums": jit(_bn_grad_sums_kernel), "bn_input_grad": jit(_bn_input_grad_kernel),
                     "relu": jit(_relu_kernel), "relu_backward": jit(_relu_backward_kernel)}
    return _compiled


def _use_numba(*arrays) -> bool:
    return _active and all(isinstance(a, np.ndarray) for a in arrays)


def adam_direction(u, m, v, vmax, b1, b2, eps, t, tmp) -> None:
    """In place: m, v ← Adam moments of gradient u; u ← (m/(1−β₁ᵗ)) / (√v/√(1−β₂ᵗ) + ε).

    ``vmax`` (or None) holds the running maximum of v for AMSGrad; ``tmp`` is scratch
    space for the NumPy path.
    """
    inv_bc1 = 1.0 / (1.0 - b1**t)
    inv_bc2_sqrt = 1.0 / (1.0 - b2**t) ** 0.5
    if _use_numba(u, m, v):
        f = u.dtype.type
        scalars = (f(1.0 - b1), f(b2), f(1.0 - b2), f(eps), f(inv_bc1), f(inv_bc2_sqrt))
        if vmax is None:
            _kernels()["adam"](u, m, v, *scalars)
        else:
            _kernels()["amsgrad"](u, m, v, vmax, *scalars)
        return
    xp = backend.xp
    # m ← m + (1 − β₁)(u − m): the lerp form torch.optim.Adam uses.
    xp.subtract(u, m, out=tmp)
    tmp *= 1.0 - b1
    m += tmp
    xp.multiply(u, u, out=tmp)
    v -= tmp
    v *= b2
    v += tmp
    if vmax is not None:
        xp.maximum(vmax, v, out=vmax)
        v = vmax
    xp.sqrt(v, out=tmp)
    tmp *= inv_bc2_sqrt
    tmp += eps
    xp.divide(m, tmp, out=u)
    u *= inv_bc1


def fusable(params, grads) -> bool:
    """Whether the one-pass optimizer steps below can run on these arrays (numba, NumPy)."""
    return _use_numba(params, grads)


def adam_step(p, g, m, v, b1, b2, eps, t, lr, weight_decay=0.0, decoupled_weight_decay=0.0,
              grad_scale=1.0) -> None:
    """One whole Adam step in place, one pass (needs :func:`fusable`): g' = s g + λ θ
    (s = ``grad_scale``, the clipping factor), m, v ← moments of g',
    θ ← θ − η (m̂ / (√v̂ + ε) + λ_d θ). Scalars in the arrays' dtype."""
    f = p.dtype.type
    _kernels()["adam_step"](p, g, m, v, f(1.0 - b1), f(b2), f(1.0 - b2), f(eps), f(1.0 / (1.0 - b1**t)),
                            f(1.0 / (1.0 - b2**t) ** 0.5), f(lr), f(weight_decay), f(decoupled_weight_decay),
                            f(grad_scale))


def sgd_step(p, g, buf, lr, weight_decay, decoupled_weight_decay, momentum, dampening, nesterov, first,
             grad_scale=1.0) -> None:
    """One whole SGD step (torch's momentum convention) in place, one pass (needs
    :func:`fusable`); ``buf`` None means no momentum; g' = s g + λ θ as in :func:`adam_step`."""
    f = p.dtype.type
    if buf is None:
        _kernels()["sgd_step"](p, g, f(lr), f(weight_decay), f(decoupled_weight_decay), f(grad_scale))
    else:
        _kernels()["momentum_step"](p, g, buf, f(lr), f(weight_decay), f(decoupled_weight_decay), f(momentum),
                                    f(1.0 - dampening), bool(first), bool(nesterov), f(grad_scale))


def axpy(y, a: float, x, tmp=None) -> None:
    """In place: y ← y + a·x."""
    if _use_numba(y, x):
        _kernels()["axpy"](y, a, x)
        return
    if tmp is None:
        y += a * x
    else:
        backend.xp.multiply(x, a, out=tmp)
        y += tmp


def _flat_views(g, w):
    """1-d views of g and w when both are contiguous (else None: take the NumPy path)."""
    if _use_numba(g, w) and g.flags.c_contiguous and w.flags.c_contiguous:
        return g.reshape(-1), w.reshape(-1)
    return None


def l2_penalty_grad(g, w, lam: float) -> float:
    """In place: g ← g + λ w; returns Σ w² (the L2 penalty's gradient and sum, one pass)."""
    views = _flat_views(g, w)
    if views is not None:
        return float(_kernels()["l2"](views[0], views[1], lam))
    total = float(backend.xp.vdot(w, w))
    g += lam * w
    return total


def l1_penalty_grad(g, w, lam: float) -> float:
    """In place: g ← g + λ sign(w) (sign(0) = 0); returns Σ |w| (one pass)."""
    views = _flat_views(g, w)
    if views is not None:
        return float(_kernels()["l1"](views[0], views[1], lam))
    xp = backend.xp
    total = float(xp.abs(w).sum())
    g += lam * xp.sign(w)
    return total


# ----------------------------------------------------------------------------- batch norm
#: Batch-norm calls over images (``split=True``) of at least this many elements split
#: their rows between threads (``bpnn._threads``): a hand-off to the pool costs 70-90 µs
#: on the development machine, a pass over 2¹⁹ float32 values about 0.1 ms. Not for the
#: (N, features) arrays of MLPs, whose neighbouring matrix products OpenBLAS threads
#: itself: its idle threads spin for a while after each product and take the core a
#: split call needs (ReLU split next to them made an MLP epoch 1.06x slower, LeNet-5's
#: 1.15x).
_SPLIT_ELEMENTS = 1 << 19


def _row_parts(x2, work, split: bool) -> list:
    """[work(start, stop)] over parts of the rows of the (M, C) array x2: one per thread
    with ``split`` when x2 is large (``_SPLIT_ELEMENTS``), else one call."""
    if not split or x2.size < _SPLIT_ELEMENTS:
        return [work(0, x2.shape[0])]
    return _threads.in_parts(x2.shape[0], work)


def bn_rows_stats(x2, split: bool = False):
    """Per-column mean and biased variance of the C-contiguous (M, C) array ``x2``, as
    float64 arrays (two passes: the variance is a mean of squared deviations). Parts
    of the rows (``split``) are combined as Chan et al. (1979): with part sizes m_p,
    means μ_p and variances σ²_p, μ = Σ m_p μ_p / m and σ² = Σ m_p (σ²_p + (μ_p − μ)²) / m."""
    xp = backend.xp
    m, c = x2.shape
    if _use_numba(x2):
        kernel = _kernels()["bn_stats"]

        def part(a, b):
            mean, var = np.zeros(c), np.zeros(c)
            kernel(x2[a:b].reshape(-1), b - a, c, mean, var)
            return b - a, mean, var

        parts = _row_parts(x2, part, split)
        if len(parts) == 1:
            return parts[0][1:]
        mean = sum(k * mu for k, mu, _ in parts) / m
        return mean, sum(k * (v + (mu - mean) ** 2) for k, mu, v in parts) / m
    mean = x2.mean(axis=0, dtype=xp.float64)
    d = x2 - mean.astype(x2.dtype)
    return mean, (d * d).mean(axis=0, dtype=xp.float64)


def bn_rows_apply(x2, shift, inv, gamma, beta, split: bool = False):
    """(x̂, y) with x̂ = (x − shift)·inv and y = γ x̂ + β per column of the (M, C) array;
    the per-column vectors come in ``x2``'s dtype."""
    xp = backend.xp
    xhat, y = xp.empty_like(x2), xp.empty_like(x2)
    if _use_numba(x2, shift, inv, gamma, beta):
        c, kernel = x2.shape[1], _kernels()["bn_apply"]
        _row_parts(x2, lambda a, b: kernel(x2[a:b].reshape(-1), b - a, c, shift, inv, gamma, beta,
                                           xhat[a:b].reshape(-1), y[a:b].reshape(-1)), split)
        return xhat, y
    xp.subtract(x2, shift, out=xhat)
    xhat *= inv
    xp.multiply(xhat, gamma, out=y)
    y += beta
    return xhat, y


def bn_rows_grad_sums(g2, xhat2, split: bool = False):
    """(Σ_rows G, Σ_rows G x̂) per column, float64."""
    xp = backend.xp
    m, c = g2.shape
    if _use_numba(g2, xhat2):
        kernel = _kernels()["bn_grad_sums"]

        def part(a, b):
            dbeta, dgamma = np.zeros(c), np.zeros(c)
            kernel(g2[a:b].reshape(-1), xhat2[a:b].reshape(-1), b - a, c, dbeta, dgamma)
            return dbeta, dgamma

        parts = _row_parts(g2, part, split)
        return sum(p[0] for p in parts), sum(p[1] for p in parts)
    return g2.sum(axis=0, dtype=xp.float64), (g2 * xhat2).sum(axis=0, dtype=xp.float64)


def bn_rows_input_grad(g2, xhat2, a, shift, slope, split: bool = False):
    """a·G − shift − x̂·slope per column (the training-mode input gradient of batch norm)."""
    xp = backend.xp
    dx = xp.empty_like(g2)
    if _use_numba(g2, xhat2, a, shift, slope):
        c, kernel = g2.shape[1], _kernels()["bn_input_grad"]
        _row_parts(g2, lambda i, j: kernel(g2[i:j].reshape(-1), xhat2[i:j].reshape(-1), j - i, c, a, shift, slope,
                                           dx[i:j].reshape(-1)), split)
        return dx
    xp.multiply(g2, a, out=dx)
    dx -= shift
    dx -= xhat2 * slope
    return dx


# ----------------------------------------------------------------------------- ReLU
def _memory_order(*arrays):
    """1-d views of arrays that all hold their elements contiguously in the same order
    (C-contiguous, or e.g. the channels-last images seen as NCHW), else None."""
    flats = []
    for a in arrays:
        if a.strides != arrays[0].strides:
            return None
        f = a.ravel(order="K")
        if not np.may_share_memory(f, a):
            return None
        flats.append(f)
    return flats


def relu(x):
    """max(x, 0), in x's memory layout (one compiled pass; 4x faster than np.maximum)."""
    xp = backend.xp
    if _use_numba(x):
        y = np.empty_like(x)
        flats = _memory_order(x, y)
        if flats is not None:
            _kernels()["relu"](*flats)
            return y
    return xp.maximum(x, 0)


def relu_backward(g, y):
    """∂L/∂y where y > 0, else 0."""
    if _use_numba(g, y):
        dx = np.empty_like(g)
        flats = _memory_order(g, y, dx)
        if flats is not None:
            _kernels()["relu_backward"](*flats)
            return dx
    return g * (y > 0)
