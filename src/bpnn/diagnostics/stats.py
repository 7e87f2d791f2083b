"""Per-layer statistics during training: a Callback, and a one-shot probe of one batch.

:class:`LayerStats` looks inside training at a chosen frequency. On each observed
batch a :class:`~bpnn.diagnostics.probe.Probe` records, per leaf layer, the output
statistics and the back-propagated gradient δ (see :mod:`bpnn.diagnostics.probe`), and
after the optimizer's step, per layer with a ``weight``:

- ``weight_rms`` = √mean(W²), ``weight_std``;
- ``grad_norm`` = ‖∂L/∂W‖₂, ``grad_rms``, ``grad_std`` of the weight gradient;
- ``update_ratio`` = ‖W_after − W_before‖₂ / ‖W_before‖₂ of that step (the
  update-to-weight ratio; ≈ 1e-3 is the usual healthy order of magnitude); None when
  the weights were all zero;
- ``hist``: a histogram of W (``counts`` of equal bins over [``lo``, ``hi``]) at
  initialization, at the end and about ``histograms`` times between — the weight
  histograms over time.

Observed batches: the first batch of training (statistics **at initialization**:
the forward and backward pass run on the initial weights) and the last batch of every
``every``-th epoch and of the final epoch (**after training**). Every other batch runs
exactly as without the callback.

Cost (``benchmarks/bench_stats.py``): one observation of `bpnn compare`'s default
network (21 layers) takes about two training steps; with one observation per epoch of
43 steps that is ≈ 4 % of training time with the compiled kernels of ``bpnn[fast]``
(≈ 6 % with the NumPy fallbacks), and < 1 % for a 784-256-128-10 network.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import losses as losses_mod
from .._checks import positive
from .._kernels import stats as _sk
from .._kernels import use_compiled
from ..train.callbacks import Callback
from .probe import Probe, _mean_std, holders, kind_of, named_leaves


def layer_info(name: str, module) -> dict:
    """Name, class, kind and shapes of a leaf layer (plain data, JSON-ready)."""
    info = {"name": name, "type": type(module).__name__, "kind": kind_of(module),
            "has_weight": "weight" in module.params,
            "input_shape": list(module.input_shape) if module.input_shape is not None else None,
            "output_shape": list(module.output_shape) if module.output_shape is not None else None}
    if info["has_weight"]:
        info["weight_shape"] = list(module.params["weight"].shape)
    return info


def describe(info: dict) -> str:
    """``"layer 4 (Dense 100→100)"`` / ``"layer 5 (ReLU)"`` for messages."""
    kind = info["type"]
    if info.get("has_weight") and info.get("input_shape") and info.get("output_shape"):
        fan = "×".join(map(str, info["input_shape"]))
        out = "×".join(map(str, info["output_shape"]))
        return f"layer {info['name']} ({kind} {fan}→{out})"
    return f"layer {info['name']} ({kind})"


def epoch_label(epoch: int) -> str:
    """0 → ``"at initialization"``, k → ``"in epoch k"`` (epochs counted from 1)."""
    return "at initialization" if epoch == 0 else f"in epoch {epoch}"


def histogram(w, bins: int) -> dict | None:
    """``{"lo", "hi", "counts"}``: counts of ``bins`` equal bins over [lo, hi] = [min w,
    max w] (NumPy's ``histogram`` convention: the last bin includes its right edge;
    constant weights get the range [w − ½, w + ½]); None if w is not finite. A few vector
    operations on the array's device; :func:`histogram_edges` gives the bin edges."""
    flat = w.reshape(-1)
    return _histogram(flat, float(flat.min()), float(flat.max()), bins)


def _histogram(flat, lo, hi, bins):
    xp = backend.xp
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    if use_compiled(flat):
        counts = np.empty(bins, dtype=np.int64)
        _sk.hist(np.ascontiguousarray(flat), lo, bins / (hi - lo), counts)
        return {"lo": lo, "hi": hi, "counts": counts.tolist()}
    t = flat.astype(np.float64)  # bin of w: ⌊(w − lo) · scale⌋ in float64, as the kernel
    t -= lo
    t *= bins / (hi - lo)
    idx = t.astype(xp.intp)
    xp.minimum(idx, bins - 1, out=idx)
    return {"lo": lo, "hi": hi, "counts": backend.to_numpy(xp.bincount(idx, minlength=bins)).tolist()}


def histogram_edges(h: dict) -> np.ndarray:
    """The bin edges of a :func:`histogram` result."""
    return np.linspace(h["lo"], h["hi"], len(h["counts"]) + 1)


def param_stats(module, before, bins) -> dict:
    """Weight statistics of one layer (see the module docstring); ``before``: a copy of
    the weight before the step, for the update-to-weight ratio."""
    w, g = module.params["weight"], module.grads["weight"]
    n = w.size
    if use_compiled(w, g):
        return _param_stats_compiled(w, g, before, bins)
    w_mean, w_std = _mean_std(w)
    g_mean, g_std = _mean_std(g)
    g_rms = math.sqrt(g_std * g_std + g_mean * g_mean)
    out = {"weight_rms": math.sqrt(w_std * w_std + w_mean * w_mean), "weight_std": w_std,
           "grad_norm": g_rms * math.sqrt(n), "grad_rms": g_rms, "grad_std": g_std}
    if before is not None:
        b = before.reshape(-1)
        norm_before = math.sqrt(float(b @ b))
        b -= w.reshape(-1)  # the copy is ours: reuse it for the step
        step = math.sqrt(float(b @ b))
        out["update_ratio"] = step / norm_before if norm_before > 0 else None
    if bins:
        h = histogram(w, bins)
        if h is not None:
            out["hist"] = h
    return out


def _param_stats_compiled(w, g, before, bins) -> dict:
    n = w.size
    wf, gf = np.ascontiguousarray(w).reshape(-1), np.ascontiguousarray(g).reshape(-1)
    have = before is not None
    bf = np.ascontiguousarray(before).reshape(-1) if have else wf
    counts = np.zeros(bins, dtype=np.int64)
    ws, wss, gs, gss, bss, dss, lo, hi = _sk.param(wf, gf, bf, have, counts)

    def std(s, ss):
        m = s / n
        v = ss / n - m * m
        return math.sqrt(v) if v > 0 else 0.0

    out = {"weight_rms": math.sqrt(wss / n), "weight_std": std(ws, wss), "grad_norm": math.sqrt(gss),
           "grad_rms": math.sqrt(gss / n), "grad_std": std(gs, gss)}
    if have:
        out["update_ratio"] = math.sqrt(dss) / math.sqrt(bss) if bss > 0 else None
    if bins and math.isfinite(wss) and math.isfinite(lo) and math.isfinite(hi):
        lo, hi = (lo - 0.5, hi + 0.5) if hi <= lo else (float(lo), float(hi))
        out["hist"] = {"lo": lo, "hi": hi, "counts": counts.tolist()}
    return out


class LayerStats(Callback):
    """Records per-layer statistics during :meth:`bpnn.Trainer.fit` (see the module docstring).

    Parameters
    ----------
    every : int, default 1 — observe the last batch of every ``every``-th epoch (and of
        the last epoch).
    at_init : bool, default True — also observe the first batch (initial weights).
    bins : int, default 30 — bins of each weight histogram; 0 switches histograms off.
    histograms : int, default 10 — weight histograms are taken at initialization, at the
        end, and every ⌈epochs / histograms⌉ epochs: enough to see them move, at a
        fraction of the cost of one per record.
    dead_window : int, default 3 — a ReLU unit counts as dead when it outputs 0 for every
        sample of the last ``dead_window`` observed batches (one small batch alone would
        call a merely sparse unit dead: a unit active on 5 % of samples is silent on a
        whole batch of 32 with probability 0.95³² ≈ 19 %, on three such batches 0.7 %).

    Attributes
    ----------
    layers : list of dicts — name, type, kind and shapes of each leaf layer.
    records : list of dicts — one per observed batch: ``epoch`` (0 = initialization,
        k = the k-th epoch, counted from 1), ``progress`` (epochs completed before the
        pass, e.g. 4.98 for the last of 50 batches of epoch 5), ``step``, ``loss`` (of
        the batch) and ``layers`` (name → statistics).
    """

    def __init__(self, every: int = 1, at_init: bool = True, bins: int = 30, histograms: int = 10,
                 dead_window: int = 3):
        self.every = positive("every", every, integer=True)
        self.at_init = bool(at_init)
        self.bins = positive("bins", bins, integer=True, allow_zero=True)
        self.histograms = positive("histograms", histograms, integer=True)
        self.dead_window = positive("dead_window", dead_window, integer=True)
        self.layers: list[dict] = []
        self.records: list[dict] = []
        self._probe = None

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        logs = logs or {}
        self._epochs = logs.get("epochs")
        self._steps = logs.get("steps_per_epoch") or 1
        self._last = self._steps - 1 if logs.get("steps_per_epoch") else 0
        self._hist_every = -(-self._epochs // self.histograms) if self._epochs else 1
        self._leaves = list(named_leaves(self.trainer.model))
        self._weighted = [(name, m) for name, m in self._leaves if "weight" in m.params]
        self._probe_once = Probe(self.trainer.model, self._leaves, holders(self.trainer.model))
        self.layers = [layer_info(name, m) for name, m in self._leaves]
        self.records = []
        self._dead_masks = {}
        self._epoch = 0
        self._init_pending = self.at_init
        self._watch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        done = epoch + 1
        self._due = self._last if (done % self.every == 0 or done == self._epochs) else -1
        self._watch = 0 if self._init_pending else self._due

    def on_batch_begin(self, batch, logs=None):
        if batch != self._watch:  # the common case: one comparison, nothing else
            return
        if self._init_pending:
            self._init_pending, label = False, 0
            # Full-batch training: the first batch is also the last of epoch 1. Its pass
            # runs on the initial weights, so it is the initialization record only.
            self._watch = self._due if self._due > batch else -1
        else:
            label, self._watch = self._epoch + 1, -1
        self._label, self._batch = label, batch
        self._hist = self.bins if (label % self._hist_every == 0 or label == self._epochs) else 0
        self._before = {name: m.params["weight"].copy() for name, m in self._weighted}
        self._probe = self._probe_once.__enter__()

    def on_batch_end(self, batch, logs=None):
        probe, self._probe = self._probe, None
        if probe is None:
            return
        probe.__exit__(None, None, None)
        entries = probe.entries
        for name, entry in entries.items():
            mask = entry.pop("_dead", None)
            if mask is not None:
                window = self._dead_masks.setdefault(name, [])
                window.append(mask)
                del window[:-self.dead_window]
                dead = window[0]
                for other in window[1:]:
                    dead = dead & other
                entry["dead_fraction"] = float(backend.xp.count_nonzero(dead)) / dead.size
        for name, module in self._weighted:
            entries[name].update(param_stats(module, self._before.pop(name), self._hist))
        self.records.append({"epoch": self._label, "progress": self._epoch + self._batch / self._steps,
                             "step": self._epoch * self._steps + self._batch,
                             "loss": float((logs or {}).get("loss", float("nan"))), "layers": entries})

    def on_train_end(self, logs=None):
        if self._probe is not None:  # training stopped inside an observed batch
            self._probe.__exit__(None, None, None)
            self._probe = None

    # ------------------------------------------------------------------ reading
    def series(self, field: str, layer: str | None = None):
        """``(epochs, values)``: the record epochs and, per record, ``field`` of ``layer``
        (or of every layer as a 2-d array records × layers; None where absent)."""
        names = [info["name"] for info in self.layers] if layer is None else [layer]
        epochs = np.array([r["epoch"] for r in self.records])
        vals = np.array([[_num(r["layers"].get(n, {}).get(field)) for n in names] for r in self.records],
                        dtype=float)
        return epochs, (vals[:, 0] if layer is not None else vals)

    def to_dict(self) -> dict:
        """Plain data (JSON-ready): ``{"layers": [...], "records": [...]}``."""
        return {"layers": self.layers, "records": self.records}


def _num(v):
    return np.nan if v is None else v


def layer_statistics(model, X, y, loss="softmax_cross_entropy", training: bool = True,
                     bins: int = 30) -> dict:
    """Statistics of ONE forward and backward pass of ``model`` on the batch (X, y).

    Returns ``{"layers": [layer info], "record": {"layers": name → statistics, "loss": L}}``
    with the same fields as :class:`LayerStats` (no ``update_ratio``: nothing is
    updated). The model's parameter gradients are overwritten; its weights are not.
    Use it to look at a network at initialization, e.g. the back-propagated gradient
    variance ``delta_std**2`` per layer (Glorot & Bengio 2010, Figure 7).
    :func:`~bpnn.diagnostics.diagnose` reads the result as it is:
    ``diagnose(layer_statistics(model, X, y))`` gives the verdicts at initialization.
    """
    from .. import _checks

    loss = losses_mod.get(loss)
    X = _checks.array("X", X, min_ndim=2)
    if not model.built:
        model.build(X.shape[1:], model.rng, model.dtype)
    xd = backend.to_device(X.astype(model.dtype, copy=False))
    yd = loss.check_target(np.asarray(y), model.output_shape[-1], "y")
    if yd.dtype.kind == "f" or yd.ndim > 1:
        yd = yd.astype(model.dtype, copy=False)
    yd = backend.to_device(yd)
    leaves = list(named_leaves(model))
    with Probe(model, leaves) as probe:
        out = model.forward(xd, training=training)
        value = float(loss.forward(out, yd))
        model.backward(loss.backward(), input_grad=False)
    for name, m in leaves:
        probe.entries[name].pop("_dead", None)
        if "weight" in m.params:
            probe.entries[name].update(param_stats(m, None, bins))
    return {"layers": [layer_info(n, m) for n, m in leaves],
            "record": {"epoch": 0, "progress": 0.0, "step": 0, "loss": value, "layers": probe.entries}}
