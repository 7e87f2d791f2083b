"""Multiple restarts: the BP literature's remedy for bad local minima.

The one implementation of "train from several seeds, keep one", used by
``Trainer.fit(n_restarts=...)`` and by the scikit-learn estimators (gradient solvers
and Levenberg–Marquardt / Bayesian regularization alike). The rule for the kept run:

    each run is scored by the loss of the weights it ends with (after any restoring of
    best weights) on the validation data, or on the training data when there is none;
    the lowest score wins, the first run on a tie; a non-finite score never wins (when
    no score is finite, the first run is kept).
"""
from __future__ import annotations

import copy
import functools
import math
from typing import NamedTuple

import numpy as np

from .. import backend
from .callbacks import Callback, History


def restart_score(trainer, X, y, validation_data=None) -> float:
    """A run's score: ``trainer.evaluate`` loss of its final weights on
    ``validation_data`` when given, else on (X, y)."""
    data = validation_data if validation_data is not None else (X, y)
    return float(trainer.evaluate(*data)["loss"])


def best_restart(scores) -> int:
    """Index of the kept run: the lowest finite score, the first of equal ones; 0 when
    none is finite."""
    finite = [i for i, s in enumerate(scores) if math.isfinite(s)]
    return min(finite, key=scores.__getitem__) if finite else 0


class Restarts(NamedTuple):
    """What :func:`run_restarts` returns: per run (in order) its seed, score and what
    ``train`` returned to keep, and ``best``, the index of the kept run."""

    seeds: list
    scores: list
    kept: list
    best: int


def _scored(train, X, y, validation_data, run, seed):
    trainer, keep = train(run, seed)
    return restart_score(trainer, X, y, validation_data), keep


def run_restarts(train, seeds, X, y, validation_data=None, n_jobs: int = 1) -> Restarts:
    """Call ``train(run, seed)`` for each seed and pick the run to keep.

    ``train`` trains one model and returns ``(trainer, keep)``: the trainer is scored
    (:func:`restart_score`, on X, y or ``validation_data``) where it ran, ``keep`` comes
    back. With ``n_jobs`` > 1 the runs go through joblib (local processes; a Dask or Ray
    cluster through joblib's ``parallel_config(backend=...)``), so ``train`` and
    ``keep`` must pickle.
    """
    seeds = [int(s) for s in seeds]
    if n_jobs == 1:
        results = [_scored(train, X, y, validation_data, run, s) for run, s in enumerate(seeds)]
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs)(delayed(_scored)(train, X, y, validation_data, run, s)
                                          for run, s in enumerate(seeds))
    scores = [score for score, _ in results]
    return Restarts(seeds, scores, [keep for _, keep in results], best_restart(scores))


def _clone_unbuilt(model, seed):
    """A fresh, unbuilt copy of ``model``'s architecture whose draws come from ``seed``."""
    from ..nn import layers

    config = layers.serialize(model)
    # Without its input shape the clone is not built in its constructor (which would
    # draw its weights from a fresh, unseeded generator); it is built here, seeded.
    input_shape = config["config"].pop("input_shape", None)
    clone = layers.get(config)
    clone.rng = backend.rng(seed)
    if input_shape is not None:
        clone.build(tuple(input_shape), clone.rng, clone.dtype)
    return clone


def _train_clone(trainer, X, y, fit_kwargs, run, seed):
    """One run of ``Trainer.fit(n_restarts=...)``: a seeded clone of the model and copies
    of the loss, optimizer and callbacks (``Callback.restart_copy``)."""
    from .trainer import Trainer

    model = _clone_unbuilt(trainer.model, seed)
    clone = Trainer(model, loss=copy.deepcopy(trainer.loss), optimizer=copy.deepcopy(trainer.optimizer),
                    metrics=list(trainer.metrics.values()))
    clone.metrics = dict(trainer.metrics)
    kwargs = dict(fit_kwargs)
    callbacks = [cb.restart_copy(run) for cb in kwargs.get("callbacks", ())]
    kwargs["callbacks"] = callbacks
    history = clone.fit(X, y, **kwargs)
    # Copies come back (from a worker process: pickled) only to callbacks that listen.
    back = [cb if type(cb).on_restarts_end is not Callback.on_restarts_end else None for cb in callbacks]
    return clone, (model.state_dict(), history, back)


def fit_restarts(trainer, X, y, n_restarts: int, n_jobs: int, **fit_kwargs) -> History:
    """``Trainer.fit(n_restarts=...)``: train ``n_restarts`` seeds of ``trainer.model``'s
    architecture and keep one by the module's rule.

    Seeds are drawn from the trainer's generator, so the whole study is reproducible.
    The kept weights are loaded into ``trainer.model``; ``trainer.restart_histories``,
    ``restart_scores`` and ``restart_seeds`` keep every run's History, score and seed,
    ``trainer.best_restart`` the index of the kept one, and ``trainer.history`` is its
    History. Each callback hears ``on_restarts_end`` with the copies the runs used (a
    ModelCheckpoint then holds the kept run's files).
    """
    split = fit_kwargs.pop("validation_split", 0.0)
    if split:
        n_val = int(math.floor(len(X) * split))
        X, y = np.asarray(X), np.asarray(y)
        fit_kwargs["validation_data"] = (X[-n_val:], y[-n_val:])
        X, y = X[:-n_val], y[:-n_val]
    if n_jobs != 1:
        fit_kwargs["verbose"] = False
    seeds = trainer.rng.integers(0, 2**63 - 1, size=n_restarts)
    study = run_restarts(functools.partial(_train_clone, trainer, X, y, fit_kwargs), seeds, X, y,
                         fit_kwargs.get("validation_data"), n_jobs)
    model = trainer.model
    if not model.built:
        model.build(np.asarray(X).shape[1:], model.rng, model.dtype)
    state, history, _ = study.kept[study.best]
    model.load_state_dict(state)
    for i, cb in enumerate(fit_kwargs.get("callbacks", ())):
        cb.on_restarts_end([callbacks[i] for _, _, callbacks in study.kept], study.best)
    trainer.restart_histories = [h for _, h, _ in study.kept]
    trainer.restart_scores = study.scores
    trainer.restart_seeds = study.seeds
    trainer.best_restart = study.best
    trainer.history = history
    return history
