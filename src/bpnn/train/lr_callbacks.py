"""Callbacks that change the learning rate."""
from __future__ import annotations

import math

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

    The logic is :class:`bpnn.optim.ReduceOnPlateau`'s (the same object a user may give
    an optimizer as its ``lr``); this callback feeds it ``logs[monitor]`` after every
    epoch and sets the optimizer's learning rate to the result. Improvement is judged
    with ``min_delta`` (torch's ``threshold``, default 1e-4) in ``threshold_mode`` "rel"
    (default, as torch) or "abs" (Keras' ``min_delta``). After more than ``patience``
    epochs without improvement: lr ← max(lr · factor, min_lr), then ``cooldown`` epochs
    pass before counting again. ``mode`` "auto" means "max" for accuracy-like keys.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, mode: str = "auto", eps: float = 1e-8):
        from ..optim.schedules import ReduceOnPlateau

        self._monitor = Monitor(monitor, mode, min_delta, threshold_mode)
        # The learning rate is read from the optimizer when training starts.
        self._plateau = ReduceOnPlateau(1.0, mode=self._monitor.mode, factor=factor, patience=patience,
                                        threshold=min_delta, threshold_mode=threshold_mode,
                                        cooldown=cooldown, min_lr=min_lr, eps=eps)
        self._started = False

    def on_train_begin(self, logs=None):
        if not self._started:
            self._plateau.lr = self.trainer.optimizer.current_lr
            self._started = True
        elif self.trainer.initial_epoch:  # resumed: the checkpoint's rate is the plateau's
            self.trainer.optimizer.lr = self._plateau.lr

    def on_epoch_end(self, epoch, logs=None):
        self.trainer.optimizer.lr = self._plateau.step(self._monitor.value(logs))

    def get_state(self) -> dict:
        state = dict(self._plateau.state_dict())
        state["best"] = state["best"] if math.isfinite(state["best"]) else None
        state["started"] = self._started
        return state

    def set_state(self, state: dict) -> None:
        """Restore the plateau's state (checked whole first); the optimizer gets its rate
        when training starts."""
        if not isinstance(state, dict):
            raise ValueError(f"ReduceLROnPlateau state: got {state!r}; expected a dict")
        state = dict(state)
        state["best"] = self._monitor.parse_state(state)
        for key, low in (("lr", 0.0), ("num_bad_epochs", 0), ("cooldown_counter", 0)):
            v = state.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < low \
                    or (key == "lr" and v <= 0) or (key != "lr" and v != int(v)):
                raise ValueError(f"ReduceLROnPlateau state: {key}: got {v!r}; expected "
                                 + ("a finite number > 0" if key == "lr" else "an integer >= 0"))
        self._plateau.load_state_dict(state)
        self._started = bool(state.get("started", True))
