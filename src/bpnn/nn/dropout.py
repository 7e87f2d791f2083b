"""Inverted dropout."""
from __future__ import annotations

from .. import backend
from .._checks import in_range
from .module import Module, layers


@layers.register("dropout")
class Dropout(Module):
    """Inverted dropout (Srivastava et al. 2014), as ``torch.nn.Dropout``.

    Training: y = x ⊙ m / (1 − p) with m_i ~ Bernoulli(1 − p), drawn from the model's
    seeded generator; evaluation: y = x. Backward: ∂L/∂x = ∂L/∂y ⊙ m / (1 − p).
    Scaling at training time keeps E[y] = x, so nothing changes at inference.

    ``rate`` (p above) is the probability of **dropping** an activation, as in
    ``torch.nn.Dropout(p)`` and Keras' ``Dropout(rate)``. The BP articles bpnn serves
    write the other convention, a **keep** probability: their
    ``mask = (rand < p) / p`` is ``Dropout(rate=1 − p)`` when applied to activations, and
    applied to weights it is :class:`~bpnn.nn.DropConnect`, whose ``p`` is that keep
    probability.
    """

    def __init__(self, rate: float = 0.5):
        super().__init__()
        self.rate = float(in_range("rate", rate, 0.0, 1.0, high_open=True))
        self._mask = None  # the scaled keep mask of the last training forward (None: identity)

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        keep = 1.0 - self.rate
        u = self.rng.random(size=x.shape, dtype=self.dtype)
        mask = backend.to_device(u >= self.rate).astype(x.dtype)
        mask *= 1.0 / keep
        self._mask = mask
        return x * mask

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        return grad_out if self._mask is None else grad_out * self._mask

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """Per-sample backward: the mask (N, …) broadcasts over the cotangent axis."""
        return self.backward(grad_out, input_grad)

    def get_config(self):
        return {"rate": self.rate}
