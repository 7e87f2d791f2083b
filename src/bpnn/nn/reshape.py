"""Shape-only layers."""
from __future__ import annotations

import math

from .module import Module, layers


@layers.register("flatten")
class Flatten(Module):
    """(N, d1, d2, ...) → (N, d1·d2·…). Backward reshapes the gradient back."""

    _shape = None  # the input shape of the last forward, to reshape the gradient back

    def _build(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out, input_grad=True):
        return grad_out.reshape(self._shape) if input_grad else None

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """(T, N, d1·d2·…) → (T, N, d1, d2, …)."""
        return grad_out.reshape(grad_out.shape[:1] + tuple(self._shape)) if input_grad else None
