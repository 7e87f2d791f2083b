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
