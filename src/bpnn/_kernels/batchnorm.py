"""Batch normalization over the rows of a C-contiguous (M, C) array, in one pass each.

(M, C) is the channels-last layout of the image layers' data, and plain (N, C) inputs
(:class:`bpnn.nn.BatchNorm`). Per-channel sums are float64. The compiled loops index
flat arrays with unsigned integers: with signed ones numba tests every index for
wrap-around. Calls over large batches of images (``split=True``) split their rows
between threads (:func:`bpnn._kernels.parallel.split_rows`).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import use_compiled
from .compiler import kernel
from .parallel import split_rows


# ----------------------------------------------------------------------------- compiled
# With few channels (16 in an image layer) a loop over the C values of one row is too
# short to vectorize well: each row pays the loop's set-up, and an accumulator per
# channel makes every row wait for the row before. So the loops run over chunks of
# r = ⌈256 / C⌉ rows, against per-channel vectors repeated r times ("tiled", length
# L = r·C): one long vector loop per chunk, and L independent accumulators, folded per
# channel at the end (sums of sums, float64). Arithmetic per element is unchanged.

@kernel(fastmath=False, error_model="numpy")
def _tile_len(c):
    # L = r·C, r = ⌈256 / C⌉ rows
    return ((256 + c - 1) // c) * c


@kernel(fastmath=False, error_model="numpy")
def _tiled(v, n, like):
    # v repeated to length n (a multiple of len(v)), in like's dtype
    c = v.shape[0]
    out = np.empty(n, dtype=like.dtype)
    for k in range(n):
        out[k] = v[k % c]
    return out


@kernel(fastmath=False, error_model="numpy")
def _fold(acc, c, out):
    # out[j] += Σ_r acc[r·C + j]
    for k in range(acc.shape[0]):
        out[k % c] += acc[k]


@kernel(fastmath=False, error_model="numpy")
def _stats(x, m, c, mean, var):
    # mean, var come zeroed. One pass over x, shifted by its first row K (float64):
    #   S₁ = Σ (x − K),  S₂ = Σ (x − K)²,  μ = K + S₁/m,  σ² = S₂/m − (S₁/m)²
    # (the shifted-data form of the two sums: with K a sample of the channel, (μ − K)² is
    # of the order of σ², so the subtraction loses only a few float64 digits)
    n = np.uint64(m) * np.uint64(c)
    tl = np.uint64(_tile_len(c))
    first = np.empty(c)
    for j in range(c):
        first[j] = x[j]
    kt = _tiled(first, tl, first)
    s1, s2 = np.zeros(tl), np.zeros(tl)
    for b in range(np.uint64(0), n, tl):  # chunks of tl values, the last one partial
        for k in range(min(tl, n - b)):
            d = x[b + k] - kt[k]
            s1[k] += d
            s2[k] += d * d
    _fold(s1, c, mean)
    _fold(s2, c, var)
    for j in range(c):
        d = mean[j] / m
        mean[j] = first[j] + d
        var[j] = max(var[j] / m - d * d, 0.0)


@kernel(fastmath=False, error_model="numpy")
def _apply(x, m, c, center, inv, gamma, beta, y):
    # y = γ x̂ + β with x̂ = (x − center)·inv   (per channel, all in the arrays' dtype)
    n = np.uint64(m) * np.uint64(c)
    tl = np.uint64(_tile_len(c))
    ct, it, gt, bt = _tiled(center, tl, x), _tiled(inv, tl, x), _tiled(gamma, tl, x), _tiled(beta, tl, x)
    for b in range(np.uint64(0), n, tl):
        for k in range(min(tl, n - b)):
            y[b + k] = ((x[b + k] - ct[k]) * it[k]) * gt[k] + bt[k]


@kernel(fastmath=False, error_model="numpy")
def _grad_sums(g, x, m, c, center, inv, dbeta, dgamma):
    # dbeta, dgamma come zeroed; x̂ = (x − center)·inv as in _apply
    n = np.uint64(m) * np.uint64(c)
    tl = np.uint64(_tile_len(c))
    ct, it = _tiled(center, tl, x), _tiled(inv, tl, x)
    ab, ag = np.zeros(tl), np.zeros(tl)
    for b in range(np.uint64(0), n, tl):
        for k in range(min(tl, n - b)):
            gk = g[b + k]
            ab[k] += gk
            ag[k] += gk * ((x[b + k] - ct[k]) * it[k])
    _fold(ab, c, dbeta)
    _fold(ag, c, dgamma)


@kernel(fastmath=False, error_model="numpy")
def _input_grad(g, x, m, c, center, inv, a, shift, slope, dx):
    # ∂L/∂x = a·G − shift − x̂·slope  with a = γ/σ, shift = a ∂L/∂β / m, slope = a ∂L/∂γ / m
    n = np.uint64(m) * np.uint64(c)
    tl = np.uint64(_tile_len(c))
    ct, it = _tiled(center, tl, g), _tiled(inv, tl, g)
    at, st, lt = _tiled(a, tl, g), _tiled(shift, tl, g), _tiled(slope, tl, g)
    for b in range(np.uint64(0), n, tl):
        for k in range(min(tl, n - b)):
            dx[b + k] = at[k] * g[b + k] - st[k] - ((x[b + k] - ct[k]) * it[k]) * lt[k]


# ----------------------------------------------------------------------------- API
def rows_stats(x2, split: bool = False):
    """Per-column mean and biased variance of the C-contiguous (M, C) array ``x2``, as
    float64 arrays (compiled: one pass of shifted sums, see ``_stats``; NumPy: two
    passes, the variance a mean of squared deviations). Parts
    of the rows (``split``) are combined as Chan et al. (1979): with part sizes m_p,
    means μ_p and variances σ²_p, μ = Σ m_p μ_p / m and σ² = Σ m_p (σ²_p + (μ_p − μ)²) / m."""
    xp = backend.xp
    m, c = x2.shape
    if use_compiled(x2):
        def part(a, b):
            mean, var = np.zeros(c), np.zeros(c)
            _stats(x2[a:b].reshape(-1), b - a, c, mean, var)
            return b - a, mean, var

        parts = split_rows(x2, part, split)
        if len(parts) == 1:
            return parts[0][1:]
        mean = sum(k * mu for k, mu, _ in parts) / m
        return mean, sum(k * (v + (mu - mean) ** 2) for k, mu, v in parts) / m
    mean = x2.mean(axis=0, dtype=xp.float64)
    d = x2 - mean.astype(x2.dtype)
    return mean, (d * d).mean(axis=0, dtype=xp.float64)


def rows_xhat(x2, center, inv):
    """x̂ = (x − center)·inv per column, in ``x2``'s dtype (as the kernels below form it)."""
    return (x2 - center) * inv


def rows_apply(x2, center, inv, gamma, beta, split: bool = False):
    """(y, x̂ or None): y = γ x̂ + β per column of the (M, C) array, x̂ = (x − center)·inv;
    the per-column vectors come in ``x2``'s dtype. The compiled path does not keep x̂
    (None): backward forms it again from x (one write of the whole array less per
    forward, and no array of x̂ alive until backward). The NumPy path forms x̂ as an array
    anyway and returns it, so that its backward need not form it twice more."""
    xp = backend.xp
    y = xp.empty_like(x2)
    if use_compiled(x2, center, inv, gamma, beta):
        c = x2.shape[1]
        split_rows(x2, lambda a, b: _apply(x2[a:b].reshape(-1), b - a, c, center, inv, gamma, beta,
                                           y[a:b].reshape(-1)), split)
        return y, None
    xhat = rows_xhat(x2, center, inv)
    xp.multiply(xhat, gamma, out=y)
    y += beta
    return y, xhat


def rows_grad_sums(g2, x2, center, inv, split: bool = False, xhat2=None):
    """(Σ_rows G, Σ_rows G x̂) per column, float64, x̂ = (x − center)·inv (or ``xhat2``,
    the NumPy forward's, when given)."""
    xp = backend.xp
    m, c = g2.shape
    if use_compiled(g2, x2, center, inv):
        def part(a, b):
            dbeta, dgamma = np.zeros(c), np.zeros(c)
            _grad_sums(g2[a:b].reshape(-1), x2[a:b].reshape(-1), b - a, c, center, inv, dbeta, dgamma)
            return dbeta, dgamma

        parts = split_rows(g2, part, split)
        return sum(p[0] for p in parts), sum(p[1] for p in parts)
    if xhat2 is None:
        xhat2 = rows_xhat(x2, center, inv)
    return g2.sum(axis=0, dtype=xp.float64), (g2 * xhat2).sum(axis=0, dtype=xp.float64)


def rows_input_grad(g2, x2, center, inv, a, shift, slope, split: bool = False, xhat2=None):
    """a·G − shift − x̂·slope per column (the training-mode input gradient of batch norm),
    x̂ = (x − center)·inv (or ``xhat2``, the NumPy forward's, when given)."""
    xp = backend.xp
    dx = xp.empty_like(g2)
    if use_compiled(g2, x2, center, inv, a, shift, slope):
        c = g2.shape[1]
        split_rows(g2, lambda i, j: _input_grad(g2[i:j].reshape(-1), x2[i:j].reshape(-1), j - i, c, center, inv,
                                                a, shift, slope, dx[i:j].reshape(-1)), split)
        return dx
    if xhat2 is None:
        xhat2 = rows_xhat(x2, center, inv)
    xp.multiply(g2, a, out=dx)
    dx -= shift
    dx -= xhat2 * slope
    return dx
