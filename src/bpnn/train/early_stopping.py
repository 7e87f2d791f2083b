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
        self.stopped_reason = None
        self._best_weights = BestWeights()
        self.nonfinite_epochs: list[int] = []

    def on_train_begin(self, logs=None):
        trainer = self.trainer
        if self.stopped_epoch is not None and trainer is not None and trainer.initial_epoch > self.stopped_epoch:
            # resumed from the checkpoint of the epoch that stopped: the run stays stopped
            trainer.stop_training = True
            if trainer.history is not None:
                trainer.history.stopped_reason = self.stopped_reason
            return
        self.stopped_epoch = None
        self.stopped_reason = None

    def on_epoch_end(self, epoch, logs=None):
        value = self._monitor.value(logs)
        if not math.isfinite(value):
            self.nonfinite_epochs.append(epoch)  # counted as an epoch without improvement
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
            best = (f"best {self._monitor.best:.6g} at epoch {self.best_epoch}" if self.best_epoch is not None
                    else "no epoch had a finite value")
            nonfinite = [e for e in self.nonfinite_epochs if e > epoch - self.wait]
            note = (f"; it was NaN or infinite at epoch(s) {', '.join(map(str, nonfinite))}, counted as no "
                    f"improvement" if nonfinite else "")
            self.stopped_reason = (f"early stopping at epoch {epoch}: {self._monitor.monitor} did not improve for "
                                   f"{self.wait} epochs ({best}){note}")
            if self.trainer.history is not None:
                self.trainer.history.stopped_reason = self.stopped_reason

    def on_train_end(self, logs=None):
        if self.restore_best_weights:
            self._best_weights.restore()

    def get_state(self) -> dict:
        """Counters, the best value and, with ``restore_best_weights``, the best weights
        (as arrays), so that a resumed run restores the same weights at its end."""
        state = {"wait": self.wait, "best_epoch": self.best_epoch, "nonfinite_epochs": list(self.nonfinite_epochs),
                 "stopped_epoch": self.stopped_epoch, "stopped_reason": self.stopped_reason, **self._monitor.state()}
        arrays = self._best_weights.arrays()
        if arrays is not None:
            state["arrays"] = arrays
        return state

    def set_state(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"EarlyStopping state: got {state!r}; expected a dict")
        best = self._monitor.parse_state(state)
        wait, best_epoch = state.get("wait"), state.get("best_epoch")
        nonfinite = state.get("nonfinite_epochs", [])
        if isinstance(wait, bool) or not isinstance(wait, int) or wait < 0:
            raise ValueError(f"EarlyStopping state: wait: got {wait!r}; expected an integer >= 0")
        if best_epoch is not None and (isinstance(best_epoch, bool) or not isinstance(best_epoch, int)
                                       or best_epoch < 0):
            raise ValueError(f"EarlyStopping state: best_epoch: got {best_epoch!r}; expected an integer >= 0 or None")
        if (best_epoch is None) != (best in (math.inf, -math.inf)):
            raise ValueError(f"EarlyStopping state: best {state['best']!r} and best_epoch {best_epoch!r} disagree")
        if not isinstance(nonfinite, list) or not all(isinstance(e, int) and not isinstance(e, bool)
                                                      for e in nonfinite):
            raise ValueError(f"EarlyStopping state: nonfinite_epochs: got {nonfinite!r}; expected a list of epochs")
        stopped_epoch, stopped_reason = state.get("stopped_epoch"), state.get("stopped_reason")
        if stopped_epoch is not None and (isinstance(stopped_epoch, bool) or not isinstance(stopped_epoch, int)
                                          or stopped_epoch < 0 or not isinstance(stopped_reason, str)):
            raise ValueError(f"EarlyStopping state: stopped_epoch {stopped_epoch!r} / stopped_reason "
                             f"{stopped_reason!r}: expected an epoch and its reason, or None")
        arrays = state.get("arrays")
        if self.restore_best_weights and arrays is None and best_epoch is not None:
            raise ValueError("EarlyStopping state: restore_best_weights is set but the checkpoint holds no "
                             "best weights")
        weights = BestWeights()
        if self.restore_best_weights and arrays is not None:
            weights.load(self.trainer.model, best_epoch, best, arrays)
        self.wait, self.best_epoch, self._monitor.best = wait, best_epoch, best
        self.nonfinite_epochs = list(nonfinite)
        self.stopped_epoch = stopped_epoch
        self.stopped_reason = stopped_reason if stopped_epoch is not None else None
        self._best_weights = weights


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

    @property
    def best_weights(self) -> BestWeights:
        """The kept weights of the best validation epoch."""
        return self._best_weights

    def load(self, best: float, val_fail: int, weights: BestWeights | None) -> None:
        """Continue from a checkpoint: the best error, the failure count and the best
        weights (None: none kept), all checked by the caller."""
        self.best, self.val_fail = best, val_fail
        self._best_weights = weights if weights is not None else BestWeights()

    def restore(self) -> bool:
        """Put back the weights of the best validation epoch, if any were kept."""
        return self._best_weights.restore()
