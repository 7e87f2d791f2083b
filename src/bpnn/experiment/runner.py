"""Running a study: one function per run, spread over processes (or a cluster) by joblib.

:func:`run_one` builds the network of one run, trains it with
:class:`~bpnn.diagnostics.LayerStats` attached, evaluates it and diagnoses its health;
it returns plain data (JSON-ready). :func:`run_study` maps it over the runs of a
:class:`~bpnn.experiment.StudySpec` on a backend (``bpnn.experiment.backends``:
local processes by default, a Dask or Ray cluster on request) and records each run in
the run folder as it ends (``bpnn.experiment.rundir``), so a study killed at any
moment resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import os
import platform
import time
import traceback
import warnings

import numpy as np

from .._json import json_safe
from .spec import StudySpec, strip_label, with_weight_decay


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

    if run.get("weight_decay") is not None:
        opt = with_weight_decay(run["optimizer"], run["weight_decay"], optim)
    else:
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


def run_study(spec: StudySpec, data=None, progress: bool = True, *, backend: str | None = None,
              address: str | None = None, n_jobs: int | None = None, timeout: float | None = None, out=None,
              resume: bool = False, announce=None, finish=None):
    """Run the runs of ``spec`` and return a :class:`~bpnn.experiment.StudyResult`.

    ``backend``, ``address``, ``n_jobs``, ``timeout`` and ``out`` override the spec's fields
    of the same names (see ``bpnn.experiment.backends`` for the backends). ``progress``
    shows a tqdm bar over the runs.

    With an output folder (``out`` or ``spec.out``) the folder is checked and locked
    before the first run starts (``bpnn.experiment.rundir``), ``config.toml`` is
    written, each run is written to ``runs/`` the moment it ends, and ``results.json``,
    ``results.csv`` and ``summary.csv`` are built from the folder at the end;
    ``finish(result)`` (e.g. writing the report) is called while the folder is still
    locked. ``announce(spec, backend info, runs to do)`` is called once the backend is
    ready, before the first run. ``resume=True`` continues the study of that folder: its
    ``config.toml`` gives the spec (``spec`` may be None; only the backend, address,
    n_jobs and timeout given here change), and only the runs without a file run.

    Everything that can be refused is refused before the first run: the spec, the
    folder, the data (a one-class CSV) and the backend (an unreachable address, a
    cluster without workers, within ``spec.timeout`` seconds).
    """
    from .. import __version__
    from .backends import open_backend
    from .datasets import load_study_data
    from .results import StudyResult
    from .rundir import RunFolder

    out = out if out is not None else (spec.out if spec is not None else None)
    if resume:
        if out is None:
            raise ValueError("resume: give the folder of the study to resume (out=RUN_DIR, --resume RUN_DIR)")
        folder = RunFolder(out, resume=True)
        spec = StudySpec.from_toml(folder.file("config.toml"))
    elif spec is None:
        raise ValueError("spec: got None; give a StudySpec (or resume=True with the study's folder)")
    else:
        folder = RunFolder(out) if out is not None else None
    spec = spec.replace(backend=backend, address=address, n_jobs=n_jobs, timeout=timeout,
                        out=folder.path if folder is not None else None)
    started = time.time()
    t0 = time.perf_counter()
    if data is None:
        data = load_study_data(spec)
    runs = spec.runs()
    with folder if folder is not None else _nothing():
        try:
            done = folder.read_runs(spec) if folder is not None else {}
            todo = [r for r in runs if r["index"] not in done]
            executor = open_backend(spec, len(todo))
            executor.__enter__()
        except BaseException:
            if folder is not None:
                folder.release(remove_if_unused=not resume)
            raise
        with contextlib.ExitStack() as stack:
            stack.push(executor)
            if folder is not None:
                folder.write_config(spec)
            if announce is not None:
                announce(spec, executor.info(), len(todo))
            for result in _progress(executor.map(todo, data, spec), len(runs), len(done), progress):
                if folder is not None:
                    folder.write_run(result, spec)
                done[result["run"]["index"]] = result
            info = executor.info()  # while connected: the workers at the end of the study
        results = [done[r["index"]] for r in runs]
        fresh = [done[r["index"]].get("placement") or {} for r in todo]
        meta = {"bpnn_version": __version__,
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                "seconds": time.perf_counter() - t0, "n_runs": len(runs), "runs_resumed": len(runs) - len(todo),
                "data": data.summary(), "python": platform.python_version(), "numpy": np.__version__,
                "platform": platform.platform(), "cpu_count": os.cpu_count(), **info,
                # processes that ran this session's runs
                "workers_used": len({(p.get("host"), p.get("pid")) for p in fresh})}
        result = StudyResult(spec, results, meta)
        if folder is not None:
            result.save(folder.path)
            if finish is not None:
                finish(result)
        return result


@contextlib.contextmanager
def _nothing():
    yield None


def _progress(results, total: int, initial: int, show: bool):
    """Results passed through, with a tqdm bar over the runs of the study."""
    if not show:  # no bar, no tqdm.auto import (in a notebook without ipywidgets the import warns)
        yield from results
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, initial=initial, desc="bpnn compare", unit="run", dynamic_ncols=True) as bar:
        for result in results:
            yield result
            bar.update(1)
