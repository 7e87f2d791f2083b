"""Results of a study: aggregation over seeds, the results table, CSV / JSON / TOML files.

A *group* is one combination of the study's factors (init, optimizer, activation,
depth, lr) over all its seeds. For each group the table gives mean ± standard
deviation over seeds (sample std, ddof = 1) and the best seed, of the final held-out
accuracy (classification) and loss, ranked best first.

Files written by :meth:`StudyResult.save` into the run directory:

- ``results.json`` — everything: the spec, metadata, and per run its History, held-out
  scores, per-layer statistics and health verdicts (``bpnn report`` reads only this);
- ``results.csv`` — one row per run; ``summary.csv`` — one row per group;
- ``config.toml`` — the exact configuration (``bpnn compare --config config.toml``).
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .._atomic import atomic_write, write_text_atomic
from .._html import esc, img, num, table
from .spec import StudySpec

FORMAT = "bpnn-compare-results"
FORMAT_VERSION = 1
FACTORS = ("init", "optimizer", "activation", "depth", "lr")
#: What a random search adds to a run's factors: its trial, and the sampled weight decay.
SEARCH_FACTORS = ("weight_decay", "trial")
#: Keys of a run's result that say how and where it ran, not what it computed: they
#: differ between two executions of the same run (see :func:`outcome`).
EXECUTION_KEYS = ("seconds", "placement")


def outcome(result: dict) -> dict:
    """A run's result without :data:`EXECUTION_KEYS`: equal for the same run on any backend."""
    return {k: v for k, v in result.items() if k not in EXECUTION_KEYS}


def _mean_std(values):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    mean = float(np.mean(vals))
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return mean, std


@dataclass
class Group:
    """One combination of factors over its seeds (see the module docstring)."""

    key: tuple
    label: str
    factors: dict
    runs: list = field(default_factory=list)

    def values(self, what: str) -> list:
        """Final ``test_loss``, ``test_accuracy``, ``train_loss``, ``best_test_accuracy`` or
        ``seconds`` per run (None where missing)."""
        out = []
        for r in self.runs:
            if r.get("error"):
                out.append(None)
            elif what == "seconds":
                out.append(r.get("seconds"))
            elif what.startswith("test_"):
                out.append(r.get("test", {}).get(what[5:]))
            elif what == "train_loss":
                losses = r.get("history", {}).get("loss") or [None]
                out.append(losses[-1])
            elif what == "best_test_accuracy":
                acc = [a for a in r.get("history", {}).get("val_accuracy", []) if a is not None]
                out.append(max(acc) if acc else None)
            else:
                raise ValueError(f"what: got {what!r}")
        return [None if v is None or not math.isfinite(v) else float(v) for v in out]

    def stat(self, what: str) -> dict:
        vals = self.values(what)
        mean, std = _mean_std(vals)
        finite = [v for v in vals if v is not None]
        higher = "accuracy" in what
        best = (max(finite) if higher else min(finite)) if finite else None
        return {"mean": mean, "std": std, "best": best, "values": vals}

    def verdict_summary(self) -> dict:
        """kind → {"runs": how many runs, "layers": sorted layer names, "message": one example}."""
        out = {}
        for r in self.runs:
            seen = set()
            for v in r.get("verdicts") or []:
                entry = out.setdefault(v["kind"], {"runs": 0, "layers": set(), "message": v["message"]})
                if v["kind"] not in seen:
                    entry["runs"] += 1
                    seen.add(v["kind"])
                if v.get("layer") is not None:
                    entry["layers"].add(v["layer"])
        for entry in out.values():
            entry["layers"] = sorted(entry["layers"], key=_layer_order)
        return out


def _layer_order(name):
    return [int(p) if p.isdigit() else p for p in str(name).split(".")]


class StudyResult:
    """The outcome of :func:`~bpnn.experiment.run_study`: the spec, metadata and runs."""

    def __init__(self, spec: StudySpec, runs: list, meta: dict):
        self.spec = spec
        self.runs = runs
        self.meta = meta

    # ------------------------------------------------------------------ groups
    @property
    def task(self) -> str:
        return self.meta.get("data", {}).get("task", "classification")

    def factors(self) -> tuple:
        """The factors of a group: :data:`FACTORS`, and for a random search its trial and
        (when sampled) weight decay."""
        if self.spec.search != "random":
            return FACTORS
        return FACTORS + (("weight_decay",) if self.spec.weight_decay_range else ()) + ("trial",)

    def groups(self) -> list[Group]:
        """Groups in the spec's order (a random search: one per trial)."""
        varying = self.spec.varying()
        factors = self.factors()
        groups: dict = {}
        for r in self.runs:
            labels = r["run"]["labels"]
            key = tuple(labels.get(f) for f in factors)
            if key not in groups:
                shown = [f for f in ("trial", *FACTORS, "weight_decay") if f in varying and f in factors]
                parts = [(labels[f] if f in ("init", "optimizer", "activation") else
                          f"{f.replace('_', ' ')} {labels[f]}") for f in shown]
                groups[key] = Group(key, " · ".join(parts), {f: labels.get(f) for f in factors})
            groups[key].runs.append(r)
        return list(groups.values())

    def ranked(self) -> list[Group]:
        """Groups best first: by mean held-out accuracy (classification) or loss (regression)."""
        def score(g):
            if self.task == "classification":
                m = g.stat("test_accuracy")["mean"]
                return -(m if m is not None else -1.0)
            m = g.stat("test_loss")["mean"]
            return m if m is not None else math.inf
        return sorted(self.groups(), key=score)

    def summary_rows(self) -> list[dict]:
        """One dict per group, best first (the results table)."""
        rows = []
        for rank, g in enumerate(self.ranked(), 1):
            row = {"rank": rank, "group": g.label, **g.factors, "seeds": len(g.runs),
                   "failed": sum(1 for r in g.runs if r.get("error"))}
            for what in ("test_accuracy", "best_test_accuracy", "test_loss", "train_loss", "seconds"):
                if what.endswith("accuracy") and self.task != "classification":
                    continue
                s = g.stat(what)
                row[f"{what}_mean"], row[f"{what}_std"], row[f"{what}_best"] = s["mean"], s["std"], s["best"]
            row["health"] = "; ".join(f"{k.replace('_', ' ')} {v['runs']}/{len(g.runs)}"
                                      for k, v in g.verdict_summary().items())
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ text
    def table(self) -> str:
        """The results table as text for the terminal."""
        cls = self.task == "classification"
        head = ["#", "configuration", "test acc (mean ± std)", "best", "test loss (mean ± std)", "train loss",
                "s/run", "health"]
        if not cls:
            head = ["#", "configuration", "test loss (mean ± std)", "best", "train loss", "s/run", "health"]
        body = []
        for row in self.summary_rows():
            cells = [str(row["rank"]), row["group"]]
            if cls:
                cells += [format_mean_std(row["test_accuracy_mean"], row["test_accuracy_std"], pct=True),
                          _fmt(row["test_accuracy_best"], pct=True)]
                cells += [format_mean_std(row["test_loss_mean"], row["test_loss_std"])]
            else:
                cells += [format_mean_std(row["test_loss_mean"], row["test_loss_std"]), _fmt(row["test_loss_best"])]
            cells += [_fmt(row["train_loss_mean"]), _fmt(row["seconds_mean"], digits=2),
                      row["health"] or "ok"]
            if row["failed"]:
                cells[-1] = f"{row['failed']} failed; " + cells[-1]
            body.append(cells)
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    # ------------------------------------------------------------------ html
    def html_table(self) -> str:
        """The results table as HTML (the report's, and a notebook's): one row per group,
        best first (``class="best"``), every user string escaped."""
        cls = self.task == "classification"
        rows, classes = [], []
        for row in self.summary_rows():
            cells = [(esc(row["rank"]), True), (esc(row["group"]), False)]
            if cls:
                cells += [(esc(format_mean_std(row["test_accuracy_mean"], row["test_accuracy_std"], pct=True)), True),
                          (esc(num(row["test_accuracy_best"], pct=True)), True),
                          (esc(format_mean_std(row["best_test_accuracy_mean"], row["best_test_accuracy_std"],
                                               pct=True)), True)]
            cells += [(esc(format_mean_std(row["test_loss_mean"], row["test_loss_std"])), True)]
            if not cls:
                cells += [(esc(num(row["test_loss_best"])), True)]
            failed = (f' <span class="bad">({esc(row["failed"])} failed)</span>' if row["failed"] else "")
            cells += [(esc(format_mean_std(row["train_loss_mean"], row["train_loss_std"])), True),
                      (esc(num(row["seconds_mean"], digits=2)), True),
                      (esc(row["seeds"] - row["failed"]) + failed, True),
                      (_health_cell(row["health"]), False)]
            rows.append(cells)
            classes.append("best" if row["rank"] == 1 else "")
        if cls:
            head = ["#", "configuration", "held-out accuracy, mean ± std", "best seed", "best epoch, mean ± std",
                    "held-out loss, mean ± std", "training loss", "s / run", "seeds", "health"]
        else:
            head = ["#", "configuration", "held-out loss, mean ± std", "best seed", "training loss", "s / run",
                    "seeds", "health"]
        return table(head, rows, classes)

    def _repr_html_(self) -> str:
        """How a notebook shows the result: the results table and the curves per
        configuration (mean ± std over seeds, the report's figure) as an inline PNG; the
        table alone when matplotlib is missing. Self-contained: no style sheet, no script."""
        from .._figures import study_curves

        groups = self.ranked()
        seeds = len(self.spec.seeds)
        head = (f"<p><b>{esc(self.spec.name)}</b>: {len(groups)} configuration{'s' * (len(groups) != 1)} × "
                f"{seeds} seed{'s' * (seeds != 1)} = {len(self.runs)} runs, {esc(self.spec.epochs)} epochs each; "
                "best first.</p>")
        try:
            alt, b64 = study_curves(groups, self.task, "a StudyResult's curves", "'bpnn[notebook]'")
        except ImportError as exc:
            figure = f"<p>No curves: {esc(exc)}</p>"
        else:
            figure = img(alt, b64)
        return f'<div class="bpnn-study-result">{head}{self.html_table()}{figure}</div>'

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "spec": self.spec.to_dict(),
                "meta": self.meta, "runs": self.runs}

    def save(self, out_dir) -> dict:
        """Write results.json, results.csv, summary.csv and config.toml; return their paths.

        Each file is written atomically under a temporary name of its own, so saves of
        the same folder running at once never fail on each other's files."""
        os.makedirs(out_dir, exist_ok=True)
        paths = {name: os.path.join(out_dir, name)
                 for name in ("results.json", "results.csv", "summary.csv", "config.toml")}
        write_text_atomic(paths["results.json"], json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False))
        write_text_atomic(paths["config.toml"], self.spec.to_toml())
        self._write_runs_csv(paths["results.csv"])
        rows = self.summary_rows()
        _write_csv(paths["summary.csv"], list(rows[0].keys()) if rows else ["group"], rows)
        return paths

    def _write_runs_csv(self, path):
        cols = ["run", "group", *self.factors(), "hidden", "seed", "epochs", "train_loss", "test_loss", "test_accuracy",
                "best_test_accuracy", "seconds", "verdicts", "stopped_reason", "error"]
        label = {id(r): g.label for g in self.groups() for r in g.runs}
        rows = []
        for r in self.runs:
            run, hist = r["run"], r.get("history") or {}
            val_acc = [a for a in hist.get("val_accuracy", []) if a is not None]
            rows.append({"run": run["index"], "group": label[id(r)], **run["labels"],
                         "hidden": "-".join(map(str, run["hidden"])), "seed": run["seed"],
                         "epochs": len(hist.get("loss", [])),
                         "train_loss": (hist.get("loss") or [None])[-1],
                         "test_loss": (r.get("test") or {}).get("loss"),
                         "test_accuracy": (r.get("test") or {}).get("accuracy"),
                         "best_test_accuracy": max(val_acc) if val_acc else None,
                         "seconds": r.get("seconds"),
                         "verdicts": ";".join(sorted({v["kind"] for v in r.get("verdicts") or []})),
                         "stopped_reason": r.get("stopped_reason") or "",
                         "error": (r.get("error") or "").splitlines()[0] if r.get("error") else ""})
        _write_csv(path, cols, rows)

    @classmethod
    def load(cls, run_dir) -> "StudyResult":
        """Read a run directory written by :meth:`save` (``results.json``)."""
        path = os.path.join(run_dir, "results.json") if os.path.isdir(run_dir) else run_dir
        if not os.path.isfile(path):
            raise ValueError(f"run_dir: no results.json in {run_dir!r}; give the directory `bpnn compare` wrote")
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from None
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}: not UTF-8 text ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a bpnn compare results file (format {FORMAT!r} expected)")
        version = data.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ValueError(f"{path}: 'version' is {version!r}; expected a non-negative integer")
        if version > FORMAT_VERSION:
            raise ValueError(f"{path}: written by a newer bpnn (format version {version}); upgrade bpnn")
        _check_layout(path, data)
        try:
            spec = StudySpec.from_dict(data["spec"])
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{path}: its 'spec' is not a valid study ({exc})") from None
        return cls(spec, data["runs"], data["meta"])


def _check_layout(path: str, data: dict) -> None:
    """The parts of results.json that the table and the report read have their types."""
    def bad(where, value, expected):
        raise ValueError(f"{path}: {where} is {value!r:.60}; expected {expected} (the file is damaged)")

    for key in ("spec", "meta"):
        if not isinstance(data.get(key), dict):
            bad(f"'{key}'", data.get(key), "a JSON object")
    runs = data.get("runs")
    if not isinstance(runs, list):
        bad("'runs'", runs, "a list of runs")
    for i, r in enumerate(runs):
        where = f"run {i}"
        if not isinstance(r, dict):
            bad(where, r, "a JSON object")
        run = r.get("run")
        if not isinstance(run, dict):
            bad(f"{where}: 'run'", run, "a JSON object")
        labels = run.get("labels")
        if not (isinstance(labels, dict) and all(f in labels for f in FACTORS)):
            bad(f"{where}: 'labels'", labels, f"an object with {', '.join(FACTORS)}")
        for key, kind, expected in (("history", dict, "an object of lists"), ("test", dict, "an object"),
                                    ("verdicts", list, "a list"), ("stats", dict, "an object"),
                                    ("error", str, "a message")):
            if r.get(key) is not None and not isinstance(r[key], kind):
                bad(f"{where}: '{key}'", r[key], expected)
        if any(not isinstance(v, list) for v in (r.get("history") or {}).values()):
            bad(f"{where}: 'history'", r["history"], "an object of lists")
        if any(not (isinstance(v, dict) and isinstance(v.get("kind"), str)) for v in r.get("verdicts") or []):
            bad(f"{where}: 'verdicts'", r["verdicts"], "a list of {'kind': ..., 'message': ...}")


def _health_cell(text) -> str:
    if not text:
        return '<span class="ok">no problems found</span>'
    return f'<span class="warn">{esc(text)}</span>'


def format_mean_std(mean, std, pct=False) -> str:
    """"mean ± std" as the results table and the HTML report print it ("—" without a mean)."""
    if mean is None:
        return "—"
    if pct:
        return f"{100 * mean:.1f} ± {100 * (std or 0):.1f} %"
    return f"{mean:.4g} ± {(std or 0):.2g}"


def _fmt(v, pct=False, digits=4):
    if v is None:
        return "—"
    return f"{100 * v:.1f} %" if pct else f"{v:.{digits}g}"


def _write_csv(path, cols, rows):
    with atomic_write(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})
