"""Learning-rate schedules: objects mapping a step (or epoch) count t to a learning rate.

As in optax, a schedule is a function ``t → η_t`` (here an object with ``__call__``, a
``get_config`` and, for the one with memory, a state). Give it to an optimizer as its
``lr``::

    opt = bpnn.optim.SGD(lr=bpnn.optim.CosineAnnealing(0.1, T_max=30), momentum=0.9)

``unit`` says what t counts: ``"epoch"`` (the default, as ``torch.optim.lr_scheduler``
is usually stepped once per epoch; the optimizer reads the epoch the Trainer passes to
:meth:`~bpnn.optim.Optimizer.start_epoch`) or ``"step"`` (optimizer steps taken so far,
0 for the first). Every schedule gives at t the value its ``torch.optim.lr_scheduler``
twin gives after t calls of ``scheduler.step()`` (t = 0: the initial learning rate),
and the History's ``lr`` holds, for each epoch, the learning rate of its first step.
``lr`` (the base rate, torch's ``base_lr``) is each schedule's first argument; the
other names are torch's.
"""
from __future__ import annotations

import bisect
import math

from .. import _checks
from .._registry import Configurable, Registry

#: The learning-rate schedules by name (``"exponential_decay"``, ``"cosine_annealing"``, ...).
schedules = Registry("schedule")
UNITS = ("epoch", "step")


class Schedule(Configurable):
    """Base class: ``schedule(t) -> float`` for t = 0, 1, 2, ... in ``unit``."""

    def __init__(self, unit: str = "epoch"):
        self.unit = _checks.one_of("unit", unit, UNITS)

    def __call__(self, t) -> float:
        t = int(t)
        if t < 0:
            raise ValueError(f"t: got {t}; a schedule is defined for t = 0, 1, 2, ...")
        return self.value(t)

    def value(self, t: int) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What a checkpoint must keep beyond the step/epoch count (nothing, but for plateaus)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def get_config(self) -> dict:
        return {"unit": self.unit}


def _lr(value) -> float:
    return float(_checks.positive("lr", value))


@schedules.register("constant")
class Constant(Schedule):
    """η_t = η₀ for every t (no scheduler in torch)."""

    def __init__(self, lr: float, unit: str = "epoch"):
        super().__init__(unit)
        self.lr = _lr(lr)

    def value(self, t):
        return self.lr

    def get_config(self):
        return {"lr": self.lr, **super().get_config()}


@schedules.register("step_decay", "step_lr")
class StepDecay(Schedule):
    """η_t = η₀ · γ^⌊t / step_size⌋ — ``torch.optim.lr_scheduler.StepLR`` (default γ = 0.1)."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1, unit: str = "epoch"):
        super().__init__(unit)
        self.lr = _lr(lr)
        self.step_size = _checks.positive("step_size", step_size, integer=True)
        self.gamma = float(_checks.positive("gamma", gamma))

    def value(self, t):
        return self.lr * self.gamma ** (t // self.step_size)

    def get_config(self):
        return {"lr": self.lr, "step_size": self.step_size, "gamma": self.gamma, **super().get_config()}


@schedules.register("multi_step_decay", "multistep_lr", "multi_step")
class MultiStepDecay(Schedule):
    """η_t = η₀ · γ^(number of milestones ≤ t) — ``torch.optim.lr_scheduler.MultiStepLR``
    (default γ = 0.1). ``milestones``: increasing positive integers."""

    def __init__(self, lr: float, milestones, gamma: float = 0.1, unit: str = "epoch"):
        super().__init__(unit)
        self.lr = _lr(lr)
        ms = [int(_checks.positive("milestones", m, integer=True)) for m in milestones]
        if not ms or any(b <= a for a, b in zip(ms, ms[1:])):
            raise ValueError(f"milestones: got {list(milestones)!r}; expected increasing positive integers")
        self.milestones = ms
        self.gamma = float(_checks.positive("gamma", gamma))

    def value(self, t):
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, t)

    def get_config(self):
        return {"lr": self.lr, "milestones": list(self.milestones), "gamma": self.gamma,
                **super().get_config()}


@schedules.register("exponential_decay", "exponential_lr", "exponential")
class ExponentialDecay(Schedule):
    """η_t = η₀ · γᵗ — ``torch.optim.lr_scheduler.ExponentialLR``."""

    def __init__(self, lr: float, gamma: float, unit: str = "epoch"):
        super().__init__(unit)
        self.lr = _lr(lr)
        self.gamma = float(_checks.positive("gamma", gamma))

    def value(self, t):
        return self.lr * self.gamma**t

    def get_config(self):
        return {"lr": self.lr, "gamma": self.gamma, **super().get_config()}


@schedules.register("inverse_time_decay", "inverse_time")
class InverseTimeDecay(Schedule):
    """η_t = η₀ / (1 + k · t / s), with ⌊t / s⌋ when ``staircase`` — the BP seeds' formula
    η₀/(1 + k·epoch) with the default s = ``decay_steps`` = 1; Keras'
    ``InverseTimeDecay``; in torch ``LambdaLR(opt, lambda t: 1 / (1 + k * t))``.
    k = ``decay_rate`` ≥ 0 (Darken & Moody's "search then converge" family).
    """

    def __init__(self, lr: float, decay_rate: float, decay_steps: int = 1, staircase: bool = False,
                 unit: str = "epoch"):
        super().__init__(unit)
        self.lr = _lr(lr)
        self.decay_rate = float(_checks.positive("decay_rate", decay_rate, allow_zero=True))
        self.decay_steps = _checks.positive("decay_steps", decay_steps, integer=True)
        self.staircase = bool(staircase)

    def value(self, t):
        p = t // self.decay_steps if self.staircase else t / self.decay_steps
        return self.lr / (1.0 + self.decay_rate * p)

    def get_config(self):
        return {"lr": self.lr, "decay_rate": self.decay_rate, "decay_steps": self.decay_steps,
                "staircase": self.staircase, **super().get_config()}


@schedules.register("polynomial_decay", "polynomial_lr", "polynomial")
class PolynomialDecay(Schedule):
    """η_t = (η₀ − η_end) · (1 − min(t, T) / T)^p + η_end — with η_end = 0 (the default)
    ``torch.optim.lr_scheduler.PolynomialLR`` (T = ``total_iters``, default 5; p =
    ``power``, default 1); optax's ``polynomial_schedule``. Stays at η_end after T. The
    optimizer refuses a zero rate, so with η_end = 0 make T longer than the run.
    """

    def __init__(self, lr: float, total_iters: int = 5, power: float = 1.0, end_lr: float = 0.0,
                 unit: str = "epoch"):
        super().__init__(unit)
        self.lr = _lr(lr)
        self.total_iters = _checks.positive("total_iters", total_iters, integer=True)
        self.power = float(_checks.positive("power", power))
        self.end_lr = float(_checks.in_range("end_lr", end_lr, 0.0, self.lr))

    def value(self, t):
        frac = 1.0 - min(t, self.total_iters) / self.total_iters
        return (self.lr - self.end_lr) * frac**self.power + self.end_lr

    def get_config(self):
        return {"lr": self.lr, "total_iters": self.total_iters, "power": self.power, "end_lr": self.end_lr,
                **super().get_config()}


@schedules.register("cosine_annealing", "cosine_annealing_lr", "cosine")
class CosineAnnealing(Schedule):
    """η_t = η_min + (η₀ − η_min) · (1 + cos(π t / T_max)) / 2 — SGDR's annealing without
    restarts (Loshchilov & Hutter 2017); ``torch.optim.lr_scheduler.CosineAnnealingLR``
    (η_min = ``eta_min``, default 0). Like torch's, the cosine goes on past T_max (the
    rate rises again after η_min at t = T_max, which the optimizer refuses if it is 0): set
    T_max to the length of the run, or use :class:`CosineWarmRestarts`.
    """

    def __init__(self, lr: float, T_max: int, eta_min: float = 0.0, unit: str = "epoch"):  # noqa: N803
        super().__init__(unit)
        self.lr = _lr(lr)
        self.T_max = _checks.positive("T_max", T_max, integer=True)
        self.eta_min = float(_checks.in_range("eta_min", eta_min, 0.0, self.lr))

    def value(self, t):
        return self.eta_min + (self.lr - self.eta_min) * (1.0 + math.cos(math.pi * t / self.T_max)) / 2.0

    def get_config(self):
        return {"lr": self.lr, "T_max": self.T_max, "eta_min": self.eta_min, **super().get_config()}


@schedules.register("cosine_warm_restarts", "sgdr")
class CosineWarmRestarts(Schedule):
    """SGDR, cosine annealing with warm restarts (Loshchilov & Hutter 2017) —
    ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``.

    The run is cut into cycles of lengths T_0, T_0·T_mult, T_0·T_mult², ...; with T_cur
    the position inside the current cycle of length T_i,
    η_t = η_min + (η₀ − η_min) · (1 + cos(π T_cur / T_i)) / 2, so η jumps back to η₀ at
    each restart. T_0 ≥ 1 and T_mult ≥ 1 are integers (default T_mult = 1), η_min =
    ``eta_min`` (default 0). The cycle is found by exact integer arithmetic, as torch's
    ``step()`` does.
    """

    def __init__(self, lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0,  # noqa: N803
                 unit: str = "epoch"):
        super().__init__(unit)
        self.lr = _lr(lr)
        self.T_0 = _checks.positive("T_0", T_0, integer=True)
        self.T_mult = _checks.positive("T_mult", T_mult, integer=True)
        self.eta_min = float(_checks.in_range("eta_min", eta_min, 0.0, self.lr))

    def cycle(self, t: int) -> tuple[int, int]:
        """(T_cur, T_i): the position in the current cycle and that cycle's length."""
        if self.T_mult == 1:
            return t % self.T_0, self.T_0
        t_cur, t_i = t, self.T_0
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= self.T_mult
        return t_cur, t_i

    def value(self, t):
        t_cur, t_i = self.cycle(t)
        return self.eta_min + (self.lr - self.eta_min) * (1.0 + math.cos(math.pi * t_cur / t_i)) / 2.0

    def get_config(self):
        return {"lr": self.lr, "T_0": self.T_0, "T_mult": self.T_mult, "eta_min": self.eta_min,
                **super().get_config()}


@schedules.register("linear_warmup", "warmup")
class LinearWarmup(Schedule):
    """Linear warm-up, then another schedule (Goyal et al. 2017).

    For t < W = ``warmup_iters``: η_t = η_after(0) · (s + (1 − s) · t / W), s =
    ``start_factor`` (default 1/3, torch's); from t = W on: η_t = η_after(t − W) — the
    following schedule starts from its own t = 0 when the warm-up ends. ``after`` is a
    schedule or a number (then constant). Its torch twin is
    ``SequentialLR(opt, [LinearLR(opt, s, 1.0, W), after], milestones=[W])``. ``unit``
    defaults to ``after``'s and must equal it.
    """

    def __init__(self, after, warmup_iters: int, start_factor: float = 1.0 / 3.0, unit: str | None = None):
        if isinstance(after, dict):
            after = schedules.get(after)
        if not isinstance(after, Schedule):
            after = Constant(after, unit or "epoch")
        super().__init__(after.unit if unit is None else unit)
        if after.unit != self.unit:
            raise ValueError(f"unit: the warm-up counts in {self.unit!r} but the schedule after it in "
                             f"{after.unit!r}; give both the same unit")
        self.after = after
        self.warmup_iters = _checks.positive("warmup_iters", warmup_iters, integer=True)
        self.start_factor = float(_checks.in_range("start_factor", start_factor, 0.0, 1.0, low_open=True))

    def value(self, t):
        w = self.warmup_iters
        if t >= w:
            return self.after(t - w)
        return self.after(0) * (self.start_factor + (1.0 - self.start_factor) * t / w)

    def state_dict(self):
        return self.after.state_dict()

    def load_state_dict(self, state):
        self.after.load_state_dict(state)

    def get_config(self):
        return {"after": schedules.serialize(self.after), "warmup_iters": self.warmup_iters,
                "start_factor": self.start_factor, **super().get_config()}


@schedules.register("reduce_on_plateau", "plateau")
class ReduceOnPlateau(Schedule):
    """Multiply the rate by ``factor`` when a monitored value stops improving —
    ``torch.optim.lr_scheduler.ReduceLROnPlateau``, with its defaults.

    Unlike the other schedules it depends on a metric, so it has state: call
    :meth:`step` with the metric once per epoch (``mode`` "min": lower is better; "max").
    A value v improves on the best b when v < b·(1 − θ) ("rel", the default) or
    v < b − θ ("abs") for "min" (and mirrored for "max"), θ = ``threshold`` (1e-4).
    After more than ``patience`` (10) epochs without improvement:
    η ← max(η · factor, min_lr) (unless that changes η by less than ``eps``), then
    ``cooldown`` (0) epochs pass before bad epochs are counted again.
    ``schedule(t)`` returns the current rate whatever t is.
    """

    def __init__(self, lr: float, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, eps: float = 1e-8, unit: str = "epoch"):
        super().__init__(unit)
        self.initial_lr = self.lr = _lr(lr)
        self.mode = _checks.one_of("mode", mode, ("min", "max"))
        self.factor = float(_checks.in_range("factor", factor, 0.0, 1.0, low_open=True, high_open=True))
        self.patience = _checks.positive("patience", patience, integer=True, allow_zero=True)
        self.threshold = float(_checks.positive("threshold", threshold, allow_zero=True))
        self.threshold_mode = _checks.one_of("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = _checks.positive("cooldown", cooldown, integer=True, allow_zero=True)
        self.min_lr = float(_checks.positive("min_lr", min_lr, allow_zero=True))
        self.eps = float(_checks.positive("eps", eps, allow_zero=True))
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def value(self, t):
        return self.lr

    def is_better(self, value: float) -> bool:
        best, th = self.best, self.threshold
        if self.mode == "min":
            return value < (best * (1.0 - th) if self.threshold_mode == "rel" else best - th)
        return value > (best * (1.0 + th) if self.threshold_mode == "rel" else best + th)

    def step(self, metric) -> float:
        """Record one epoch's ``metric``; return the learning rate for the next epoch."""
        value = float(metric)
        if self.is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new = max(self.lr * self.factor, self.min_lr)
            if self.lr - new > self.eps:
                self.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.lr

    def state_dict(self):
        return {"lr": self.lr, "best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state):
        self.lr = float(state["lr"])
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])

    def get_config(self):
        return {"lr": self.initial_lr, "mode": self.mode, "factor": self.factor, "patience": self.patience,
                "threshold": self.threshold, "threshold_mode": self.threshold_mode,
                "cooldown": self.cooldown, "min_lr": self.min_lr, "eps": self.eps, **super().get_config()}


def get(identifier) -> Schedule:
    """A schedule from a config dict (``{"class_name": "cosine", "config": {"lr": 0.1, "T_max": 30}}``)
    or an instance (a bare name is not enough: every schedule needs its ``lr``)."""
    return schedules.get(identifier)
