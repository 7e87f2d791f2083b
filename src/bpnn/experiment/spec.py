"""A study specification: what to compare, on which data, how long, where to write.

A :class:`StudySpec` is plain data. It comes from defaults (the built-in initialization
study), from a TOML file (:meth:`StudySpec.from_toml`), from command-line flags, or
from Python, and is written back as TOML (:meth:`StudySpec.to_toml`) next to the
results, so ``bpnn compare --config RUN_DIR/config.toml`` repeats the study exactly.

A grid study (``search = "grid"``, the default) is the product inits × optimizers ×
activations × depths × lrs × seeds (:meth:`StudySpec.runs`). A random search
(``search = "random"``) draws ``n_trials`` configurations instead, each run over every
seed: the learning rate log-uniformly from ``lr_range`` (else one of ``lrs``), the
weight decay log-uniformly from ``weight_decay_range`` (else none), and the init,
optimizer, activation and depth uniformly from their lists. Log-uniform on [a, b) means
log x uniform on [log a, log b): x = exp(log a + u (log b − log a)), u ~ U[0, 1). The
draws come from ``numpy.random.default_rng(search_seed)`` in a fixed order, so the same
spec gives the same trials on any machine.

Initializers, optimizers and activations are registry names, or config dicts
``{class_name = "normal", config = {std = 0.1}}``, optionally with a ``label`` shown
in tables and plots.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import math
import numbers
from dataclasses import asdict, dataclass, field, fields

from .. import _checks
from . import toml_io

#: The built-in study: the initializations of the BP literature, weakest to strongest.
DEFAULT_INITS = ["zeros", "small_normal", "xavier_uniform", "he_normal", "lecun_normal",
                 "orthogonal", "lsuv"]
DEFAULT_OPTIMIZERS = [{"class_name": "sgd", "config": {"momentum": 0.9}}]
DATA_SOURCES = ("digits", "mnist", "fashion_mnist")
BACKENDS = ("loky", "sequential", "threading", "multiprocessing", "dask", "ray")
#: Backends that run on a cluster (``address`` names it; without one a local one is started).
CLUSTER_BACKENDS = ("dask", "ray")
SEARCHES = ("grid", "random")

# TOML layout: section -> fields. Keeps the file readable and the flags flat.
SECTIONS = {
    "data": ("data", "data_dir", "target", "task", "test_size", "split_seed", "max_samples"),
    "model": ("depths", "width", "hidden", "activations"),
    "study": ("inits", "optimizers", "lrs", "seeds"),
    "search": ("search", "n_trials", "lr_range", "weight_decay_range", "search_seed"),
    "training": ("epochs", "batch_size", "loss"),
    "stats": ("stats_every", "histogram_bins"),
    "run": ("n_jobs", "backend", "address", "timeout", "out"),
}
COMMENTS = {
    "data.data": 'digits | mnist | fashion_mnist | path to a CSV file',
    "data.data_dir": "folder with the MNIST IDX files (else $BPNN_MNIST_DIR or the cache)",
    "data.target": "CSV: name (or 0-based index) of the target column; default the last",
    "data.max_samples": "use at most this many training samples (a random subset)",
    "model.hidden": "explicit hidden widths (overrides depths × width)",
    "study.optimizers": "names or {class_name = ..., config = {...}, label = ...}; lrs override their lr",
    "search.search": "grid (the product of the lists) | random (n_trials draws)",
    "search.lr_range": "random search: lr log-uniform in [low, high) (else one of study.lrs)",
    "search.weight_decay_range": "random search: weight decay log-uniform in [low, high) (else none)",
    "run.backend": "joblib backend: loky (local processes) | sequential | dask | ray",
    "run.address": "dask scheduler or ray cluster address (else a local one is started)",
    "run.timeout": "seconds to wait for the cluster: reaching it and its first worker",
}


@dataclass
class StudySpec:
    """Everything that defines a ``bpnn compare`` study (see the module docstring).

    Data: ``data`` is ``"digits"`` (scikit-learn's 8×8 digits), ``"mnist"``,
    ``"fashion_mnist"`` or a path to a CSV file (``target`` column, default the last;
    ``task`` ``"auto"`` | ``"classification"`` | ``"regression"``); ``test_size`` of it
    is held out (stratified, ``split_seed``), and the held-out part is evaluated after
    every epoch. Model: ``depths`` hidden layers of ``width`` units (or explicit
    ``hidden`` widths), each followed by the activation; every Dense layer, the output
    layer included, is initialized by the init under study; biases start at 0.
    """

    name: str = "Initialization study"
    data: str = "digits"
    data_dir: str | None = None
    target: str | None = None
    task: str = "auto"
    test_size: float = 0.25
    split_seed: int = 0
    max_samples: int | None = None
    depths: list = field(default_factory=lambda: [10])
    width: int = 64
    hidden: list | None = None
    activations: list = field(default_factory=lambda: ["relu"])
    inits: list = field(default_factory=lambda: list(DEFAULT_INITS))
    optimizers: list = field(default_factory=lambda: copy.deepcopy(DEFAULT_OPTIMIZERS))
    lrs: list = field(default_factory=lambda: [0.01])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 20
    batch_size: object = 32
    loss: str | None = None
    stats_every: int = 1
    histogram_bins: int = 30
    search: str = "grid"
    n_trials: int | None = None
    lr_range: list | None = None
    weight_decay_range: list | None = None
    search_seed: int = 0
    n_jobs: int = -1
    backend: str = "loky"
    address: str | None = None
    timeout: float = 30.0
    out: str | None = None

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> "StudySpec":
        """Check every field; errors name the field, the value and what is valid."""
        if not isinstance(self.name, str):
            raise ValueError(f"name: got {self.name!r}; expected a string")
        if not isinstance(self.data, str) or not self.data:
            raise ValueError(f"data: got {self.data!r}; expected one of {', '.join(DATA_SOURCES)} "
                             f"or a path to a .csv file")
        if self.data not in DATA_SOURCES and not self.data.lower().endswith((".csv", ".txt", ".tsv")):
            close = difflib.get_close_matches(self.data, DATA_SOURCES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"data: got {self.data!r}{hint} Expected one of {', '.join(DATA_SOURCES)} "
                             f"or a path to a .csv file")
        _checks.one_of("task", self.task, ("auto", "classification", "regression"))
        _checks.in_range("test_size", self.test_size, 0.0, 1.0, low_open=True, high_open=True)
        _checks.positive("split_seed", self.split_seed, integer=True, allow_zero=True)
        if self.max_samples is not None:
            _checks.positive("max_samples", self.max_samples, integer=True)
        self.depths = _int_list("depths", self.depths, allow_zero=True)
        _checks.positive("width", self.width, integer=True)
        if self.hidden is not None:
            self.hidden = _int_list("hidden", self.hidden, allow_zero=False, allow_empty=True)
        self.activations = _list("activations", self.activations)
        self.inits = _list("inits", self.inits)
        self.optimizers = _list("optimizers", self.optimizers)
        self.lrs = [float(_checks.positive(f"lrs[{i}]", v)) for i, v in enumerate(_list("lrs", self.lrs))]
        self.seeds = _int_list("seeds", self.seeds, allow_zero=True)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: got {self.seeds}; seeds must be distinct")
        _checks.positive("epochs", self.epochs, integer=True)
        if isinstance(self.batch_size, str):
            _checks.one_of("batch_size", self.batch_size, ("full", "stochastic"))
        else:
            _checks.positive("batch_size", self.batch_size, integer=True)
        _checks.positive("stats_every", self.stats_every, integer=True)
        _checks.positive("histogram_bins", self.histogram_bins, integer=True, allow_zero=True)
        if not isinstance(self.n_jobs, numbers.Integral) or isinstance(self.n_jobs, bool) or self.n_jobs == 0:
            raise ValueError(f"n_jobs: got {self.n_jobs!r}; expected a positive int, or -1 for all cores")
        _checks.one_of("backend", self.backend, BACKENDS)
        if self.address is not None:
            if not isinstance(self.address, str) or not self.address.strip():
                raise ValueError(f"address: got {self.address!r}; expected a scheduler address such as "
                                 f"'tcp://10.0.0.5:8786'")
            if self.backend not in CLUSTER_BACKENDS:
                raise ValueError(f"address: got {self.address!r} with backend {self.backend!r}; an address "
                                 f"names a cluster, for backend 'dask' or 'ray'")
        _checks.positive("timeout", self.timeout)
        self._validate_search()
        # Resolve every name now, so a typo fails before any run starts.
        from .. import init as init_mod
        from .. import losses as losses_mod
        from .. import nn, optim

        for i, entry in enumerate(self.inits):
            _resolve("inits", i, entry, init_mod.registry)
        for i, entry in enumerate(self.optimizers):
            _resolve("optimizers", i, entry, optim.optimizers)
        for i, entry in enumerate(self.activations):
            _resolve("activations", i, entry, nn.layers)
        if self.loss is not None:
            losses_mod.get(self.loss)
        for key in ("inits", "optimizers", "activations"):
            labels = [label_of(e) for e in getattr(self, key)]
            dup = sorted({x for x in labels if labels.count(x) > 1})
            if dup:
                raise ValueError(f"{key}: the labels {dup} appear twice; give each entry a distinct 'label'")
        return self

    def _validate_search(self):
        _checks.one_of("search", self.search, SEARCHES)
        _checks.positive("search_seed", self.search_seed, integer=True, allow_zero=True)
        if self.search == "grid":
            for key in ("n_trials", "lr_range", "weight_decay_range"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: got {getattr(self, key)!r}, which only a random search reads; "
                                     f"set search = 'random' (--search random) or leave {key} out")
            return
        if self.n_trials is None:
            raise ValueError("n_trials: a random search needs the number of trials (--n-trials N)")
        _checks.positive("n_trials", self.n_trials, integer=True)
        for key in ("lr_range", "weight_decay_range"):
            value = getattr(self, key)
            if value is None:
                continue
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ValueError(f"{key}: got {value!r}; expected [low, high], two positive numbers")
            low, high = (float(_checks.positive(f"{key}[{i}]", v)) for i, v in enumerate(value))
            if not low < high:
                raise ValueError(f"{key}: got [{low:g}, {high:g}]; the low end must be below the high end")
            setattr(self, key, [low, high])
        if self.weight_decay_range is not None:
            from .. import optim

            for i, entry in enumerate(self.optimizers):
                try:
                    with_weight_decay(entry, self.weight_decay_range[0], optim)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"weight_decay_range: optimizers[{i}] ({label_of(entry)}) takes no "
                                     f"weight_decay ({exc})") from None

    # ------------------------------------------------------------------ runs
    def architectures(self) -> list[tuple]:
        """``(depth label, hidden widths)`` for each architecture of the study."""
        if self.hidden is not None:
            return [(len(self.hidden), tuple(self.hidden))]
        return [(d, (self.width,) * d) for d in self.depths]

    def runs(self) -> list[dict]:
        """The runs of the study, in a fixed order: one dict per combination and seed
        (per trial and seed for a random search)."""
        if self.search == "random":
            return self._random_runs()
        out = []
        product = itertools.product(self.inits, self.optimizers, self.activations, self.architectures(),
                                    self.lrs, self.seeds)
        for init, opt, act, (depth, hidden), lr, seed in product:
            out.append({"index": len(out), "init": init, "optimizer": opt, "activation": act,
                        "depth": depth, "hidden": list(hidden), "lr": lr, "seed": seed,
                        "labels": {"init": label_of(init), "optimizer": label_of(opt),
                                   "activation": label_of(act), "depth": str(depth), "lr": f"{lr:g}"}})
        return out

    def _random_runs(self) -> list[dict]:
        import numpy as np

        rng = np.random.default_rng(self.search_seed)
        archs = self.architectures()

        def pick(options):
            return options[int(rng.integers(len(options)))]

        def log_uniform(low, high):
            return float(math.exp(math.log(low) + rng.random() * (math.log(high) - math.log(low))))

        out = []
        for trial in range(self.n_trials):
            # A fixed order of draws: the same trials whatever the lists hold.
            init, opt, act, (depth, hidden) = pick(self.inits), pick(self.optimizers), pick(self.activations), \
                pick(archs)
            lr = log_uniform(*self.lr_range) if self.lr_range else float(pick(self.lrs))
            wd = log_uniform(*self.weight_decay_range) if self.weight_decay_range else None
            for seed in self.seeds:
                labels = {"init": label_of(init), "optimizer": label_of(opt), "activation": label_of(act),
                          "depth": str(depth), "lr": f"{lr:.3g}", "trial": str(trial)}
                run = {"index": len(out), "init": init, "optimizer": opt, "activation": act, "depth": depth,
                       "hidden": list(hidden), "lr": lr, "seed": seed, "trial": trial}
                if wd is not None:
                    run["weight_decay"] = wd
                    labels["weight_decay"] = f"{wd:.3g}"
                run["labels"] = labels
                out.append(run)
        return out

    def sampled(self) -> list[str]:
        """The hyperparameters a random search draws from a range (``lr``, ``weight_decay``)."""
        if self.search != "random":
            return []
        return [k for k, r in (("lr", self.lr_range), ("weight_decay", self.weight_decay_range)) if r]

    def varying(self) -> list[str]:
        """The factors with more than one value (they name the groups)."""
        if self.search == "random":
            sizes = {"init": len(self.inits), "optimizer": len(self.optimizers),
                     "activation": len(self.activations), "depth": len(self.architectures()),
                     "lr": 2 if self.lr_range else len(self.lrs)}
            out = ["trial"] + [k for k, n in sizes.items() if n > 1]
            return out + (["weight_decay"] if self.weight_decay_range else [])
        sizes = {"init": len(self.inits), "optimizer": len(self.optimizers),
                 "activation": len(self.activations), "depth": len(self.architectures()),
                 "lr": len(self.lrs)}
        return [k for k, n in sizes.items() if n > 1] or ["init"]

    # ------------------------------------------------------------------ TOML
    def to_dict(self) -> dict:
        return asdict(self)

    def to_toml(self) -> str:
        """The exact configuration as TOML (reads back to an equal spec)."""
        d = self.to_dict()
        data = {"name": d["name"]}
        for section, keys in SECTIONS.items():
            data[section] = {k: d[k] for k in keys}
        header = ("bpnn compare study. Reproduce it with:\n"
                  "    bpnn compare --config config.toml\n"
                  "(flags given with --config override the values below)")
        return toml_io.dumps(data, COMMENTS, header)

    @classmethod
    def from_dict(cls, data: dict, base: "StudySpec | None" = None) -> "StudySpec":
        """A spec from a dict, flat (``{"epochs": 5}``) or sectioned as the TOML file
        (``{"training": {"epochs": 5}}``); unknown keys are errors; missing keys keep
        the values of ``base`` (default: the built-in study)."""
        names = {f.name for f in fields(cls)}
        flat = {}
        for key, value in data.items():
            if key in SECTIONS and isinstance(value, dict):
                for k, v in value.items():
                    if k not in SECTIONS[key]:
                        close = difflib.get_close_matches(k, SECTIONS[key], n=1)
                        hint = f"; did you mean {close[0]!r}?" if close else ""
                        raise ValueError(f"[{key}] {k}: unknown setting{hint} Valid: {', '.join(SECTIONS[key])}")
                    flat[k] = v
            elif key in names:
                flat[key] = value
            else:
                close = difflib.get_close_matches(key, [*names, *SECTIONS], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{key}: unknown setting{hint} Valid: {', '.join(sorted(names))}")
        merged = (base or cls()).to_dict()
        merged.update(flat)
        return cls(**merged)

    @classmethod
    def from_toml(cls, path, base: "StudySpec | None" = None) -> "StudySpec":
        """Read a spec from a TOML file (see :meth:`to_toml` for the layout)."""
        try:
            return cls.from_dict(toml_io.load(path), base)
        except ValueError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise ValueError(f"{path}: {exc}") from None

    def replace(self, **changes) -> "StudySpec":
        """A copy with some fields changed (None values are ignored)."""
        d = self.to_dict()
        d.update({k: v for k, v in changes.items() if v is not None})
        return type(self)(**d)


def label_of(entry) -> str:
    """Display label: the name, a dict's ``label``, or ``class_name(k=v, ...)``."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        if entry.get("label"):
            return str(entry["label"])
        cfg = entry.get("config") or {}
        args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.items())
        return f"{entry.get('class_name', '?')}({args})" if args else str(entry.get("class_name", "?"))
    return str(entry)


def with_weight_decay(entry, weight_decay, optim):
    """A fresh optimizer of ``entry`` (a name or config) with its ``weight_decay`` set."""
    ident = strip_label(entry)
    if isinstance(ident, str):
        ident = {"class_name": ident, "config": {}}
    ident = {**ident, "config": {**(ident.get("config") or {}), "weight_decay": float(weight_decay)}}
    return optim.get(ident)


def strip_label(entry):
    """The registry identifier of an entry (its ``label`` removed)."""
    if isinstance(entry, dict):
        return {k: v for k, v in entry.items() if k != "label"}
    return entry


def _resolve(key, i, entry, registry):
    if not isinstance(entry, (str, dict)):
        raise ValueError(f"{key}[{i}]: got {entry!r}; expected a name or a table "
                         f"{{class_name = ..., config = {{...}}}}")
    try:
        return registry.get(strip_label(entry))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{key}[{i}]: {exc}") from None


def _list(name, value) -> list:
    if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
        value = [value]
    if not value:
        raise ValueError(f"{name}: got an empty list; give at least one value")
    return list(value)


def _int_list(name, value, allow_zero=False, allow_empty=False) -> list:
    if isinstance(value, numbers.Integral):
        value = [value]
    if not isinstance(value, (list, tuple)) or (not value and not allow_empty):
        raise ValueError(f"{name}: got {value!r}; expected a non-empty list of integers")
    return [int(_checks.positive(f"{name}[{i}]", v, integer=True, allow_zero=allow_zero))
            for i, v in enumerate(value)]
