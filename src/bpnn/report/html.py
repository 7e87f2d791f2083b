"""The HTML report: one self-contained file, no scripts, no external URLs.

Figures are PNG ``data:`` URIs, the style sheet is inline, and every string that can
come from a user — the study name, run labels, file and column names, class names,
error messages, the configuration — passes through :func:`html.escape`.
"""
from __future__ import annotations

from .._html import esc
from .._html import img as _img
from .._html import num as _num
from .._html import table as _table
from ..experiment.results import format_mean_std as mean_std  # one format for table and report
from . import figures

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;background:#fafbfc}
main{max-width:1180px;margin:0 auto;padding:8px 24px 48px}
header{background:#1f3a5f;color:#fff;padding:18px 24px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:2px 0;opacity:.9}
nav{padding:8px 24px;background:#e9eef5;font-size:13px} nav a{margin-right:14px;color:#1f3a5f}
h2{border-bottom:2px solid #d5dde8;padding-bottom:4px;margin-top:34px}
table{border-collapse:collapse;margin:10px 0;font-size:13px;background:#fff}
th,td{border:1px solid #d5dde8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef2f7} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.best td{background:#e7f5e9;font-weight:600}
img{max-width:100%;height:auto;border:1px solid #e1e6ee;background:#fff;margin:6px 0}
.ok{color:#1a7f37} .warn{color:#9a6700} .bad{color:#b42318}
ul.verdicts li{margin:3px 0} pre{background:#f1f4f8;padding:10px;overflow:auto;font-size:12.5px}
details{margin:6px 0} summary{cursor:pointer;color:#1f3a5f}
.small{font-size:12px;color:#57606a}
"""

_KIND_TEXT = {
    "vanishing_gradients": "vanishing gradients", "exploding_gradients": "exploding gradients",
    "non_finite_loss": "diverged (non-finite loss)", "dead_layer": "dead ReLU layers",
    "saturated_layer": "saturated layers", "unbroken_symmetry": "unbroken symmetry",
    "loss_plateau": "loss plateau",
}


def results_table(result) -> str:
    """The results table (:meth:`~bpnn.experiment.StudyResult.html_table`, the table a
    StudyResult shows in a notebook too)."""
    return result.html_table()


def health_section(result) -> str:
    parts = []
    healthy = [g for g in result.ranked() if not g.verdict_summary() and not any(r.get("error") for r in g.runs)]
    if healthy:
        names = ", ".join(f"<b>{esc(g.label)}</b>" for g in healthy)
        parts.append(f'<p class="ok">No problems found in any run of: {names}.</p>')
    for g in result.ranked():
        if g in healthy:
            continue
        summary = g.verdict_summary()
        n = len(g.runs)
        items = []
        for kind, info in summary.items():
            layers = ", ".join(info["layers"])
            noun = "layer" if len(info["layers"]) == 1 else "layers"
            where = f" — {noun} {esc(layers)}" if layers else ""
            items.append(f"<li><b>{esc(_KIND_TEXT.get(kind, kind))}</b> in {info['runs']}/{n} runs{where}."
                         f"<br><span class='small'>e.g. {esc(info['message'])}</span></li>")
        per_run = []
        for r in g.runs:
            msgs = r.get("verdicts") or []
            if r.get("error"):
                per_run.append(f"<li>seed {esc(r['run']['seed'])}: <span class='bad'>failed: "
                               f"{esc(r['error'].splitlines()[0])}</span></li>")
            elif msgs:
                inner = "".join(f"<li>{esc(v['message'])}</li>" for v in msgs)
                per_run.append(f"<li>seed {esc(r['run']['seed'])}:<ul>{inner}</ul></li>")
        details = (f"<details><summary>every verdict, run by run</summary><ul>{''.join(per_run)}</ul></details>"
                   if per_run else "")
        parts.append(f'<h3>{esc(g.label)}</h3><ul class="verdicts">{"".join(items)}</ul>{details}')
    return "\n".join(parts)


def runs_table(result) -> str:
    cls = result.task == "classification"
    label = {id(r): g.label for g in result.groups() for r in g.runs}
    rows = []
    for r in result.runs:
        hist, test = r.get("history") or {}, r.get("test") or {}
        cells = [(esc(r["run"]["index"]), True), (esc(label[id(r)]), False), (esc(r["run"]["seed"]), True),
                 (esc(len(hist.get("loss", []))), True), (esc(_num((hist.get("loss") or [None])[-1])), True),
                 (esc(_num(test.get("loss"))), True)]
        if cls:
            cells.append((esc(_num(test.get("accuracy"), pct=True)), True))
        cells += [(esc(_num(r.get("seconds"), digits=2)), True),
                  (esc(", ".join(sorted({_KIND_TEXT.get(v["kind"], v["kind"]) for v in r.get("verdicts") or []}))
                       or ("failed" if r.get("error") else "—")), False)]
        rows.append(cells)
    head = ["run", "configuration", "seed", "epochs", "training loss", "held-out loss"]
    if cls:
        head.append("held-out accuracy")
    head += ["seconds", "verdicts"]
    return _table(head, rows)


def search_section(result, figs) -> str:
    """A random search: the trials ranked, their sampled values, and the score plotted
    against each sampled hyperparameter."""
    spec = result.spec
    cls = result.task == "classification"
    sampled = spec.sampled()
    shown = [f for f in ("init", "optimizer", "activation", "depth") if f in spec.varying()]
    if "lr" not in sampled and "lr" in spec.varying():
        shown.append("lr")
    rows = []
    for rank, g in enumerate(result.ranked(), 1):
        run = g.runs[0]["run"]
        s = g.stat("test_accuracy" if cls else "test_loss")
        cells = [(esc(rank), True), (esc(run.get("trial")), True)]
        cells += [(esc(f"{run[n]:.3g}"), True) for n in sampled]
        cells += [(esc(g.factors.get(f)), False) for f in shown]
        cells += [(esc(mean_std(s["mean"], s["std"], pct=cls)), True),
                  (esc(sum(1 for r in g.runs if not r.get("error"))), True)]
        rows.append(cells)
    head = ["#", "trial", *[n.replace("_", " ") for n in sampled], *shown,
            "held-out accuracy, mean ± std" if cls else "held-out loss, mean ± std", "seeds"]
    ranges = "; ".join(f"{n.replace('_', ' ')} log-uniform in [{lo:g}, {hi:g})"
                       for n, (lo, hi) in (("lr", spec.lr_range), ("weight_decay", spec.weight_decay_range))
                       if n in sampled)
    parts = [f"<p>{esc(spec.n_trials)} trials drawn with seed {esc(spec.search_seed)}"
             + (f": {esc(ranges)}" if ranges else "") + f", each run over {len(spec.seeds)} seed(s). "
             "Best trial first.</p>", _table(head, rows, ["best"] + [""] * (len(rows) - 1))]
    if figs.get("search"):
        parts.append(_img(*figs["search"]))
    return "\n".join(parts)


def data_section(result) -> str:
    d = result.meta.get("data", {})
    rows = [("data", d.get("description", "")), ("task", d.get("task", "")),
            ("training samples", d.get("n_train", "")), ("held-out samples", d.get("n_test", "")),
            ("features", d.get("n_features", ""))]
    if d.get("target_name"):
        rows.append(("target column", d["target_name"]))
    if d.get("feature_names"):
        names = d["feature_names"]
        shown = ", ".join(map(str, names[:40])) + (f", … ({len(names)} in all)" if len(names) > 40 else "")
        rows.append(("feature columns", shown))
    if d.get("class_names"):
        rows.append(("classes", ", ".join(map(str, d["class_names"][:50]))))
    return _table(["", ""], [[(esc(k), False), (esc(v), False)] for k, v in rows])


def render(result, figs: dict | None = None, n_jobs: int = 1) -> str:
    """The whole report as one HTML string (``figs``: precomputed :func:`make_figures`)."""
    spec, meta = result.spec, result.meta
    groups = result.ranked()
    figs = figs if figs is not None else make_figures(result, n_jobs)
    n_runs = len(result.runs)
    seconds = meta.get("seconds")
    title = spec.name
    sub = (f"{len(groups)} configurations × {len(spec.seeds)} seeds = {n_runs} runs, {spec.epochs} epochs each"
           + (f"; {seconds:.0f} s in all" if isinstance(seconds, (int, float)) else ""))
    arch = ", ".join(f"{len(h)} hidden layers ({'-'.join(map(str, h)) or 'none'})"
                     for _, h in spec.architectures())
    body = [
        "<header>", f"<h1>{esc(title)}</h1>",
        f"<p>{esc(sub)}</p>",
        f"<p>{esc(meta.get('data', {}).get('description', spec.data))} · {esc(arch)} · "
        f"started {esc(meta.get('started', ''))}</p>",
        "</header>",
        '<nav><a href="#results">results</a>'
        + ('<a href="#search">random search</a>' if spec.search == "random" else "")
        + '<a href="#health">health</a><a href="#curves">curves</a>'
        + ('<a href="#curvature">curvature</a>' if figs.get("curvature") else "") +
        '<a href="#depth">over depth</a><a href="#inside">inside training</a><a href="#runs">all runs</a>'
        '<a href="#data">data</a><a href="#config">configuration</a></nav>',
        "<main>",
        '<section id="results"><h2>Results</h2>',
        "<p>Mean ± standard deviation over seeds of the scores on the held-out data after the last epoch, "
        + ("the best seed, and the best held-out accuracy reached at any epoch. "
           if result.task == "classification" else "and the best seed. ")
        + "Best configuration first.</p>",
        results_table(result), "</section>",
        *(['<section id="search"><h2>Random search: trials ranked</h2>', search_section(result, figs), "</section>"]
          if spec.search == "random" else []),
        '<section id="health"><h2>Health verdicts</h2>',
        "<p>What the per-layer statistics say about each configuration, in plain words, naming the layer "
        "(as <code>model.layers[i]</code>) and the epoch (0 = initialization).</p>",
        health_section(result), "</section>",
        '<section id="curves"><h2>Training curves</h2>', _img(*figs["curves"]), "</section>",
        *(['<section id="curvature"><h2>Curvature optimizer</h2>',
           "<p>K-FAC's damping λ, the norm of the step it took and its KL-clipping factor over the "
           "epochs. A damping that keeps rising means the quadratic model predicts the loss badly; "
           "a clipping factor far below 1 means the learning rate is larger than the clip allows.</p>",
           _img(*figs["curvature"]), "</section>"] if figs.get("curvature") else []),
        '<section id="depth"><h2>Per-layer statistics over depth</h2>',
        "<p>Mean over seeds, at initialization (the first batch) and after training (the last batch). "
        "Activation std: how far a signal survives the forward pass; gradient rms: how far the error "
        "signal survives the backward pass.</p>",
        _img(*figs["depth"]), "</section>",
        '<section id="inside"><h2>Inside training, configuration by configuration</h2>',
        "<p>Top: weight histograms over time (colour = epoch). Bottom: per-layer update-to-weight ratio, "
        "gradient, activation statistics over the epochs.</p>",
    ]
    for g in groups:
        fig = figs["inside"].get(g.label)
        body.append(f"<h3>{esc(g.label)}</h3>")
        body.append(_img(*fig) if fig else "<p class='bad'>no statistics (every run failed)</p>")
    body += [
        "</section>",
        '<section id="runs"><h2>All runs</h2><details open><summary>one row per run</summary>',
        runs_table(result), "</details></section>",
        '<section id="data"><h2>Data</h2>', data_section(result), "</section>",
        '<section id="config"><h2>Configuration</h2>',
        "<p>Saved next to this report as <code>config.toml</code>. Reproduce with "
        "<code>bpnn compare --config config.toml</code>; re-render with <code>bpnn report RUN_DIR</code>.</p>",
        f"<pre>{esc(spec.to_toml())}</pre>", "</section>",
        f"<footer class='small'><p>bpnn {esc(meta.get('bpnn_version', ''))} · Python {esc(meta.get('python', ''))}"
        f" · NumPy {esc(meta.get('numpy', ''))} · {esc(meta.get('platform', ''))} · joblib backend "
        f"{esc(meta.get('backend', ''))}</p></footer>",
        "</main>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{esc(title)} — bpnn compare</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def make_figures(result, n_jobs: int = 1) -> dict:
    """Every figure of the report; with ``n_jobs`` > 1 (or -1: all cores) they are drawn
    in parallel worker processes through joblib (each figure is independent)."""
    groups = result.ranked()
    tasks = [("curves", figures.curves, (groups, result.task)), ("depth", figures.depth, (groups,))]
    if figures.has_curvature(groups):
        tasks.append(("curvature", figures.curvature, (groups,)))
    if result.spec.sampled():
        tasks.append(("search", figures.search_scores, (groups, result.task, result.spec.sampled())))
    tasks += [(("inside", g.label), figures.inside, (g,)) for g in groups]
    outputs = None
    if n_jobs != 1 and len(tasks) > 2:
        try:
            import joblib
        except ImportError:  # pragma: no cover - joblib comes with scikit-learn
            joblib = None
        if joblib is not None:
            outputs = joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(fn)(*args) for _, fn, args in tasks)
    if outputs is None:
        outputs = [fn(*args) for _, fn, args in tasks]
    figs = {"inside": {}}
    for (key, _, _), out in zip(tasks, outputs):
        if isinstance(key, tuple):
            figs["inside"][key[1]] = out
        else:
            figs[key] = out
    return figs
