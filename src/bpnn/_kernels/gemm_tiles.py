"""The compiled part of :mod:`bpnn._kernels.gemm`: register-tile kernels written in LLVM
IR through numba intrinsics, and the loops that call them. Imported by
:func:`bpnn._kernels.gemm.tiles` on first use, only when numba is installed and the
compiled kernels are enabled.

A tile kernel ``_k{R}x{V}_{bits}`` computes an R × V·L block of C = A B with vectors of
``bits`` bits, L = bits / 8 / itemsize lanes (512 bits: 16 float32 or 8 float64), as R·V
vector accumulators kept in registers over the whole inner dimension:

    for k < K:  b_v = B[k, v·L : (v+1)·L]   (v < V)
                acc[r][v] += A[r, k] · b_v   (A[r, k] broadcast; one fused multiply-add)

then stores (or adds into) C. numba's own loops do not keep such a tile in registers
(they load and store C in every step), which is why the tile is written as IR.

One generator serves every vector width (:data:`WIDTHS`); what differs is how many
accumulators fit in the registers, i.e. the tile shapes (:data:`HEIGHTS`):

- 512 bits (AVX-512, 32 zmm registers): R·V up to 24 accumulators, plus the V rows of B;
- 256 bits (AVX2 with FMA, 16 ymm registers): R·V up to 10 (5 × 2 vectors), which with
  the rows of B and the broadcast leaves LLVM a few registers spare (see :data:`HEIGHTS`);
- 128 bits (numba's portable vectors: NEON's 32 registers on ARM, SSE elsewhere): the
  shapes of 512 bits, NEON having as many registers; the multiply-add is
  ``llvm.fmuladd``, fused where the target has FMA (NEON, …) and a multiply and an add
  where it has none (a plain ``llvm.fma`` would there become a call to ``fmaf``).

Every width compiles on any x86-64 (LLVM splits a vector wider than the target's
registers), so each is tested against NumPy on any CPU; which one runs is
:func:`bpnn._kernels.gemm.vector_bits`. Each width has its own compiled loops
(:func:`kernels`), made from the one set of loop functions below.
"""
from __future__ import annotations

import types as pytypes

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_INTP = types.intp
_I32 = ir.IntType(32)


def _tile(rows: int, nvec: int, bits: int):
    """The intrinsic computing one rows × nvec-vector tile of ``bits``-bit vectors (see the
    module docstring).

    Arguments: (A, a_off, a_rs, a_cs, taps, ntaps, B, b_off, ldb, C, c_off, ldc, K,
    accumulate); A, B and C are arrays whose data pointers address the elements, ``taps``
    an integer array; offsets and strides are in elements. The inner dimension runs over
    ntaps × K: A[r, (t, k)] = a[a_off + taps[t] + r·a_rs + k·a_cs], B[(t, k), j] =
    b[b_off + (t·K + k)·ldb + j], C[r, j] = c[c_off + r·ldc + j]. A plain product is one
    tap at offset 0; a convolution reads its input in place, one tap per kernel position
    (``conv_rows``)."""

    @intrinsic
    def tile(typingctx, a, a_off, a_rs, a_cs, taps, ntaps, b, b_off, ldb, c, c_off, ldc, klen, accumulate):
        sig = types.void(a, _INTP, _INTP, _INTP, taps, _INTP, b, _INTP, _INTP, c, _INTP, _INTP, _INTP,
                         types.boolean)

        def codegen(context, builder, sg, args):
            (a_arr, a_off, a_rs, a_cs, taps_arr, ntaps, b_arr, b_off, ldb, c_arr, c_off, ldc, klen,
             accumulate) = args
            dtype = sg.args[0].dtype
            ft = context.get_value_type(dtype)
            lanes = bits // dtype.bitwidth
            vt = ir.VectorType(ft, lanes)
            intp = context.get_value_type(_INTP)
            align = dtype.bitwidth // 8
            ap = context.make_array(sg.args[0])(context, builder, a_arr).data
            tp = context.make_array(sg.args[4])(context, builder, taps_arr).data
            bp = context.make_array(sg.args[6])(context, builder, b_arr).data
            cp = context.make_array(sg.args[9])(context, builder, c_arr).data
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                                 f"llvm.{'fma' if bits > 128 else 'fmuladd'}.v{lanes}f{dtype.bitwidth}")

            def const(i):
                return ir.Constant(intp, i)

            def vector_at(p, idx):
                return builder.bitcast(builder.gep(p, [idx], source_etype=ft), vt.as_pointer())

            def c_at(r, v):
                return vector_at(cp, builder.add(c_off, builder.add(builder.mul(const(r), ldc), const(v * lanes))))

            # accumulators live in allocas that LLVM promotes to registers
            acc = [[cgutils.alloca_once(builder, vt) for _ in range(nvec)] for _ in range(rows)]
            with builder.if_else(accumulate) as (add, store):
                with add:
                    for r in range(rows):
                        for v in range(nvec):
                            builder.store(builder.load(c_at(r, v), align=align), acc[r][v])
                with store:
                    for r in range(rows):
                        for v in range(nvec):
                            builder.store(ir.Constant(vt, None), acc[r][v])
            undef = ir.Constant(vt, ir.Undefined)
            splat = ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes)
            with cgutils.for_range(builder, ntaps) as taps_loop:
                t = taps_loop.index
                tap = builder.sext(builder.load(builder.gep(tp, [t])), intp)
                a_tap = builder.add(a_off, tap)
                b_tap = builder.add(b_off, builder.mul(builder.mul(t, klen), ldb))
                with cgutils.for_range(builder, klen) as loop:
                    k = loop.index
                    b_row = builder.add(b_tap, builder.mul(k, ldb))
                    bv = [builder.load(vector_at(bp, builder.add(b_row, const(v * lanes))), align=align)
                          for v in range(nvec)]
                    a_col = builder.add(a_tap, builder.mul(k, a_cs))
                    for r in range(rows):
                        s = builder.load(builder.gep(ap, [builder.add(a_col, builder.mul(const(r), a_rs))],
                                                     source_etype=ft))
                        sv = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(_I32, 0)),
                                                    undef, splat)
                        for v in range(nvec):
                            builder.store(builder.call(fma, [sv, bv[v], builder.load(acc[r][v])]), acc[r][v])
            for r in range(rows):
                for v in range(nvec):
                    builder.store(builder.load(acc[r][v]), c_at(r, v), align=align)
            return context.get_dummy_value()

        return sig, codegen

    return tile


#: The vector widths (bits) with tile kernels, widest first.
WIDTHS = (512, 256, 128)

# The tile shapes. 512 bits: 24 accumulators per tile; 24 rows for one vector of
# columns, 6-8 rows for three (the fastest heights at the shapes of 3×3 convolutions with
# 16 channels, see benchmarks/README.md); the other heights fit rows of a convolution's
# output (W_out = 28: 2 × 14; 14: 2 × 7 for 2 vectors) and the remainders. 256 bits: at
# most 10 accumulators (8 × 1 vector, 5 × 2): with 12 (6 × 2, the Haswell sgemm shape)
# LLVM kept one accumulator on the stack and shuffled the others between registers in
# every step, and the products ran at a third of the speed. 128 bits: as 512.
_WIDE = np.array([(28, 24, 16, 14, 12, 8, 4, 1), (14, 12, 8, 7, 6, 4, 1, 0), (8, 7, 6, 4, 1, 0, 0, 0)],
                 dtype=np.int64)
_AVX2 = np.array([(8, 4, 1, 0, 0, 0, 0, 0), (5, 4, 1, 0, 0, 0, 0, 0), (2, 1, 0, 0, 0, 0, 0, 0)], dtype=np.int64)
#: Per width: the tile heights for 1, 2 and 3 vectors of columns (rows), tallest first, 0 = none.
HEIGHTS = {512: _WIDE, 256: _AVX2, 128: _WIDE}
#: Per width: the most vectors of columns in one tile of a plain product (:func:`kernels`'s ``gemm``).
GEMM_VECTORS = {512: 3, 256: 2, 128: 3}
ONE_TAP = np.zeros(1, dtype=np.int64)
_ARGS = "a, a_off, a_rs, a_cs, taps, ntaps, b, b_off, ldb, c, c_off, ldc, k, accumulate"


def _dispatch_source(bits: int) -> str:
    """The source of ``_run_{bits}``: one tile of ``rows`` × ``nvec`` vectors (a height of
    ``HEIGHTS[bits]``), as a chain of ifs over the tile shapes, each shape its own
    intrinsic ``_k{rows}x{nvec}_{bits}``. Written out from ``HEIGHTS`` so that the table is
    the one list of shapes; a chain because one intrinsic holding every shape behind an
    LLVM switch ran the tiles of ``conv_rows`` slower, though it let ``gemm`` be cached."""
    table = HEIGHTS[bits]
    lines = [f"def _run_{bits}(rows, nvec, {_ARGS}):"]
    for v, row in enumerate(table, start=1):
        lines.append(f"    {'if' if v == 1 else 'elif'} nvec == {v}:" if v < len(table) else "    else:")
        heights = [int(h) for h in row if h]
        for j, h in enumerate(heights):
            test = "else:" if j == len(heights) - 1 else f"{'if' if j == 0 else 'elif'} rows == {h}:"
            lines += [f"        {test}", f"            _k{h}x{v}_{bits}({_ARGS})"]
    return "\n".join(lines) + "\n"


for _bits in WIDTHS:
    globals().update({f"_k{h}x{v}_{_bits}": _tile(int(h), v, _bits)
                      for v, row in enumerate(HEIGHTS[_bits], start=1) for h in row if h})
    # compiled from this file's name, so that numba's disk cache finds a source file for it
    exec(compile(_dispatch_source(_bits), __file__, "exec"))  # defines _run_{bits} (plain Python) here
    globals()[f"_run_{_bits}"] = numba.njit(cache=True, nogil=True)(globals()[f"_run_{_bits}"])


# ------------------------------------------------------------------------------- the loops
# Plain functions, compiled once per width by :func:`kernels`, where ``_run``, ``HEIGHTS``,
# ``VECTOR_BYTES`` and ``MAX_GROUP`` = ``GEMM_NVEC`` (``GEMM_VECTORS``) name that width's
# tiles and constants (numba reads a function's globals when it compiles it, and freezes
# them).

def _height(length, nvec, overlap):
    """The tile height for ``length`` rows: with ``overlap`` (the last tile may start
    earlier and compute some rows again) the height of ``HEIGHTS`` that computes the
    fewest rows in all, the tallest among equals; without, the tallest that divides
    ``length``, else the tallest that fits."""
    best, best_rows = 1, length
    for h in HEIGHTS[nvec - 1]:  # noqa: F821 - the width's table (see above)
        if h == 0 or h > length:
            continue
        if not overlap:
            if length % h == 0:
                return h
            if best == 1:
                best = h
            continue
        total = -(-length // h) * h
        if total < best_rows or (total == best_rows and h > best):
            best, best_rows = h, total
    return best


def _tiling(o, itemsize):
    """For O output columns of ``itemsize`` bytes: the lanes of a vector, the number of
    vectors O fills, and the vectors per tile: with up to 3 (``MAX_GROUP``), 3, else 2
    when that splits them evenly; with up to 2, 2."""
    lanes = VECTOR_BYTES // itemsize  # noqa: F821
    nvec = o // lanes
    if MAX_GROUP == 3:  # noqa: F821
        per = 3 if nvec % 3 == 0 or nvec % 2 == 1 else 2
    else:
        per = 2
    return lanes, nvec, per


def _gemm(a, a_rs, a_cs, b, c, m, k, nvec, lanes, accumulate):
    """C[:m, :nvec·lanes] (+)= A B with A (m, k) at ``a`` with element strides (a_rs, a_cs),
    B (k, ≥ nvec·lanes) and C (m, ≥ nvec·lanes) 2-d arrays with unit column stride."""
    ldb = b.strides[0] // b.itemsize
    ldc = c.strides[0] // c.itemsize
    j = 0
    while j < nvec:
        nv = min(nvec - j, GEMM_NVEC)  # noqa: F821
        col = j * lanes
        i = 0
        while i < m:
            h = _height(m - i, nv, False)
            _run(h, nv, a, i * a_rs, a_rs, a_cs, ONE_TAP, 1, b, col, ldb, c, i * ldc + col, ldc, k,  # noqa: F821
                 accumulate)
            i += h
        j += nv


def _conv_rows(x, taps, w, y, sh, sw):
    """y[n, i, j, :] = Σ_t Σ_c x[n, i·sh, j·sw, c at offset taps[t]] · w[t·C + c, :]:
    a convolution over the (padded) channels-last input x (N, Hp, Wp, C) straight from
    its rows, no im2col; taps[t] is the element offset of kernel position t from the
    window's corner; y (N, H_out, W_out, O) with O a multiple of the vector width."""
    n_img, hp, wp, ch = x.shape
    ho, wo, o = y.shape[1], y.shape[2], y.shape[3]
    lanes, nvec, per = _tiling(o, y.itemsize)
    xf, yf = x.reshape(-1), y.reshape(-1)
    ntaps = taps.shape[0]
    for n in range(n_img):
        for i in range(ho):
            a_row = (n * hp + i * sh) * wp * ch
            c_row = (n * ho + i) * wo * o
            j = 0
            while j < nvec:
                nv = min(nvec - j, per)
                h = _height(wo, nv, True)
                col = j * lanes
                start = 0
                while start < wo:
                    s = min(start, wo - h)  # the last tile may overlap the one before
                    _run(h, nv, xf, a_row + s * sw * ch, sw * ch, 1, taps, ntaps, w, col, o,  # noqa: F821
                         yf, c_row + s * o + col, o, ch, False)
                    start = s + h
                j += nv


def _weight_grad_rows(xf, x_off, x_step, gf, g_off, o, dwf, row0, ch, k, nvec, per, lanes):
    """dw rows row0 … row0 + C − 1 (flat ``dwf``, O columns) += Xᵀ G over k positions:
    X[p, c] = xf[x_off + p·x_step + c] (C channels, contiguous), G[p, :] = gf[g_off +
    p·O + :]; the tiles cover C in heights of ``HEIGHTS`` and O in groups of ``per``
    vectors. The inner loops of both weight gradients below."""
    j = 0
    while j < nvec:
        nv = min(nvec - j, per)
        col = j * lanes
        c0 = 0
        while c0 < ch:
            h = _height(ch - c0, nv, False)
            _run(h, nv, xf, x_off + c0, 1, x_step, ONE_TAP, 1, gf, g_off + col, o,  # noqa: F821
                 dwf, (row0 + c0) * o + col, o, k, True)
            c0 += h
        j += nv


def _conv_weight_grad(x, taps, g, dw, sh, sw):
    """dw[t·C + c, :] += Σ_{n, i, j} x[n, i·sh, j·sw, c at offset taps[t]] · g[n, i, j, :]
    (the weight gradient of ``conv_rows``; dw (ntaps·C, O) is added into)."""
    n_img, hp, wp, ch = x.shape
    ho, wo, o = g.shape[1], g.shape[2], g.shape[3]
    lanes, nvec, per = _tiling(o, g.itemsize)
    xf, gf, dwf = x.reshape(-1), g.reshape(-1), dw.reshape(-1)
    for n in range(n_img):
        for i in range(ho):
            a_row = (n * hp + i * sh) * wp * ch
            b_row = (n * ho + i) * wo * o
            for t in range(taps.shape[0]):
                _weight_grad_rows(xf, a_row + taps[t], sw * ch, gf, b_row, o, dwf, t * ch, ch, wo, nvec, per, lanes)


def _conv_weight_grad_flat(x, taps, g, g_off, count, dw):
    """dw[t·C + c, :] += Σ_n Σ_{p < count} x[n].flat[p·C + taps[t] + c] · g[n].flat[g_off + p·O + :]:
    the weight gradient of a stride-1 convolution whose output gradient lies on the
    input's own grid (row width Wp), zero between the output rows; each (image, kernel
    position) is then one long product over p instead of one per output row."""
    n_img, ch = x.shape[0], x.shape[3]
    o = g.shape[3]
    img_x, img_g = x.size // n_img, g.size // n_img
    lanes, nvec, per = _tiling(o, g.itemsize)
    xf, gf, dwf = x.reshape(-1), g.reshape(-1), dw.reshape(-1)
    for n in range(n_img):
        for t in range(taps.shape[0]):
            _weight_grad_rows(xf, n * img_x + taps[t], ch, gf, n * img_g + g_off, o, dwf, t * ch, ch, count,
                              nvec, per, lanes)


# (loop, numba options): helpers first. ``gemm`` is not cached on disk, unlike every
# other kernel: loaded from numba's cache, it ran its products far slower than the same
# function compiled in the process (the loops below it, which call the same tiles, run
# as fast either way). Compiling it anew in each process (the tiles it calls come from
# the cache) costs less than it gains: training epochs got faster. Measurements:
# benchmarks/README.md.
_LOOPS = (("_height", {}), ("_tiling", {"inline": "always"}), ("_weight_grad_rows", {"inline": "always"}),
          ("_gemm", {"cache": False}), ("_conv_rows", {}), ("_conv_weight_grad", {}),
          ("_conv_weight_grad_flat", {}))


def _compile_loops(bits: int) -> pytypes.SimpleNamespace:
    """The loops of ``bits``-bit tiles: each loop function over a copy of this module's
    namespace in which ``_run``, the tables and the other loops are that width's, compiled
    as ``{name}_{bits}`` (its own entry in numba's disk cache)."""
    ns = dict(globals())
    ns.update(_run=globals()[f"_run_{bits}"], HEIGHTS=HEIGHTS[bits], VECTOR_BYTES=bits // 8,
              MAX_GROUP=GEMM_VECTORS[bits], GEMM_NVEC=GEMM_VECTORS[bits])
    loops = {}
    for name, options in _LOOPS:
        f = globals()[name]
        g = pytypes.FunctionType(f.__code__, ns, f"{name[1:]}_{bits}", f.__defaults__, f.__closure__)
        g.__qualname__, g.__module__, g.__doc__ = f"{name[1:]}_{bits}", f.__module__, f.__doc__
        ns[name] = loops[name[1:]] = numba.njit(**{"cache": True, "nogil": True, **options})(g)
    return pytypes.SimpleNamespace(bits=bits, **loops)


_KERNELS = {bits: _compile_loops(bits) for bits in WIDTHS}
# module attributes too (``gemm_512``, ``conv_rows_256``, …), where the tests find them
globals().update({f"{name}_{bits}": f for bits, k in _KERNELS.items() for name, f in vars(k).items() if name != "bits"})


def kernels(bits: int) -> pytypes.SimpleNamespace:
    """The compiled loops of ``bits``-bit tiles (one of :data:`WIDTHS`): ``gemm``,
    ``conv_rows``, ``conv_weight_grad``, ``conv_weight_grad_flat`` (each compiles on its
    first call)."""
    return _KERNELS[bits]
