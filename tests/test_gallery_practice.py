"""The gallery's practice lessons (14-20) run in their fast mode and assert what they teach."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _gallery import SHARED_MNIST, load_example  # noqa: E402

pytest.importorskip("sklearn", reason="the gallery's digits data needs scikit-learn (bpnn[datasets])")


def _check_figure_and_summary(example, result, *numbers):
    """plot() gives a Figure with drawn data; summary() names the measured numbers."""
    fig = example.plot(result)
    try:
        assert isinstance(fig, matplotlib.figure.Figure)
        drawn = sum(len(ax.lines) + len(ax.patches) + len(ax.collections) + len(ax.images) for ax in fig.axes)
        assert drawn > 0, "the figure has no data"
        assert all(ax.get_title() for ax in fig.axes if ax.get_visible() and ax.has_data()), "an untitled axes"
    finally:
        plt.close(fig)
    text = example.summary(result)
    assert isinstance(text, str) and text
    for number in numbers:
        assert number in text, (number, text)
    return text


@pytest.fixture
def mnist_dir(monkeypatch):
    if SHARED_MNIST.is_dir():
        monkeypatch.setenv("BPNN_MNIST_DIR", str(SHARED_MNIST))


# --------------------------------------------------------------------------- 16
def test_16_restarts_escape_local_minima():
    example = load_example(16)
    result = example.run(fast=True)
    assert len(result["studies"]) >= 3
    for study in result["studies"]:
        scores = study["scores"]
        assert len(scores) == result["n_restarts"] and len(set(study["seeds"])) == len(scores)
        stuck = scores > result["stuck_threshold"]
        assert stuck.any(), "at least one seed gets stuck"
        assert not stuck.all()
        # the restarts helper keeps the lowest final loss, which is a solved run
        assert study["best"] == int(np.argmin(scores))
        assert not stuck[study["best"]]
        assert study["kept_loss"] == pytest.approx(scores.min(), rel=1e-9)
        np.testing.assert_array_equal(study["kept_outputs"].round(), [0, 1, 1, 0])
        # stuck runs are stuck: flat over the last half of training, not merely slow
        half = study["curves"].shape[1] // 2
        flat = study["curves"][stuck][:, half:]
        assert np.all(flat.max(axis=1) - flat.min(axis=1) < 0.01)
    _check_figure_and_summary(example, result, f"{100 * result['stuck_mean']:.0f}")
