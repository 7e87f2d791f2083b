"""docs/notebooks/bpnn_in_notebooks.ipynb runs in a fresh Jupyter kernel, and what it
shows is checked: the HTML view of the model, the History and the StudyResult, and the
live plot's one figure after training. The committed file carries no outputs."""
from __future__ import annotations

import base64
import json
import os
import pathlib
import sys

import pytest

from _html_page import Page, image_bytes, png_size

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "notebooks" / "bpnn_in_notebooks.ipynb"


def test_the_committed_notebook_has_no_outputs():
    """As nbstripout leaves it: no outputs, no execution counts (the test makes them)."""
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code cell"
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, cell["id"]
    assert "widgets" not in nb["metadata"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nbformat = pytest.importorskip("nbformat", reason="executing the notebook needs nbformat (bpnn[test])")
    nbclient = pytest.importorskip("nbclient", reason="executing the notebook needs nbclient (bpnn[test])")
    pytest.importorskip("ipykernel", reason="executing the notebook needs ipykernel (bpnn[test])")
    pytest.importorskip("matplotlib", reason="the notebook's figures need matplotlib (bpnn[notebook])")
    pytest.importorskip("sklearn", reason="the notebook's digits need scikit-learn (bpnn[datasets])")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    # A kernel of this very interpreter, importing this checkout's bpnn: the python3 spec
    # that ipykernel installs runs whichever `python` is first on PATH.
    tmp = tmp_path_factory.mktemp("notebook")
    spec_dir = tmp / "kernels" / "bpnn-test"
    spec_dir.mkdir(parents=True)
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bpnn test", "language": "python",
        # IPython's history database in the temporary folder, not in the home directory
        "env": {"PYTHONPATH": path, "IPYTHONDIR": str(tmp / "ipython")}}))
    km = KernelManager(kernel_name="bpnn-test",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp / "kernels")]),
                       connection_file=str(tmp / "kernel-connection.json"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(tmp)}})
    client.execute()
    return {cell["id"]: cell for cell in nb.cells}


def _html(cell) -> Page:
    (out,) = [o for o in cell["outputs"] if o["output_type"] == "execute_result"]
    return Page(out["data"]["text/html"])


def test_every_cell_ran_without_error_or_stray_output(executed):
    for cell in executed.values():
        if cell["cell_type"] == "code":
            kinds = [o["output_type"] for o in cell["outputs"]]
            assert "error" not in kinds and "stream" not in kinds, (cell["id"], cell["outputs"])


def test_the_model_shows_its_layer_table(executed):
    page = _html(executed["model"])
    (table,) = page.tables
    assert [row[1] for row in table["rows"]] == ["Dense", "ReLU", "Dense"]
    assert [int(row[3].replace(",", "")) for row in table["rows"]] == [64 * 32 + 32, 0, 32 * 10 + 10]


def test_the_live_plot_is_one_figure_after_training(executed):
    outputs = executed["live-plot"]["outputs"]
    assert [o["output_type"] for o in outputs] == ["display_data"]  # redrawn in place, never added
    (out,) = outputs
    width, height = png_size(base64.b64decode(out["data"]["image/png"]))
    assert width > 300 and height > 150


def test_the_history_shows_its_epochs_and_curves(executed):
    page = _html(executed["history"])
    (table,) = page.tables
    assert table["head"][:3] == ["epoch", "loss", "accuracy"]
    assert [row[0] for row in table["rows"]] == [str(e) for e in range(1, 7)]
    (img,) = page.images
    png_size(image_bytes(img))


def test_the_study_shows_its_table_and_curves(executed):
    page = _html(executed["study"])
    (table,) = page.tables
    assert sorted(row[1] for row in table["rows"]) == ["he_normal", "xavier_uniform"]
    (img,) = page.images
    png_size(image_bytes(img))
