import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["numba", "numpy"])
def kernels(request):
    """Run a test once with the compiled kernels and once with the NumPy fallbacks."""
    from bpnn import _kernels

    if request.param == "numba":
        pytest.importorskip("numba", reason="numba (bpnn[fast]) is not installed")
    before = _kernels.enabled()
    _kernels.set_enabled(request.param == "numba")
    yield request.param
    _kernels.set_enabled(before)
