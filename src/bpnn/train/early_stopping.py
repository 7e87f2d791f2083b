"""Stopping on a monitored value: Keras' EarlyStopping, and MATLAB's validation stop as
the Levenberg–Marquardt trainer runs it."""
from __future__ import annotations

import math

from .. import _checks
from .best_weights import BestWeights
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
        self._best_weights = BestWeights()

    def on_train_begin(self, logs=None):
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = self._monitor.value(logs)
        if self._monitor.improved(value):
            self._monitor.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                self._best_weights.save(self.trainer, epoch, value)
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
        if self.restore_best_weights:
            self._best_weights.restore()

    def get_state(self) -> dict:
        return {"wait": self.wait, "best_epoch": self.best_epoch, **self._monitor.state()}

    def set_state(self, state: dict) -> None:
        self.wait, self.best_epoch = int(state["wait"]), state["best_epoch"]
        self._monitor.load_state(state)


class ValidationStop:
    """MATLAB's validation stopping (``net.trainParam.max_fail``), as the
    Levenberg–Marquardt trainer runs it.

    :meth:`update` takes each epoch's validation error. Below the best so far it is the
    new best: the count of failures ``val_fail`` returns to 0 and, with ``max_fail`` set,
    the weights are kept (:class:`~bpnn.train.best_weights.BestWeights`). Above the best
    it is one more failure; equal to it, neither (as MATLAB's ``trainlm``; this is where
    it differs from ``EarlyStopping("val_loss", patience=max_fail)``, which counts a tie
    as a failure). ``stopped`` is True once ``val_fail`` reaches ``max_fail``, and
    :meth:`restore` puts back the weights of the best validation epoch. With
    ``max_fail`` None (MATLAB's ``trainbr``) failures are counted and reported only.
    """

    def __init__(self, max_fail: int | None):
        if max_fail is not None:
            _checks.positive("max_fail", max_fail, integer=True)
        self.max_fail = max_fail
        self.best = math.inf
        self.val_fail = 0
        self._best_weights = BestWeights()

    def update(self, trainer, epoch, value) -> bool:
        """Count epoch ``epoch``'s validation error ``value``; True when it is the new best."""
        if value < self.best:
            self.best, self.val_fail = value, 0
            if self.max_fail is not None:
                self._best_weights.save(trainer, epoch, value)
            return True
        if value > self.best:
            self.val_fail += 1
        return False

    @property
    def stopped(self) -> bool:
        return self.max_fail is not None and self.val_fail >= self.max_fail

    def restore(self) -> bool:
        """Put back the weights of the best validation epoch, if any were kept."""
        return self._best_weights.restore()
