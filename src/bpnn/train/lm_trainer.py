"""The Levenberg–Marquardt / Bayesian-regularization epoch loop (MATLAB ``trainlm``/``trainbr``).

Why a loop of its own and not :class:`bpnn.Trainer`: LM works on the whole training set
at once, needs the per-sample Jacobian and evaluates trial weights before it accepts a
step, so "one step per mini-batch" does not describe it. What a loop adds around the
solver (:mod:`bpnn.optim.levenberg_marquardt`) lives here: division into training, validation and test
sets, the stopping criteria, validation stopping with the best-validation weights, a
training record, callbacks and a progress bar.
"""
from __future__ import annotations

import contextlib
import math
import time as _time

import numpy as np

from .. import _checks, backend
from ..optim.levenberg_marquardt import least_squares_solvers, sum_squared_errors
from ._inputs import check_xy
from .callbacks import CallbackHost
from .early_stopping import ValidationStop


#: Up to this many parameters the loop runs BLAS single-threaded: JᵀJ and its solve are
#: then microseconds of work, and waking BLAS threads (on a busy machine, waiting for
#: them) costs more than it saves.
SMALL_PROBLEM = 512


_controller = []


def _blas_threads(n_params: int):
    """Limit BLAS to one thread for small problems, when threadpoolctl is installed."""
    if n_params > SMALL_PROBLEM:
        return contextlib.nullcontext()
    if not _controller:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            return contextlib.nullcontext()
        _controller.append(ThreadpoolController())  # scans the loaded libraries once
    return _controller[0].limit(limits=1, user_api="blas")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _integer(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class TrainingRecord:
    """Per-epoch record of a Levenberg–Marquardt run — MATLAB's ``tr``.

    Lists with one entry per epoch, epoch 0 being the state before the first step:
    ``epoch``, ``time`` (seconds since the start), ``perf``, ``vperf``, ``tperf`` (mean
    squared error on the training, validation and test sets; None for an absent set),
    ``mu``, ``gradient`` (2‖Jᵀr‖ on the training set), ``val_fail`` (consecutive
    validation rises) and, for Bayesian regularization, ``gamk`` (effective number of
    parameters γ), ``alpha``, ``beta`` and ``ssX`` (sum of squared weights).

    Scalars: ``best_epoch`` (the epoch whose weights were kept: best validation error,
    else the last), ``best_perf``, ``best_vperf``, ``best_tperf``, ``stop`` (why
    training ended, in MATLAB's words), ``num_epochs`` (steps taken), ``num_params``,
    ``jacobian_blocks`` (blocks J was built in; > 1 when it would not fit
    ``memory_limit`` whole), ``train_ind``, ``val_ind``, ``test_ind`` (the division, when
    ``fit`` made it), ``solver`` (the solver's config).
    """

    STATES = ("epoch", "time", "perf", "vperf", "tperf", "mu", "gradient", "val_fail",
              "gamk", "alpha", "beta", "ssX")

    def __init__(self):
        for key in self.STATES:
            setattr(self, key, [])
        self.best_epoch = 0
        self.best_perf = self.best_vperf = self.best_tperf = None
        self.stop = ""
        self.num_epochs = 0
        self.num_params = 0
        self.jacobian_blocks = 1
        self.train_ind = self.val_ind = self.test_ind = None
        self.solver = None

    def append(self, row: dict) -> None:
        for key in self.STATES:
            getattr(self, key).append(row.get(key))

    def to_dict(self) -> dict:
        """Plain data (lists, numbers, strings): JSON-serializable."""
        out = {key: list(getattr(self, key)) for key in self.STATES}
        for key in ("best_epoch", "best_perf", "best_vperf", "best_tperf", "stop", "num_epochs",
                    "num_params", "jacobian_blocks", "solver"):
            out[key] = getattr(self, key)
        for key in ("train_ind", "val_ind", "test_ind"):
            v = getattr(self, key)
            out[key] = None if v is None else [int(i) for i in v]
        return out

    def __repr__(self):
        return (f"TrainingRecord(num_epochs={self.num_epochs}, best_epoch={self.best_epoch}, "
                f"best_perf={self.best_perf}, best_vperf={self.best_vperf}, stop={self.stop!r})")


class LMTrainer(CallbackHost):
    """Trains a model by Levenberg–Marquardt or Bayesian regularization on the squared error.

    The loop, per epoch (MATLAB's order): linearize at the current weights (training
    MSE, JᵀJ, Jᵀr), evaluate validation and test MSE, record, check the stopping
    criteria (goal, epochs, time, min_grad, μ > mu_max, validation stop, a callback's
    ``stop_training``), then let the solver take one step. With validation stopping
    (validation data and ``max_fail``; ``bpnn.train.early_stopping.ValidationStop``)
    the weights of the best validation epoch are restored at the end; otherwise the last
    ones are kept (as MATLAB: BR reports the validation error but keeps its last weights).
    Callbacks run as in :class:`bpnn.Trainer` (every hook of :class:`bpnn.Callback`,
    ``flush`` included).

    The parameters have MATLAB's ``net.trainParam`` names and defaults.

    Parameters
    ----------
    model : a :class:`~bpnn.nn.Module` whose layers support the per-sample Jacobian
        (Dense, activations, Sequential, Residual, BatchNorm in evaluation mode). float64
        models are recommended.
    solver : ``"lm"``/``"trainlm"`` (default), ``"br"``/``"trainbr"``, a config dict, or a
        :class:`~bpnn.optim.LevenbergMarquardt` instance (μ, μ schedule, memory limit).
    epochs : int, default 1000 — most steps.
    goal : float, default 0 — stop when the training MSE ≤ goal.
    min_grad : float, default 1e-7 — stop when 2‖Jᵀr‖ ≤ min_grad.
    max_fail : int or None — validation stop after ``max_fail`` consecutive epochs whose
        validation error is above the best so far; default the solver's (6 for LM, none
        for BR, as MATLAB). Only with validation data.
    time : float, default inf — stop after this many seconds.
    """

    def __init__(self, model, solver="lm", epochs: int = 1000, goal: float = 0.0, min_grad: float = 1e-7,
                 max_fail=None, time: float = math.inf):
        self.model = model
        self.solver = least_squares_solvers.get(solver)
        self.epochs = _checks.positive("epochs", epochs, integer=True, allow_zero=True)
        self.goal = float(_checks.positive("goal", goal, allow_zero=True))
        self.min_grad = float(_checks.positive("min_grad", min_grad, allow_zero=True))
        if max_fail is None:
            max_fail = self.solver.default_max_fail
        if max_fail is not None:
            _checks.positive("max_fail", max_fail, integer=True)
        self.max_fail = max_fail
        if not (isinstance(time, (int, float)) and time > 0):
            raise ValueError(f"time: got {time!r}; expected a number of seconds > 0 (inf: no limit)")
        self.time = float(time)
        self.record: TrainingRecord | None = None

    # ------------------------------------------------------------------ data
    def _prepare(self, X, T, name_x="X", name_t="T"):
        X, T = check_xy(self.model, X, T, name_x, name_t)
        model = self.model
        k = math.prod(model.output_shape)
        if T.size != len(T) * k:
            raise ValueError(f"{name_t}: got targets of shape {T.shape}; the model has {k} output(s), so "
                             f"expected ({len(T)}, {k})")
        dtype = model.dtype
        return (backend.to_device(X.astype(dtype, copy=False)),
                backend.to_device(T.reshape(len(T), k).astype(dtype, copy=False)))

    def _mse(self, data):
        if data is None:
            return None
        X, T = data
        return sum_squared_errors(self.model, X, T) / T.size

    def evaluate(self, X, T) -> dict:
        """``{"loss": mean squared error}`` of the model on (X, T): what the training
        record's ``perf``, ``vperf`` and ``tperf`` hold."""
        return {"loss": self._mse(self._prepare(X, T))}

    # ------------------------------------------------------------------ fit
    def fit(self, X, T, validation_data=None, test_data=None, callbacks=(), verbose: bool = False,
            division=None, resume_from=None) -> TrainingRecord:
        """Train on (X, T); return the :class:`TrainingRecord` (also ``self.record``).

        ``validation_data`` and ``test_data`` are (X, T) pairs, or None. To divide one
        data set as MATLAB's ``net.divideFcn`` does, use :func:`bpnn.data.dividerand`
        (or ``divideblock``, ``divideint``, ``divideind``) and pass the parts; give the
        :class:`~bpnn.data.Division` as ``division`` to keep its indices in the record.
        ``callbacks`` get the hooks of :class:`bpnn.Callback`; epoch logs hold ``loss``,
        ``val_loss``, ``test_loss`` (MSE), ``mu``, ``gradient``, ``val_fail`` and the
        solver's extras (γ as ``gamk`` for BR). ``verbose`` shows a progress bar (tqdm).

        ``resume_from`` names a checkpoint written by :class:`~bpnn.ModelCheckpoint` during
        an LM run with the same model, solver and data: the weights, μ (and BR's γ, α, β),
        the validation stop's best error, failure count and best weights, the training
        record, the History, the random generators and the callbacks' states are restored
        and training continues with the next epoch, exactly as if it had not stopped
        (the record's ``time`` continues from the checkpoint's). A checkpoint is written
        after the epoch's step, so it holds the weights the next epoch starts from; one
        written at the epoch that ended training resumes to the same end. A refused
        checkpoint (:class:`~bpnn.train.CheckpointError`) leaves the trainer as it was.
        """
        record = TrainingRecord()
        if division is not None:
            record.train_ind, record.val_ind, record.test_ind = (np.asarray(i) for i in division)
        train = self._prepare(X, T)
        val = None if validation_data is None else self._prepare(
            *validation_data, name_x="validation_data[0]", name_t="validation_data[1]")
        test = None if test_data is None else self._prepare(*test_data, name_x="test_data[0]",
                                                            name_t="test_data[1]")
        model, solver = self.model, self.solver
        previous = (self._run_state(), self.record, self._run, self.best_weights, dict(solver.__dict__))
        solver.attach(model)
        flat = model.flat_parameters()
        record.num_params = len(flat)
        record.solver = least_squares_solvers.serialize(solver)
        self.record = record
        cbs = self._start_run(callbacks)
        n_err = train[1].size
        validation = ValidationStop(self.max_fail)
        self._run = (record, validation)
        self.best_weights = validation.best_weights
        stop_on_val = val is not None and self.max_fail is not None
        start_epoch = 0
        if resume_from is not None:
            from .checkpoint import restore_checkpoint

            try:
                start_epoch = restore_checkpoint(resume_from, self, self.history, self.callbacks)
            except BaseException:  # a refused checkpoint leaves the trainer as it was
                run_state, self.record, self._run, self.best_weights, solver_dict = previous
                self._restore_run_state(run_state)
                solver.__dict__.clear()
                solver.__dict__.update(solver_dict)
                raise
            record = self.record  # the checkpoint's, continued
            validation.load(validation.best, validation.val_fail, self.best_weights)
            self.best_weights = validation.best_weights
            self.initial_epoch = start_epoch
        bar = contextlib.nullcontext()
        if verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.epochs, unit="epoch", dynamic_ncols=True)
        start = _time.perf_counter() - (record.time[-1] if record.time else 0.0)
        # Exits run in reverse: the bar closes, BLAS threads come back, then on_train_end.
        with cbs.running({"verbose": bool(verbose)}), _blas_threads(len(flat)), bar:
            if start_epoch > self.epochs and not record.stop:
                record.stop = "Maximum epoch reached."  # resumed past this run's last epoch
            for epoch in range(start_epoch, self.epochs + 1):
                if record.stop or self.stop_training:
                    if not record.stop:
                        record.stop = "Stopped by a callback."
                    break  # resumed from the checkpoint of the epoch that ended the run
                cbs.on_epoch_begin(epoch, {})
                sse, jj, je = solver.linearize(*train)
                record.jacobian_blocks = max(record.jacobian_blocks, solver.jacobian_blocks)
                perf = sse / n_err
                gradient = 2.0 * float(backend.xp.linalg.norm(je))
                vperf, tperf = self._mse(val), self._mse(test)
                improved = val is not None and validation.update(self, epoch, vperf)
                if improved or not stop_on_val:
                    record.best_epoch, record.best_perf, record.best_vperf, record.best_tperf = \
                        epoch, perf, vperf, tperf
                elapsed = _time.perf_counter() - start
                row = {"epoch": epoch, "time": elapsed, "perf": perf, "vperf": vperf, "tperf": tperf,
                       "mu": solver.current_mu, "gradient": gradient, "val_fail": validation.val_fail,
                       **solver.state()}
                record.append(row)
                logs = {"loss": perf, "mu": row["mu"], "gradient": gradient, "val_fail": row["val_fail"],
                        **solver.state()}
                if vperf is not None:
                    logs["val_loss"] = vperf
                if tperf is not None:
                    logs["test_loss"] = tperf
                cbs.on_epoch_end(epoch, logs, flush=False)  # the flush follows the step
                if verbose:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if isinstance(v, float)},
                                    refresh=False)
                    if epoch:
                        bar.update(1)
                stop = self._stop_reason(epoch, perf, gradient, validation, elapsed)
                if stop:
                    record.stop = stop
                    cbs.flush(epoch)
                    break
                solver.update(*train, sse, jj, je)
                record.num_epochs = epoch + 1
                cbs.flush(epoch)
            validation.restore()
            self.history.stopped_reason = record.stop
        return record

    # ------------------------------------------------------------------ checkpoints
    _run = None  # (record, validation stop) of the current run

    def _checkpoint_state(self) -> dict:
        """This trainer's part of a checkpoint (JSON data; see :mod:`bpnn.train.checkpoint`):
        the solver's state, the validation stop's best error and failure count, and the
        training record. The best-validation weights are ``best_weights``."""
        record, validation = self._run
        data = record.to_dict()
        for key in ("train_ind", "val_ind", "test_ind", "solver"):
            del data[key]  # given again to the resumed fit
        return {"solver": self.solver.checkpoint_state(),
                "validation": {"best": validation.best if math.isfinite(validation.best) else None,
                               "val_fail": validation.val_fail},
                "record": data}

    def _plan_checkpoint_state(self, state, epoch: int):
        """``state`` (from :meth:`_checkpoint_state`, as read back) checked against this run,
        into new objects for :meth:`_load_checkpoint_state`; ValueError naming the entry."""
        if not isinstance(state, dict) or not {"solver", "validation", "record"} <= set(state):
            raise ValueError(f"lm: got {str(state)[:80]}; expected an object with solver, validation and record")
        solver = self.solver.check_checkpoint_state(state["solver"])
        v = state["validation"]
        if not isinstance(v, dict):
            raise ValueError(f"lm.validation: got {str(v)[:80]}; expected an object")
        best, val_fail = v.get("best"), v.get("val_fail")
        if best is None:
            best = math.inf
        elif not _number(best) or not math.isfinite(best):
            raise ValueError(f"lm.validation.best: got {best!r}; expected a finite number or null")
        if not (_integer(val_fail) and val_fail >= 0):
            raise ValueError(f"lm.validation.val_fail: got {val_fail!r}; expected an integer >= 0")
        record = self._plan_record(state["record"], epoch)
        return solver, float(best), val_fail, record

    def _plan_record(self, data, epoch: int) -> TrainingRecord:
        from .checkpoint import _NONFINITE

        if not isinstance(data, dict):
            raise ValueError(f"lm.record: got {str(data)[:80]}; expected an object")
        record = TrainingRecord()
        for key in TrainingRecord.STATES:
            values = data.get(key)
            if not isinstance(values, list) or len(values) != epoch + 1:
                raise ValueError(f"lm.record.{key}: expected a list of {epoch + 1} entries (epochs 0 to {epoch})")
            values = [_NONFINITE.get(x, x) if isinstance(x, str) else x for x in values]
            if not all(x is None or _number(x) for x in values):
                raise ValueError(f"lm.record.{key}: expected numbers or null")
            setattr(record, key, values)
        if record.epoch != list(range(epoch + 1)):
            raise ValueError(f"lm.record.epoch: expected the epochs 0 to {epoch}")
        for key in ("best_perf", "best_vperf", "best_tperf"):
            x = data.get(key)
            x = _NONFINITE.get(x, x) if isinstance(x, str) else x
            if not (x is None or _number(x)):
                raise ValueError(f"lm.record.{key}: got {x!r}; expected a number or null")
            setattr(record, key, x)
        for key, low, high in (("best_epoch", 0, epoch), ("num_epochs", 0, epoch + 1),
                               ("num_params", 0, None), ("jacobian_blocks", 1, None)):
            x = data.get(key)
            if not (_integer(x) and low <= x and (high is None or x <= high)):
                raise ValueError(f"lm.record.{key}: got {x!r}; expected an integer in [{low}, {high or 'inf'}]")
            setattr(record, key, x)
        if not isinstance(data.get("stop"), str):
            raise ValueError(f"lm.record.stop: got {data.get('stop')!r}; expected a string")
        record.stop = data["stop"]
        if record.num_params != self.record.num_params:
            raise ValueError(f"lm.record.num_params: {record.num_params}; this model has {self.record.num_params}")
        return record

    def _load_checkpoint_state(self, plan) -> None:
        """Take what :meth:`_plan_checkpoint_state` returned (cannot fail)."""
        solver_state, best, val_fail, record = plan
        current, validation = self._run
        self.solver.load_checkpoint_state(solver_state)
        record.train_ind, record.val_ind, record.test_ind = current.train_ind, current.val_ind, current.test_ind
        record.solver = current.solver
        self.record = record
        self._run = (record, validation)
        validation.load(best, val_fail, None)  # the best weights follow (``best_weights``)

    def _stop_reason(self, epoch, perf, gradient, validation, elapsed) -> str:
        if not math.isfinite(perf):
            return "Non-finite performance."
        if perf <= self.goal:
            return "Performance goal met."
        if epoch >= self.epochs:
            return "Maximum epoch reached."
        if elapsed >= self.time:
            return "Maximum time elapsed."
        if gradient <= self.min_grad:
            return "Minimum gradient reached."
        if self.solver.current_mu > self.solver.mu_max:
            return "Maximum MU reached."
        if validation.stopped:
            return "Validation stop."
        if self.stop_training:
            return "Stopped by a callback."
        return ""
