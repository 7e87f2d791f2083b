"""scikit-learn's stopping and learning-rate rules for MLPs, as bpnn callbacks.

They reproduce ``sklearn.neural_network.MLP*``'s rules exactly, so a user moving from
``MLPClassifier`` gets the same stopping behaviour under the same parameter names.
"""
from __future__ import annotations

import math

from ..train.best_weights import BestWeights
from ..train.callbacks import Callback


class SklearnStopping(Callback):
    """scikit-learn's MLP convergence rule, plus its ``"adaptive"`` learning rate.

    After each epoch the monitored value v (``"loss"``, or ``"val_loss"`` with early
    stopping) is compared with the best so far b: if v > b − tol the no-improvement count
    grows, otherwise it resets; b ← min(b, v). When the count exceeds
    ``n_iter_no_change``, training stops — or, with ``adaptive``, the learning rate is
    divided by 5 and the count reset, and training stops once the rate is ≤ 1e-6 (as
    ``MLPClassifier(learning_rate="adaptive")``). With ``restore_best`` the weights of the
    best epoch are put back at the end (scikit-learn does so with ``early_stopping``).
    """

    def __init__(self, monitor: str, tol: float, n_iter_no_change, adaptive: bool = False,
                 restore_best: bool = False):
        self.monitor = monitor
        self.tol = float(tol)
        self.n_iter_no_change = n_iter_no_change
        self.adaptive = adaptive
        self.restore_best = restore_best
        self.best = math.inf
        self.count = 0
        self.converged = False
        self._best_weights = BestWeights()

    def on_epoch_end(self, epoch, logs=None):
        v = (logs or {}).get(self.monitor)
        if v is None or not math.isfinite(v):
            return
        if v > self.best - self.tol:
            self.count += 1
        else:
            self.count = 0
        if v < self.best:
            self.best = v
            if self.restore_best:
                self._best_weights.save(self.trainer, epoch, v)
        if self.count > self.n_iter_no_change:
            opt = self.trainer.optimizer
            if self.adaptive and not callable(opt.lr) and opt.lr > 1e-6:
                opt.lr = opt.lr / 5.0
                self.count = 0
                return
            self.converged = True
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best:
            self._best_weights.restore()


class InvScaling(Callback):
    """scikit-learn's ``learning_rate="invscaling"``: after every epoch
    η = η₀ / (t + 1)^power_t, t the number of samples seen so far."""

    def __init__(self, lr0: float, power_t: float, n_samples: int, t0: int = 0):
        self.lr0, self.power_t, self.n_samples, self.t = lr0, power_t, n_samples, t0

    def on_epoch_end(self, epoch, logs=None):
        self.t += self.n_samples
        self.trainer.optimizer.lr = self.lr0 / (self.t + 1) ** self.power_t
