"""Memory-bound kernels of convolution and pooling: im2col, col2im, max and average pooling.

Images are passed to these kernels channels-last, as C-contiguous (N, H, W, C) arrays
(the layers keep their data in that layout; see :class:`bpnn.nn.Conv2D`). Padding is
fused into every kernel: out-of-image positions read as 0 (−∞ for max pooling) and
are never materialized.

Two implementations of each kernel compute the same numbers:

- compiled with numba (``bpnn[fast]``), used for NumPy arrays when
  :func:`bpnn._kernels.enabled` is true (the one switch for all compiled kernels:
  ``BPNN_DISABLE_NUMBA=1`` or ``bpnn._kernels.set_enabled(False)`` turns it off);
- NumPy fallbacks written with ``backend.xp`` (strided window views), used otherwise.

Measured on the 2-core development machine, float32, LeNet-5's shapes at batch 64,
numba against the NumPy fallback in the same run (``benchmarks/bench_cnn.py --kernels``):
col2im of 6×14×14 with a 5×5 kernel 0.31 vs 2.6 ms (8×), max pooling 2×2 forward
0.55 vs 2.3 ms (6 channels of 28×28) and 0.06 vs 0.73 ms (16 of 10×10), backward
0.07 vs 0.57 ms, average pooling 0.30 vs 1.6 ms. im2col is a copy, and NumPy's
strided copy is as fast as the compiled one (0.22 ms for 6×14×14). For few input
channels :class:`bpnn.nn.Conv2D` runs im2col over row tiles (:class:`Tiles`): runs of
a whole tile of input columns instead of kw·C values, 0.26 ms for LeNet-5's first
layer against 1.96 ms for plain im2col. The compiled loops index flat arrays with unsigned
integers: with signed indices numba adds a negative-index wrap-around test to every
access and the loops ran 5–10× slower.

The kernels have no parallel loops: numba's parallel threads and OpenBLAS's threads
spin-wait on the same two cores. Measured: a col2im parallelized over the batch
(``prange``) ran 2.2× faster alone (0.14 vs 0.31 ms) but made the sequence matrix
product → col2im → matrix product 9× slower (8.0 vs 0.85 ms). When the products run in
the register-tile kernels of :mod:`bpnn._gemm` instead of OpenBLAS, Conv2D calls these
kernels from several threads, each over its own samples (:mod:`bpnn._threads`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _kernels, backend


class Window(NamedTuple):
    """Geometry of a sliding window over (H, W) images.

    ``ph``/``pw`` are the padding before the first row/column (the padding after is
    implied by the output size), so asymmetric "same" padding needs no special case.
    Output position (ho, wo), kernel tap (i, k) reads input row ho·sh − ph + i·dh and
    column wo·sw − pw + k·dw.
    """

    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    H: int
    W: int
    Ho: int
    Wo: int


def _use_numba(*arrays) -> bool:
    return _kernels.enabled() and all(isinstance(a, np.ndarray) for a in arrays)


# =============================================================================== numba
# Plain Python functions, compiled by numba on first use (``_compiled``). Flat arrays,
# unsigned indices (see the module docstring).

def _im2col_kernel(x, cols, ld, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo):
    # x: flat (N, H, W, C); cols: flat (N·Ho·Wo, ld), columns (i, k, c) of the first
    # kh·kw·C entries of each row written, the rest of the row (ld > kh·kw·C) untouched.
    uC = u64(C)
    ncol = u64(ld)
    KC = u64(kw * C)
    zero = cols.dtype.type(0)
    k0s, k1s = _column_taps_jit(Wo, sw, pw, dw, W, kw)
    for n in range(N):
        for ho in range(Ho):
            r0 = u64((n * Ho + ho) * Wo)
            for i in range(kh):
                h = ho * sh - ph + i * dh
                j0 = u64(i) * KC
                if h < 0 or h >= H:
                    for wo in range(u64(Wo)):
                        d = (r0 + wo) * ncol + j0
                        for t in range(KC):
                            cols[d + t] = zero
                    continue
                xrow = u64((n * H + h) * W) * uC
                for wo in range(Wo):
                    d = (r0 + u64(wo)) * ncol + j0
                    w0 = wo * sw - pw
                    if dw == 1:
                        # the window's kw·C values are one run of the image row, zeros
                        # where it leaves the image
                        k0, k1 = k0s[wo], k1s[wo]
                        a0, a1 = u64(k0) * uC, u64(k1) * uC
                        for t in range(a0):
                            cols[d + t] = zero
                        s = xrow + u64(w0 + k0) * uC
                        d0 = d + a0
                        for t in range(a1 - a0):
                            cols[d0 + t] = x[s + t]
                        for t in range(a1, KC):
                            cols[d + t] = zero
                        continue
                    for k in range(kw):
                        w = w0 + k * dw
                        dk = d + u64(k) * uC
                        if w < 0 or w >= W:
                            for c in range(uC):
                                cols[dk + c] = zero
                        else:
                            s = xrow + u64(w) * uC
                            for c in range(uC):
                                cols[dk + c] = x[s + c]


def _col2im_kernel(cols, dx, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo):
    # dx: flat (N, H, W, C), overwritten with the sum of the columns that read each entry.
    # The rows of cols are read in order (window, then kernel row): with few channels
    # the runs are short, and reading cols kernel row by kernel row ran 2x slower.
    zero = dx.dtype.type(0)
    for t in range(dx.shape[0]):
        dx[t] = zero
    uC = u64(C)
    ncol = u64(kh * kw * C)
    KC = u64(kw * C)
    k0s, k1s = _column_taps_jit(Wo, sw, pw, dw, W, kw)
    for n in range(N):
        for ho in range(Ho):
            r0 = u64((n * Ho + ho) * Wo)
            for wo in range(Wo):
                w0 = wo * sw - pw
                k0, k1 = k0s[wo], k1s[wo]
                for i in range(kh):
                    h = ho * sh - ph + i * dh
                    if h < 0 or h >= H:
                        continue
                    xrow = u64((n * H + h) * W) * uC
                    d = (r0 + u64(wo)) * ncol + u64(i) * KC
                    if dw == 1:  # one run, as in im2col
                        a0 = u64(k0) * uC
                        s = xrow + u64(w0 + k0) * uC
                        d0 = d + a0
                        for t in range(u64(k1) * uC - a0):
                            dx[s + t] += cols[d0 + t]
                        continue
                    for k in range(kw):
                        w = w0 + k * dw
                        if w < 0 or w >= W:
                            continue
                        s = xrow + u64(w) * uC
                        dk = d + u64(k) * uC
                        for c in range(uC):
                            dx[s + c] += cols[dk + c]


def _taps(o, s, d, size, k):
    # [t0, t1): the kernel taps t with 0 <= o·s + t·d < size (o the output index, o·s
    # already shifted by the padding)
    t0 = 0
    while t0 < k and o + t0 * d < 0:
        t0 += 1
    t1 = k
    while t1 > t0 and o + (t1 - 1) * d >= size:
        t1 -= 1
    return t0, t1


def _column_taps(Wo, sw, pw, dw, W, kw):
    # per output column wo, the taps [k0, k1) of its window that fall inside the image
    # (computed once per call, not for every image, output row and kernel row)
    k0s, k1s = np.empty(Wo, dtype=np.int64), np.empty(Wo, dtype=np.int64)
    for wo in range(Wo):
        k0s[wo], k1s[wo] = _taps_jit(wo * sw - pw, 1, dw, W, kw)
    return k0s, k1s


def _max_pool_kernel(x, out, arg, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo):
    # out, arg: flat (N, Ho, Wo, C); arg = window position i·kw + k of the first maximum.
    # Two loop orders, chosen by measurement (2x either way): with C a multiple of 4
    # (or at most 4) the channels are innermost and the branch-free update vectorizes;
    # otherwise (LeNet's 6 channels) a scalar running maximum per channel is faster.
    uC = u64(C)
    vector = C % 4 == 0 or C <= 4
    k0s, k1s = _column_taps_jit(Wo, sw, pw, dw, W, kw)
    for n in range(N):
        for ho in range(Ho):
            h0 = ho * sh - ph
            i0, i1 = _taps_jit(h0, 1, dh, H, kh)
            for wo in range(Wo):
                w0 = wo * sw - pw
                k0, k1 = k0s[wo], k1s[wo]
                o = u64((n * Ho + ho) * Wo + wo) * uC
                first = u64((n * H + h0 + i0 * dh) * W + w0 + k0 * dw) * uC
                p0 = i0 * kw + k0
                if vector:
                    for c in range(uC):
                        out[o + c] = x[first + c]
                        arg[o + c] = p0
                    for i in range(i0, i1):
                        rb = u64((n * H + h0 + i * dh) * W + w0) * uC
                        for k in range(k0, k1):
                            s = rb + u64(k * dw) * uC
                            pos = i * kw + k
                            for c in range(uC):
                                v = x[s + c]
                                cur = out[o + c]
                                better = v > cur
                                out[o + c] = v if better else cur
                                arg[o + c] = pos if better else arg[o + c]
                    continue
                for c in range(uC):
                    m = x[first + c]
                    a = p0
                    for i in range(i0, i1):
                        rb = u64((n * H + h0 + i * dh) * W + w0) * uC + c
                        for k in range(k0, k1):
                            v = x[rb + u64(k * dw) * uC]
                            if v > m:
                                m = v
                                a = i * kw + k
                    out[o + c] = m
                    arg[o + c] = a


def _max_pool_backward_kernel(g, arg, dx, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo):
    zero = dx.dtype.type(0)
    for t in range(dx.shape[0]):
        dx[t] = zero
    # offset of each window position from the window's first entry, in flat dx: no
    # division by kw in the loop (the divisions took most of its time)
    offset = np.empty(kh * kw, dtype=np.int64)
    for i in range(kh):
        for k in range(kw):
            offset[i * kw + k] = ((i * dh) * W + k * dw) * C
    uC = u64(C)
    for n in range(N):
        for ho in range(Ho):
            for wo in range(Wo):
                o = u64((n * Ho + ho) * Wo + wo) * uC
                first = ((n * H + ho * sh - ph) * W + wo * sw - pw) * C
                for c in range(uC):
                    dx[u64(first + offset[arg[o + c]]) + c] += g[o + c]


def _avg_pool_kernel(x, out, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo, include_pad):
    uC = u64(C)
    k0s, k1s = _column_taps_jit(Wo, sw, pw, dw, W, kw)
    for n in range(N):
        for ho in range(Ho):
            h0 = ho * sh - ph
            i0, i1 = _taps_jit(h0, 1, dh, H, kh)
            for wo in range(Wo):
                w0 = wo * sw - pw
                k0, k1 = k0s[wo], k1s[wo]
                count = kh * kw if include_pad else (i1 - i0) * (k1 - k0)
                scale = out.dtype.type(1.0 / count)
                o = u64((n * Ho + ho) * Wo + wo) * uC
                for c in range(uC):
                    acc = out.dtype.type(0)
                    for i in range(i0, i1):
                        rb = u64((n * H + h0 + i * dh) * W + w0) * uC + c
                        for k in range(k0, k1):
                            acc += x[rb + u64(k * dw) * uC]
                    out[o + c] = acc * scale


def _avg_pool_backward_kernel(g, dx, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo, include_pad):
    zero = dx.dtype.type(0)
    for t in range(dx.shape[0]):
        dx[t] = zero
    uC = u64(C)
    for n in range(N):
        for ho in range(Ho):
            for wo in range(Wo):
                o = u64((n * Ho + ho) * Wo + wo) * uC
                count = 0
                if include_pad:
                    count = kh * kw
                else:
                    for i in range(kh):
                        h = ho * sh - ph + i * dh
                        for k in range(kw):
                            w = wo * sw - pw + k * dw
                            if h >= 0 and h < H and w >= 0 and w < W:
                                count += 1
                scale = dx.dtype.type(1.0 / count)
                for i in range(kh):
                    h = ho * sh - ph + i * dh
                    if h < 0 or h >= H:
                        continue
                    for k in range(kw):
                        w = wo * sw - pw + k * dw
                        if w < 0 or w >= W:
                            continue
                        s = u64((n * H + h) * W + w) * uC
                        for c in range(uC):
                            dx[s + c] += g[o + c] * scale


_compiled = None
#: Set by :func:`_numba` when numba is imported: the kernels above read them as globals
#: (compile-time constants), so the kernels are plain module-level functions and
#: numba's on-disk cache finds them again in the next process.
u64 = _taps_jit = _column_taps_jit = None
KERNELS = ("im2col", "col2im", "max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward")


def _numba():
    """The compiled kernels (numba compiles each on first call and caches it on disk)."""
    global _compiled, u64, _taps_jit, _column_taps_jit
    if _compiled is None:
        import numba

        njit = numba.njit(cache=True, nogil=True, fastmath=False)
        u64 = numba.uint64
        _taps_jit = njit(_taps)
        _column_taps_jit = njit(_column_taps)
        _compiled = {name: njit(globals()[f"_{name}_kernel"]) for name in KERNELS}
    return _compiled


def _flat(a):
    return a.reshape(-1)


def _geom(win: Window):
    return (win.kh, win.kw, win.sh, win.sw, win.ph, win.pw, win.dh, win.dw, win.H, win.W, win.Ho, win.Wo)


# =============================================================================== NumPy
def _padded(x, win: Window, value):
    """x (N, H, W, C) padded so that every window position of ``win`` is inside."""
    xp = backend.xp
    need_h = (win.Ho - 1) * win.sh + (win.kh - 1) * win.dh + 1
    need_w = (win.Wo - 1) * win.sw + (win.kw - 1) * win.dw + 1
    bottom = max(need_h - win.H - win.ph, 0)
    right = max(need_w - win.W - win.pw, 0)
    if win.ph == win.pw == bottom == right == 0:
        return x
    return xp.pad(x, ((0, 0), (win.ph, bottom), (win.pw, right), (0, 0)), constant_values=value)


def _windows(xpad, win: Window):
    """View (N, Ho, Wo, kh, kw, C) of the windows of a padded (N, Hp, Wp, C) array."""
    xp = backend.xp
    n, hp, wp, c = xpad.shape
    s = xpad.strides
    shape = (n, win.Ho, win.Wo, win.kh, win.kw, c)
    strides = (s[0], s[1] * win.sh, s[2] * win.sw, s[1] * win.dh, s[2] * win.dw, s[3])
    if xp is np:
        return np.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides)  # CuPy: no writeable


def _scatter_windows(parts, dx, win: Window):
    """dx (N, H, W, C) ← sum over taps (i, k) of ``parts(i, k)`` (N, Ho, Wo, C) placed at
    the input positions the tap reads; positions in the padding are dropped."""
    xp = backend.xp
    n, H, W, c = dx.shape
    hp = max((win.Ho - 1) * win.sh + (win.kh - 1) * win.dh + 1, H + win.ph)
    wp = max((win.Wo - 1) * win.sw + (win.kw - 1) * win.dw + 1, W + win.pw)
    acc = xp.zeros((n, hp, wp, c), dtype=dx.dtype)
    for i in range(win.kh):
        for k in range(win.kw):
            h0, w0 = i * win.dh, k * win.dw
            acc[:, h0:h0 + (win.Ho - 1) * win.sh + 1:win.sh,
                w0:w0 + (win.Wo - 1) * win.sw + 1:win.sw, :] += parts(i, k)
    dx[...] = acc[:, win.ph:win.ph + H, win.pw:win.pw + W, :]


# =============================================================================== API
def im2col(x, cols, win: Window) -> None:
    """cols[(n, ho, wo), (i, k, c)] = x[n, ho·sh − ph + i·dh, wo·sw − pw + k·dw, c] (0 outside).

    ``x`` (N, H, W, C) and ``cols`` (N·Ho·Wo, L), both C-contiguous, L ≥ kh·kw·C: the
    first kh·kw·C columns are written, any further ones (a column of ones that carries
    the bias through the matrix product) are left as they are.
    """
    n, _, _, c = x.shape
    if _use_numba(x, cols):
        _numba()["im2col"](_flat(x), _flat(cols), cols.shape[1], n, c, *_geom(win))
        return
    _write_windows(x, cols, win)


class Tiles(NamedTuple):
    """Output columns in tiles of ``tile`` (``nt`` tiles per row, the last one may reach
    past W_out); a tile reads ``span`` = (tile − 1)·s_w + (k_w − 1)·d_w + 1 input columns.

    ``window`` is the tiles' own sliding window: kh × span, stride (s_h, tile·s_w),
    dilation (d_h, 1), output grid H_out × nt. :func:`im2col` over it fills the rows
    (n, ho, t) of the row-tile product with columns (i, j, c), x[n, ho·sh − ph + i·dh,
    t·tile·sw − pw + j, c] — one run of span·C values per kernel row — and :func:`col2im`
    over it is the adjoint."""

    tile: int
    nt: int
    span: int
    window: Window


def tiles_for(win: Window, tile: int) -> Tiles:
    nt = -(-win.Wo // tile)
    span = (tile - 1) * win.sw + (win.kw - 1) * win.dw + 1
    return Tiles(tile, nt, span, Window(win.kh, span, win.sh, tile * win.sw, win.ph, win.pw, win.dh, 1,
                                        win.H, win.W, win.Ho, nt))


def _write_windows(x, cols, win: Window) -> None:
    """NumPy im2col into a (N·Ho·Wo, ≥ kh·kw·C) view of any strides."""
    n, _, _, c = x.shape
    v = _windows(_padded(x, win, 0), win)
    s0, s1 = cols.strides
    target = backend.xp.lib.stride_tricks.as_strided(
        cols, shape=v.shape, strides=(win.Ho * win.Wo * s0, win.Wo * s0, s0, win.kw * c * s1, c * s1, s1))
    target[...] = v


def col2im(cols, dx, win: Window) -> None:
    """The adjoint of :func:`im2col`: dx (N, H, W, C) ← Σ of the columns that read each entry."""
    n, _, _, c = dx.shape
    if _use_numba(cols, dx):
        _numba()["col2im"](_flat(cols), _flat(dx), n, c, *_geom(win))
        return
    c6 = cols.reshape(n, win.Ho, win.Wo, win.kh, win.kw, c)
    _scatter_windows(lambda i, k: c6[:, :, :, i, k, :], dx, win)


def max_pool(x, out, arg, win: Window) -> None:
    """out = max over each window (padding counts as −∞); arg = window position i·kw + k of
    the first maximum in scan order (ties go to the first, as PyTorch's CPU kernel)."""
    n, _, _, c = x.shape
    if _use_numba(x, out, arg):
        _numba()["max_pool"](_flat(x), _flat(out), _flat(arg), n, c, *_geom(win))
        return
    xp = backend.xp
    v = _windows(_padded(x, win, -xp.inf), win)
    v = v.transpose(0, 1, 2, 5, 3, 4).reshape(n, win.Ho, win.Wo, c, win.kh * win.kw)
    a = v.argmax(axis=-1)
    arg[...] = a
    out[...] = xp.take_along_axis(v, a[..., None], axis=-1)[..., 0]


def max_pool_backward(g, arg, dx, win: Window) -> None:
    """dx ← the gradient g routed to the position of each window's maximum (summed)."""
    n, _, _, c = dx.shape
    if _use_numba(g, arg, dx):
        _numba()["max_pool_backward"](_flat(g), _flat(arg), _flat(dx), n, c, *_geom(win))
        return
    _scatter_windows(lambda i, k: g * (arg == i * win.kw + k), dx, win)


def avg_pool(x, out, win: Window, count_include_pad: bool = True) -> None:
    """out = window sum / (kh·kw, or the number of in-image entries when not ``count_include_pad``)."""
    n, _, _, c = x.shape
    if _use_numba(x, out):
        _numba()["avg_pool"](_flat(x), _flat(out), n, c, *_geom(win), bool(count_include_pad))
        return
    v = _windows(_padded(x, win, 0), win)
    out[...] = v.sum(axis=(3, 4))
    out *= 1.0 / _avg_divisor(win, count_include_pad, x.dtype)


def avg_pool_backward(g, dx, win: Window, count_include_pad: bool = True) -> None:
    """dx ← each window's g / divisor spread over the window's in-image entries."""
    n, _, _, c = dx.shape
    if _use_numba(g, dx):
        _numba()["avg_pool_backward"](_flat(g), _flat(dx), n, c, *_geom(win), bool(count_include_pad))
        return
    gs = g / _avg_divisor(win, count_include_pad, g.dtype)
    _scatter_windows(lambda i, k: gs, dx, win)


def _avg_divisor(win: Window, count_include_pad: bool, dtype):
    """kh·kw, or the (Ho, Wo, 1) count of in-image entries of each window."""
    xp = backend.xp
    if count_include_pad:
        return float(win.kh * win.kw)
    ones = xp.ones((1, win.H, win.W, 1), dtype=dtype)
    return _windows(_padded(ones, win, 0), win).sum(axis=(3, 4))[0]
