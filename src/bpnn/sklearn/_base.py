"""What BPNNClassifier and BPNNRegressor share: parameters, model building, the fit loop."""
from __future__ import annotations

import copy
import math
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import backend
from ..data.scaling import MinMaxScaler
from ..init import Initializer, registry as initializers
from ..init.nguyen_widrow import nguyen_widrow
from ..nn import Dense, Dropout, Sequential, layers
from ..optim import optimizers
from ..optim.bayesian_regularization import BayesianRegularization  # noqa: F401  (registers "br")
from ..optim.levenberg_marquardt import LevenbergMarquardt, least_squares_solvers
from ..optim.optimizer import Optimizer
from ..train import LMTrainer, Trainer
from ..train.restarts import run_restarts
from ._callbacks import InvScaling, SklearnStopping

#: Activation names: scikit-learn's, bpnn's layer names, and MATLAB's transfer functions.
ACTIVATIONS = {
    "identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
    "sigmoid": "sigmoid", "leaky_relu": "leaky_relu", "elu": "elu", "softplus": "softplus",
    "purelin": "identity", "logsig": "sigmoid", "tansig": "tanh", "poslin": "relu",
}

#: Names that select Levenberg–Marquardt or Bayesian regularization.
SECOND_ORDER = frozenset(least_squares_solvers.names(aliases=True))
#: Gradient optimizers by name (the plain chain needs transforms, so it is left out).
GRADIENT_SOLVERS = frozenset(n for n in optimizers.names(aliases=True) if n not in ("chain", "optimizer"))


def _solver_is_second_order(solver) -> bool:
    return isinstance(solver, LevenbergMarquardt) or (isinstance(solver, str) and solver in SECOND_ORDER)


def _gradient_solver(est) -> bool:
    """``available_if`` test for ``partial_fit``: only gradient solvers train incrementally."""
    if est._second_order:
        raise AttributeError(f"partial_fit is only available for gradient solvers; solver={est.solver!r} "
                             f"(Levenberg–Marquardt / Bayesian regularization) trains on the whole set")
    return True


class BaseBPNN(BaseEstimator):
    """Shared machinery; see :class:`BPNNClassifier` and :class:`BPNNRegressor`."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS)), list, tuple],
        "solver": [StrOptions(set(SECOND_ORDER | GRADIENT_SOLVERS)), Optimizer, LevenbergMarquardt],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "batch_size": [StrOptions({"auto", "full"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"}), callable],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "init": [StrOptions({"auto", "nguyen_widrow"} | set(initializers.names(aliases=True))),
                 dict, Initializer],
        "dropout": [Interval(Real, 0, 1, closed="left"), "array-like"],
        "n_restarts": [Interval(Integral, 1, None, closed="left")],
        "scaling": [StrOptions({"auto", "minmax"}), None],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 l1_ratio=0.0, batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 init="auto", dropout=0.0, n_restarts=1, scaling="auto"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.init = init
        self.dropout = dropout
        self.n_restarts = n_restarts
        self.scaling = scaling

    # ------------------------------------------------------------------ subclass hooks
    #: Output layer after the last Dense (None: linear), per solver kind.
    def _output_layer(self, second_order: bool):  # pragma: no cover - abstract
        raise NotImplementedError

    def _loss(self):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ parameters
    @property
    def _second_order(self) -> bool:
        return _solver_is_second_order(self.solver)

    def _hidden_sizes(self) -> list:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        for s in sizes:
            if not (isinstance(s, Integral) and not isinstance(s, bool) and s >= 1):
                raise ValueError(f"hidden_layer_sizes: got {self.hidden_layer_sizes!r}; every size must be an "
                                 f"integer >= 1")
        return [int(s) for s in sizes]

    def _per_layer(self, name, value, n, check):
        values = [value] * n if isinstance(value, (str, Real)) else list(value)
        if len(values) != n:
            raise ValueError(f"{name}: got {len(values)} values for {n} hidden layer(s); give one value or "
                             f"one per hidden layer")
        for v in values:
            check(v)
        return values

    def _activations(self, n):
        def check(a):
            if a not in ACTIVATIONS:
                raise ValueError(f"activation: got {a!r}; valid names are {', '.join(sorted(ACTIVATIONS))}")

        return [ACTIVATIONS[a] for a in self._per_layer("activation", self.activation, n, check)]

    def _dropouts(self, n):
        def check(r):
            if not (isinstance(r, Real) and 0 <= r < 1):
                raise ValueError(f"dropout: got {r!r}; each rate must be a number in [0, 1)")

        return [float(r) for r in self._per_layer("dropout", self.dropout, n, check)]

    def _uses_scaling(self) -> bool:
        return self.scaling == "minmax" or (self.scaling == "auto" and self._second_order)

    def _regularizer(self, batch):
        """scikit-learn's penalty ½·alpha·‖W‖²/batch (weights only), split by ``l1_ratio``."""
        if not self.alpha or self._second_order:
            return None
        from ..nn.regularizers import L1L2

        lam = self.alpha / batch
        return L1L2(l1=lam * self.l1_ratio, l2=lam * (1.0 - self.l1_ratio))

    def _batch(self, n) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size == "full":
            return n
        return min(int(self.batch_size), n)

    # ------------------------------------------------------------------ model
    def _build_model(self, X, n_out, seed):
        sizes = self._hidden_sizes()
        acts = self._activations(len(sizes))
        drops = self._dropouts(len(sizes))
        init = self.init
        use_nw = init == "nguyen_widrow" or (init == "auto" and self._second_order)
        if init in ("auto", "nguyen_widrow"):
            init = "xavier_uniform"
        reg = self._regularizer(self._batch(len(X)))
        seq = []
        for h, act, rate in zip(sizes, acts, drops):
            dense = Dense(h, init=copy.deepcopy(init), regularizer=copy.deepcopy(reg))
            seq += [dense, layers.get(act)]
            if rate > 0:
                seq.append(Dropout(rate))
        seq.append(Dense(n_out, init=copy.deepcopy(init), regularizer=copy.deepcopy(reg)))
        head = self._output_layer(self._second_order)
        if head is not None:
            seq.append(layers.get(head))
        dtype = "float64" if self._second_order or X.dtype != np.float32 else "float32"
        model = Sequential(seq, input_shape=(X.shape[1],), seed=seed, dtype=dtype)
        if use_nw:
            nguyen_widrow(model, input_range=(X.min(axis=0), X.max(axis=0)))
        return model

    def _make_optimizer(self):
        solver = self.solver
        lr = self.learning_rate if callable(self.learning_rate) else self.learning_rate_init
        if isinstance(solver, Optimizer):
            return copy.deepcopy(solver)
        cls = optimizers.lookup(solver)
        if cls.registry_name == "sgd":
            return cls(lr=lr, momentum=self.momentum, nesterov=self.nesterovs_momentum and self.momentum > 0)
        if cls.registry_name == "adam":
            return cls(lr=lr, betas=(self.beta_1, self.beta_2), eps=self.epsilon)
        if cls.registry_name == "kfac":
            return cls(lr=lr, momentum=self.momentum)
        return cls(lr=lr)

    def _make_lm_solver(self):
        if isinstance(self.solver, LevenbergMarquardt):
            return copy.deepcopy(self.solver)
        return least_squares_solvers.get(self.solver)

    # ------------------------------------------------------------------ fitting
    def _validation_split(self, X, y, stratify):
        rs = check_random_state(self.random_state)
        try:
            return train_test_split(X, y, random_state=rs, test_size=self.validation_fraction,
                                    stratify=stratify)
        except ValueError:
            # Too few samples of a class to stratify: split without it.
            return train_test_split(X, y, random_state=rs, test_size=self.validation_fraction)

    def _fit(self, X, y, incremental: bool):
        first = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first)
        if first:
            self._x_scaler = MinMaxScaler().fit(X) if self._uses_scaling() else None
        Xs = X if self._x_scaler is None else self._x_scaler.transform(X)
        T = self._encode_targets(y, first)
        if first:
            self.model_ = None
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_ = []
            self.validation_loss_curve_ = []
            self._optimizer = None
        if self._second_order:
            if incremental:
                raise AttributeError("partial_fit is not available for the solvers 'lm' and 'br'")
            self._fit_second_order(Xs, T, first)
        else:
            self._fit_gradient(Xs, T, first, incremental)
        self.out_activation_ = self._output_layer(self._second_order) or "identity"
        return self

    def _split(self, Xs, T):
        if self.early_stopping and self.validation_fraction > 0:
            stratify = T if (T.ndim == 1 and self._stratify) else None
            Xtr, Xva, Ttr, Tva = self._validation_split(Xs, T, stratify)
            return Xtr, Ttr, (Xva, Tva)
        return Xs, T, None

    def _seeds(self, n) -> list:
        """One seed per restart, from ``random_state``."""
        rs = check_random_state(self.random_state)
        return [int(rs.randint(np.iinfo(np.int32).max)) for _ in range(n)]

    def _keep_restart(self, study):
        """Record a restarts study (``restart_scores_``, ``restart_seeds_``, ``best_restart_``);
        return what the kept run returned."""
        self.restart_scores_ = list(study.scores)
        self.restart_seeds_ = list(study.seeds)
        self.best_restart_ = study.best
        return study.kept[study.best]

    def _fit_gradient(self, Xs, T, first, incremental):
        n_out = self._n_model_outputs
        if incremental:
            Xtr, Ttr, val = Xs, T, None
            epochs = 1
        else:
            Xtr, Ttr, val = self._split(Xs, T)
            epochs = self.max_iter

        def train(run, seed):
            model = self.model_ if self.model_ is not None else self._build_model(Xtr, n_out, seed)
            opt = self._optimizer if (incremental and self._optimizer is not None) else self._make_optimizer()
            callbacks, stopping = [], None
            if not incremental:
                if self.learning_rate == "invscaling":
                    callbacks.append(InvScaling(self.learning_rate_init, self.power_t, len(Xtr), self.t_))
                if self.n_iter_no_change != np.inf:
                    stopping = SklearnStopping("val_loss" if val is not None else "loss", self.tol,
                                               self.n_iter_no_change,
                                               adaptive=self.learning_rate == "adaptive",
                                               restore_best=val is not None)
                    callbacks.append(stopping)
            trainer = Trainer(model, loss=self._loss(), optimizer=opt, metrics=[])
            history = trainer.fit(Xtr, Ttr, epochs=epochs, batch_size=self._batch(len(Xtr)),
                                  validation_data=val, shuffle=self.shuffle, callbacks=callbacks,
                                  verbose=bool(self.verbose))
            return trainer, (model, opt, history, stopping)

        with warnings.catch_warnings():  # a non-finite loss is reported below, as a ConvergenceWarning
            warnings.simplefilter("ignore", RuntimeWarning)
            if incremental:  # one epoch on one batch: nothing to choose between
                _, (self.model_, self._optimizer, history, stopping) = train(0, self._seeds(1)[0])
            else:
                seeds = self._seeds(self.n_restarts if first else 1)
                self.model_, self._optimizer, history, stopping = self._keep_restart(
                    run_restarts(train, seeds, Xtr, Ttr, val))
        if history.stopped_reason and "non-finite" in history.stopped_reason:
            warnings.warn(history.stopped_reason, ConvergenceWarning, stacklevel=3)
        losses = [float(v) for v in history.history.get("loss", [])]
        self.loss_curve_ += losses
        self.validation_loss_curve_ += [float(v) for v in history.history.get("val_loss", [])]
        ran = len(losses)
        self.n_iter_ += ran
        self.t_ += ran * len(Xtr)
        self.loss_ = losses[-1] if losses else math.nan
        self.best_loss_ = min(self.loss_curve_) if self.loss_curve_ else math.nan
        if self.validation_loss_curve_:
            self.best_validation_loss_ = min(self.validation_loss_curve_)
        if not incremental and ran == epochs and stopping is not None and not stopping.converged:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          f"optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)

    def _fit_second_order(self, Xs, T, first):
        n_out = self._n_model_outputs
        Xtr, Ttr, val = self._split(Xs, T)
        if T.ndim == 1:
            Ttr = self._one_hot(Ttr)
            val = None if val is None else (val[0], self._one_hot(val[1]))

        def train(run, seed):
            model = self.model_ if (self.model_ is not None and not first) else self._build_model(Xtr, n_out, seed)
            solver = self._make_lm_solver()
            max_fail = self.n_iter_no_change if val is not None and self.n_iter_no_change != np.inf else None
            trainer = LMTrainer(model, solver, epochs=self.max_iter)
            trainer.max_fail = max_fail  # validation stop only with early_stopping (MATLAB's max_fail)
            record = trainer.fit(Xtr, Ttr, validation_data=val, verbose=bool(self.verbose))
            return trainer, (model, record, solver)

        seeds = self._seeds(self.n_restarts if first else 1)
        model, record, solver = self._keep_restart(run_restarts(train, seeds, Xtr, Ttr, val))
        self.model_ = model
        self.training_record_ = record
        self.loss_curve_ += [float(v) for v in record.perf[1:]]
        self.validation_loss_curve_ += [float(v) for v in record.vperf[1:] if v is not None]
        self.n_iter_ += record.num_epochs
        self.t_ += record.num_epochs * len(Xtr)
        self.loss_ = float(record.best_perf) if record.best_perf is not None else math.nan
        self.best_loss_ = self.loss_
        if record.best_vperf is not None:
            self.best_validation_loss_ = float(record.best_vperf)
        if record.gamk and record.gamk[-1] is not None:
            self.gamma_ = float(record.gamk[-1])
        self.mu_ = float(solver.current_mu)

    # ------------------------------------------------------------------ inference
    def _forward(self, X):
        check_is_fitted(self, "model_")
        X = self._validate_predict(X)
        if self._x_scaler is not None:
            X = self._x_scaler.transform(X)
        return self.model_.predict(X.astype(self.model_.dtype, copy=False))

    @property
    def coefs_(self):
        """Weight matrices of the Dense layers, (n_in, n_out) each, as scikit-learn's MLP."""
        check_is_fitted(self, "model_")
        return [backend.to_numpy(m.params["weight"]).copy() for m in self.model_.layers if isinstance(m, Dense)]

    @property
    def intercepts_(self):
        """Bias vectors of the Dense layers, as scikit-learn's MLP."""
        check_is_fitted(self, "model_")
        return [backend.to_numpy(m.params["bias"]).copy() for m in self.model_.layers if isinstance(m, Dense)]

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        """The model travels as its config and arrays; optimizer and solver state do not
        (a ``partial_fit`` after unpickling starts a fresh optimizer)."""
        state = self.__dict__.copy()
        model = state.pop("model_", None)
        state.pop("_optimizer", None)
        if model is not None:
            state["_model_config"] = layers.serialize(model)
            state["_model_state"] = model.state_dict()
            state["_model_rng"] = model.rng
        return state

    def __setstate__(self, state):
        state = dict(state)
        config = state.pop("_model_config", None)
        arrays = state.pop("_model_state", None)
        rng = state.pop("_model_rng", None)
        self.__dict__.update(state)
        self._optimizer = None
        if config is not None:
            model = layers.get(config)
            model.load_state_dict(arrays)
            for m in model.modules():
                m.rng = rng
            self.model_ = model
