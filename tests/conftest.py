import sys

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_configure(config):
    config.addinivalue_line("markers", "every_tile_width: the kernels fixture also runs the 256- and 128-bit tiles")


def pytest_generate_tests(metafunc):
    """The ``kernels`` fixture's runs: compiled ("numba", with the 512-bit tiles) and NumPy;
    in modules marked ``every_tile_width`` (those whose layers run the tile kernels) also
    the 256- and 128-bit tiles."""
    if "kernels" in metafunc.fixturenames:
        params = ["numba", "numpy"]
        if metafunc.definition.get_closest_marker("every_tile_width"):
            params[1:1] = ["numba-256", "numba-128"]
        metafunc.parametrize("kernels", params, indirect=True)


@pytest.fixture
def kernels(request, monkeypatch):
    """Run a test with the compiled kernels and with the NumPy fallbacks (the runs are
    chosen by ``pytest_generate_tests`` above).

    The compiled ones include the register-tile products and the direct convolution
    (``bpnn._kernels.gemm``) of each vector width, on any CPU (LLVM splits vectors wider
    than the target's registers): "numba" runs the 512-bit tiles, "numba-256" and
    "numba-128" the narrower ones, their products included (``PRODUCT_TILES``). The test
    gets "numba" or "numpy"."""
    from bpnn import _kernels
    from bpnn._kernels import gemm

    compiled = request.param.startswith("numba")
    if compiled:
        pytest.importorskip("numba", reason="numba (bpnn[fast]) is not installed")
        bits = int(request.param.partition("-")[2] or 512)
        monkeypatch.setattr(gemm, "vector_bits", lambda: bits)
        monkeypatch.setitem(gemm.PRODUCT_TILES, bits, True)  # the tile products too, wherever they run
    before = _kernels.enabled()
    _kernels.set_enabled(compiled)
    yield "numba" if compiled else "numpy"
    _kernels.set_enabled(before)


@pytest.fixture(params=["im2col", "row_tiles"])
def conv_product(request, monkeypatch):
    """Run a test once with each of Conv2D's two products, whatever the channel count:
    im2col with W_mat, or row tiles with a banded weight matrix (``ROW_MAX_CHANNELS``)."""
    from bpnn.nn import _conv_strategies

    monkeypatch.setattr(_conv_strategies, "ROW_MAX_CHANNELS", 0 if request.param == "im2col" else 1 << 30)
    return request.param


@pytest.fixture(scope="session")
def docs_site(tmp_path_factory):
    """The documentation site, built once per session by ``tests/_docs.py`` (strict:
    ``sphinx -W``), with its translated editions in ``html/<language>/``; skipped when the docs extra is not installed, failed when the build is."""
    import _docs

    absent = _docs.missing()
    if absent:
        pytest.skip(f"the docs build needs {', '.join(absent)} (pip install -e '.[docs]')")
    site = _docs.build(tmp_path_factory.mktemp("docs-site"))
    _docs.BUILT.append(site)
    for edition in (site, *site.translations.values()):
        if edition.returncode != 0:
            pytest.fail(f"sphinx -W failed for {edition.html.name} (exit {edition.returncode}):\n{edition.log[-6000:]}",
                        pytrace=False)
    return site


def pytest_terminal_summary(terminalreporter):
    """The docs build's time and each gallery example's, when a test built the site."""
    _docs = sys.modules.get("_docs")  # imported only by a test that built the site
    for site in getattr(_docs, "BUILT", ()):
        terminalreporter.write_sep("-", "documentation site")
        terminalreporter.write_line(site.summary())
