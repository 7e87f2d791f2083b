"""DropConnect: a fully connected layer whose weights, not activations, are dropped."""
from __future__ import annotations

from .. import backend
from .._checks import in_range
from .dense import Dense
from .module import layers


@layers.register("drop_connect", "dropconnect")
class DropConnect(Dense):
    r"""A :class:`Dense` layer that drops weights during training (Wan et al. 2013).

    ``p`` is the **keep** probability, as the BP articles bpnn serves write it: each
    weight survives with probability p and survivors are scaled by 1/p. This is the
    opposite convention to :class:`Dropout`, whose ``rate`` is the probability of
    **dropping** an activation: ``DropConnect(units, p=0.8)`` keeps 80 % of the
    weights, ``Dropout(0.8)`` drops 80 % of the activations.

    Notes
    -----
    Training, with U uniform on [0, 1) of W's shape drawn from the model's seeded
    generator once per forward pass (one mask for the whole batch, the form the BP
    articles write; the paper draws one per sample):

        M = [U < p] / p,   W̃ = W ⊙ M,   y = x W̃ + b.

    Backward, with G = ∂L/∂y:

        ∂L/∂W = (xᵀ G) ⊙ M,   ∂L/∂b = Σ_n G_n,   ∂L/∂x = G W̃ᵀ.

    A dropped weight gets no gradient in that step. Evaluation: y = x W + b, the plain
    Dense layer — E[W̃] = W, so nothing is rescaled at inference. ``p = 1`` keeps every
    weight and is the Dense layer in both modes.

    Why a layer of its own rather than a wrapper or ``Dense(dropconnect=p)``: the mask
    belongs to the weight of one product, so the layer is Dense with one more factor in
    forward and backward. As a subclass it has Dense's parameters under Dense's names
    (``weight`` (n_in, n_out), ``bias``), so optimizers, checkpoints and state dicts see
    the same arrays, while Dense itself stays free of a training-only option; a
    wrapper would have to reach into another module's forward to swap its weight.

    Parameters
    ----------
    units : int
        Number of outputs n_out.
    p : float in (0, 1], default 0.5
        Probability of keeping each weight during training.
    init, bias_init, use_bias, trainable, regularizer :
        As :class:`Dense` (default init ``"xavier_uniform"``).
    """

    def __init__(self, units: int, p: float = 0.5, init="xavier_uniform", bias_init="zeros",
                 use_bias: bool = True, trainable: bool = True, regularizer=None):
        super().__init__(units, init, bias_init, use_bias, trainable, regularizer)
        self.p = float(in_range("p", p, 0.0, 1.0, low_open=True))
        self._mask = None
        self._w = None

    def _draw_mask(self, like):
        """M = [U < p] / p, U of W's shape from the model's generator."""
        u = self.rng.random(size=like.shape, dtype=self.dtype)
        mask = backend.to_device(u < self.p).astype(like.dtype)
        mask *= 1.0 / self.p
        return mask

    def forward(self, x, training=False):
        if not training or self.p == 1.0:
            self._mask = None
            self._w = self.params["weight"]
            return super().forward(x, training)
        self._check_built(x)
        self._x = x
        self._mask = self._draw_mask(self.params["weight"])
        self._w = self.params["weight"] * self._mask
        y = x @ self._w
        if self.use_bias:
            y += self.params["bias"]
        return y

    def backward(self, grad_out, input_grad=True):
        if self._mask is None:
            return super().backward(grad_out, input_grad)
        xp = backend.xp
        if self.keep_output_grad:
            self.output_grad = grad_out.copy()
        if self._trainable and not self.output_grad_only:
            gw = self.grads["weight"]
            xp.matmul(self._x.T, grad_out, out=gw)
            gw *= self._mask
            if self.use_bias:
                grad_out.sum(axis=0, out=self.grads["bias"])
        if input_grad:
            return grad_out @ self._w.T
        return None

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """Per-sample gradients as :meth:`Dense.backward_per_sample`, with the mask of the
        last forward pass: ∂/∂W [n, t] = (x_n ⊗ G_{t,n}) ⊙ M, input cotangents G W̃ᵀ."""
        if self._mask is None:
            return super().backward_per_sample(grad_out, sink, prefix, input_grad)
        xp = backend.xp
        if self._trainable:
            dw = sink(prefix + "weight")
            if dw is not None:
                xp.multiply(self._x[:, None, :, None], grad_out.transpose(1, 0, 2)[:, :, None, :], out=dw)
                dw *= self._mask
            db = sink(prefix + "bias") if self.use_bias else None
            if db is not None:
                db[...] = grad_out.transpose(1, 0, 2)
        if input_grad:
            return grad_out @ self._w.T
        return None

    def get_config(self):
        return {"units": self.units, "p": self.p, **{k: v for k, v in super().get_config().items()
                                                     if k != "units"}}
