import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["numba", "numpy"])
def kernels(request, monkeypatch):
    """Run a test once with the compiled kernels and once with the NumPy fallbacks.

    The compiled ones include the register-tile products and the direct convolution
    (``bpnn._kernels.gemm``), on any CPU: they are used only with AVX-512 but compute the
    same numbers with narrower vectors."""
    from bpnn import _kernels
    from bpnn._kernels import gemm

    if request.param == "numba":
        pytest.importorskip("numba", reason="numba (bpnn[fast]) is not installed")
        monkeypatch.setattr(gemm, "cpu_has_avx512", lambda: True)
    before = _kernels.enabled()
    _kernels.set_enabled(request.param == "numba")
    yield request.param
    _kernels.set_enabled(before)


@pytest.fixture(params=["im2col", "row_tiles"])
def conv_product(request, monkeypatch):
    """Run a test once with each of Conv2D's two products, whatever the channel count:
    im2col with W_mat, or row tiles with a banded weight matrix (``ROW_MAX_CHANNELS``)."""
    from bpnn.nn import _conv_strategies

    monkeypatch.setattr(_conv_strategies, "ROW_MAX_CHANNELS", 0 if request.param == "im2col" else 1 << 30)
    return request.param
