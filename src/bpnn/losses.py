"""Loss functions: value and gradient with respect to the network's output.

``loss.forward(pred, target)`` returns the scalar loss (a 0-d array) and caches what
``loss.backward()`` needs to return ∂L/∂pred. Reductions average over the batch (and
over output units where stated), as the PyTorch losses named in each docstring.
"""
from __future__ import annotations

import numpy as np

from . import _checks, backend
from ._registry import Configurable, Registry

#: The losses by name (``"mse"``, ``"softmax_cross_entropy"``, ...); :func:`bpnn.losses.get` looks them up.
losses = Registry("loss")

__all__ = ["Loss", "MSE", "SoftmaxCrossEntropy", "BinaryCrossEntropyWithLogits", "get", "losses"]


class Loss(Configurable):
    """Base class of losses."""

    #: The metrics the Trainer reports with this loss by default.
    default_metrics: tuple = ()

    def forward(self, pred, target):
        raise NotImplementedError

    def backward(self):
        raise NotImplementedError

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def check_target(self, y, n_outputs: int, name: str = "y") -> np.ndarray:
        """Validate targets for a network with ``n_outputs`` outputs; return them as an array."""
        y = _checks.array(name, y, min_ndim=1)
        if y.ndim == 1 and n_outputs == 1:
            y = y.reshape(-1, 1)
        if y.shape[1:] != (n_outputs,):
            raise ValueError(
                f"{name}: got targets of shape {y.shape}; the model has {n_outputs} output(s), "
                f"so expected shape ({y.shape[0]}, {n_outputs})"
            )
        return y


@losses.register("mse", "mean_squared_error", "sse")
class MSE(Loss):
    """Squared error, with the two conventions of the literature.

    With e = pred − target over N samples and K outputs:

    ===============  ========================  ================  ============================
    reduction        L                          ∂L/∂pred          matches
    ===============  ========================  ================  ============================
    ``"mean"``       (1/(N K)) Σ e²             2e / (N K)        ``torch.nn.MSELoss()``, Keras
    ``"half_mean"``  (1/N) Σ_n ½ Σ_k e²_nk      e / N             the BP articles' NumPy network
    ``"half_sum"``   ½ Σ e²                     e                 the BP texts' E = ½ Σ (t − y)²
    ``"sum"``        Σ e²                       2e                SSE, MATLAB's ``sse``
    ===============  ========================  ================  ============================

    ``"half_mean"`` is the per-sample error ½ Σ_k e² of the BP texts averaged over the
    N samples of the batch (not over the K outputs): the gradient e / N is what a
    hand-written NumPy network computes as ``(pred - y) / m`` before backpropagating,
    so such a script and bpnn take the same steps with the same learning rate. In
    PyTorch terms it is ``0.5 * MSELoss(reduction="sum")(pred, y) / N``.

    ``"mean"`` is the default: its gradient does not grow with the batch size, so one
    learning rate serves full-batch, mini-batch and online training alike
    (``"half_mean"`` shares that property).
    """

    _REDUCTIONS = ("mean", "half_mean", "half_sum", "sum")

    def __init__(self, reduction: str = "mean"):
        self.reduction = _checks.one_of("reduction", reduction, self._REDUCTIONS)

    def forward(self, pred, target):
        target = target.reshape(pred.shape) if target.ndim == 1 else target
        e = pred - target
        sq = (e * e).sum()
        if self.reduction == "mean":
            self._scale = 2.0 / e.size
            loss = sq / e.size
        elif self.reduction == "half_mean":
            n = e.shape[0] if e.ndim else 1
            self._scale = 1.0 / n
            loss = 0.5 * sq / n
        elif self.reduction == "half_sum":
            self._scale = 1.0
            loss = 0.5 * sq
        else:
            self._scale = 2.0
            loss = sq
        self._e = e
        return loss

    def backward(self):
        return self._e * self._scale

    def get_config(self):
        return {"reduction": self.reduction}


@losses.register("softmax_cross_entropy", "cross_entropy", "categorical_crossentropy",
                 "sparse_categorical_crossentropy")
class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, fused, on logits z — ``torch.nn.CrossEntropyLoss()``.

    Targets are integer class labels (N,) or probability rows (N, K) such as one-hot.
    log softmax(z)_k = z_k − m − log Σ_j e^{z_j − m}, m = max_j z_j (log-sum-exp, never
    overflows);  L = −(1/N) Σ_n Σ_k t_nk log softmax(z_n)_k;  ∂L/∂z = (softmax(z) − t) / N.
    """

    default_metrics = ("accuracy",)

    def forward(self, pred, target):
        xp = backend.xp
        shifted = pred - pred.max(axis=1, keepdims=True)
        exp = xp.exp(shifted)
        sumexp = exp.sum(axis=1, keepdims=True)
        logp = shifted - xp.log(sumexp)
        n = pred.shape[0]
        if target.ndim == 1:
            rows = xp.arange(n)
            loss = -logp[rows, target].sum() / n
        else:
            loss = -(target * logp).sum() / n
        exp /= sumexp
        self._p, self._t = exp, target
        return loss

    def backward(self):
        g, t = self._p.copy(), self._t  # a copy: the cached softmax stays valid for a second call
        n = g.shape[0]
        if t.ndim == 1:
            g[backend.xp.arange(n), t] -= 1
        else:
            g -= t
        g *= 1.0 / n
        return g

    def check_target(self, y, n_outputs, name="y"):
        y = _checks.array(name, y, min_ndim=1)
        if y.ndim == 1:
            if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
                raise ValueError(f"{name}: class labels must be whole numbers, got e.g. {y[np.mod(y, 1) != 0][0]!r}")
            y = y.astype(np.int64)
            bad = (y < 0) | (y >= n_outputs)
            if bad.any():
                raise ValueError(
                    f"{name}: label {int(y[bad][0])} is out of range; the model has {n_outputs} "
                    f"outputs, so labels must be in 0..{n_outputs - 1}"
                )
            return y
        return super().check_target(y, n_outputs, name)


@losses.register("binary_cross_entropy_with_logits", "bce_with_logits", "binary_crossentropy")
class BinaryCrossEntropyWithLogits(Loss):
    """Sigmoid followed by binary cross-entropy, fused — ``torch.nn.BCEWithLogitsLoss()``.

    For logits z and targets t ∈ [0, 1], averaged over all N·K entries:
    ℓ = max(z, 0) − z t + log(1 + e^{−|z|}) (stable form of −t log σ(z) − (1 − t) log(1 − σ(z)));
    ∂L/∂z = (σ(z) − t) / (N K).
    """

    default_metrics = ("binary_accuracy",)

    def forward(self, pred, target):
        xp = backend.xp
        target = target.reshape(pred.shape) if target.ndim == 1 else target
        loss = (xp.maximum(pred, 0) - pred * target + xp.log1p(xp.exp(-xp.abs(pred)))).mean()
        self._z, self._t = pred, target
        return loss

    def backward(self):
        xp = backend.xp
        sig = 0.5 * (1 + xp.tanh(0.5 * self._z))
        return (sig - self._t) * (1.0 / self._z.size)

    def check_target(self, y, n_outputs, name="y"):
        y = super().check_target(y, n_outputs, name)
        if (y < 0).any() or (y > 1).any():
            raise ValueError(f"{name}: binary cross-entropy targets must lie in [0, 1], got values in "
                             f"[{y.min()}, {y.max()}]")
        return y


def get(identifier) -> Loss:
    """A loss from a name, config dict, class or instance."""
    return losses.get(identifier)
