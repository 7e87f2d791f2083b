"""Health verdicts: what went wrong inside training, in plain words, naming layer and epoch.

:func:`diagnose` reads the records of :class:`~bpnn.diagnostics.LayerStats` (and the
History's loss curve) and returns a list of :class:`Verdict`. Each rule and its
default threshold (all in :class:`Thresholds`):

- **vanishing gradients** — the back-propagated gradient reaching the first weighted
  layer is less than ``vanishing_ratio`` (1e-2) times the one reaching the last:
  rms(δ_first) / rms(δ_last) < 1e-2, δ = ∂L/∂(layer output). The early layers then
  barely learn (Hochreiter 1991; Glorot & Bengio 2010).
- **exploding gradients** — that ratio above ``exploding_ratio`` (1e2), or a
  non-finite gradient; and training stopped by a non-finite loss.
- **dead layer** — a ReLU layer where at least ``dead_fraction`` (50 %) of the units
  output 0 for every sample of the observed batches (LayerStats: the last three).
- **saturated layer** — a sigmoid or tanh layer where at least ``saturated_fraction``
  (50 %) of the outputs sit where the derivative is below 5 % of its peak.
- **unbroken symmetry** — every unit of a hidden weighted layer computes the same value
  (relative spread ≤ ``symmetry_tol``, 1e-3) at the end of training: a zero or
  constant initialization was never broken, so the layer is worth one unit. The
  tolerance is not 0 because float32 GEMM kernels sum different output columns in
  different orders (edge kernels, blocking), so identical units drift apart by
  rounding alone — about 1e-5 relative after a few epochs — while units that
  learned different features differ by order 1.
- **rising damping** — a curvature optimizer's damping λ (K-FAC with
  ``adapt_damping=True``: the History's ``damping``) ended more than ``damping_rise``
  (100) times above its first epoch's value: the steps kept doing worse than the
  K-FAC quadratic model predicted (reduction ratio ρ < 1/4), so λ grew until K-FAC
  took plain small gradient steps.
- **loss plateau** — for ``plateau_epochs`` (5) or more epochs the training loss moved
  less than ``plateau_tol`` (1 %) while it stayed above ``plateau_level`` (50 %) of the
  first epoch's loss.

A rule reports the first observation (epoch) where it holds; layers are named as in
``model.named_parameters()`` (``"4"`` is ``model.layers[4]``).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from .stats import describe, epoch_label


@dataclass
class Thresholds:
    """Thresholds of the health rules (see ``bpnn.diagnostics.health``)."""

    vanishing_ratio: float = 1e-2
    exploding_ratio: float = 1e2
    dead_fraction: float = 0.5
    saturated_fraction: float = 0.5
    symmetry_tol: float = 1e-3
    plateau_epochs: int = 5
    plateau_tol: float = 1e-2
    plateau_level: float = 0.5
    damping_rise: float = 100.0


@dataclass
class Verdict:
    """One finding: ``kind``, the ``layer`` name (None: the whole network), the ``epoch``
    (0 = initialization, k = epoch k counted from 1), the measured ``value`` and the
    plain-words ``message``."""

    kind: str
    layer: str | None
    epoch: int
    value: float
    message: str
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        return cls(**d)


KINDS = ("vanishing_gradients", "exploding_gradients", "non_finite_loss", "dead_layer",
         "saturated_layer", "unbroken_symmetry", "rising_damping", "loss_plateau")


def _as_stats(stats):
    if stats is None:
        return [], []
    if hasattr(stats, "to_dict"):
        stats = stats.to_dict()
    if "record" in stats and "records" not in stats:  # one pass: layer_statistics(...)
        return list(stats.get("layers", [])), [stats["record"]]
    return list(stats.get("layers", [])), list(stats.get("records", []))


def _losses(history):
    if history is None:
        return [], None
    if hasattr(history, "history"):
        return list(history.history.get("loss", [])), getattr(history, "stopped_reason", None)
    if isinstance(history, dict):
        return list(history.get("loss", [])), history.get("stopped_reason")
    return list(history), None


def _series(history, key) -> list:
    """The per-epoch values of ``key`` in a History or its dict ([] when absent)."""
    if hasattr(history, "history"):
        history = history.history
    return list(history.get(key, [])) if isinstance(history, dict) else []


def _damping(lams, t):
    lams = [float(v) for v in lams if _finite(v)]
    if len(lams) < 2 or lams[0] <= 0 or lams[-1] <= t.damping_rise * lams[0]:
        return []
    epoch = next(i for i, v in enumerate(lams) if v > t.damping_rise * lams[0]) + 1
    return [Verdict("rising_damping", None, epoch, lams[-1],
                    f"K-FAC's damping rose from {lams[0]:.3g} to {lams[-1]:.3g} (over {t.damping_rise:g}× by "
                    f"epoch {epoch}): its steps kept reducing the loss less than its quadratic model predicted, "
                    f"so it fell back to small gradient steps. Lower the learning rate or kl_clip, or start "
                    f"from a larger damping.")]


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def diagnose(stats=None, history=None, thresholds: Thresholds | None = None) -> list[Verdict]:
    """Health verdicts from LayerStats records (``stats``: a :class:`LayerStats`, its
    ``to_dict()``, or the one-pass result of :func:`~bpnn.diagnostics.layer_statistics`,
    whose record counts as epoch 0, at initialization) and a loss curve (``history``: a
    History, its dict, or a list of per-epoch losses). Either may be None. Returns the
    verdicts, most serious first."""
    t = thresholds or Thresholds()
    layers, records = _as_stats(stats)
    losses, stopped = _losses(history)
    info = {d["name"]: d for d in layers}
    out: list[Verdict] = []
    if stopped:
        found = re.search(r"at epoch (\d+)", stopped)
        epoch = int(found.group(1)) + 1 if found else len(losses) + 1
        out.append(Verdict("non_finite_loss", None, epoch, float("nan"), f"training diverged: {stopped}"))
    out += _gradient_flow(layers, records, t)
    out += _per_layer(info, records, "relu", "dead_fraction", t.dead_fraction, "dead_layer",
                      "{pct} of its ReLUs are dead (0 for every sample observed) {when}; "
                      "they pass no gradient and never recover. Try He init, a smaller "
                      "learning rate, or LeakyReLU.")
    out += _per_layer(info, records, ("sigmoid", "tanh"), "saturation", t.saturated_fraction,
                      "saturated_layer",
                      "{pct} of its outputs are saturated (derivative < 5 % of its peak) {when}; "
                      "gradients through it are damped. Try Xavier init, smaller inputs or weights, "
                      "or a ReLU.")
    out += _symmetry(layers, records, t)
    out += _damping(_series(history, "damping"), t)
    out += _plateau(losses, layers, t)
    order = {k: i for i, k in enumerate(KINDS)}
    out.sort(key=lambda v: (order.get(v.kind, 99), v.epoch))
    return out


def _gradient_flow(layers, records, t):
    weighted = [d for d in layers if d.get("has_weight")]
    if len(weighted) < 2:
        return []
    first, last = weighted[0], weighted[-1]
    found = {}
    for rec in records:
        entries = rec["layers"]
        a = entries.get(first["name"], {}).get("delta_rms")
        b = entries.get(last["name"], {}).get("delta_rms")
        bad_layer = next((d for d in weighted
                          if any(k in entries.get(d["name"], {}) and not _finite(entries[d["name"]][k])
                                 for k in ("delta_rms", "grad_norm"))), None)
        if bad_layer is not None and "exploding_gradients" not in found:
            found["exploding_gradients"] = Verdict(
                "exploding_gradients", bad_layer["name"], rec["epoch"], float("inf"),
                f"exploding gradients {epoch_label(rec['epoch'])}: the gradient of {describe(bad_layer)} "
                f"is not finite. Lower the learning rate, clip gradients, or use a smaller init.")
            continue
        if not (_finite(a) and _finite(b)) or b <= 1e-30:
            continue
        ratio = a / b
        kind = ("vanishing_gradients" if ratio < t.vanishing_ratio
                else "exploding_gradients" if ratio > t.exploding_ratio else None)
        if kind is None or kind in found:
            continue
        end = _ratio_at_end(records, first, last)
        tail = ""
        if end is not None and rec is not records[-1]:
            healthy = t.vanishing_ratio <= end <= t.exploding_ratio
            tail = (f" (recovered: {end:.2g}× at the end of training)" if healthy
                    else f" (still {end:.2g}× at the end of training)")
        if kind == "vanishing_gradients" and ratio == 0:
            msg = (f"vanishing gradients {epoch_label(rec['epoch'])}: no gradient at all reaches "
                   f"{describe(first)} (∂L/∂output is 0 there, {b:.2g} rms at {describe(last)}){tail}; "
                   f"the first layers cannot learn. Try He/Xavier init, ReLU, or batch norm.")
        elif kind == "vanishing_gradients":
            msg = (f"vanishing gradients {epoch_label(rec['epoch'])}: the gradient reaching {describe(first)} "
                   f"is {ratio:.2g}× the one reaching {describe(last)} (rms of ∂L/∂output){tail}; "
                   f"the first layers barely learn. Try He/Xavier init, ReLU, or batch norm.")
        else:
            msg = (f"exploding gradients {epoch_label(rec['epoch'])}: the gradient reaching {describe(first)} "
                   f"is {ratio:.3g}× the one reaching {describe(last)} (rms of ∂L/∂output){tail}. "
                   f"Use a smaller init (He/Xavier), a lower learning rate, or gradient clipping.")
        found[kind] = Verdict(kind, first["name"], rec["epoch"], ratio, msg,
                              {"reference_layer": last["name"], "ratio_at_end": end})
    return list(found.values())


def _ratio_at_end(records, first, last):
    if not records:
        return None
    e = records[-1]["layers"]
    a = e.get(first["name"], {}).get("delta_rms")
    b = e.get(last["name"], {}).get("delta_rms")
    if _finite(a) and _finite(b) and b > 1e-30:
        return a / b
    return None


def _per_layer(info, records, kinds, key, threshold, verdict_kind, template):
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    out = []
    for name, d in info.items():
        if d.get("kind") not in kinds:
            continue
        for rec in records:
            v = rec["layers"].get(name, {}).get(key)
            if _finite(v) and v >= threshold:
                last = records[-1]["layers"].get(name, {}).get(key)
                when = epoch_label(rec["epoch"])
                if rec is not records[-1] and _finite(last):
                    when += f" ({last:.0%} at the end of training)"
                msg = f"{describe(d)}: " + template.format(pct=f"{v:.0%}", when=when)
                out.append(Verdict(verdict_kind, name, rec["epoch"], float(v), msg))
                break
    return out


def _symmetry(layers, records, t):
    if not records:
        return []
    weighted = [d for d in layers if d.get("has_weight")]
    out = []
    for d in weighted[:-1]:  # hidden layers: the output layer's units are the classes
        name = d["name"]
        shape = d.get("output_shape") or []
        if not shape or shape[0] < 2:
            continue
        spreads = [rec["layers"].get(name, {}).get("unit_spread") for rec in records]
        if not _finite(spreads[-1]) or spreads[-1] > t.symmetry_tol:
            continue
        since = len(records) - 1
        while since > 0 and _finite(spreads[since - 1]) and spreads[since - 1] <= t.symmetry_tol:
            since -= 1
        first, end = records[since]["epoch"], records[-1]["epoch"]
        span = (f"from initialization to epoch {end}" if first == 0
                else f"from epoch {first} to epoch {end}")
        out.append(Verdict(
            "unbroken_symmetry", name, first, float(spreads[-1]),
            f"unbroken symmetry in {describe(d)}: all {shape[0]} units compute the same value {span} "
            f"— a zero or constant init gives every unit the same gradient, so they never differ "
            f"and the layer is worth one unit. Use a random init (Xavier, He, orthogonal)."))
    return out


def _plateau(losses, layers, t):
    losses = [float(v) for v in losses]
    n = len(losses)
    if n < t.plateau_epochs or not all(math.isfinite(v) for v in losses):
        return []
    level = t.plateau_level * losses[0]
    for s in range(0, n - t.plateau_epochs + 1):
        ref = losses[s]
        if ref < level or ref <= 0:
            continue
        e = s
        while e + 1 < n and abs(losses[e + 1] - ref) <= t.plateau_tol * ref:
            e += 1
        if e - s + 1 >= t.plateau_epochs:
            msg = (f"loss plateau: the training loss stayed at {ref:.4g} (within {t.plateau_tol:.0%}) "
                   f"from epoch {s + 1} to epoch {e + 1}")
            k = _n_classes(layers)
            if k and k > 1 and abs(ref - math.log(k)) <= 0.02 * math.log(k):
                msg += (f" — ≈ ln {k} = {math.log(k):.4g}, the loss of a uniform guess over {k} classes: "
                        f"the network has learned nothing")
            msg += ". Check the init (zero? too small for this depth?), the learning rate, and the verdicts above."
            return [Verdict("loss_plateau", None, s + 1, ref, msg, {"until_epoch": e + 1})]
    return []


def _n_classes(layers):
    for d in reversed(layers):
        shape = d.get("output_shape")
        if d.get("has_weight") and shape:
            return int(shape[0])
    return None
