"""The optimizer steps and penalty gradients as one pass over the parameter vector.

Written as NumPy vector operations, an Adam update makes about fifteen passes over the
parameters; each kernel here makes one. Every scalar comes in the arrays' dtype, so
float32 parameters are updated in float32 arithmetic, as the NumPy path (NEP 50) and
torch do. The loops have no branch on the data and no aliased array, and are compiled
with ``error_model="numpy"`` (no divide-by-zero test), so that they vectorize; the
penalty sums may be reassociated (float64 partial sums in SIMD lanes).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import use_compiled
from .compiler import kernel


# ----------------------------------------------------------------------------- compiled
@kernel(fastmath=False, error_model="numpy", inline="always")
def _moments(u, m, v, i, c1, b2, c2):
    # Adam's moments at entry i from the direction u[i]: m ← m + (1 − β₁)(g − m),
    # v ← β₂ v + (1 − β₂) g²; inlined into each loop, which stays free of branches.
    g = u[i]
    mi = m[i] + c1 * (g - m[i])
    vi = b2 * v[i] + c2 * (g * g)
    m[i] = mi
    v[i] = vi
    return mi, vi


@kernel(fastmath=False, error_model="numpy")
def _adam(u, m, v, c1, b2, c2, eps, inv_bc1, inv_bc2_sqrt):
    # c1 = 1 − β₁, c2 = 1 − β₂. AMSGrad's running maximum is a kernel of its own: a
    # branch for it in this loop keeps the loop from vectorizing.
    for i in range(u.shape[0]):
        mi, vi = _moments(u, m, v, i, c1, b2, c2)
        u[i] = (mi * inv_bc1) / (np.sqrt(vi) * inv_bc2_sqrt + eps)


@kernel(fastmath=False, error_model="numpy")
def _amsgrad(u, m, v, vmax, c1, b2, c2, eps, inv_bc1, inv_bc2_sqrt):
    for i in range(u.shape[0]):
        mi, vi = _moments(u, m, v, i, c1, b2, c2)
        vm = max(vmax[i], vi)
        vmax[i] = vm
        u[i] = (mi * inv_bc1) / (np.sqrt(vm) * inv_bc2_sqrt + eps)


@kernel(fastmath=False, error_model="numpy")
def _adam_step(p, g, m, v, c1, b2, c2, eps, inv_bc1, inv_bc2_sqrt, lr, wd, dwd, gs):
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


@kernel(fastmath=False, error_model="numpy")
def _sgd_step(p, g, lr, wd, dwd, gs):
    for i in range(p.shape[0]):
        pi = p[i]
        p[i] = pi - lr * (g[i] * gs + wd * pi + dwd * pi)


@kernel(fastmath=False, error_model="numpy")
def _momentum_step(p, g, buf, lr, wd, dwd, mu, damp1, first, nesterov, gs):
    # torch.optim.SGD: b₁ = g', b_t = μ b + (1 − τ) g'; d = g' + μ b (Nesterov) or b.
    for i in range(p.shape[0]):
        pi = p[i]
        gi = g[i] * gs + wd * pi
        b = gi if first else mu * buf[i] + damp1 * gi
        buf[i] = b
        d = gi + mu * b if nesterov else b
        p[i] = pi - lr * (d + dwd * pi)


@kernel(fastmath=False, error_model="numpy")
def _axpy(y, a, x):
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@kernel(fastmath={"reassoc"}, error_model="numpy")
def _l2(g, w, lam):
    total = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        total += wi * wi
        g[i] += lam * wi
    return total


@kernel(fastmath={"reassoc"}, error_model="numpy")
def _l1(g, w, lam):
    total = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        total += abs(wi)
        g[i] += lam * np.sign(wi)
    return total


# ----------------------------------------------------------------------------- API
def _inverse_bias_corrections(b1, b2, t, bias_correction):
    """(1/(1 − β₁ᵗ), 1/√(1 − β₂ᵗ)), or (1, 1) without bias correction: the same loops
    then compute m / (√v + ε) (multiplying by 1 changes no bit)."""
    if not bias_correction:
        return 1.0, 1.0
    return 1.0 / (1.0 - b1**t), 1.0 / (1.0 - b2**t) ** 0.5


def adam_direction(u, m, v, vmax, b1, b2, eps, t, tmp, bias_correction=True) -> None:
    """In place: m, v ← Adam moments of gradient u; u ← (m/(1−β₁ᵗ)) / (√v/√(1−β₂ᵗ) + ε),
    or u ← m / (√v + ε) when ``bias_correction`` is False.

    ``vmax`` (or None) holds the running maximum of v for AMSGrad; ``tmp`` is scratch
    space for the NumPy path.
    """
    inv_bc1, inv_bc2_sqrt = _inverse_bias_corrections(b1, b2, t, bias_correction)
    if use_compiled(u, m, v):
        f = u.dtype.type
        scalars = (f(1.0 - b1), f(b2), f(1.0 - b2), f(eps), f(inv_bc1), f(inv_bc2_sqrt))
        if vmax is None:
            _adam(u, m, v, *scalars)
        else:
            _amsgrad(u, m, v, vmax, *scalars)
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
    return use_compiled(params, grads)


def adam_step(p, g, m, v, b1, b2, eps, t, lr, weight_decay=0.0, decoupled_weight_decay=0.0,
              grad_scale=1.0, bias_correction=True) -> None:
    """One whole Adam step in place, one pass (needs :func:`fusable`): g' = s g + λ θ
    (s = ``grad_scale``, the clipping factor), m, v ← moments of g',
    θ ← θ − η (m̂ / (√v̂ + ε) + λ_d θ), with m̂ = m, v̂ = v when ``bias_correction`` is
    False. Scalars in the arrays' dtype."""
    f = p.dtype.type
    inv_bc1, inv_bc2_sqrt = _inverse_bias_corrections(b1, b2, t, bias_correction)
    _adam_step(p, g, m, v, f(1.0 - b1), f(b2), f(1.0 - b2), f(eps), f(inv_bc1),
               f(inv_bc2_sqrt), f(lr), f(weight_decay), f(decoupled_weight_decay), f(grad_scale))


def sgd_step(p, g, buf, lr, weight_decay, decoupled_weight_decay, momentum, dampening, nesterov, first,
             grad_scale=1.0) -> None:
    """One whole SGD step (torch's momentum convention) in place, one pass (needs
    :func:`fusable`); ``buf`` None means no momentum; g' = s g + λ θ as in :func:`adam_step`."""
    f = p.dtype.type
    if buf is None:
        _sgd_step(p, g, f(lr), f(weight_decay), f(decoupled_weight_decay), f(grad_scale))
    else:
        _momentum_step(p, g, buf, f(lr), f(weight_decay), f(decoupled_weight_decay), f(momentum),
                       f(1.0 - dampening), bool(first), bool(nesterov), f(grad_scale))


def axpy(y, a: float, x, tmp=None) -> None:
    """In place: y ← y + a·x."""
    if use_compiled(y, x):
        _axpy(y, a, x)
        return
    if tmp is None:
        y += a * x
    else:
        backend.xp.multiply(x, a, out=tmp)
        y += tmp


def _flat_views(g, w):
    """1-d views of g and w when both are contiguous (else None: take the NumPy path)."""
    if use_compiled(g, w) and g.flags.c_contiguous and w.flags.c_contiguous:
        return g.reshape(-1), w.reshape(-1)
    return None


def l2_penalty_grad(g, w, lam: float) -> float:
    """In place: g ← g + λ w; returns Σ w² (the L2 penalty's gradient and sum, one pass)."""
    views = _flat_views(g, w)
    if views is not None:
        return float(_l2(views[0], views[1], lam))
    total = float(backend.xp.vdot(w, w))
    g += lam * w
    return total


def l1_penalty_grad(g, w, lam: float) -> float:
    """In place: g ← g + λ sign(w) (sign(0) = 0); returns Σ |w| (one pass)."""
    views = _flat_views(g, w)
    if views is not None:
        return float(_l1(views[0], views[1], lam))
    xp = backend.xp
    total = float(xp.abs(w).sum())
    g += lam * xp.sign(w)
    return total
