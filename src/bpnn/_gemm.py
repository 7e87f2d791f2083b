"""Matrix products with few output columns, and the direct convolution, for Conv2D.

``matmul(a, b, out)`` computes ``out = a @ b`` (``accumulate=True``: ``out += a @ b``).
The products of a convolution are tall and narrow: X_col W_mat (N·H_out·W_out × C·kh·kw
times C·kh·kw × O), X_colᵀ G and G W_matᵀ, with O or C·kh·kw in the tens or low
hundreds. OpenBLAS runs them well below the machine's peak. On CPUs with AVX-512,
with numba installed and the compiled kernels enabled (:func:`bpnn._kernels.enabled`),
they run in register-tile kernels (:mod:`bpnn._gemm_numba`) over every full vector of
columns (16 float32 or 8 float64); the last columns, if the width is not a multiple
of that, and every other case go to ``numpy.matmul``.

Measured on the development machine (2 cores, AVX-512; OpenBLAS there runs its Haswell
kernels, ``OPENBLAS_CORETYPE=Haswell``), float32, one thread each, blocks of 1,568 rows
of a 16-channel 3×3 convolution: X_col W_mat 214 vs 97 GFLOP/s, X_colᵀ G 174 vs 75,
G W_matᵀ 225 vs 88 (OpenBLAS's AVX-512 kernels, forced for the comparison: 151, 122
and 171).

``conv`` and ``conv_weight_grad`` run a convolution and its weight gradient with the
same tiles straight from the padded channels-last input, without X_col: a tile of
consecutive outputs of one output row accumulates, kernel position by kernel position,
the input channels under it; long calls split the batch between threads
(:mod:`bpnn._threads`).
Measured for a 16-channel 3×3 convolution on 64 images of 28×28 (float32, one thread):
forward 1.14 ms at 203 GFLOP/s against 2.30 ms for im2col and the tile product.
"""
from __future__ import annotations

import functools

import numpy as np

from . import _kernels, _threads, backend


@functools.lru_cache(maxsize=1)
def _avx512() -> bool:
    try:
        import llvmlite.binding as llvm

        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except Exception:  # llvmlite missing or unable to read the CPU: keep BLAS
        return False


_compiled = None


def _numba():
    global _compiled
    if _compiled is None:
        from . import _gemm_numba

        _compiled = _gemm_numba
    return _compiled


def enabled() -> bool:
    """Whether :func:`matmul` uses the compiled tile kernels on this machine."""
    return _kernels.enabled() and _avx512()


def _element_strides(a):
    size = a.itemsize
    if any(s < 0 or s % size for s in a.strides):
        return None
    return a.strides[0] // size, a.strides[1] // size


def _tile_strides(a, b, out):
    """a's element strides (rows, columns) when the tile kernels can run this product,
    else None."""
    if not (type(a) is np.ndarray and type(b) is np.ndarray and type(out) is np.ndarray):
        return None
    dtype = out.dtype
    if dtype not in (np.float32, np.float64) or a.dtype != dtype or b.dtype != dtype:
        return None
    if a.ndim != 2 or b.ndim != 2 or out.ndim != 2 or 0 in a.shape or 0 in b.shape:
        return None
    if not (b.strides[1] == b.itemsize and out.strides[1] == out.itemsize and b.strides[0] >= 0
            and out.strides[0] >= 0 and b.strides[0] % b.itemsize == 0 and out.strides[0] % out.itemsize == 0
            and out.shape[1] >= 64 // out.itemsize and enabled()):
        return None
    return _element_strides(a)


def matmul(a, b, out, accumulate: bool = False):
    """``out = a @ b``, or ``out += a @ b`` with ``accumulate``; returns ``out``.

    ``a`` (m, k) may be any strided 2-d view (a transposed X_col included); ``b`` (k, n)
    and ``out`` (m, n) need unit column strides for the tile kernels (else NumPy)."""
    strides = _tile_strides(a, b, out)
    if strides is None:
        if accumulate:
            out += a @ b
        else:
            backend.xp.matmul(a, b, out=out)
        return out
    lanes = 64 // out.itemsize
    nvec = out.shape[1] // lanes
    a_rs, a_cs = strides
    _numba().gemm(a, a_rs, a_cs, b, out, a.shape[0], a.shape[1], nvec, lanes, accumulate)
    full = nvec * lanes
    if full < out.shape[1]:
        rest = a @ b[:, full:]
        if accumulate:
            out[:, full:] += rest
        else:
            out[:, full:] = rest
    return out


def conv_applies(dtype, out_channels: int) -> bool:
    """Whether :func:`conv` runs for outputs of this dtype and channel count (a multiple
    of the vector width) on this machine."""
    dtype = np.dtype(dtype)
    return (dtype in (np.float32, np.float64) and out_channels % (64 // dtype.itemsize) == 0
            and backend.xp is np and enabled())


def conv(x, taps, w, y, sh: int, sw: int) -> None:
    """y (N, H_out, W_out, O) = the convolution of the channels-last (padded) input x
    (N, Hp, Wp, C), read in place: y[n, i, j] = Σ_t Σ_c x[n, i·sh, j·sw][taps[t] + c] ·
    w[t·C + c] with ``taps`` the element offsets of the kernel positions from the window's
    corner and w (len(taps)·C, O). Needs :func:`conv_applies` for (y.dtype, O); all
    arrays C-contiguous (samples of a larger array included)."""
    _check_contiguous(x=x, taps=taps, w=w, y=y)
    _numba().conv_rows(x, taps, w, y, sh, sw)


def conv_weight_grad(x, taps, g, dw, sh: int, sw: int) -> None:
    """dw (len(taps)·C, O) += the gradient of :func:`conv`'s w for output gradient g."""
    _check_contiguous(x=x, taps=taps, g=g, dw=dw)
    _numba().conv_weight_grad(x, taps, g, dw, sh, sw)


def conv_weight_grad_flat(x, taps, g, g_off: int, count: int, dw) -> None:
    """dw (len(taps)·C, O) += Σ_n Σ_{p < count} x[n].flat[p·C + taps[t] + c] ⊗
    g[n].flat[g_off + p·O:][:O]: the weight gradient of a stride-1 :func:`conv` whose
    output gradient is laid out on the input's grid (same row width, zeros between the
    output rows), e.g. the padded G of the input gradient under "same" padding."""
    _check_contiguous(x=x, taps=taps, g=g, dw=dw)
    _numba().conv_weight_grad_flat(x, taps, g, g_off, count, dw)


#: Multiply-adds from which a call of the kernels above over a batch is split between
#: threads (:func:`in_parts`). Handing a part to the other thread and getting it back
#: costs 70-90 µs on the development machine (a ReLU over 10⁶ floats took 98 µs in one
#: thread and 115 µs split in two), about 15·10⁶ multiply-adds of these kernels.
#: Measured for a 16-channel 3×3 convolution over 64 images of 28×28 (58·10⁶): forward
#: 1.9 → 0.9 ms, weight gradient 2.2 → 1.1 ms with two threads.
_SPLIT_MULTIPLY_ADDS = 30_000_000


def in_parts(n: int, work, multiply_adds: int) -> list:
    """[work(start, stop)] over the samples [0, n): in parts for the threads of
    :mod:`bpnn._threads` when the work is long enough to gain from it
    (``_SPLIT_MULTIPLY_ADDS``), else one call. Each part is one call per thread, its
    padding copies included, so that a layer hands work over once per forward and
    once per backward."""
    if multiply_adds < _SPLIT_MULTIPLY_ADDS:
        return [work(0, n)]
    return _threads.in_parts(n, work)


def _check_contiguous(**arrays) -> None:
    for name, a in arrays.items():
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: got an array of strides {a.strides}; expected a C-contiguous array")
