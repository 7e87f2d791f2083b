"""One-pass statistics kernels for LayerStats, compiled with numba when it is installed.

Measured reason (``benchmarks/bench_stats.py``, `bpnn compare`'s default network: 21
small layers, 43 steps per epoch): computed as NumPy reductions, one observation of
the network took some 300 small array operations — about 0.8 ms, two training steps —
so statistics every epoch cost ~7 % of training. Each kernel below makes ONE pass over
one array and returns every number the statistics need from it.

numba is optional (``bpnn[fast]``) and switched by :mod:`bpnn._kernels` (the same
``BPNN_DISABLE_NUMBA`` and ``set_enabled``); without it the callers use their NumPy
code, which computes the same quantities (tests run both).
"""
from __future__ import annotations

import numpy as np

from .. import _kernels

_compiled = None

# modes of the output kernel
PLAIN, SIGMOID, TANH, RELU = 0, 1, 2, 3


def _output_kernel(y, mode, threshold, spread, unit_max):
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


def _moments_kernel(a):
    s = 0.0
    ss = 0.0
    for i in range(a.shape[0]):
        v = float(a[i])
        s += v
        ss += v * v
    return s, ss


def _param_kernel(w, g, b, have_before, counts):
    # One pass over a weight, its gradient and (optionally) its value before the step:
    # Σw, Σw², Σg, Σg², Σb², Σ(b − w)², min w, max w; then, when counts has bins, a
    # second pass for the histogram of w over [min, max] (see _hist_kernel).
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
        _hist_kernel(w, a, bins / (z - a), counts)
    return ws, wss, gs, gss, bss, dss, lo, hi


def _hist_kernel(w, lo, scale, counts):
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


def kernels():
    """The compiled kernels (compiled on first use, cached on disk by numba)."""
    global _compiled
    if _compiled is None:
        import numba

        jit = numba.njit(cache=True, nogil=True)
        # Sums may be reassociated (SIMD partial sums in float64): several times faster.
        # No "nnan"/"ninf": a non-finite weight must still show in the sums.
        reduce = numba.njit(fastmath={"reassoc", "contract", "arcp", "nsz"}, cache=True, nogil=True)
        hist = jit(_hist_kernel)
        _compiled = {"output": jit(_output_kernel), "moments": reduce(_moments_kernel), "hist": hist}
        globals()["_hist_kernel"] = hist  # called from inside the param kernel
        _compiled["param"] = reduce(_param_kernel)
    return _compiled


def use(a, b=None) -> bool:
    """Whether to take the compiled path for these arrays (numba on, NumPy arrays)."""
    return _kernels._active and type(a) is np.ndarray and (b is None or type(b) is np.ndarray)
