"""Load a gallery example (``docs/gallery/plot_NN_*.py``) as a module, for the tests that
run its fast mode and assert its lesson.

Each example defines ``run(fast=True)``, which computes and returns what the lesson
measures, and ``plot(result)``, which draws it; its ``if __name__ == "__main__":`` block
(executed by sphinx-gallery at docs build time) calls both and prints what it shows.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

GALLERY = Path(__file__).resolve().parents[1] / "docs" / "gallery"


def example_path(number: int) -> Path:
    """The one gallery script of lesson ``number`` (``plot_07_*.py`` for 7)."""
    found = sorted(GALLERY.glob(f"plot_{number:02d}_*.py"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one docs/gallery/plot_{number:02d}_*.py, found {found}")
    return found[0]


def load_example(number: int):
    """Import lesson ``number``'s script under a private module name (its main block does not run)."""
    path = example_path(number)
    name = f"bpnn_gallery_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The MNIST lessons read the IDX files named by $BPNN_MNIST_DIR (and fall back to the
# bundled 8×8 digits without them); the tests point it at the shared copy when present.
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def use_local_mnist(monkeypatch) -> None:
    """Point ``$BPNN_MNIST_DIR`` at the shared MNIST when it is there, else unset it: a
    lesson then reads the local files or falls back to the digits, and never downloads."""
    if SHARED_MNIST.is_dir():
        monkeypatch.setenv("BPNN_MNIST_DIR", str(SHARED_MNIST))
    else:
        monkeypatch.delenv("BPNN_MNIST_DIR", raising=False)


def check_figure_and_summary(example, result, *numbers, titled_plots: bool = True) -> str:
    """``plot(result)`` gives a Figure with data drawn, each plot titled (a twin axis may
    share its twin's title; colorbars aside) unless ``titled_plots`` is false (a grid
    labelled by rows and columns); ``summary(result)`` is the text that names each of
    ``numbers`` (given as the text it must contain). Returns the summary."""
    import matplotlib.figure
    import matplotlib.pyplot as plt

    fig = example.plot(result)
    try:
        assert isinstance(fig, matplotlib.figure.Figure)
        drawn = sum(len(ax.lines) + len(ax.patches) + len(ax.collections) + len(ax.images) for ax in fig.axes)
        assert drawn > 0, "the figure has no data"
        plots = [ax for ax in fig.axes if ax.has_data() and getattr(ax, "_colorbar", None) is None]
        titled = {tuple(ax.get_position().bounds) for ax in plots if ax.get_title()}
        assert plots, "the figure has no plot"
        if titled_plots:
            assert all(tuple(ax.get_position().bounds) in titled for ax in plots), "an untitled plot"
        else:
            assert all(ax.get_title() or ax.get_xlabel() for ax in plots), "a plot with neither title nor label"
    finally:
        plt.close(fig)
    text = example.summary(result)
    assert isinstance(text, str) and text
    for number in numbers:
        assert number in text, (number, text)
    return text
