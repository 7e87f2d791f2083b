"""The report's figures: matplotlib (Agg backend) rendered to PNG, returned as base64.
The training curves and the pieces they share with the notebook views (colours, the
band over seeds, PNG encoding) are in :mod:`bpnn._figures`.

Every function takes the plain data of a :class:`~bpnn.experiment.StudyResult` (runs
as written to ``results.json``) and returns ``(alt text, base64 PNG)``; the HTML embeds
it as a ``data:`` URI, so the report needs nothing but the file.
"""
from __future__ import annotations

import numpy as np

from .._checks import missing_dependency
from .._figures import band as _band
from .._figures import colors as _colors
from .._figures import png_base64, study_curves, text
from .._figures import stack as _stack

def require_matplotlib():
    """matplotlib's pyplot on the Agg backend; an ImportError that says which extra to
    install (and keeps matplotlib's own as its cause) when it is missing."""
    try:
        import matplotlib
    except ImportError as exc:
        raise missing_dependency("the HTML report", "matplotlib", "'bpnn[report]'", exc) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    plt = require_matplotlib()
    b64 = png_base64(fig)
    plt.close(fig)
    return b64


def curves(groups, task: str):
    """Training loss, held-out loss and held-out accuracy per epoch: mean ± std over seeds
    (:func:`bpnn._figures.study_curves`, the figure a StudyResult shows in a notebook too)."""
    require_matplotlib()  # the report checks matplotlib as a whole, pyplot included
    return study_curves(groups, task)


# History keys of a curvature optimizer (K-FAC's ``epoch_logs``): key, title, log scale
CURVATURE_KEYS = [("damping", "damping λ (end of epoch)", True),
                  ("update_norm", "update norm ‖θ_after − θ_before‖ (mean per step)", True),
                  ("kl_scale", "KL-clipping factor ν (mean; 1 = unclipped)", False)]


def has_curvature(groups) -> bool:
    """Whether any run recorded a curvature optimizer's damping (K-FAC)."""
    return any("damping" in (r.get("history") or {}) for g in groups for r in g.runs if not r.get("error"))


def curvature(groups):
    """K-FAC's damping, update norm and KL-clipping factor per epoch, mean ± std over seeds,
    for the configurations that recorded them; None when none did."""
    groups = [g for g in groups if has_curvature([g])]
    if not groups:
        return None
    plt = require_matplotlib()
    fig, axes = plt.subplots(1, len(CURVATURE_KEYS), figsize=(4.6 * len(CURVATURE_KEYS), 3.6))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.86, wspace=0.25)
    for g, color in zip(groups, _colors(len(groups))):
        for ax, (key, _, log) in zip(axes, CURVATURE_KEYS):
            rows = _stack([r.get("history", {}).get(key, []) for r in g.runs if not r.get("error")])
            if rows.size:
                _band(ax, np.arange(1, rows.shape[1] + 1), rows, color, text(g.label), log=log)
    for ax, (_, title, log) in zip(axes, CURVATURE_KEYS):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("curvature optimizer (K-FAC): mean ± std over seeds", fontsize=9)
    return "K-FAC damping, update norm and KL-clipping factor per epoch, mean and spread over seeds", _png(fig)


# (metric, title, layer selector, log scale)
DEPTH_METRICS = [
    ("out_std", "activation std (output of each activation layer)", "activation", True),
    ("delta_rms", "back-propagated gradient rms, ∂L/∂s at each weighted layer", "weighted", True),
    ("grad_rms", "weight-gradient rms per weighted layer", "weighted", True),
    ("inactive", "dead ReLUs / saturated units (fraction)", "activation", False),
]


def layer_positions(layers):
    """Indices (in ``layers``) of the weighted layers and of the activation layers."""
    weighted = [i for i, d in enumerate(layers) if d.get("has_weight")]
    acts = [i for i, d in enumerate(layers) if not d.get("has_weight")
            and d.get("kind") in ("relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "identity")]
    return {"weighted": weighted, "activation": acts}


def _metric(entry, metric):
    if metric == "inactive":
        v = entry.get("dead_fraction", entry.get("saturation"))
    else:
        v = entry.get(metric)
    return np.nan if v is None else float(v)


def depth_profile(run, metric, which, record_index):
    """Per-layer values of ``metric`` in one record (0: initialization, -1: the end)."""
    stats = run.get("stats") or {}
    layers, records = stats.get("layers", []), stats.get("records", [])
    if not records:
        return np.array([])
    pos = layer_positions(layers)[which]
    rec = records[record_index]["layers"]
    return np.array([_metric(rec.get(layers[i]["name"], {}), metric) for i in pos])


def depth(groups):
    """Per-layer statistics over depth, at initialization and after training, per group."""
    plt = require_matplotlib()
    rows = len(DEPTH_METRICS)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 3.0 * rows), squeeze=False)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.09, top=0.96, wspace=0.18, hspace=0.62)
    colors = _colors(len(groups))
    import warnings

    for row, (metric, title, which, log) in enumerate(DEPTH_METRICS):
        for col, (rec, when) in enumerate(((0, "at initialization"), (-1, "after training"))):
            ax = axes[row][col]
            for g, color in zip(groups, colors):
                profiles = [depth_profile(r, metric, which, rec) for r in g.runs if not r.get("error")]
                profiles = [p for p in profiles if p.size]
                if not profiles:
                    continue
                n = min(p.size for p in profiles)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean(np.array([p[:n] for p in profiles]), axis=0)
                if log:
                    mean = np.where(mean > 0, mean, np.nan)
                if np.all(np.isnan(mean)):
                    continue
                ax.plot(np.arange(1, n + 1), mean, marker="o", ms=3, lw=1.3, color=color, label=text(g.label))
            ax.set_title(f"{title}\n{when}", fontsize=9)
            ax.set_xlabel("layer (1 = nearest the input)")
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes.ravel():
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8, frameon=False)
    return ("Per-layer activation and gradient statistics over depth, at initialization and after training",
            _png(fig))


def _pick_layers(weighted, k=4):
    if len(weighted) <= k:
        return list(weighted)
    idx = np.unique(np.linspace(0, len(weighted) - 1, k).round().astype(int))
    return [weighted[i] for i in idx]


def inside(group):
    """Inside one configuration (its first successful seed): weight histograms over time
    for a few layers, and per-layer update/weight ratio, gradient and activation
    statistics over training."""
    plt = require_matplotlib()
    from ..diagnostics.stats import histogram_edges

    run = next((r for r in group.runs if not r.get("error") and (r.get("stats") or {}).get("records")), None)
    if run is None:
        return None
    stats = run["stats"]
    layers, records = stats["layers"], stats["records"]
    pos = layer_positions(layers)
    chosen = _pick_layers(pos["weighted"])
    ncols = max(len(chosen), 4)
    fig, axes = plt.subplots(2, ncols, figsize=(3.1 * ncols, 5.8), squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.9, bottom=0.09, top=0.9, wspace=0.32, hspace=0.42)
    cmap = plt.get_cmap("viridis")
    epochs = [r["epoch"] for r in records]
    emax = max(max(epochs), 1)
    shown = [records[i] for i in np.unique(np.linspace(0, len(records) - 1, 6).round().astype(int))]
    for ax, li in zip(axes[0], chosen):
        name = layers[li]["name"]
        for rec in shown:
            h = rec["layers"].get(name, {}).get("hist")
            if not h:
                continue
            edges = histogram_edges(h)
            counts = np.asarray(h["counts"], dtype=float)
            width = np.diff(edges)
            density = counts / max(counts.sum(), 1) / width
            ax.stairs(density, edges, color=cmap(rec["epoch"] / emax), lw=1.0)
        ax.set_title(f"weights of layer {text(name)}", fontsize=9)
        ax.set_xlabel("weight value")
        ax.set_ylabel("density", fontsize=8)
    for ax in axes[0][len(chosen):]:
        ax.axis("off")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, emax))
    cax = fig.add_axes((0.915, 0.55, 0.012, 0.35))
    fig.colorbar(sm, cax=cax, label="epoch (0 = init)")
    panels = [("update_ratio", "update / weight ratio", pos["weighted"], True),
              ("delta_rms", "back-propagated gradient rms", pos["weighted"], True),
              ("out_std", "activation std", pos["activation"], True),
              ("inactive", "dead / saturated fraction", pos["activation"], False)]
    depth_cmap = plt.get_cmap("plasma")
    for ax, (metric, title, which, log) in zip(axes[1], panels):
        n = max(len(which) - 1, 1)
        plotted = False
        for k, li in enumerate(which):
            name = layers[li]["name"]
            ys = np.array([_metric(rec["layers"].get(name, {}), metric) for rec in records])
            if log:
                ys = np.where(ys > 0, ys, np.nan)
            if np.all(np.isnan(ys)):
                continue
            ax.plot(epochs, ys, color=depth_cmap(0.85 * k / n), lw=1.1, label=text(name))
            plotted = True
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch (0 = init)")
        if log and plotted:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes[1][len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{text(group.label)} — seed {run['run']['seed']}; line colour: depth (dark = input side)",
                 fontsize=10)
    return (f"Weight histograms over time and per-layer statistics over training for {group.label}", _png(fig))


def search_scores(groups, task: str, names):
    """A random search: each trial's score (mean over seeds, bar = std) against each sampled
    hyperparameter on a log axis; the best trial ringed."""
    plt = require_matplotlib()
    cls = task == "classification"
    what = "test_accuracy" if cls else "test_loss"
    points = []
    for g in groups:
        s = g.stat(what)
        if s["mean"] is None:
            continue
        run = g.runs[0]["run"]
        points.append(([run.get(n) for n in names], s["mean"], s["std"] or 0.0))
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.6), squeeze=False)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.16, top=0.86, wspace=0.25)
    scale = 100 if cls else 1
    best = (max if cls else min)(points, key=lambda p: p[1]) if points else None
    for ax, (i, name) in zip(axes[0], enumerate(names)):
        x = [p[0][i] for p in points]
        y = [scale * p[1] for p in points]
        e = [scale * p[2] for p in points]
        ax.errorbar(x, y, yerr=e, fmt="o", ms=4, color="#1f3a5f", ecolor="#9fb3c8", lw=1, capsize=2)
        if best is not None:
            ax.plot([best[0][i]], [scale * best[1]], "o", ms=11, mfc="none", mec="#b42318", mew=1.6,
                    label="best trial")
            ax.legend(fontsize=8, loc="best")
        ax.set_xscale("log")
        ax.set_xlabel(text(name.replace("_", " ")))
        ax.set_ylabel("held-out accuracy (%)" if cls else "held-out loss")
        ax.grid(alpha=0.3)
    fig.suptitle("Score of each trial (mean ± std over seeds) against the sampled hyperparameters", fontsize=11)
    return "Score of each random-search trial against each sampled hyperparameter", _png(fig)
