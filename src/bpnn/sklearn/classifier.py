"""BPNNClassifier: a bpnn network behind scikit-learn's classifier interface."""
from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from ._base import BaseBPNN, _gradient_solver


class BPNNClassifier(ClassifierMixin, BaseBPNN):
    """Multilayer perceptron classifier trained by backpropagation — scikit-learn's
    ``MLPClassifier`` interface and parameter names, bpnn's layers, optimizers and
    Levenberg–Marquardt underneath.

    The network is Dense → activation (→ Dropout) per hidden layer, then a Dense layer
    with one output per class. Gradient solvers minimize the softmax cross-entropy (plus
    the penalty); ``predict_proba`` is the softmax of the outputs. The solvers ``"lm"``
    and ``"br"`` minimize the squared error between a softmax output layer and one-hot
    targets (as MATLAB's ``patternnet`` with ``trainlm``/``trainbr``).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Units per hidden layer.
    activation : str or list of str (one per hidden layer), default "relu"
        scikit-learn's names ("identity", "logistic", "tanh", "relu"), bpnn's
        ("sigmoid", "leaky_relu", "elu", "softplus") or MATLAB's ("purelin", "logsig",
        "tansig", "poslin").
    solver : default "adam"
        "sgd", "adam", any bpnn optimizer name ("rmsprop", "adagrad", "nadam", "kfac"
        with ``learning_rate_init`` and ``momentum``, ...) or
        instance (``bpnn.optim.SGD(lr=0.1, momentum=0.9)``, used as given); "lm"
        (Levenberg–Marquardt, MATLAB ``trainlm``) or "br" (Bayesian regularization,
        ``trainbr``), or a :class:`bpnn.optim.LevenbergMarquardt` instance.
    alpha : float, default 1e-4
        Penalty on the weights (not biases) as scikit-learn's: ½·alpha·‖W‖² / batch size
        added to the loss; gradient solvers only ("br" estimates its own).
    l1_ratio : float in [0, 1], default 0
        Share of ``alpha`` given to an L1 penalty alpha·l1_ratio·Σ|W| / batch size (the
        rest stays L2): elastic net.
    batch_size : int, "auto" (min(200, n_samples), default) or "full" (batch gradient descent).
    learning_rate : "constant" (default), "invscaling", "adaptive" (scikit-learn's rules,
        for every gradient solver), or a bpnn schedule / callable ``step → lr``.
    learning_rate_init : float, default 1e-3.
    power_t : float, default 0.5 (for "invscaling").
    max_iter : int, default 200 — epochs (for "lm"/"br": MATLAB's ``epochs``).
    shuffle : bool, default True.
    random_state : int, RandomState or None — seeds initialization, shuffling, dropout
        and the validation split.
    tol : float, default 1e-4; n_iter_no_change : int, default 10
        Stop when the training loss (validation loss with ``early_stopping``) has not
        improved by ``tol`` for ``n_iter_no_change`` epochs (scikit-learn's rule). For
        "lm"/"br" with ``early_stopping``, ``n_iter_no_change`` is MATLAB's ``max_fail``
        (consecutive validation rises; MATLAB's default is 6).
    verbose : bool — a progress bar.
    warm_start : bool — ``fit`` continues from the fitted network.
    momentum, nesterovs_momentum : for "sgd" (defaults 0.9, True).
    early_stopping : bool, default False; validation_fraction : float, default 0.1
        Hold out a stratified fraction and stop on its loss; the best validation weights
        are kept.
    beta_1, beta_2, epsilon : for "adam".
    init : "auto" (default: Nguyen–Widrow for "lm"/"br", as MATLAB; Glorot/Xavier
        uniform otherwise, as scikit-learn), "nguyen_widrow", or any bpnn initializer
        name or instance ("he_normal", "orthogonal", "lsuv", ...).
    dropout : float or list (one per hidden layer), default 0 — inverted dropout after
        each hidden activation (gradient solvers).
    n_restarts : int, default 1 — train from this many seeds and keep one network, by
        the rule of ``bpnn.train.restarts`` (the same as ``Trainer.fit``'s): the
        lowest loss of the weights each run keeps on the validation data (with early
        stopping), else on the training data; a non-finite loss never wins.
    scaling : "auto" (default: min-max to [−1, 1] for "lm"/"br", as MATLAB's
        ``mapminmax``; none otherwise), "minmax", or None.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_, n_outputs_, model_ (the
    :class:`bpnn.Sequential`), coefs_, intercepts_, loss_ (last epoch's training loss),
    loss_curve_ (one value per epoch, penalty excluded), validation_loss_curve_
    (per epoch, with early stopping), best_loss_, best_validation_loss_, n_iter_, t_
    (samples seen), out_activation_, restart_scores_, restart_seeds_ and best_restart_
    (each run's score and seed, and the index of the kept run, set by ``fit``); with
    "lm"/"br": ``training_record_`` (:class:`bpnn.train.TrainingRecord`), ``mu_``, and ``gamma_``
    (effective number of parameters, "br").
    """

    _stratify = True

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train on (X, y) for up to ``max_iter`` epochs; returns self."""
        return self._fit(X, y, incremental=False)

    @available_if(_gradient_solver)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y). ``classes`` (all labels) is required on the first call."""
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes: the first call to partial_fit needs classes=[all labels]")
            self._partial_classes = np.asarray(classes)
        return self._fit(X, y, incremental=True)

    # ------------------------------------------------------------------ hooks
    def _output_layer(self, second_order):
        return "softmax" if second_order else None

    def _loss(self):
        return "softmax_cross_entropy"

    @property
    def _n_model_outputs(self):
        return len(self.classes_)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=reset)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return X, y

    def _encode_targets(self, y, first):
        if first:
            classes = self.__dict__.pop("_partial_classes", None)
            encoder = LabelEncoder().fit(classes if classes is not None else y)
            if len(encoder.classes_) < 2:
                raise ValueError(f"y: the classifier needs samples of at least 2 classes; got only one "
                                 f"class, {encoder.classes_[0]!r}")
            self._encoder = encoder
            self.classes_ = encoder.classes_
            self.n_outputs_ = len(self.classes_)
        else:
            unseen = np.setdiff1d(unique_labels(y), self.classes_)
            if unseen.size:
                raise ValueError(f"y: labels {unseen.tolist()} were not seen in the first fit; the classes "
                                 f"are {self.classes_.tolist()}")
        return self._encoder.transform(y).astype(np.int64)

    def _one_hot(self, labels):
        out = np.zeros((len(labels), len(self.classes_)))
        out[np.arange(len(labels)), labels] = 1.0
        return out

    def _validate_predict(self, X):
        return validate_data(self, X, dtype=(np.float64, np.float32), reset=False)

    # ------------------------------------------------------------------ inference
    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        out = self._forward(X)
        if self._second_order_fitted:
            p = np.clip(out, 0.0, None)
            s = p.sum(axis=1, keepdims=True)
            s[s == 0] = 1.0
            return p / s
        z = out - out.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sample."""
        out = self._forward(X)
        return self.classes_[np.argmax(out, axis=1)]

    @property
    def _second_order_fitted(self):
        return getattr(self, "out_activation_", None) == "softmax"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags
