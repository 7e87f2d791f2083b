"""Activation functions as layers (elementwise unless stated).

Each caches what its derivative is cheapest to compute from — the output for sigmoid,
tanh, ReLU and softmax, the input for the others — and never modifies ``grad_out``
in place (a residual block hands the same gradient to two branches).
"""
from __future__ import annotations


from .. import backend
from .._checks import in_range, positive
from .._kernels import relu as relu_kernels
from .module import Module, layers


class Activation(Module):
    """Parameter-free, shape-preserving layer."""

    # what forward keeps for backward, per activation: the output y (sigmoid, tanh, ReLU,
    # ELU, softmax), the mask x > 0 (leaky ReLU, ELU) or βx (softplus)
    _y = None
    _pos = None
    _bx = None

    def __init__(self):
        super().__init__()

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """Per-sample backward: the cached forward values of shape (N, …) broadcast over the
        leading cotangent axis of ``grad_out`` (T, N, …), so ``backward`` serves as is."""
        if self.params:
            return super().backward_per_sample(grad_out, sink, prefix, input_grad)
        return self.backward(grad_out, input_grad)


@layers.register("identity", "linear_activation")
class Identity(Activation):
    """y = x;  ∂L/∂x = ∂L/∂y."""

    def forward(self, x, training=False):
        return x

    def backward(self, grad_out, input_grad=True):
        return grad_out if input_grad else None


@layers.register("sigmoid", "logistic")
class Sigmoid(Activation):
    """Logistic sigmoid, computed as σ(x) = ½ (1 + tanh(x/2)) so it never overflows.

    Forward: y = 1 / (1 + e^{−x}).  Backward: ∂L/∂x = ∂L/∂y · y (1 − y).
    """

    def forward(self, x, training=False):
        xp = backend.xp
        y = xp.tanh(x * 0.5)
        y += 1
        y *= 0.5
        self._y = y
        return y

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        y = self._y
        return grad_out * (y * (1 - y))


@layers.register("tanh")
class Tanh(Activation):
    """Hyperbolic tangent. Forward: y = tanh x.  Backward: ∂L/∂x = ∂L/∂y · (1 − y²)."""

    def forward(self, x, training=False):
        self._y = backend.xp.tanh(x)
        return self._y

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        y = self._y
        return grad_out * (1 - y * y)


@layers.register("relu")
class ReLU(Activation):
    """Rectified linear unit. Forward: y = max(x, 0).

    Backward: ∂L/∂x = ∂L/∂y · [x > 0] (the subgradient at 0 is 0, as in PyTorch).
    """

    def forward(self, x, training=False):
        self._y = relu_kernels.relu(x)
        return self._y

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        return relu_kernels.relu_backward(grad_out, self._y)


@layers.register("leaky_relu")
class LeakyReLU(Activation):
    """Leaky ReLU (Maas et al. 2013), ``negative_slope`` a = 0.01 as ``torch.nn.LeakyReLU``.

    Forward: y = x if x > 0 else a·x.  Backward: ∂L/∂x = ∂L/∂y · (1 if x > 0 else a).
    """

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(in_range("negative_slope", negative_slope, 0.0, 1.0))

    def forward(self, x, training=False):
        self._pos = x > 0
        return backend.xp.where(self._pos, x, x * self.negative_slope)

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        return backend.xp.where(self._pos, grad_out, grad_out * self.negative_slope)

    def get_config(self):
        return {"negative_slope": self.negative_slope}


@layers.register("elu")
class ELU(Activation):
    """Exponential linear unit (Clevert et al. 2016), ``alpha`` = 1 as ``torch.nn.ELU``.

    Forward: y = x if x > 0 else α (eᵡ − 1).
    Backward: ∂L/∂x = ∂L/∂y · (1 if x > 0 else y + α).
    """

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = float(positive("alpha", alpha))

    def forward(self, x, training=False):
        xp = backend.xp
        self._pos = x > 0
        self._y = xp.where(self._pos, x, self.alpha * xp.expm1(xp.minimum(x, 0)))
        return self._y

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        return backend.xp.where(self._pos, grad_out, grad_out * (self._y + self.alpha))

    def get_config(self):
        return {"alpha": self.alpha}


@layers.register("softplus")
class Softplus(Activation):
    """Softplus, ``beta`` = 1 and ``threshold`` = 20 as ``torch.nn.Softplus``.

    Forward: y = (1/β) log(1 + e^{βx}), and y = x where βx > threshold (linear regime).
    Backward: ∂L/∂x = ∂L/∂y · σ(βx) (1 where βx > threshold).
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = float(positive("beta", beta))
        self.threshold = float(positive("threshold", threshold))

    def forward(self, x, training=False):
        xp = backend.xp
        bx = x * self.beta
        self._bx = bx
        return xp.where(bx > self.threshold, x, xp.logaddexp(0, bx) / self.beta)

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        xp = backend.xp
        bx = self._bx
        sig = 0.5 * (1 + xp.tanh(0.5 * bx))
        return grad_out * xp.where(bx > self.threshold, 1, sig).astype(grad_out.dtype, copy=False)

    def get_config(self):
        return {"beta": self.beta, "threshold": self.threshold}


@layers.register("softmax")
class Softmax(Activation):
    """Softmax over the last axis: y_i = e^{x_i − m} / Σ_j e^{x_j − m}, m = max_j x_j.

    Backward: ∂L/∂x = y ⊙ (G − Σ_j G_j y_j) with G = ∂L/∂y.
    For classification use the fused ``softmax_cross_entropy`` loss on logits instead:
    it is cheaper and numerically exact.
    """

    def forward(self, x, training=False):
        xp = backend.xp
        e = xp.exp(x - x.max(axis=-1, keepdims=True))
        e /= e.sum(axis=-1, keepdims=True)
        self._y = e
        return e

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        y = self._y
        return y * (grad_out - (grad_out * y).sum(axis=-1, keepdims=True))


