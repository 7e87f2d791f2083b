"""Gradient clipping: by global norm and by value (the first pieces of a chain)."""
from __future__ import annotations

import math

from .. import _checks, backend
from .transforms import Transform, transforms


@transforms.register("clip_by_global_norm", "clip_norm")
class ClipByGlobalNorm(Transform):
    """Rescale the whole gradient when its global norm exceeds ``max_norm`` —
    ``torch.nn.utils.clip_grad_norm_`` (Pascanu et al. 2013).

    ‖u‖ = √(Σ over every trainable parameter of u²);  c = max_norm / (‖u‖ + 10⁻⁶);
    u ← u · min(1, c). The 10⁻⁶ is torch's. Put it first in a chain (the optimizers'
    ``clip_norm=`` argument does) so it clips the raw gradient, as torch users call
    ``clip_grad_norm_`` between ``backward()`` and ``step()``. The norm is
    ``last_norm`` afterwards (before clipping), for logging.
    """

    def __init__(self, max_norm: float):
        self.max_norm = float(_checks.positive("clip_norm", max_norm))
        self.last_norm = None

    def scale(self, u) -> float:
        """min(1, c) for the gradient u (and ``last_norm`` = ‖u‖), without changing u."""
        norm = math.sqrt(float(backend.xp.vdot(u, u)))
        self.last_norm = norm
        return min(1.0, self.max_norm / (norm + 1e-6))

    def update(self, u, state, params, t, lr):
        coef = self.scale(u)
        if coef < 1.0:
            u *= coef
        return u

    def get_config(self):
        return {"max_norm": self.max_norm}


@transforms.register("clip_by_value", "clip_value")
class ClipByValue(Transform):
    """Clamp every gradient entry to [−c, c] — ``torch.nn.utils.clip_grad_value_``.

    u ← min(max(u, −c), c), c = ``clip_value``.
    """

    def __init__(self, clip_value: float):
        self.clip_value = float(_checks.positive("clip_value", clip_value))

    def update(self, u, state, params, t, lr):
        backend.xp.clip(u, -self.clip_value, self.clip_value, out=u)
        return u

    def get_config(self):
        return {"clip_value": self.clip_value}
