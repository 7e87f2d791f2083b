"""What a notebook shows: the HTML views (``_repr_html_``) of a model, a History and a
StudyResult, and LiveLossPlot's figure redrawn in place (with IPython's display faked)
or its tqdm bar outside a notebook."""
from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest

import bpnn
from _html_page import Page, image_bytes, png_size
from bpnn import _figures
from bpnn.train import live_plot

pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")

HOSTILE = '<script>alert("x")</script>&'


def block_matplotlib(monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)  # None makes `import name` raise ImportError


@pytest.fixture(scope="module")
def digits():
    from bpnn.data import load_digits

    X, y = load_digits()
    return X[:600], y[:600], X[600:900], y[600:900]


# ----------------------------------------------------------------------------- the model
def _layer_params(layer) -> int:
    return sum(int(p.size) for _, p, _ in layer.named_parameters())


def test_model_view_lists_every_layer_with_its_shape_and_parameters():
    model = bpnn.Sequential([bpnn.Dense(20), bpnn.ReLU(), bpnn.Residual([bpnn.Dense(20), bpnn.Tanh()]),
                             bpnn.Dense(10, trainable=False)], input_shape=(64,), seed=0)
    page = Page(model._repr_html_())
    (table,) = page.tables
    assert table["head"] == ["#", "layer", "output shape", "parameters", "trainable"]
    assert len(table["rows"]) == len(model.layers)
    counts = [int(row[3].replace(",", "")) for row in table["rows"]]
    assert counts == [_layer_params(layer) for layer in model.layers]
    total = sum(int(p.size) for _, p, _ in model.named_parameters())
    assert sum(counts) == total == 64 * 20 + 20 + 20 * 20 + 20 + 20 * 10 + 10
    assert [row[2] for row in table["rows"]] == [str(layer.output_shape) for layer in model.layers]
    assert [row[4] for row in table["rows"]] == ["yes", "—", "yes", "frozen"]
    assert table["rows"][2][1] == "Residual (Dense, Tanh)"
    head = "".join(page.text)
    assert f"{total:,} parameters ({total - 210:,} trainable, 210 frozen)" in head
    assert "input (64,) → output (10,), float32" in head
    assert not page.images and "script" not in page.tags and "style" not in page.tags


def test_an_unbuilt_model_says_so():
    model = bpnn.Sequential([bpnn.Dense(5), bpnn.ReLU()])
    page = Page(model._repr_html_())
    rows = page.tables[0]["rows"]
    assert [row[2] for row in rows] == ["not built", "not built"]
    assert [row[3] for row in rows] == ["—", "—"]
    assert "not built" in "".join(page.text)
    model.forward(np.zeros((2, 3), dtype=np.float32))
    rows = Page(model._repr_html_()).tables[0]["rows"]
    assert [row[2] for row in rows] == ["(5,)", "(5,)"] and rows[0][3] == "20"


def test_shared_weights_are_counted_once():
    shared = bpnn.Dense(8)
    model = bpnn.Sequential([shared, bpnn.ReLU(), shared], input_shape=(8,), seed=0)
    rows = Page(model._repr_html_()).tables[0]["rows"]
    assert [int(r[3]) for r in rows] == [72, 0, 0]
    assert sum(int(r[3]) for r in rows) == model.num_parameters() == 72
    assert "the same layer as 0" in rows[2][1]


def test_a_hostile_layer_name_is_escaped():
    hostile_cls = type(HOSTILE, (bpnn.Identity,), {})  # a class name is any string
    model = bpnn.Sequential([bpnn.Dense(3), hostile_cls()], input_shape=(2,))
    text = model._repr_html_()
    assert "<script" not in text and HOSTILE not in text
    page = Page(text)
    assert "script" not in page.tags
    assert page.tables[0]["rows"][1][1] == HOSTILE  # shown as text, exactly
    assert HOSTILE in model.summary()


# ----------------------------------------------------------------------------- History
@pytest.fixture(scope="module")
def history(digits):
    X, y, Xv, yv = digits
    model = bpnn.Sequential([bpnn.Dense(16), bpnn.ReLU(), bpnn.Dense(10)], input_shape=(64,), seed=0)
    return bpnn.Trainer(model).fit(X, y, epochs=12, batch_size=64, validation_data=(Xv, yv), verbose=False)


def test_history_view_has_the_last_epochs_and_the_curves(history):
    page = Page(history._repr_html_())
    (table,) = page.tables
    keys = list(history.history)
    assert table["head"] == ["epoch", *keys] and {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(keys)
    assert [int(r[0]) for r in table["rows"]] == list(range(3, 13))  # the last 10 of 12, counted from 1
    for row, i in zip(table["rows"], range(2, 12)):
        for cell, key in zip(row[1:], keys):
            assert float(cell) == pytest.approx(history.history[key][i], rel=1e-3)
    assert "the last 10 of 12 epochs" in "".join(page.text)
    (img,) = page.images
    width, height = png_size(image_bytes(img))
    assert width > 300 and height > 150
    assert img["alt"]


def test_history_view_escapes_its_keys_and_stop_reason():
    h = bpnn.History()
    h.on_epoch_end(0, {"loss": 1.0, HOSTILE: 2.0})
    h.stopped_reason = HOSTILE
    text = h._repr_html_()
    assert "<script" not in text
    page = Page(text)
    assert page.tables[0]["head"] == ["epoch", "loss", HOSTILE]
    assert f"Stopped early: {HOSTILE}" in "".join(page.text)
    assert "no epoch" in bpnn.History()._repr_html_()


def test_history_view_without_matplotlib_is_the_table_alone(history, monkeypatch):
    block_matplotlib(monkeypatch)
    page = Page(history._repr_html_())
    assert len(page.tables) == 1 and not page.images
    assert "pip install 'bpnn[notebook]'" in "".join(page.text)


def test_history_panels_leave_out_the_trainer_state():
    h = {"loss": [1], "accuracy": [0.5], "val_loss": [1], "val_accuracy": [0.4], "test_loss": [1], "lr": [0.1],
         "mu": [1e-3], "val_fail": [0], "gradient": [2.0], "penalty": [0.1], "top5": [0.9]}
    assert _figures.history_panels(h) == ["loss", "accuracy", "top5"]
    assert _figures.history_panels({"val_accuracy": [1], "val_loss": [1]}) == ["loss", "accuracy"]


# ----------------------------------------------------------------------------- StudyResult
@pytest.fixture(scope="module")
def study():
    from bpnn.experiment import StudySpec, run_study

    spec = StudySpec(name=HOSTILE, inits=["he_normal", "zeros"], seeds=[0, 1], epochs=3, hidden=[16],
                     n_jobs=1, backend="sequential", histogram_bins=8)
    return run_study(spec, progress=False)


def test_study_view_has_the_results_table_and_the_reports_curves(study):
    pytest.importorskip("matplotlib")
    text = study._repr_html_()
    assert "<script" not in text
    page = Page(text)
    (table,) = page.tables
    groups = study.ranked()
    assert [row[1] for row in table["rows"]] == [g.label for g in groups]
    assert re.search(r'<tr class="best"><td class="num">1</td><td>he_normal</td>', text)
    assert f"{HOSTILE}: 2 configurations × 2 seeds = 4 runs, 3 epochs each" in "".join(page.text)
    (img,) = page.images
    png_size(image_bytes(img))
    # the very figure of the report's "curves" section
    from bpnn.report import figures

    assert img["src"].endswith(figures.curves(groups, study.task)[1])


def test_study_view_without_matplotlib_is_the_table_alone(study, monkeypatch):
    block_matplotlib(monkeypatch)
    page = Page(study._repr_html_())
    assert len(page.tables) == 1 and len(page.tables[0]["rows"]) == 2 and not page.images
    assert "needs matplotlib" in "".join(page.text)


# ----------------------------------------------------------------------------- LiveLossPlot
class FakeDisplay:
    """IPython's display machinery, recorded: ``display(obj, display_id=True)`` returns a
    handle whose ``update(obj)`` replaces the output."""

    def __init__(self):
        self.shown, self.updates = [], []

    def display(self, obj, display_id=False):
        assert display_id is True
        self.shown.append(obj)
        return types.SimpleNamespace(update=self.updates.append)


class FakeImage:
    def __init__(self, data, format):
        assert format == "png"
        self.data = data


def fake_notebook(monkeypatch, shell_name="ZMQInteractiveShell", config=None):
    shell = type(shell_name, (), {"config": config or {}})()
    fake = FakeDisplay()
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    ipython.version_info = (9, 0, 0)  # matplotlib reads it when it meets IPython in sys.modules
    display = types.ModuleType("IPython.display")
    display.display, display.Image = fake.display, FakeImage
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    return fake


def _fit(digits, epochs, callbacks, verbose=False):
    X, y, Xv, yv = digits
    model = bpnn.Sequential([bpnn.Dense(16), bpnn.ReLU(), bpnn.Dense(10)], input_shape=(64,), seed=0)
    trainer = bpnn.Trainer(model)
    trainer.fit(X, y, epochs=epochs, batch_size=128, validation_data=(Xv, yv), callbacks=callbacks,
                verbose=verbose)
    return trainer


def test_live_plot_redraws_one_output_every_epoch(digits, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    fake = fake_notebook(monkeypatch)
    plot = bpnn.LiveLossPlot(min_interval=0)
    trainer = _fit(digits, 4, [plot])
    assert plot.mode == "notebook"
    assert len(fake.shown) == 1 and len(fake.updates) == 3  # displayed once, then updated in place
    frames = [img.data for img in fake.shown + fake.updates]
    for data in frames:
        assert png_size(data)[0] > 300
    assert len(set(frames)) == 4  # each epoch drew a new picture
    # the last picture is the History's whole figure, all four epochs in it
    final = _figures.png_bytes(_figures.history_figure(trainer.history.history))
    assert frames[-1] == final
    assert capsys.readouterr().err == ""  # no progress bar beside the plot


def test_live_plot_every_n_epochs_and_the_last(digits, monkeypatch):
    pytest.importorskip("matplotlib")
    fake = fake_notebook(monkeypatch, shell_name="Shell", config={"IPKernelApp": {}})
    _fit(digits, 5, [bpnn.LiveLossPlot(panels=["loss"], every=2, min_interval=0)])
    assert len(fake.shown) == 1 and len(fake.updates) == 2  # epochs 2, 4 and the end (5)


def test_live_plot_waits_min_interval_between_redraws(digits, monkeypatch):
    pytest.importorskip("matplotlib")
    fake = fake_notebook(monkeypatch)
    _fit(digits, 5, [bpnn.LiveLossPlot(min_interval=1e6)])
    assert len(fake.shown) == 1 and len(fake.updates) == 1  # the first epoch, then the last


def test_notebook_detection():
    assert not live_plot.in_notebook()  # pytest is no kernel


def test_live_plot_outside_a_notebook_shows_a_tqdm_bar(digits, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "IPython", None)
    plot = bpnn.LiveLossPlot()
    _fit(digits, 3, [plot])
    assert plot.mode == "bar"
    err = capsys.readouterr().err
    assert re.search(r"training: 100%.*\| 3/3 .*epoch", err), err
    assert "val_loss=" in err


def test_live_plot_leaves_the_bar_to_a_verbose_trainer(digits, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "IPython", None)
    plot = bpnn.LiveLossPlot()
    _fit(digits, 2, [plot], verbose=True)
    assert plot.mode is None
    err = capsys.readouterr().err
    assert "training:" not in err and "epoch 2/2" in err  # the trainer's own bar only


def test_live_plot_in_a_notebook_without_matplotlib_says_what_to_install(digits, monkeypatch):
    fake = fake_notebook(monkeypatch)
    block_matplotlib(monkeypatch)
    with pytest.raises(ImportError, match=r"LiveLossPlot needs matplotlib.*pip install 'bpnn\[notebook\]'"):
        _fit(digits, 2, [bpnn.LiveLossPlot()])
    assert not fake.shown


@pytest.mark.parametrize("kwargs, match", [({"every": 0}, r"every: got 0"),
                                           ({"panels": "loss"}, r"panels: got 'loss'; expected a list"),
                                           ({"panels": []}, r"panels: got an empty list"),
                                           ({"min_interval": -1}, r"min_interval: got -1; expected a number")])
def test_live_plot_checks_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bpnn.LiveLossPlot(**kwargs)


def test_live_plot_under_the_levenberg_marquardt_trainer(monkeypatch, capsys):
    """The LM trainer's History holds its state (μ, gradient, validation failures): the
    figure draws only the losses; outside a notebook the bar counts the epochs."""
    pytest.importorskip("matplotlib")
    from bpnn.train import LMTrainer

    x = np.linspace(-np.pi, np.pi, 60).reshape(-1, 1)
    t = np.sin(x)

    def fit():
        model = bpnn.Sequential([bpnn.Dense(6), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(1,), seed=0,
                                dtype="float64")
        trainer = LMTrainer(model, epochs=4)
        trainer.fit(x, t, validation_data=(x[::3], t[::3]), callbacks=[bpnn.LiveLossPlot(min_interval=0)])
        return trainer

    fake = fake_notebook(monkeypatch)
    trainer = fit()
    assert {"mu", "gradient", "val_fail"} <= set(trainer.history.history)
    assert _figures.history_panels(trainer.history.history) == ["loss"]
    n = len(trainer.history.epoch)
    assert len(fake.shown) == 1 and len(fake.updates) == n - 1
    monkeypatch.setitem(sys.modules, "IPython", None)
    fit()
    assert f"training: {n}epoch" in capsys.readouterr().err
