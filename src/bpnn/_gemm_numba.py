"""The compiled part of :mod:`bpnn._gemm`: register-tile kernels written in LLVM IR
through numba intrinsics, and the loops that call them. Imported only when numba is
installed and the compiled kernels are enabled.

A tile kernel ``_k{R}x{V}`` computes an R × V·L block of C = A B, L = 64 bytes / itemsize
lanes (16 float32, 8 float64), as R·V vector accumulators kept in registers over the
whole inner dimension:

    for k < K:  b_v = B[k, v·L : (v+1)·L]   (v < V)
                acc[r][v] += A[r, k] · b_v   (A[r, k] broadcast; one fused multiply-add)

then stores (or adds into) C. R·V is 24 accumulators, which with the V rows of B fills
the 32 vector registers of AVX-512. numba's own loops do not keep such a tile in
registers (they load and store C in every step), which is why the tile is written as IR.
"""
from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_INTP = types.intp
_I32 = ir.IntType(32)


def _tile(rows: int, nvec: int):
    """The intrinsic computing one rows × nvec-vector tile (see the module docstring).

    Arguments: (A, a_off, a_rs, a_cs, B, b_off, ldb, C, c_off, ldc, K, accumulate); A, B
    and C are arrays whose data pointers address the elements, offsets and strides are
    in elements: A[r, k] = a[a_off + r·a_rs + k·a_cs], B[k, j] = b[b_off + k·ldb + j],
    C[r, j] = c[c_off + r·ldc + j]."""

    @intrinsic
    def tile(typingctx, a, a_off, a_rs, a_cs, b, b_off, ldb, c, c_off, ldc, klen, accumulate):
        sig = types.void(a, _INTP, _INTP, _INTP, b, _INTP, _INTP, c, _INTP, _INTP, _INTP, types.boolean)

        def codegen(context, builder, sg, args):
            a_arr, a_off, a_rs, a_cs, b_arr, b_off, ldb, c_arr, c_off, ldc, klen, accumulate = args
            dtype = sg.args[0].dtype
            ft = context.get_value_type(dtype)
            lanes = 512 // dtype.bitwidth
            vt = ir.VectorType(ft, lanes)
            intp = context.get_value_type(_INTP)
            align = dtype.bitwidth // 8
            ap = context.make_array(sg.args[0])(context, builder, a_arr).data
            bp = context.make_array(sg.args[4])(context, builder, b_arr).data
            cp = context.make_array(sg.args[7])(context, builder, c_arr).data
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                                 f"llvm.fma.v{lanes}f{dtype.bitwidth}")

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
            with cgutils.for_range(builder, klen) as loop:
                k = loop.index
                b_row = builder.add(b_off, builder.mul(k, ldb))
                bv = [builder.load(vector_at(bp, builder.add(b_row, const(v * lanes))), align=align)
                      for v in range(nvec)]
                a_col = builder.add(a_off, builder.mul(k, a_cs))
                for r in range(rows):
                    s = builder.load(builder.gep(ap, [builder.add(a_col, builder.mul(const(r), a_rs))],
                                                 source_etype=ft))
                    sv = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(_I32, 0)), undef, splat)
                    for v in range(nvec):
                        builder.store(builder.call(fma, [sv, bv[v], builder.load(acc[r][v])]), acc[r][v])
            for r in range(rows):
                for v in range(nvec):
                    builder.store(builder.load(acc[r][v]), c_at(r, v), align=align)
            return context.get_dummy_value()

        return sig, codegen

    return tile


# Tile shapes measured on the development machine (AVX-512, float32, one thread, shapes
# of 3×3 convolutions with 16 channels): 24 accumulators per tile; for one vector of
# columns 24 rows ran at 190-214 GFLOP/s against 160-190 for 8-14 rows; for 144 columns
# 6-8 rows × 3 vectors 210-225 against 150-180 for 12 × 2, 6 × 4 or 2 × 9.
_k8x3, _k4x3, _k1x3 = _tile(8, 3), _tile(4, 3), _tile(1, 3)
_k12x2, _k4x2, _k1x2 = _tile(12, 2), _tile(4, 2), _tile(1, 2)
_k24x1, _k4x1, _k1x1 = _tile(24, 1), _tile(4, 1), _tile(1, 1)


@numba.njit(cache=True, nogil=True)
def gemm(a, a_rs, a_cs, b, c, m, k, nvec, lanes, accumulate):
    """C[:m, :nvec·lanes] (+)= A B with A (m, k) at ``a`` with element strides (a_rs, a_cs),
    B (k, ≥ nvec·lanes) and C (m, ≥ nvec·lanes) 2-d arrays with unit column stride."""
    ldb = b.strides[0] // b.itemsize
    ldc = c.strides[0] // c.itemsize
    j = 0
    while j < nvec:
        left = nvec - j
        col = j * lanes
        i = 0
        if left >= 3:
            while i + 8 <= m:
                _k8x3(a, i * a_rs, a_rs, a_cs, b, col, ldb, c, i * ldc + col, ldc, k, accumulate)
                i += 8
            while i + 4 <= m:
                _k4x3(a, i * a_rs, a_rs, a_cs, b, col, ldb, c, i * ldc + col, ldc, k, accumulate)
                i += 4
            while i < m:
                _k1x3(a, i * a_rs, a_rs, a_cs, b, col, ldb, c, i * ldc + col, ldc, k, accumulate)
                i += 1
            j += 3
        elif left == 2:
            while i + 12 <= m:
                _k12x2(a, i * a_rs, a_rs, a_cs, b, col, ldb, c, i * ldc + col, ldc, k, accumulate)
                i += 12
            while i + 4 <= m:
                _k4x2(a, i * a_rs, a_rs, a_cs, b, col, ldb, c, i * ldc + col, ldc, k, accumulate)
                i += 4
            while i < m:
                _k1x2(a, i * a_rs, a_rs, a_cs, b, col, ldb, c, i * ldc + col, ldc, k, accumulate)
                i += 1
            j += 2
        else:
            while i + 24 <= m:
                _k24x1(a, i * a_rs, a_rs, a_cs, b, col, ldb, c, i * ldc + col, ldc, k, accumulate)
                i += 24
            while i + 4 <= m:
                _k4x1(a, i * a_rs, a_rs, a_cs, b, col, ldb, c, i * ldc + col, ldc, k, accumulate)
                i += 4
            while i < m:
                _k1x1(a, i * a_rs, a_rs, a_cs, b, col, ldb, c, i * ldc + col, ldc, k, accumulate)
                i += 1
            j += 1
