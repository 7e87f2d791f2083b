"""Early stopping."""
from __future__ import annotations

from .. import _checks
from .callbacks import Callback
from .monitor import Monitor


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs — Keras' ``EarlyStopping``.

    An epoch improves when the monitored value beats the best so far by more than
    ``min_delta`` (direction from ``mode``: "min", "max" or "auto"). After ``patience``
    epochs in a row without improvement training stops (at the first one for patience 0); with ``restore_best_weights`` the
    parameters and buffers of the best epoch are put back (also when training ends
    without stopping early). ``stopped_epoch`` and ``best_epoch`` tell what happened.
    MATLAB's validation stopping is ``EarlyStopping("val_loss", patience=max_fail)``.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False):
        self.patience = _checks.positive("patience", patience, integer=True, allow_zero=True)
        self._monitor = Monitor(monitor, mode, min_delta)
        self.restore_best_weights = bool(restore_best_weights)
        self.wait = 0
        self.best_epoch = None
        self.stopped_epoch = None
        self._best_state = None

    def on_train_begin(self, logs=None):
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = self._monitor.value(logs)
        if self._monitor.improved(value):
            self._monitor.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                self._best_state = self.trainer.model.state_dict()
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
            if self.trainer.history is not None:
                self.trainer.history.stopped_reason = (
                    f"early stopping at epoch {epoch}: {self._monitor.monitor} did not improve for "
                    f"{self.wait} epochs (best {self._monitor.best:.6g} at epoch {self.best_epoch})")

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self._best_state is not None:
            self.trainer.model.load_state_dict(self._best_state)

    def get_state(self) -> dict:
        return {"wait": self.wait, "best_epoch": self.best_epoch, **self._monitor.state()}

    def set_state(self, state: dict) -> None:
        self.wait, self.best_epoch = int(state["wait"]), state["best_epoch"]
        self._monitor.load_state(state)
