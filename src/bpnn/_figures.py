"""Figures as PNG images, drawn without pyplot: the curves per epoch that the report, the
notebook views (``_repr_html_`` of a History and of a StudyResult) and the live loss
plot share.

Every figure here is a :class:`matplotlib.figure.Figure` made directly, never through
``pyplot``: no global figure registry to leak into and no backend switched under a
notebook's feet (the user's ``%matplotlib`` setting stays as it was). matplotlib is
optional; :func:`require_matplotlib` says which extra installs it.
"""
from __future__ import annotations

import base64
import io
import warnings

import numpy as np

from ._checks import missing_dependency

DPI = 96
#: History keys that record the trainer's state rather than a quantity to watch: left out
#: of :func:`history_panels` (name them in ``panels`` to draw them anyway).
STATE_KEYS = frozenset({"lr", "penalty", "mu", "gradient", "val_fail", "gamk", "damping", "update_norm",
                        "kl_scale"})
#: The line of each data set in a History panel: prefix of its key, label, colour
SETS = (("", "training", "tab:blue"), ("val_", "validation", "tab:orange"), ("test_", "test", "tab:green"))


def require_matplotlib(feature: str, install: str):
    """matplotlib's ``Figure`` class; an ImportError naming ``feature`` and the extra to
    install (``install``, e.g. ``"'bpnn[report]'"``) when matplotlib cannot be imported."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise missing_dependency(feature, "matplotlib", install, exc) from exc
    return Figure


def text(s) -> str:
    """A user string made safe for matplotlib labels (no mathtext: ``$`` is literal)."""
    return str(s).replace("$", r"\$")


def png_bytes(fig) -> bytes:
    """The figure as PNG (no timestamp or software tag: the same figure gives the same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def png_base64(fig) -> str:
    """The figure as base64 PNG, for a ``data:image/png;base64,`` URI."""
    return base64.b64encode(png_bytes(fig)).decode("ascii")


def colors(n: int) -> list:
    """``n`` distinct colours (tab10, tab20 beyond ten)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def stack(series) -> np.ndarray:
    """Lists of unequal length (None for a missing value) as a 2-d array (runs × epochs),
    padded with NaN."""
    series = [[np.nan if v is None else v for v in s] for s in series if s]
    if not series:
        return np.empty((0, 0))
    n = max(len(s) for s in series)
    return np.array([s + [np.nan] * (n - len(s)) for s in series], dtype=float)


def band(ax, x, rows, color, label, log: bool = False) -> None:
    """The mean of ``rows`` over its first axis as a line, ± one sample standard deviation
    (ddof = 1; none for a single row) as a shaded band. On a log axis the band's lower
    edge stays positive (a tenth of the mean where mean − std ≤ 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (a run stopped early)
        mean = np.nanmean(rows, axis=0)
        std = np.nanstd(rows, axis=0, ddof=1) if rows.shape[0] > 1 else np.zeros_like(mean)
    std = np.nan_to_num(std)
    ax.plot(x, mean, color=color, lw=1.6, label=label)
    lo, hi = mean - std, mean + std
    if log:
        lo = np.where(lo > 0, lo, mean / 10)
    ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)


def study_curves(groups, task: str, feature: str = "the HTML report", install: str = "'bpnn[report]'"):
    """Training loss, held-out loss and (classification) held-out accuracy per epoch of each
    group of runs, mean ± std over seeds; ``(alt text, base64 PNG)``.

    ``groups`` are :class:`~bpnn.experiment.Group` objects or alike: a ``label`` and
    ``runs``, each a dict with its ``history`` (key → list per epoch) and ``error`` when
    it failed (failed runs are left out)."""
    Figure = require_matplotlib(feature, install)
    keys = [("loss", "training loss", True), ("val_loss", "held-out loss", True)]
    if task == "classification":
        keys.append(("val_accuracy", "held-out accuracy", False))
    fig = Figure(figsize=(4.6 * len(keys), 3.6))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.86, wspace=0.22)
    for g, color in zip(groups, colors(len(groups))):
        for ax, (key, _, log) in zip(axes, keys):
            rows = stack([r.get("history", {}).get(key, []) for r in g.runs if not r.get("error")])
            if rows.size == 0:
                continue
            band(ax, np.arange(1, rows.shape[1] + 1), rows, color, text(g.label), log=log)
    for ax, (key, title, log) in zip(axes, keys):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if any(ax.get_legend_handles_labels()[0] for ax in axes):
        axes[-1].legend(fontsize=8, loc="best")
    fig.suptitle("mean ± std over seeds", fontsize=9)
    return "Loss and accuracy curves per configuration, mean and spread over seeds", png_base64(fig)


def history_panels(history: dict) -> list[str]:
    """The quantities a History figure draws by default, one panel each: ``loss`` first,
    then every other logged quantity, each once for its training, ``val_`` and ``test_``
    keys; :data:`STATE_KEYS` left out."""
    names = []
    for key in history:
        if key in STATE_KEYS:
            continue
        base = key.removeprefix("val_") if key.startswith("val_") else key.removeprefix("test_")
        if base not in names and base not in STATE_KEYS:
            names.append(base)
    return sorted(names, key=lambda n: n != "loss")


def history_figure(history: dict, panels=None, title: str | None = None,
                   feature: str = "a History's curves", install: str = "'bpnn[plot]'"):
    """A figure of one run's History: one panel per quantity (``panels``, default
    :func:`history_panels`), its training, validation (``val_``) and test (``test_``)
    values per epoch (epochs counted from 1); a loss panel is on a log scale when its
    values are all positive. ``history`` maps each key to a list with one value per
    epoch (None: no value). Panels wrap after three columns."""
    Figure = require_matplotlib(feature, install)
    from matplotlib.ticker import MaxNLocator

    panels = history_panels(history) if panels is None else list(panels)
    n = max(len(panels), 1)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    width, height = 4.2 * ncols, 3.0 * nrows + (0.3 if title else 0)
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    # fixed margins in inches, not a layout engine: LiveLossPlot redraws this figure while
    # training runs, and a constrained layout makes each frame markedly dearer (benchmarks/README.md)
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.15 / width, bottom=0.5 / height,
                        top=1 - (0.6 if title else 0.3) / height, wspace=0.3, hspace=0.5)
    for ax, name in zip(axes, panels):
        drawn = []
        for prefix, label, color in SETS:
            values = history.get(prefix + name)
            if not values:
                continue
            y = np.array([np.nan if v is None else float(v) for v in values])
            ax.plot(np.arange(1, len(y) + 1), y, color=color, lw=1.6, label=label,
                    marker="o" if len(y) <= 12 else None, ms=3)
            drawn.append(y)
        ys = np.concatenate(drawn) if drawn else np.array([])
        finite = ys[np.isfinite(ys)]
        if "loss" in name and finite.size and (finite > 0).all():
            ax.set_yscale("log")
        ax.set_title(text(name.replace("_", " ")), fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(drawn) > 1:
            ax.legend(fontsize=8, loc="best")
    for ax in axes[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(text(title), fontsize=10)
    return fig
