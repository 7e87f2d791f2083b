"""An optional package that cannot be imported: the error says which feature needs it,
how to install it, and why the import failed (an installed but broken package is not
reported as missing without its reason)."""
from __future__ import annotations

import json
import sys

import pytest

from bpnn import cli
from bpnn._checks import missing_dependency


def test_the_message_keeps_the_import_error():
    exc = ImportError("numpy.core.multiarray failed to import")
    err = missing_dependency("the HTML report", "matplotlib", "'bpnn[report]'", exc)
    assert str(err) == ("the HTML report needs matplotlib, which could not be imported (ImportError: "
                        "numpy.core.multiarray failed to import); install it with: pip install 'bpnn[report]'")


def _blocked(monkeypatch, *names):
    for name in names:  # None in sys.modules makes `import name` raise ImportError
        monkeypatch.setitem(sys.modules, name, None)


def test_report_figures_name_the_reason(monkeypatch):
    from bpnn.report import figures

    _blocked(monkeypatch, "matplotlib", "matplotlib.pyplot")
    with pytest.raises(ImportError, match=r"the HTML report needs matplotlib, which could not be imported "
                                          r"\(ModuleNotFoundError: import of matplotlib halted"):
        figures.require_matplotlib()


def test_plotting_names_the_reason(monkeypatch):
    from bpnn.report import plotting

    _blocked(monkeypatch, "matplotlib", "matplotlib.figure")
    with pytest.raises(ImportError, match=r"bpnn.plotting needs matplotlib, which could not be imported \(.*halted"):
        plotting.plot_error_histogram([0.0, 1.0], [0.5, 0.5])


def test_onnx_and_tensorboard_name_the_reason(monkeypatch):
    import bpnn

    _blocked(monkeypatch, "onnx", "tensorboardX")
    model = bpnn.Sequential([bpnn.Dense(2)], input_shape=(3,), seed=0)
    with pytest.raises(ImportError, match=r"ONNX export needs the onnx package, which could not be imported \("):
        bpnn.io.export_onnx(model, "never-written.onnx")
    with pytest.raises(ImportError, match=r"needs tensorboardX, which could not be imported \(.*halted"):
        bpnn.io.TensorBoard("runs")


def test_the_cli_prints_the_reason_in_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "results.json").write_text(json.dumps({"format": "bpnn-compare-results", "version": 1,
                                                       "spec": {}, "meta": {}, "runs": []}))
    _blocked(monkeypatch, "matplotlib", "matplotlib.pyplot")
    assert cli.main(["report", str(tmp_path), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpnn: error: the HTML report needs matplotlib, which could "
                                                   "not be imported (ModuleNotFoundError"), lines


@pytest.mark.parametrize("backend, blocked, package", [("dask", ("dask.distributed",), "dask.distributed"),
                                                       ("ray", ("ray",), "ray")])
def test_study_backends_name_the_reason(monkeypatch, backend, blocked, package):
    from bpnn.experiment import StudySpec
    from bpnn.experiment.backends import open_backend

    _blocked(monkeypatch, *blocked)
    spec = StudySpec(inits=["he_normal"], optimizers=["sgd"], lrs=[0.05], seeds=[0], epochs=1, hidden=[4],
                     backend=backend)
    with pytest.raises(ImportError, match=rf"backend '{backend}' needs {package}, which could not be imported "
                                          rf"\(.*; install it with: pip install 'bpnn\[{backend}\]'"):
        with open_backend(spec, 2):
            pass
