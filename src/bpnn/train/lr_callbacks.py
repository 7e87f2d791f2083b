"""Callbacks that change the learning rate."""
from __future__ import annotations

from .. import _checks
from .callbacks import Callback
from .monitor import Monitor


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch start to ``schedule(epoch, lr)`` — Keras' callback.

    ``schedule`` may also take the epoch alone. For schedules in steps, give the
    optimizer a schedule as its ``lr`` instead.
    """

    def __init__(self, schedule):
        if not callable(schedule):
            raise ValueError(f"schedule: got {schedule!r}; expected a callable epoch -> lr")
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.trainer.optimizer
        try:
            lr = self.schedule(epoch, opt.current_lr)
        except TypeError:
            lr = self.schedule(epoch)
        opt.lr = float(lr)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving —
    the semantics of ``torch.optim.lr_scheduler.ReduceLROnPlateau``.

    Improvement is judged with ``min_delta`` (torch's ``threshold``, default 1e-4) in
    ``threshold_mode`` "rel" (default, as torch) or "abs" (Keras' ``min_delta``). After
    more than ``patience`` epochs without improvement: lr ← max(lr · factor, min_lr),
    then ``cooldown`` epochs pass before counting again.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, mode: str = "auto", eps: float = 1e-8):
        self.factor = float(_checks.in_range("factor", factor, 0.0, 1.0, low_open=True, high_open=True))
        self.patience = _checks.positive("patience", patience, integer=True, allow_zero=True)
        self.cooldown = _checks.positive("cooldown", cooldown, integer=True, allow_zero=True)
        self.min_lr = float(_checks.positive("min_lr", min_lr, allow_zero=True))
        self.eps = float(eps)
        self._monitor = Monitor(monitor, mode, min_delta, threshold_mode)
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs=None):
        value = self._monitor.value(logs)
        if self._monitor.improved(value):
            self._monitor.best = value
            self.wait = 0
        else:
            self.wait += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.wait > self.patience:
            opt = self.trainer.optimizer
            old = opt.current_lr
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                opt.lr = new
            self.cooldown_counter = self.cooldown
            self.wait = 0

    def get_state(self) -> dict:
        return {"wait": self.wait, "cooldown_counter": self.cooldown_counter,
                "lr": self.trainer.optimizer.current_lr, **self._monitor.state()}

    def set_state(self, state: dict) -> None:
        self.wait, self.cooldown_counter = int(state["wait"]), int(state["cooldown_counter"])
        self._monitor.load_state(state)
        self.trainer.optimizer.lr = float(state["lr"])
