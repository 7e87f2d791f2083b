"""BPNNRegressor: a bpnn network behind scikit-learn's regressor interface."""
from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import column_or_1d, validate_data

from ..data.scaling import MinMaxScaler
from ._base import BaseBPNN, _gradient_solver


class BPNNRegressor(RegressorMixin, BaseBPNN):
    """Multilayer perceptron regressor trained by backpropagation — scikit-learn's
    ``MLPRegressor`` interface and parameter names; with ``solver="lm"`` or ``"br"`` the
    classic MATLAB workflow (``feedforwardnet`` + ``trainlm``/``trainbr`` +
    ``mapminmax``).

    The network is Dense → activation (→ Dropout) per hidden layer, then a linear Dense
    layer with one output per target. It minimizes the mean squared error (``loss_curve_``
    holds the MSE itself, where scikit-learn's MLP reports half of it) plus the penalty.
    Multi-output targets (n_samples, n_targets) are supported.

    Parameters are those of :class:`BPNNClassifier` (see there), plus

    target_scaling : "auto" (default: min-max to [−1, 1] for "lm"/"br", MATLAB's
        ``mapminmax`` on the targets; none otherwise), "minmax", or None. The network
        learns the scaled targets and predictions are mapped back (the scaling is undone
        on the outputs); ``loss_curve_`` is then in scaled units.

    A MATLAB ``net = feedforwardnet(10); net = train(net, x, t)`` is::

        BPNNRegressor(10, activation="tansig", solver="lm", early_stopping=True,
                      validation_fraction=0.15, n_iter_no_change=6, max_iter=1000)

    (with ``x``, ``t`` transposed: samples are rows here).
    """

    _stratify = False

    _parameter_constraints: dict = {
        **BaseBPNN._parameter_constraints,
        "target_scaling": [StrOptions({"auto", "minmax"}), None],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 l1_ratio=0.0, batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 init="auto", dropout=0.0, n_restarts=1, scaling="auto", target_scaling="auto"):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, l1_ratio=l1_ratio,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, init=init, dropout=dropout, n_restarts=n_restarts,
            scaling=scaling)
        self.target_scaling = target_scaling

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train on (X, y) for up to ``max_iter`` epochs; returns self."""
        return self._fit(X, y, incremental=False)

    @available_if(_gradient_solver)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y):
        """One epoch over (X, y)."""
        return self._fit(X, y, incremental=True)

    # ------------------------------------------------------------------ hooks
    def _output_layer(self, second_order):
        return None

    def _loss(self):
        return "mse"

    @property
    def _n_model_outputs(self):
        return self.n_outputs_

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _encode_targets(self, y, first):
        y2 = y.reshape(len(y), -1).astype(np.float64 if y.dtype != np.float32 else np.float32, copy=False)
        if first:
            self._y_1d = y.ndim == 1
            self.n_outputs_ = y2.shape[1]
            uses = self.target_scaling == "minmax" or (self.target_scaling == "auto" and self._second_order)
            self._y_scaler = MinMaxScaler().fit(y2) if uses else None
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y: has {y2.shape[1]} target(s), the fitted network has {self.n_outputs_}")
        return y2 if self._y_scaler is None else self._y_scaler.transform(y2)

    def _validate_predict(self, X):
        return validate_data(self, X, dtype=(np.float64, np.float32), reset=False)

    # ------------------------------------------------------------------ inference
    def predict(self, X):
        """Predictions in the targets' units: (n_samples,) for one target, else (n_samples, n_targets)."""
        out = self._forward(X)
        if self._y_scaler is not None:
            out = self._y_scaler.inverse_transform(out)
        return out.ravel() if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
