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
@kernel(fastmath=False, error_model="numpy")
def _stats(x, m, c, mean, var):
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


@kernel(fastmath=False, error_model="numpy")
def _apply(x, m, c, shift, inv, gamma, beta, xhat, y):
    # x̂ = (x − shift)·inv,  y = γ x̂ + β   (per channel, all in the arrays' dtype)
    uc = np.uint64(c)
    for i in range(np.uint64(m)):
        b = i * uc
        for j in range(uc):
            h = (x[b + j] - shift[j]) * inv[j]
            xhat[b + j] = h
            y[b + j] = h * gamma[j] + beta[j]


@kernel(fastmath=False, error_model="numpy")
def _grad_sums(g, xhat, m, c, dbeta, dgamma):
    # dbeta, dgamma come zeroed
    uc = np.uint64(c)
    for i in range(np.uint64(m)):
        b = i * uc
        for j in range(uc):
            gj = g[b + j]
            dbeta[j] += gj
            dgamma[j] += gj * xhat[b + j]


@kernel(fastmath=False, error_model="numpy")
def _input_grad(g, xhat, m, c, a, shift, slope, dx):
    # ∂L/∂x = a·G − shift − x̂·slope  with a = γ/σ, shift = a ∂L/∂β / m, slope = a ∂L/∂γ / m
    uc = np.uint64(c)
    for i in range(np.uint64(m)):
        b = i * uc
        for j in range(uc):
            dx[b + j] = a[j] * g[b + j] - shift[j] - xhat[b + j] * slope[j]


# ----------------------------------------------------------------------------- API
def rows_stats(x2, split: bool = False):
    """Per-column mean and biased variance of the C-contiguous (M, C) array ``x2``, as
    float64 arrays (two passes: the variance is a mean of squared deviations). Parts
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


def rows_apply(x2, shift, inv, gamma, beta, split: bool = False):
    """(x̂, y) with x̂ = (x − shift)·inv and y = γ x̂ + β per column of the (M, C) array;
    the per-column vectors come in ``x2``'s dtype."""
    xp = backend.xp
    xhat, y = xp.empty_like(x2), xp.empty_like(x2)
    if use_compiled(x2, shift, inv, gamma, beta):
        c = x2.shape[1]
        split_rows(x2, lambda a, b: _apply(x2[a:b].reshape(-1), b - a, c, shift, inv, gamma, beta,
                                           xhat[a:b].reshape(-1), y[a:b].reshape(-1)), split)
        return xhat, y
    xp.subtract(x2, shift, out=xhat)
    xhat *= inv
    xp.multiply(xhat, gamma, out=y)
    y += beta
    return xhat, y


def rows_grad_sums(g2, xhat2, split: bool = False):
    """(Σ_rows G, Σ_rows G x̂) per column, float64."""
    xp = backend.xp
    m, c = g2.shape
    if use_compiled(g2, xhat2):
        def part(a, b):
            dbeta, dgamma = np.zeros(c), np.zeros(c)
            _grad_sums(g2[a:b].reshape(-1), xhat2[a:b].reshape(-1), b - a, c, dbeta, dgamma)
            return dbeta, dgamma

        parts = split_rows(g2, part, split)
        return sum(p[0] for p in parts), sum(p[1] for p in parts)
    return g2.sum(axis=0, dtype=xp.float64), (g2 * xhat2).sum(axis=0, dtype=xp.float64)


def rows_input_grad(g2, xhat2, a, shift, slope, split: bool = False):
    """a·G − shift − x̂·slope per column (the training-mode input gradient of batch norm)."""
    xp = backend.xp
    dx = xp.empty_like(g2)
    if use_compiled(g2, xhat2, a, shift, slope):
        c = g2.shape[1]
        split_rows(g2, lambda i, j: _input_grad(g2[i:j].reshape(-1), xhat2[i:j].reshape(-1), j - i, c, a, shift,
                                                slope, dx[i:j].reshape(-1)), split)
        return dx
    xp.multiply(g2, a, out=dx)
    dx -= shift
    dx -= xhat2 * slope
    return dx
