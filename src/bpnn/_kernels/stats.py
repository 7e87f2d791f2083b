"""One-pass statistics kernels for :mod:`bpnn.diagnostics` (LayerStats, the probes).

Computed as NumPy reductions, one observation of a network is a few hundred small array
operations; each kernel here makes ONE pass over one array and returns every number the
statistics need from it. The callers keep NumPy code that computes the same quantities,
taken when :func:`bpnn._kernels.use_compiled` says no (tests compare the two). Sums are
float64 and may be reassociated (SIMD partial sums), but not with "nnan"/"ninf": a
non-finite weight must still show in the sums.
"""
from __future__ import annotations

import numpy as np

from .compiler import kernel

# modes of the output kernel
PLAIN, SIGMOID, TANH, RELU = 0, 1, 2, 3

#: numba's fastmath flags of the summing kernels
_REDUCE = {"reassoc", "contract", "arcp", "nsz"}


@kernel()
def output(y, mode, threshold, spread, unit_max):
    # y: (N, C, R) — samples, units (channels), positions. Returns
    # (Σy, Σy², count, width): count = saturated outputs (sigmoid: |y − ½| > threshold,
    # tanh: |y| > threshold) or non-zero outputs (ReLU); width = max over (n, r) of
    # max_c y − min_c y when `spread`. unit_max[c] = max over (n, r) of y (ReLU).
    n, c, r = y.shape
    s = 0.0
    ss = 0.0
    count = 0
    width = 0.0
    for j in range(c):
        unit_max[j] = -np.inf
    for i in range(n):
        for k in range(r):
            lo = np.inf
            hi = -np.inf
            for j in range(c):
                v = float(y[i, j, k])
                s += v
                ss += v * v
                if mode == 1:
                    if abs(v - 0.5) > threshold:
                        count += 1
                elif mode == 2:
                    if abs(v) > threshold:
                        count += 1
                elif mode == 3:
                    if v != 0:
                        count += 1
                    if v > unit_max[j]:
                        unit_max[j] = v
                if spread:
                    if v < lo:
                        lo = v
                    if v > hi:
                        hi = v
            if spread and hi - lo > width:
                width = hi - lo
    return s, ss, count, width


@kernel(fastmath=_REDUCE)
def moments(a):
    s = 0.0
    ss = 0.0
    for i in range(a.shape[0]):
        v = float(a[i])
        s += v
        ss += v * v
    return s, ss


@kernel(fastmath=_REDUCE)
def param(w, g, b, have_before, counts):
    # One pass over a weight, its gradient and (optionally) its value before the step:
    # Σw, Σw², Σg, Σg², Σb², Σ(b − w)², min w, max w; then, when counts has bins, a
    # second pass for the histogram of w over [min, max] (see hist).
    ws = 0.0
    wss = 0.0
    gs = 0.0
    gss = 0.0
    bss = 0.0
    dss = 0.0
    lo = np.inf
    hi = -np.inf
    n = w.shape[0]
    for i in range(n):
        wi = float(w[i])
        gi = float(g[i])
        ws += wi
        wss += wi * wi
        gs += gi
        gss += gi * gi
        if wi < lo:  # NaN compares false: min/max of the finite entries; the sums tell NaN
            lo = wi
        if wi > hi:
            hi = wi
    if have_before:
        for i in range(n):
            bi = float(b[i])
            d = bi - float(w[i])
            bss += bi * bi
            dss += d * d
    bins = counts.shape[0]
    if bins > 0 and lo <= hi and hi - lo < np.inf:
        a, z = lo, hi
        if z <= a:
            a, z = a - 0.5, z + 0.5
        hist(w, a, bins / (z - a), counts)
    return ws, wss, gs, gss, bss, dss, lo, hi


@kernel()
def hist(w, lo, scale, counts):
    # bin of w: ⌊(w − lo) · scale⌋ in float64, exactly as the NumPy path computes it
    bins = counts.shape[0]
    for j in range(bins):
        counts[j] = 0
    for i in range(w.shape[0]):
        k = int((float(w[i]) - lo) * scale)
        if k >= bins:
            k = bins - 1
        elif k < 0:
            k = 0
        counts[k] += 1
