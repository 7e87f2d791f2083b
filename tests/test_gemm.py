"""The register-tile matrix products of the convolution layers (bpnn._kernels.gemm)."""
import numpy as np
import pytest

from bpnn import _kernels
from bpnn._kernels import gemm

SHAPES = [  # (m, k, n): tile rows and their tails, one to several vectors of columns, column tails
    (1, 1, 16), (5, 3, 16), (37, 29, 48), (100, 145, 16), (1568, 145, 16), (77, 16, 144), (33, 10, 40),
    (64, 7, 8), (9, 5, 100), (30, 2, 64), (3, 300, 32),
]


@pytest.fixture(params=[512, 256, 128], ids=lambda bits: f"{bits}bit")
def tiles(request, monkeypatch):
    """The tile kernels of each vector width, on any CPU (LLVM splits vectors wider than
    the target's registers, so every width computes the same numbers everywhere), the
    products included whatever ``PRODUCT_TILES`` says of the width."""
    pytest.importorskip("numba", reason="numba (bpnn[fast]) is not installed")
    before = _kernels.enabled()
    _kernels.set_enabled(True)
    monkeypatch.setattr(gemm, "vector_bits", lambda: request.param)
    monkeypatch.setitem(gemm.PRODUCT_TILES, request.param, True)
    yield request.param
    _kernels.set_enabled(before)


def _operands(rng, m, k, n, dtype, transposed):
    a = rng.standard_normal((k, m) if transposed else (m, k)).astype(dtype)
    return (a.T if transposed else a), rng.standard_normal((k, n)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transposed", [False, True], ids=["a", "a_T"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_products_equal_numpys(tiles, rng, dtype, transposed, m, k, n):
    a, b = _operands(rng, m, k, n, dtype, transposed)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    tol = dict(rtol=1e-5, atol=1e-4 * np.sqrt(k)) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    out = np.full((m, n), np.nan, dtype=dtype)
    assert gemm.matmul(a, b, out) is out
    np.testing.assert_allclose(out, ref, **tol)
    acc = np.arange(m * n, dtype=dtype).reshape(m, n)
    gemm.matmul(a, b, acc, accumulate=True)
    np.testing.assert_allclose(acc, ref + np.arange(m * n).reshape(m, n), **tol)


def test_the_tile_kernels_run_for_whole_vectors_of_columns(tiles, rng, monkeypatch):
    calls = []
    loops = gemm.tiles().kernels(tiles)
    real = loops.gemm
    monkeypatch.setattr(loops, "gemm", lambda *args: calls.append(args[7:9]) or real(*args))
    a, b = _operands(rng, 20, 9, 44, np.float32, False)
    out = np.empty((20, 44), np.float32)
    gemm.matmul(a, b, out)
    lanes = tiles // 32
    assert calls == [(44 // lanes, lanes)]  # whole vectors of float32 columns; the last ones by NumPy
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def test_strided_outputs_and_views(tiles, rng):
    """b and out may be column slices of larger arrays (their row strides are not n)."""
    a, b = _operands(rng, 13, 6, 48, np.float64, False)
    big_b = np.zeros((6, 80)); big_b[:, 16:64] = b
    big_out = np.full((13, 70), -1.0)
    gemm.matmul(a, big_b[:, 16:64], big_out[:, 5:53])
    np.testing.assert_allclose(big_out[:, 5:53], a @ b, rtol=1e-12)
    assert (big_out[:, :5] == -1).all() and (big_out[:, 53:] == -1).all()


@pytest.mark.parametrize("case", ["b_transposed", "int", "mixed_dtypes", "narrow", "disabled"])
def test_other_operands_go_to_numpy(tiles, rng, monkeypatch, case):
    calls = []
    monkeypatch.setattr(gemm, "tiles", lambda: calls.append(1) or pytest.fail("tile kernels used"))
    a, b = _operands(rng, 10, 4, 32, np.float64, False)
    out = np.empty((10, 32))
    if case == "b_transposed":
        b = np.ascontiguousarray(b.T).T
    elif case == "int":
        a, b, out = a.astype(np.int64), b.astype(np.int64), out.astype(np.int64)
    elif case == "mixed_dtypes":
        a = a.astype(np.float32)
    elif case == "narrow":  # fewer columns than one vector holds
        b, out = b[:, :tiles // 64 - 1], out[:, :tiles // 64 - 1]
    else:
        _kernels.set_enabled(False)
    gemm.matmul(a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=1e-6)
    assert not calls


def test_enabled_needs_a_known_vector_width_and_the_compiled_kernels(monkeypatch):
    monkeypatch.setattr(gemm, "vector_bits", lambda: 0)
    assert not gemm.enabled() and gemm.path() == "BLAS (NumPy)"
    monkeypatch.setattr(gemm, "vector_bits", lambda: 256)
    assert gemm.enabled() == _kernels.enabled()
    if _kernels.enabled():
        assert gemm.path() == "tiles 256-bit (AVX2+FMA), products BLAS"


def test_products_take_the_tiles_only_at_the_widths_that_gain(monkeypatch, rng):
    """PRODUCT_TILES: at a width without it the products go to BLAS (the direct
    convolution still runs on the tiles)."""
    pytest.importorskip("numba")
    monkeypatch.setattr(_kernels, "_enabled", True)
    calls = []
    monkeypatch.setattr(gemm, "tiles", lambda: calls.append(1) or pytest.fail("tile kernels used"))
    a, b = _operands(rng, 10, 4, 32, np.float32, False)
    for bits in (512, 256, 128):
        monkeypatch.setattr(gemm, "vector_bits", lambda bits=bits: bits)
        monkeypatch.setitem(gemm.PRODUCT_TILES, bits, False)
        out = np.empty((10, 32), np.float32)
        gemm.matmul(a, b, out)
        np.testing.assert_allclose(out, a @ b, rtol=1e-5)
        assert gemm.conv_applies(np.float32, 16)
    assert not calls


@pytest.mark.parametrize("bits,out,direct", [(512, 64, True), (256, 16, True), (256, 32, False), (128, 32, True)])
def test_the_direct_convolution_holds_to_each_widths_channel_limit(monkeypatch, bits, out, direct):
    """DIRECT_MAX_VECTORS: with 256 bits at most 2 vectors of output channels."""
    pytest.importorskip("numba")
    monkeypatch.setattr(_kernels, "_enabled", True)
    monkeypatch.setattr(gemm, "vector_bits", lambda: bits)
    assert gemm.conv_applies(np.float32, out) == direct


@pytest.mark.parametrize("asm,bits", [
    ("vfmadd213ps %zmm0, %zmm0, %zmm0", 512),
    ("vfmadd213ps %ymm1, %ymm1, %ymm1\n vfmadd213ps %ymm0, %ymm0, %ymm0", 256),
    ("vmulps %ymm0, %ymm0, %ymm1\n vaddps %ymm1, %ymm0, %ymm0", 128),  # AVX without FMA
    ("movabsq $fmaf, %r14\n callq *%r14", 128),  # no vector FMA at all
    ("fmla v0.4s, v0.4s, v0.4s", 128),  # NEON
])
def test_the_vector_width_is_read_from_the_generated_code(asm, bits):
    assert gemm._vector_bits_of(asm) == bits


def test_the_vector_width_follows_numbas_target_not_the_cpu_flags():
    """numba compiles for NUMBA_CPU_NAME / NUMBA_CPU_FEATURES when they are set: an AVX2
    target on an AVX-512 CPU must run the 256-bit tiles (and the probe must say so)."""
    pytest.importorskip("numba")
    import os
    import platform
    import subprocess
    import sys

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("an x86-64 target")
    code = "from bpnn._kernels import gemm; print(gemm.target_vector_bits())"
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = {**os.environ, "PYTHONPATH": src, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "256", out.stderr
    assert gemm.target_vector_bits() in (512, 256, 128)


# --------------------------------------------------------------------------- direct convolution
def _reference_conv(x, w4, sh, sw, dh, dw, ho, wo):
    """y[n, i, j] = Σ_{p, q} x[n, i·sh + p·dh, j·sw + q·dw] · w4[p, q] in float64."""
    kh, kw = w4.shape[:2]
    y = 0
    for p in range(kh):
        for q in range(kw):
            window = x[:, p * dh:p * dh + (ho - 1) * sh + 1:sh, q * dw:q * dw + (wo - 1) * sw + 1:sw]
            y = y + np.einsum("nhwc,co->nhwo", window.astype(np.float64), w4[p, q].astype(np.float64))
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,h,w,c,o,kh,kw,sh,sw,dh,dw", [
    (2, 7, 9, 16, 16, 3, 3, 1, 1, 1, 1),
    (3, 9, 30, 5, 32, 3, 2, 2, 1, 1, 1),   # W_out 29: tiles overlap
    (1, 6, 6, 24, 48, 1, 1, 1, 2, 1, 1),
    (2, 8, 8, 3, 64, 3, 3, 1, 1, 1, 1),
    (2, 5, 3, 33, 16, 2, 3, 1, 1, 1, 1),   # W_out 1
    (1, 9, 40, 7, 16, 3, 3, 1, 1, 2, 3),   # dilation
    (2, 4, 17, 8, 48, 2, 2, 1, 1, 1, 1),   # W_out 16; 3 (float32) or 6 (float64) vectors
])
def test_direct_convolution_and_weight_gradient(tiles, rng, dtype, n, h, w, c, o, kh, kw, sh, sw, dh, dw):
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    ho, wo = (h - (kh - 1) * dh - 1) // sh + 1, (w - (kw - 1) * dw - 1) // sw + 1
    w4 = rng.standard_normal((kh, kw, c, o)).astype(dtype)
    taps = np.array([(p * dh * w + q * dw) * c for p in range(kh) for q in range(kw)], dtype=np.int64)
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    y = np.full((n, ho, wo, o), np.nan, dtype=dtype)
    gemm.conv(x, taps, w4.reshape(-1, o), y, sh, sw)
    np.testing.assert_allclose(y, _reference_conv(x, w4, sh, sw, dh, dw, ho, wo), **tol)
    g = rng.standard_normal((n, ho, wo, o)).astype(dtype)
    dw_ = np.ones((kh * kw * c, o), dtype=dtype)
    gemm.conv_weight_grad(x, taps, g, dw_, sh, sw)
    ref = np.stack([np.einsum("nhwc,nhwo->co", x[:, p * dh:p * dh + (ho - 1) * sh + 1:sh,
                                                   q * dw:q * dw + (wo - 1) * sw + 1:sw].astype(np.float64), g)
                    for p in range(kh) for q in range(kw)])
    np.testing.assert_allclose(dw_, ref.reshape(-1, o) + 1, **tol)  # added into


def test_direct_convolution_needs_contiguous_arrays(tiles):
    x = np.zeros((1, 4, 4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="w: got an array of strides"):
        gemm.conv(x, np.zeros(1, dtype=np.int64), np.zeros((16, 2), np.float32).T, np.zeros((1, 4, 4, 16), np.float32), 1, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_gradient_over_the_input_grid_equals_the_row_by_row_one(tiles, rng, dtype):
    """With G placed on the padded input's grid (zeros between its rows), the weight
    gradient is one product per image and kernel position (stride 1, "same" padding)."""
    n, ho, wo, c, o = 3, 5, 6, 16, 32
    xpad = rng.standard_normal((n, ho + 2, wo + 2, c)).astype(dtype)  # 3×3 kernel, padding 1
    g = rng.standard_normal((n, ho, wo, o)).astype(dtype)
    gpad = np.zeros((n, ho + 2, wo + 2, o), dtype=dtype)
    gpad[:, 1:-1, 1:-1] = g
    taps = np.array([(p * (wo + 2) + q) * c for p in range(3) for q in range(3)], dtype=np.int64)
    rows = np.zeros((9 * c, o), dtype=dtype)
    gemm.conv_weight_grad(xpad, taps, g, rows, 1, 1)
    flat = np.zeros((9 * c, o), dtype=dtype)
    gemm.conv_weight_grad_flat(xpad, taps, gpad, ((wo + 2) + 1) * o, (ho - 1) * (wo + 2) + wo, flat)
    np.testing.assert_allclose(flat, rows, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4 if dtype == np.float32 else 1e-12)
