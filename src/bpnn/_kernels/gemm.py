"""Matrix products with few output columns, and the direct convolution, on register tiles.

``matmul(a, b, out)`` computes ``out = a @ b`` (``accumulate=True``: ``out += a @ b``).
The products of a convolution are tall and narrow: X_col W_mat (N·H_out·W_out × C·kh·kw
times C·kh·kw × O), X_colᵀ G and G W_matᵀ, with O or C·kh·kw in the tens or low
hundreds, where OpenBLAS runs well below the machine's peak. With numba installed and
the compiled kernels enabled (:func:`bpnn._kernels.enabled`), they run in register-tile
kernels (:mod:`bpnn._kernels.gemm_tiles`) of the vector width numba compiles for
(:func:`vector_bits`: 512 bits with AVX-512, 256 with AVX2 and FMA, 128 elsewhere), over
every full vector of columns (16 float32 or 8 float64 at 512 bits, half that at 256); the
last columns, if the width is not a multiple of that, and every other case go to
``numpy.matmul``.

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


#: Per vector width (bits): whether :func:`matmul` runs its products on the tiles (else
#: BLAS). The direct convolution (:func:`conv`) runs on the tiles of every width. With
#: 256 bits (AVX2 emulated on an AVX-512 CPU, OpenBLAS's Haswell kernels) the tiles ran
#: the row-tile products about as fast as OpenBLAS forward and slower backward (the
#: transposed operands); 128 bits is not measured and follows 256.
#: Measurements: benchmarks/README.md.
PRODUCT_TILES = {512: True, 256: False, 128: False}

#: Per vector width (bits): the most vectors of output channels for which the direct
#: convolution runs (0: no limit). With 256 bits a tile holds at most 2 vectors (16
#: float32) of columns, so for more output channels every tile reads W again for a third
#: of the multiply-adds per byte of a 512-bit tile; past 2 vectors im2col with BLAS wins
#: (measured per width with bench_conv_paths.py: benchmarks/README.md).
DIRECT_MAX_VECTORS = {512: 0, 256: 2, 128: 0}

#: The ISA names of the tile widths (bits), for messages and benchmark headers.
ISA = {512: "AVX-512", 256: "AVX2+FMA", 128: "128-bit (portable)"}

# One function whose machine code tells how wide numba's target vectors are: a fused
# multiply-add of 16 float32.
_PROBE = """
define void @bpnn_probe(<16 x float>* %p) {
  %a = load <16 x float>, <16 x float>* %p
  %r = call <16 x float> @llvm.fma.v16f32(<16 x float> %a, <16 x float> %a, <16 x float> %a)
  store <16 x float> %r, <16 x float>* %p
  ret void
}
declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)
"""


def _vector_bits_of(asm: str) -> int:
    """The width :data:`_PROBE` was compiled to, from its assembly: 512 with AVX-512's zmm
    registers, 256 with AVX2's ymm registers and a fused multiply-add, else 128."""
    body = asm.lower()
    if "zmm" in body:
        return 512
    if "ymm" in body and "vfmadd" in body:
        return 256
    return 128


@functools.lru_cache(maxsize=1)
def target_vector_bits() -> int:
    """The vector width (bits) of the machine code numba generates in this process: 512
    (AVX-512), 256 (AVX2 with FMA) or 128 (anything else: NEON, SSE).

    Read from numba's own target machine, which compiles :data:`_PROBE`, not from the
    CPU's flags: numba's target follows ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES``, so
    ``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=`` on an AVX-512 CPU gives 256, as on a
    Haswell (``NUMBA_CPU_NAME`` alone keeps the host's features, AVX-512 included).
    Needs numba; 0 when its target cannot be read."""
    try:
        import llvmlite.binding as llvm
        from numba.core.registry import cpu_target

        machine = cpu_target.target_context.codegen()._tm
        return _vector_bits_of(machine.emit_assembly(llvm.parse_assembly(_PROBE)))
    except Exception:  # numba missing, or a numba without this internal: keep BLAS
        return 0


def vector_bits() -> int:
    """The width of the tile kernels this process runs (:func:`target_vector_bits`; the
    tests' ``kernels`` fixture sets each width in turn)."""
    return target_vector_bits()


def lanes(itemsize: int) -> int:
    """Elements of ``itemsize`` bytes in one vector of the tile kernels (:func:`vector_bits`)."""
    return vector_bits() // 8 // itemsize


def tiles():
    """The compiled tile loops, :mod:`bpnn._kernels.gemm_tiles`, imported on first use
    (written with numba's intrinsics, that module needs numba to be defined at all)."""
    from . import gemm_tiles

    return gemm_tiles


def enabled() -> bool:
    """Whether :func:`matmul` uses the compiled tile kernels in this process (numba
    enabled and its target's vector width known)."""
    return kernels_enabled() and vector_bits() > 0


def path() -> str:
    """Which kernels the direct convolution and the products run here, in words (for
    benchmark headers): e.g. ``"tiles 256-bit (AVX2+FMA), products BLAS"``, or
    ``"BLAS (NumPy)"``."""
    if not enabled():
        return "BLAS (NumPy)"
    bits = vector_bits()
    return f"tiles {bits}-bit ({ISA.get(bits, '?')}), products {'tiles' if PRODUCT_TILES.get(bits) else 'BLAS'}"


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
            and enabled() and PRODUCT_TILES.get(vector_bits(), False) and out.shape[1] >= lanes(out.itemsize)):
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
    bits = vector_bits()
    width = bits // 8 // out.itemsize
    nvec = out.shape[1] // width
    a_rs, a_cs = strides
    tiles().kernels(bits).gemm(a, a_rs, a_cs, b, out, a.shape[0], a.shape[1], nvec, width, accumulate)
    full = nvec * width
    if full < out.shape[1]:
        rest = a @ b[:, full:]
        if accumulate:
            out[:, full:] += rest
        else:
            out[:, full:] = rest
    return out


def conv_applies(dtype, out_channels: int) -> bool:
    """Whether :func:`conv` runs for outputs of this dtype and channel count: a multiple
    of the vector width, and at most ``DIRECT_MAX_VECTORS`` vectors at this width."""
    dtype = np.dtype(dtype)
    if not (dtype in (np.float32, np.float64) and backend.xp is np and enabled()):
        return False
    width, most = lanes(dtype.itemsize), DIRECT_MAX_VECTORS.get(vector_bits(), 0)
    return out_channels % width == 0 and (not most or out_channels <= most * width)


def conv(x, taps, w, y, sh: int, sw: int) -> None:
    """y (N, H_out, W_out, O) = the convolution of the channels-last (padded) input x
    (N, Hp, Wp, C), read in place: y[n, i, j] = Σ_t Σ_c x[n, i·sh, j·sw][taps[t] + c] ·
    w[t·C + c] with ``taps`` the element offsets of the kernel positions from the window's
    corner and w (len(taps)·C, O). Needs :func:`conv_applies` for (y.dtype, O); all
    arrays C-contiguous (samples of a larger array included)."""
    _check_contiguous(x=x, taps=taps, w=w, y=y)
    tiles().kernels(vector_bits()).conv_rows(x, taps, w, y, sh, sw)


def conv_weight_grad(x, taps, g, dw, sh: int, sw: int) -> None:
    """dw (len(taps)·C, O) += the gradient of :func:`conv`'s w for output gradient g."""
    _check_contiguous(x=x, taps=taps, g=g, dw=dw)
    tiles().kernels(vector_bits()).conv_weight_grad(x, taps, g, dw, sh, sw)


def conv_weight_grad_flat(x, taps, g, g_off: int, count: int, dw) -> None:
    """dw (len(taps)·C, O) += Σ_n Σ_{p < count} x[n].flat[p·C + taps[t] + c] ⊗
    g[n].flat[g_off + p·O:][:O]: the weight gradient of a stride-1 :func:`conv` whose
    output gradient is laid out on the input's grid (same row width, zeros between the
    output rows), e.g. the padded G of the input gradient under "same" padding."""
    _check_contiguous(x=x, taps=taps, g=g, dw=dw)
    tiles().kernels(vector_bits()).conv_weight_grad_flat(x, taps, g, g_off, count, dw)


def _check_contiguous(**arrays) -> None:
    for name, a in arrays.items():
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: got an array of strides {a.strides}; expected a C-contiguous array")
