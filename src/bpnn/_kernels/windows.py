"""Memory-bound kernels of convolution and pooling: im2col, col2im, max and average pooling.

Images are passed to these kernels channels-last, as C-contiguous (N, H, W, C) arrays
(the layers keep their data in that layout; see :class:`bpnn.nn.Conv2D`), with their
sliding window described by a :class:`bpnn._geometry.Window`. Padding is fused into
every kernel: out-of-image positions read as 0 (−∞ for max pooling) and are never
materialized.

Two implementations of each kernel compute the same numbers: compiled with numba, taken
when :func:`bpnn._kernels.use_compiled` says so, and NumPy fallbacks written with
``backend.xp`` (strided window views). im2col is a copy, for which NumPy's strided copy
is about as fast as a compiled one; the others gain much from compiling. For few input
channels :class:`bpnn.nn.Conv2D` runs im2col over row tiles (:class:`Tiles`): runs of a
whole tile of input columns instead of kw·C values. The compiled loops index flat
arrays with unsigned integers: with signed indices numba adds a negative-index
wrap-around test to every access, which keeps the loops from running at speed.

The kernels have no parallel loops (see :mod:`bpnn._kernels.parallel`); Conv2D calls
them from several threads, each over its own samples, when its products run in the
register-tile kernels of :mod:`bpnn._kernels.gemm`. Measurements: ``benchmarks/README.md``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import backend
from .._geometry import Window, extent
from . import use_compiled
from .compiler import kernel

#: Unsigned indices (see the module docstring); a cast in the compiled loops.
u64 = np.uint64


# =============================================================================== numba
# Plain Python functions over flat arrays, compiled on first use (``@kernel``).

@kernel(fastmath=False)
def _im2col(x, cols, ld, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo):
    # x: flat (N, H, W, C); cols: flat (N·Ho·Wo, ld), columns (i, k, c) of the first
    # kh·kw·C entries of each row written, the rest of the row (ld > kh·kw·C) untouched.
    uC = u64(C)
    ncol = u64(ld)
    KC = u64(kw * C)
    zero = cols.dtype.type(0)
    k0s, k1s = _column_taps(Wo, sw, pw, dw, W, kw)
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


@kernel(fastmath=False)
def _col2im(cols, dx, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo):
    # dx: flat (N, H, W, C), overwritten with the sum of the columns that read each entry.
    # The rows of cols are read in order (window, then kernel row): with few channels
    # the runs are short, and reading cols kernel row by kernel row was slower.
    zero = dx.dtype.type(0)
    for t in range(dx.shape[0]):
        dx[t] = zero
    uC = u64(C)
    ncol = u64(kh * kw * C)
    KC = u64(kw * C)
    k0s, k1s = _column_taps(Wo, sw, pw, dw, W, kw)
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


@kernel(fastmath=False)
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


@kernel(fastmath=False)
def _column_taps(Wo, sw, pw, dw, W, kw):
    # per output column wo, the taps [k0, k1) of its window that fall inside the image
    # (computed once per call, not for every image, output row and kernel row)
    k0s, k1s = np.empty(Wo, dtype=np.int64), np.empty(Wo, dtype=np.int64)
    for wo in range(Wo):
        k0s[wo], k1s[wo] = _taps(wo * sw - pw, 1, dw, W, kw)
    return k0s, k1s


@kernel(fastmath=False)
def _max_pool(x, out, arg, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo):
    # out, arg: flat (N, Ho, Wo, C); arg = window position i·kw + k of the first maximum.
    # Two loop orders, each the faster one for its channel counts: with C a multiple of
    # 4 (or at most 4) the channels are innermost and the branch-free update vectorizes;
    # otherwise (LeNet's 6 channels) a scalar running maximum per channel is faster.
    uC = u64(C)
    vector = C % 4 == 0 or C <= 4
    k0s, k1s = _column_taps(Wo, sw, pw, dw, W, kw)
    for n in range(N):
        for ho in range(Ho):
            h0 = ho * sh - ph
            i0, i1 = _taps(h0, 1, dh, H, kh)
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


@kernel(fastmath=False)
def _max_pool_backward(g, arg, dx, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo):
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


@kernel(fastmath=False)
def _avg_pool(x, out, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo, include_pad):
    uC = u64(C)
    k0s, k1s = _column_taps(Wo, sw, pw, dw, W, kw)
    for n in range(N):
        for ho in range(Ho):
            h0 = ho * sh - ph
            i0, i1 = _taps(h0, 1, dh, H, kh)
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


@kernel(fastmath=False)
def _avg_pool_backward(g, dx, N, C, kh, kw, sh, sw, ph, pw, dh, dw, H, W, Ho, Wo, include_pad):
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


def _flat(a):
    return a.reshape(-1)


def _geom(win: Window):
    return (win.kh, win.kw, win.sh, win.sw, win.ph, win.pw, win.dh, win.dw, win.H, win.W, win.Ho, win.Wo)


# =============================================================================== NumPy
def _padded(x, win: Window, value):
    """x (N, H, W, C) padded so that every window position of ``win`` is inside."""
    xp = backend.xp
    bottom, right = win.padding_after
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
    hp, wp = win.padded_shape
    hp, wp = max(hp, H + win.ph), max(wp, W + win.pw)
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
    if use_compiled(x, cols):
        _im2col(_flat(x), _flat(cols), cols.shape[1], n, c, *_geom(win))
        return
    _write_windows(x, cols, win)


class Tiles(NamedTuple):
    """Output columns in tiles of ``tile`` (``nt`` tiles per row, the last one may reach
    past W_out); a tile reads ``span`` input columns (the extent of ``tile`` windows).

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
    """The row tiles of ``tile`` outputs over ``win``."""
    nt = -(-win.Wo // tile)
    span = extent(tile, win.sw, win.kw, win.dw)
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
    if use_compiled(cols, dx):
        _col2im(_flat(cols), _flat(dx), n, c, *_geom(win))
        return
    c6 = cols.reshape(n, win.Ho, win.Wo, win.kh, win.kw, c)
    _scatter_windows(lambda i, k: c6[:, :, :, i, k, :], dx, win)


def max_pool(x, out, arg, win: Window) -> None:
    """out = max over each window (padding counts as −∞); arg = window position i·kw + k of
    the first maximum in scan order (ties go to the first, as PyTorch's CPU kernel)."""
    n, _, _, c = x.shape
    if use_compiled(x, out, arg):
        _max_pool(_flat(x), _flat(out), _flat(arg), n, c, *_geom(win))
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
    if use_compiled(g, arg, dx):
        _max_pool_backward(_flat(g), _flat(arg), _flat(dx), n, c, *_geom(win))
        return
    _scatter_windows(lambda i, k: g * (arg == i * win.kw + k), dx, win)


def avg_pool(x, out, win: Window, count_include_pad: bool = True) -> None:
    """out = window sum / (kh·kw, or the number of in-image entries when not ``count_include_pad``)."""
    n, _, _, c = x.shape
    if use_compiled(x, out):
        _avg_pool(_flat(x), _flat(out), n, c, *_geom(win), bool(count_include_pad))
        return
    v = _windows(_padded(x, win, 0), win)
    out[...] = v.sum(axis=(3, 4))
    out *= 1.0 / _avg_divisor(win, count_include_pad, x.dtype)


def avg_pool_backward(g, dx, win: Window, count_include_pad: bool = True) -> None:
    """dx ← each window's g / divisor spread over the window's in-image entries."""
    n, _, _, c = dx.shape
    if use_compiled(g, dx):
        _avg_pool_backward(_flat(g), _flat(dx), n, c, *_geom(win), bool(count_include_pad))
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
