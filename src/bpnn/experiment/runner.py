"""Running a study: one function per run, spread over processes (or a cluster) by joblib.

:func:`run_one` builds the network of one run, trains it with
:class:`~bpnn.diagnostics.LayerStats` attached, evaluates it and diagnoses its health;
it returns plain data (JSON-ready). :func:`run_study` maps it over the runs of a
:class:`~bpnn.experiment.StudySpec` with joblib: local processes (``loky``) by
default, ``backend="dask"`` or ``"ray"`` for a cluster when those are installed
(``address`` names the scheduler; without it a local one is started). bpnn writes no
scheduler of its own.
"""
from __future__ import annotations

import os
import platform
import time
import traceback
import warnings

import numpy as np

from .._json import json_safe
from .spec import StudySpec, strip_label


def build_model(run: dict, n_inputs, n_outputs: int, dtype=None):
    """The network of one run: Dense → activation per hidden width, then Dense(n_outputs);
    every Dense initialized by the run's init (biases 0), seeded by the run's seed."""
    from .. import init as init_mod
    from .. import nn

    layers = []
    for width in run["hidden"]:
        layers.append(nn.Dense(width, init=init_mod.get(strip_label(run["init"]))))
        layers.append(nn.layers.get(strip_label(run["activation"])))
    layers.append(nn.Dense(n_outputs, init=init_mod.get(strip_label(run["init"]))))
    shape = (n_inputs,) if np.isscalar(n_inputs) else tuple(n_inputs)
    return nn.Sequential(layers, input_shape=shape, seed=run["seed"], dtype=dtype)


def build_optimizer(run: dict):
    """The run's optimizer with the run's learning rate."""
    from .. import optim

    opt = optim.get(strip_label(run["optimizer"]))  # a name or config: a fresh instance per run
    opt.lr = run["lr"]
    return opt


def run_one(run: dict, data, spec: StudySpec) -> dict:
    """Train, evaluate and diagnose one run; never raises (errors are returned as text)."""
    from ..diagnostics import LayerStats, diagnose
    from ..train import Trainer

    started = time.perf_counter()
    out = {"run": run, "error": None}
    try:
        model = build_model(run, data.X_train.shape[1:], data.n_outputs)
        loss = spec.loss or ("softmax_cross_entropy" if data.task == "classification" else "mse")
        trainer = Trainer(model, loss=loss, optimizer=build_optimizer(run))
        stats = LayerStats(every=spec.stats_every, bins=spec.histogram_bins)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # overflow warnings of diverging runs; the verdicts say it
            history = trainer.fit(data.X_train, data.y_train, epochs=spec.epochs, batch_size=spec.batch_size,
                                  validation_data=(data.X_test, data.y_test), callbacks=[stats], verbose=False)
            test = trainer.evaluate(data.X_test, data.y_test)
        out.update({
            # strict JSON of a modest size: non-finite values as null, statistics to 5 digits
            "history": json_safe({k: [float(v) for v in vals] for k, vals in history.history.items()}),
            "stopped_reason": history.stopped_reason,
            "test": json_safe({k: float(v) for k, v in test.items()}),
            "stats": json_safe(stats.to_dict(), digits=5),
            "verdicts": json_safe([v.to_dict() for v in diagnose(stats, history)]),  # a divergence's value is NaN
            "n_parameters": int(model.num_parameters()),
        })
    except Exception as exc:  # noqa: BLE001 - a broken run must not take the study down
        out["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    out["seconds"] = time.perf_counter() - started
    return out


def run_study(spec: StudySpec, data=None, progress: bool = True):
    """Run every run of ``spec`` and return a :class:`~bpnn.experiment.StudyResult`.

    ``progress`` shows a tqdm bar over the runs. Runs go through joblib with
    ``spec.n_jobs`` workers on ``spec.backend``.
    """
    from .. import __version__
    from .datasets import load_study_data
    from .results import StudyResult

    started = time.time()
    t0 = time.perf_counter()
    if data is None:
        data = load_study_data(spec)
    runs = spec.runs()
    results = _execute(spec, runs, data, progress)
    results.sort(key=lambda r: r["run"]["index"])
    meta = {"bpnn_version": __version__, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
            "seconds": time.perf_counter() - t0, "n_runs": len(runs), "data": data.summary(),
            "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "backend": spec.backend, "n_jobs": spec.n_jobs}
    return StudyResult(spec, results, meta)


def _execute(spec, runs, data, progress):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(runs), desc="bpnn compare", unit="run", disable=not progress, dynamic_ncols=True)
    results = []
    try:
        n_jobs = spec.n_jobs if spec.n_jobs > 0 else (os.cpu_count() or 1)
        if spec.backend == "sequential" or n_jobs == 1 or len(runs) == 1:
            for run in runs:
                results.append(run_one(run, data, spec))
                bar.update(1)
            return results
        try:
            import joblib
        except ImportError:  # pragma: no cover - joblib comes with scikit-learn
            warnings.warn("joblib is not installed: running the study in this process, one run at a time")
            for run in runs:
                results.append(run_one(run, data, spec))
                bar.update(1)
            return results
        with _JoblibBackend(spec):
            try:
                parallel = joblib.Parallel(n_jobs=spec.n_jobs, return_as="generator_unordered")
                for result in parallel(joblib.delayed(run_one)(run, data, spec) for run in runs):
                    results.append(result)
                    bar.update(1)
            except (TypeError, ValueError) as exc:
                if results or "return_as" not in str(exc):
                    raise
                # Backends that cannot stream results (multiprocessing, ray) and joblib < 1.4
                # (no return_as): chunks of runs.
                parallel = joblib.Parallel(n_jobs=spec.n_jobs)
                chunk = 2 * n_jobs
                for i in range(0, len(runs), chunk):
                    part = parallel(joblib.delayed(run_one)(run, data, spec) for run in runs[i:i + chunk])
                    results.extend(part)
                    bar.update(len(part))
        return results
    finally:
        bar.close()


class _JoblibBackend:
    """joblib's backend for the study: loky by default; dask or ray when asked."""

    def __init__(self, spec):
        self.spec = spec
        self.client = None

    def __enter__(self):
        import joblib

        name = self.spec.backend
        if name == "dask":
            try:
                from dask.distributed import Client
            except ImportError as exc:
                raise ImportError("backend 'dask' needs dask.distributed: pip install 'dask[distributed]'") from exc
            self.client = Client(self.spec.address) if self.spec.address else Client(processes=True)
        elif name == "ray":
            try:
                import ray
                from ray.util.joblib import register_ray
            except ImportError as exc:
                raise ImportError("backend 'ray' needs ray: pip install 'ray'") from exc
            register_ray()
            if not ray.is_initialized():
                ray.init(address=self.spec.address) if self.spec.address else ray.init()
        self.config = joblib.parallel_config(backend=name)
        self.config.__enter__()
        return self

    def __exit__(self, *exc):
        self.config.__exit__(*exc)
        if self.client is not None:
            self.client.close()
