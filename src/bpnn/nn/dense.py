"""Fully connected layer."""
from __future__ import annotations

from .. import backend
from .. import init as initializers
from .._checks import positive
from .module import Module, layers
from .regularizers import regularizers


@layers.register("dense", "linear")
class Dense(Module):
    r"""Fully connected layer ``y = x W + b``.

    Shapes: x (N, n_in), W (n_in, n_out), b (n_out,), y (N, n_out). ``n_in`` is inferred
    from the first input (lazy shapes). W is stored as (in, out) as the BP texts write
    it; PyTorch's ``nn.Linear`` stores the transpose.

    Notes
    -----
    Forward:  y = x W + b.
    Backward, with G = ∂L/∂y::

        ∂L/∂W = xᵀ G,   ∂L/∂b = Σ_n G_n,   ∂L/∂x = G Wᵀ.

    For curvature methods (K-FAC) the two factors are exposed: ``input_rows()`` is x
    (N, n_in) and, with ``keep_output_grad`` set, ``output_grad`` is a copy of G (N, n_out).

    Parameters
    ----------
    units : int
        Number of outputs n_out.
    init : initializer name, config, class or instance, default ``"xavier_uniform"``
        Initializer of W (Keras' default; PyTorch's default is ``"uniform"`` with
        bound 1/√fan_in). Any name of :data:`bpnn.init.registry`.
    bias_init : default ``"zeros"``.
    use_bias : bool, default True.
    trainable : bool, default True. False freezes W and b (fine-tuning).
    regularizer : penalty on W added to the loss, e.g. ``bpnn.optim.L2(1e-4)`` (name, config
        or instance of ``bpnn.nn.regularizers``); default None. Stored in
        ``self.regularizers["weight"]``.
    """

    def __init__(self, units: int, init="xavier_uniform", bias_init="zeros",
                 use_bias: bool = True, trainable: bool = True, regularizer=None):
        super().__init__(trainable)
        self.units = positive("units", units, integer=True)
        self.init = initializers.get(init)
        self.bias_init = initializers.get(bias_init)
        self.use_bias = bool(use_bias)
        self._x = None  # the input of the last forward, for ∂L/∂W = xᵀ G
        if regularizer is not None:
            self.regularizers["weight"] = regularizers.get(regularizer)

    def _build(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"x: Dense expects inputs of shape (batch, features), got samples of shape "
                f"{input_shape}; put a Flatten() before it"
            )
        self._add_param("weight", self.init, (input_shape[0], self.units))
        if self.use_bias:
            self._add_param("bias", self.bias_init, (self.units,))
        return (self.units,)

    def forward(self, x, training=False):
        self._check_built(x)
        self._x = x
        y = x @ self.params["weight"]
        if self.use_bias:
            y += self.params["bias"]
        return y

    def input_rows(self):
        """x (N, n_in) of the last forward (not a copy: read it before the next forward)."""
        return self._x

    def backward(self, grad_out, input_grad=True):
        xp = backend.xp
        if self.keep_output_grad:
            self.output_grad = grad_out.copy()
        if self._trainable and not self.output_grad_only:
            xp.matmul(self._x.T, grad_out, out=self.grads["weight"])
            if self.use_bias:
                grad_out.sum(axis=0, out=self.grads["bias"])
        if input_grad:
            return grad_out @ self.params["weight"].T
        return None

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """Per-sample gradients for the Jacobian: with G (T, N, n_out) the cotangents,
        ∂/∂W [n, t] = x_n ⊗ G_{t,n},  ∂/∂b [n, t] = G_{t,n},  input cotangents G Wᵀ."""
        xp = backend.xp
        if self._trainable:
            dw = sink(prefix + "weight")
            if dw is not None:
                xp.multiply(self._x[:, None, :, None], grad_out.transpose(1, 0, 2)[:, :, None, :], out=dw)
            db = sink(prefix + "bias") if self.use_bias else None
            if db is not None:
                db[...] = grad_out.transpose(1, 0, 2)
        if input_grad:
            return grad_out @ self.params["weight"].T
        return None

    def get_config(self):
        return {"units": self.units, "init": initializers.serialize(self.init),
                "bias_init": initializers.serialize(self.bias_init),
                "use_bias": self.use_bias, **super().get_config(),
                **({"regularizer": regularizers.serialize(self.regularizers["weight"])}
                   if "weight" in self.regularizers else {})}
