"""The classic plots of a BP network's training, as MATLAB's toolbox draws them.

==========================  ==========================  ==========================================
bpnn                        MATLAB                      what it shows
==========================  ==========================  ==========================================
:func:`plot_performance`    ``plotperform(tr)``         MSE per epoch on training, validation and
                                                        test sets (log scale), best epoch marked
:func:`plot_train_state`    ``plottrainstate(tr)``      gradient, μ, validation failures (and γ
                                                        for Bayesian regularization) per epoch
:func:`plot_regression`     ``plotregression(t, y)``    outputs against targets per set, the
                                                        least-squares line and R
:func:`plot_error_histogram` ``ploterrhist(e)``         histogram of the errors t − y per set
:func:`plot_confusion`      ``plotconfusion(t, y)``     confusion matrix with counts, per-class
                                                        and overall accuracy
==========================  ==========================  ==========================================

Each returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state,
no display needed): ``fig.savefig("perf.png")``, or show it in a notebook. Needs
matplotlib (``pip install 'bpnn[plot]'``). Imported as ``bpnn.plotting`` as well.
"""
from __future__ import annotations

import numpy as np

from .._checks import missing_dependency

_SET_COLORS = {"Training": "tab:blue", "Validation": "tab:green", "Test": "tab:red", "All": "tab:gray"}


def _figure(nrows=1, ncols=1, size=(6.4, 4.8)):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise missing_dependency("bpnn.plotting", "matplotlib", "'bpnn[plot]'", exc) from exc
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _curves(record):
    """(epochs, {set name: values}, best epoch) from a TrainingRecord, History or fitted estimator."""
    if hasattr(record, "perf") and hasattr(record, "vperf"):  # TrainingRecord
        epochs = np.asarray(record.epoch)
        sets = {"Training": record.perf, "Validation": record.vperf, "Test": record.tperf}
        best = record.best_epoch
    elif hasattr(record, "loss_curve_"):  # fitted BPNN estimator
        if getattr(record, "training_record_", None) is not None:
            return _curves(record.training_record_)
        n = len(record.loss_curve_)
        epochs = np.arange(1, n + 1)
        sets = {"Training": record.loss_curve_, "Validation": record.validation_loss_curve_ or [None] * n}
        best = None
    elif hasattr(record, "history"):  # bpnn History
        h = record.history
        n = len(h.get("loss", []))
        epochs = np.asarray(record.epoch) if record.epoch else np.arange(n)
        sets = {"Training": h.get("loss", []), "Validation": h.get("val_loss", [None] * n),
                "Test": h.get("test_loss", [None] * n)}
        best = None
    else:
        raise ValueError(f"record: got {type(record).__name__}; expected a TrainingRecord, a History or a "
                         f"fitted BPNNClassifier/BPNNRegressor")
    clean = {}
    for name, values in sets.items():
        values = list(values)
        if len(values) == len(epochs) and any(v is not None for v in values):
            clean[name] = np.array([np.nan if v is None else float(v) for v in values])
    if best is None and "Validation" in clean and np.isfinite(clean["Validation"]).any():
        best = int(epochs[int(np.nanargmin(clean["Validation"]))])
    return epochs, clean, best


def plot_performance(record, title: str | None = None):
    """MSE per epoch on every set present (log scale), the best epoch marked — ``plotperform``."""
    epochs, sets, best = _curves(record)
    fig, axes = _figure()
    ax = axes[0, 0]
    for name, values in sets.items():
        ax.semilogy(epochs, values, color=_SET_COLORS[name], label=name)
    if best is not None:
        ref = sets.get("Validation", sets.get("Training"))
        i = int(np.searchsorted(epochs, best))
        if i < len(epochs):
            ax.axvline(best, color="k", linestyle=":", linewidth=1)
            ax.plot([best], [ref[i]], "o", markerfacecolor="none", color="k",
                    label=f"Best ({ref[i]:.4g} at epoch {best})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error")
    ax.set_title(title or "Performance")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_train_state(record, title: str | None = None):
    """Gradient, μ and validation failures per epoch (γ too for BR) — ``plottrainstate``."""
    if not hasattr(record, "gradient"):
        raise ValueError("record: plot_train_state needs a TrainingRecord (Levenberg–Marquardt / BR training)")
    epochs = np.asarray(record.epoch)
    panels = [("gradient", record.gradient, True), ("mu", record.mu, True), ("validation fails", record.val_fail, False)]
    if any(g is not None for g in record.gamk):
        panels.append(("effective # parameters γ", record.gamk, False))
    fig, axes = _figure(len(panels), 1, size=(6.4, 2.0 * len(panels)))
    for ax, (label, values, log) in zip(axes[:, 0], panels):
        y = np.array([np.nan if v is None else float(v) for v in values])
        (ax.semilogy if log else ax.plot)(epochs, y, color="tab:blue")
        last = y[-1] if len(y) else np.nan
        ax.set_ylabel(label)
        ax.set_title(f"{label} = {last:.4g} at epoch {epochs[-1] if len(epochs) else 0}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[-1, 0].set_xlabel("epoch")
    fig.suptitle(title or "Training state")
    return fig


def _sets(arg, outputs):
    if isinstance(arg, dict):
        return {k: (np.asarray(t, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()) for k, (t, y) in arg.items()}
    return {"All": (np.asarray(arg, dtype=float).ravel(), np.asarray(outputs, dtype=float).ravel())}


def regression_r(targets, outputs) -> float:
    """Pearson correlation R between targets and outputs (MATLAB's ``regression`` R)."""
    t, y = np.asarray(targets, dtype=float).ravel(), np.asarray(outputs, dtype=float).ravel()
    if t.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(t, y)[0, 1])


def plot_regression(targets, outputs=None, title: str | None = None):
    """Outputs against targets with the least-squares line and R, per set — ``plotregression``.

    ``plot_regression(t, y)`` for one set, or ``plot_regression({"Training": (t, y),
    "Validation": (tv, yv), "Test": (tt, yt)})`` for one panel per set (multi-output
    targets are flattened, as MATLAB does).
    """
    sets = _sets(targets, outputs)
    fig, axes = _figure(1, len(sets), size=(4.0 * len(sets), 4.0))
    for ax, (name, (t, y)) in zip(axes[0], sets.items()):
        r = regression_r(t, y)
        color = _SET_COLORS.get(name, "tab:blue")
        ax.plot(t, y, "o", markerfacecolor="none", color=color, label="data")
        lo, hi = float(min(t.min(), y.min())), float(max(t.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], ":", color="k", label="y = t")
        if t.std() > 0:
            slope, intercept = np.polyfit(t, y, 1)
            ax.plot([lo, hi], [slope * lo + intercept, slope * hi + intercept], color=color,
                    label=f"fit: y = {slope:.2f} t + {intercept:.2g}")
        ax.set_title(f"{name}: R = {r:.5f}")
        ax.set_xlabel("target")
        ax.set_ylabel("output")
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def plot_error_histogram(targets, outputs=None, bins: int = 20, title: str | None = None):
    """Histogram of the errors t − y, stacked per set, with the zero line — ``ploterrhist``."""
    sets = _sets(targets, outputs)
    errors = {name: t - y for name, (t, y) in sets.items()}
    allv = np.concatenate(list(errors.values()))
    edges = np.histogram_bin_edges(allv, bins=bins)
    fig, axes = _figure()
    ax = axes[0, 0]
    ax.hist(list(errors.values()), bins=edges, stacked=True, label=list(errors),
            color=[_SET_COLORS.get(n, "tab:blue") for n in errors])
    ax.axvline(0.0, color="tab:orange", label="zero error")
    ax.set_xlabel("error = target − output")
    ax.set_ylabel("instances")
    ax.set_title(title or f"Error histogram with {bins} bins")
    ax.legend()
    return fig


def confusion_matrix(y_true, y_pred, labels=None):
    """Counts C[i, j] of samples of class labels[i] predicted as labels[j], and the labels."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if labels is None:
        labels = np.unique(np.concatenate([y_true, y_pred]))
    labels = np.asarray(labels)
    index = {v: i for i, v in enumerate(labels.tolist())}
    c = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        c[index[t], index[p]] += 1
    return c, labels


def plot_confusion(y_true, y_pred, labels=None, title: str | None = None):
    """Confusion matrix with counts and percentages of all samples — ``plotconfusion``.

    Rows are the true classes and columns the predicted ones (as scikit-learn; MATLAB
    transposes). The last column holds each true class's recall, the last row each
    predicted class's precision, the corner the overall accuracy.
    """
    c, labels = confusion_matrix(y_true, y_pred, labels)
    n = c.sum()
    k = len(labels)
    fig, axes = _figure(size=(1.0 + 0.9 * (k + 1), 1.0 + 0.9 * (k + 1)))
    ax = axes[0, 0]
    grid = np.zeros((k + 1, k + 1))
    grid[:k, :k] = c / max(n, 1)
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=max(grid.max(), 1e-12))
    for i in range(k):
        for j in range(k):
            dark = grid[i, j] > 0.5 * grid.max()
            ax.text(j, i, f"{c[i, j]}\n{100 * c[i, j] / max(n, 1):.1f}%", ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    for i in range(k):
        row = c[i].sum()
        ax.text(k, i, f"{100 * c[i, i] / row:.1f}%" if row else "NaN", ha="center", va="center", fontsize=8,
                color="tab:green")
        col = c[:, i].sum()
        ax.text(i, k, f"{100 * c[i, i] / col:.1f}%" if col else "NaN", ha="center", va="center", fontsize=8,
                color="tab:green")
    ax.text(k, k, f"{100 * np.trace(c) / max(n, 1):.1f}%", ha="center", va="center", fontsize=9,
            fontweight="bold")
    names = [str(v) for v in labels.tolist()]
    ax.set_xticks(range(k + 1), names + ["recall"])
    ax.set_yticks(range(k + 1), names + ["precision"])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "Confusion matrix")
    return fig
