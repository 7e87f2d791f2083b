"""Multiple restarts: the BP literature's remedy for bad local minima."""
from __future__ import annotations

import copy
import math

import numpy as np

from .. import backend
from .callbacks import History


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


def _one_run(trainer, seed, X, y, fit_kwargs):
    from .trainer import Trainer

    model = _clone_unbuilt(trainer.model, seed)
    run = Trainer(model, loss=copy.deepcopy(trainer.loss), optimizer=copy.deepcopy(trainer.optimizer),
                  metrics=list(trainer.metrics.values()))
    run.metrics = dict(trainer.metrics)
    kwargs = dict(fit_kwargs)
    kwargs["callbacks"] = copy.deepcopy(list(kwargs.get("callbacks", ())))
    history = run.fit(X, y, **kwargs)
    val = kwargs.get("validation_data")
    if val is not None:
        score = run.evaluate(*val)["loss"]
    else:
        score = run.evaluate(X, y)["loss"]
    return model.state_dict(), history, float(score)


def fit_restarts(trainer, X, y, n_restarts: int, n_jobs: int, **fit_kwargs) -> History:
    """Train ``n_restarts`` seeds of ``trainer.model``'s architecture and keep the best.

    Seeds are drawn from the trainer's generator, so the whole study is reproducible.
    The model with the lowest loss on the validation data (the training data when there
    is none) is loaded into ``trainer.model``; ``trainer.restart_histories`` and
    ``trainer.restart_scores`` keep every run's History and score, and
    ``trainer.best_restart`` the index of the kept one. With ``n_jobs`` > 1 the runs go
    through joblib (local processes; a Dask or Ray cluster through joblib's
    ``parallel_config(backend=...)``).
    """
    split = fit_kwargs.pop("validation_split", 0.0)
    if split:
        n_val = int(math.floor(len(X) * split))
        X, y = np.asarray(X), np.asarray(y)
        fit_kwargs["validation_data"] = (X[-n_val:], y[-n_val:])
        X, y = X[:-n_val], y[:-n_val]
    seeds = [int(s) for s in trainer.rng.integers(0, 2**63 - 1, size=n_restarts)]
    if n_jobs == 1:
        results = [_one_run(trainer, s, X, y, fit_kwargs) for s in seeds]
    else:
        from joblib import Parallel, delayed

        fit_kwargs["verbose"] = False
        results = Parallel(n_jobs=n_jobs)(delayed(_one_run)(trainer, s, X, y, fit_kwargs) for s in seeds)
    scores = [r[2] for r in results]
    finite = [i for i, s in enumerate(scores) if math.isfinite(s)]
    best = min(finite, key=scores.__getitem__) if finite else 0
    model = trainer.model
    if not model.built:
        model.build(np.asarray(X).shape[1:], model.rng, model.dtype)
    model.load_state_dict(results[best][0])
    trainer.restart_histories = [r[1] for r in results]
    trainer.restart_scores = scores
    trainer.restart_seeds = seeds
    trainer.best_restart = best
    trainer.history = results[best][1]
    return trainer.history
