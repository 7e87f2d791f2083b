"""Matrix products with few output columns, and the direct convolution, on register tiles.

``matmul(a, b, out)`` computes ``out = a @ b`` (``accumulate=True``: ``out += a @ b``).
The products of a convolution are tall and narrow: X_col W_mat (N·H_out·W_out × C·kh·kw
times C·kh·kw × O), X_colᵀ G and G W_matᵀ, with O or C·kh·kw in the tens or low
hundreds, where OpenBLAS runs well below the machine's peak. On CPUs with AVX-512, with
numba installed and the compiled kernels enabled (:func:`bpnn._kernels.enabled`), they
run in register-tile kernels (:mod:`bpnn._kernels.gemm_tiles`) over every full vector of
columns (16 float32 or 8 float64); the last columns, if the width is not a multiple
of that, and every other case go to ``numpy.matmul``.

``conv`` and ``conv_weight_grad`` run a convolution and its weight gradient with the
same tiles straight from the padded channels-last input, without X_col: a tile of
consecutive outputs of one output row accumulates, kernel position by kernel position,
the input channels under it. Long calls split the batch between threads
(:func:`bpnn._kernels.parallel.split_samples`). Measurements: ``benchmarks/README.md``.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from . import enabled as kernels_enabled
from . import use_compiled


@functools.lru_cache(maxsize=1)
def cpu_has_avx512() -> bool:
    """Whether this CPU has AVX-512 (the tile kernels need its 32 vector registers)."""
    try:
        import llvmlite.binding as llvm

        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except Exception:  # llvmlite missing or unable to read the CPU: keep BLAS
        return False


def tiles():
    """The compiled tile loops, :mod:`bpnn._kernels.gemm_tiles`, imported on first use
    (written with numba's intrinsics, that module needs numba to be defined at all)."""
    from . import gemm_tiles

    return gemm_tiles


def enabled() -> bool:
    """Whether :func:`matmul` uses the compiled tile kernels on this machine."""
    return kernels_enabled() and cpu_has_avx512()


def _element_strides(a):
    size = a.itemsize
    if any(s < 0 or s % size for s in a.strides):
        return None
    return a.strides[0] // size, a.strides[1] // size


def _tile_strides(a, b, out):
    """a's element strides (rows, columns) when the tile kernels can run this product,
    else None."""
    if not use_compiled(a, b, out):
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
    tiles().gemm(a, a_rs, a_cs, b, out, a.shape[0], a.shape[1], nvec, lanes, accumulate)
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
    tiles().conv_rows(x, taps, w, y, sh, sw)


def conv_weight_grad(x, taps, g, dw, sh: int, sw: int) -> None:
    """dw (len(taps)·C, O) += the gradient of :func:`conv`'s w for output gradient g."""
    _check_contiguous(x=x, taps=taps, g=g, dw=dw)
    tiles().conv_weight_grad(x, taps, g, dw, sh, sw)


def conv_weight_grad_flat(x, taps, g, g_off: int, count: int, dw) -> None:
    """dw (len(taps)·C, O) += Σ_n Σ_{p < count} x[n].flat[p·C + taps[t] + c] ⊗
    g[n].flat[g_off + p·O:][:O]: the weight gradient of a stride-1 :func:`conv` whose
    output gradient is laid out on the input's grid (same row width, zeros between the
    output rows), e.g. the padded G of the input gradient under "same" padding."""
    _check_contiguous(x=x, taps=taps, g=g, dw=dw)
    tiles().conv_weight_grad_flat(x, taps, g, g_off, count, dw)


def _check_contiguous(**arrays) -> None:
    for name, a in arrays.items():
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: got an array of strides {a.strides}; expected a C-contiguous array")
