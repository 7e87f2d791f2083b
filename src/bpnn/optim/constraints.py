"""Constraints applied to the weights after each optimizer step (max-norm)."""
from __future__ import annotations

from .. import _checks, backend
from .._registry import Configurable, Registry

#: The weight constraints by name (``"max_norm"``).
constraints = Registry("constraint")


class Constraint(Configurable):
    """Base class: ``bind(model) -> bound`` once, then ``apply(bound)`` after every step."""

    def bind(self, model):
        raise NotImplementedError

    def apply(self, bound) -> None:
        raise NotImplementedError


def incoming_axes(ndim: int) -> tuple:
    """Axes of a weight that hold one unit's incoming weights, in bpnn's layouts.

    Dense ``(n_in, n_out)``: unit j's incoming vector is the column W[:, j], axis 0.
    Convolution ``(out_channels, in_channels, *kernel)`` (OIHW, see
    :func:`bpnn.init.compute_fans`): filter o is W[o], axes 1, 2, ...
    """
    return (0,) if ndim == 2 else tuple(range(1, ndim))


@constraints.register("max_norm", "maxnorm")
class MaxNorm(Constraint):
    """Max-norm constraint (Srivastava et al. 2014, dropout paper §5.1): after each step,
    every unit's incoming weight vector w is rescaled so that ‖w‖₂ ≤ c.

    w ← w · c / (‖w‖₂ + 10⁻⁷) where ‖w‖₂ > c, unchanged otherwise — exactly
    ``torch.renorm(W, p=2, dim=0, maxnorm=c)`` on torch's (out, in) layout. Applies to the
    parameters named in ``keys`` (default the ``"weight"`` of every trainable layer;
    biases and 1-d parameters are never constrained). Typical c: 3 to 4.
    Use it through an optimizer: ``bpnn.optim.SGD(lr=0.1, momentum=0.9, max_norm=3.0)``.
    """

    def __init__(self, max_value: float, keys=("weight",)):
        self.max_value = float(_checks.positive("max_norm", max_value))
        if isinstance(keys, str):
            keys = (keys,)
        self.keys = tuple(keys)

    def bind(self, model):
        out = []
        for m in model.modules():
            if not m.trainable:
                continue
            for key in self.keys:
                w = m.params.get(key)
                if w is not None and w.ndim >= 2:
                    out.append((w, incoming_axes(w.ndim)))
        return out

    def apply(self, bound) -> None:
        xp = backend.xp
        c = self.max_value
        for w, axes in bound:
            norms = xp.sqrt(xp.sum(w * w, axis=axes, keepdims=True))
            over = norms > c
            if bool(over.any()):
                w *= xp.where(over, c / (norms + 1e-7), 1.0).astype(w.dtype, copy=False)

    def get_config(self):
        return {"max_value": self.max_value, "keys": list(self.keys)}
