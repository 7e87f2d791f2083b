"""Rprop."""
from __future__ import annotations

from .. import _checks, backend
from .optimizer import Optimizer, optimizers
from .transforms import Transform, transforms


@transforms.register("scale_by_rprop")
class ScaleByRprop(Transform):
    """Rprop's sign-based steps, as ``torch.optim.Rprop`` (Riedmiller & Braun 1993, the
    variant without weight backtracking). It applies the learning rate itself: η only
    sets the initial step sizes Δ₀ = η (later changes of η have no effect).

    With p = u_t · u_{t−1} (u₀ = 0), per entry:
        p > 0: Δ ← min(Δ η₊, Δ_max);   p < 0: Δ ← max(Δ η₋, Δ_min), u_t ← 0;   p = 0: Δ kept;
        u ← sign(u_t) · Δ  (then θ ← θ − u);  u_t is remembered for the next step.
    """

    applies_lr = True

    def __init__(self, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0)):
        try:
            eta_minus, eta_plus = (float(e) for e in etas)
            lo, hi = (float(s) for s in step_sizes)
        except (TypeError, ValueError):
            raise ValueError(f"etas, step_sizes: got {etas!r}, {step_sizes!r}; expected two pairs of numbers") from None
        if not 0.0 < eta_minus < 1.0 < eta_plus:
            raise ValueError(f"etas: got {etas!r}; expected (eta_minus, eta_plus) with 0 < eta_minus < 1 < eta_plus")
        _checks.positive("step_sizes[0]", lo, allow_zero=True)
        if not hi >= lo:
            raise ValueError(f"step_sizes: got {step_sizes!r}; expected (min, max) with 0 <= min <= max")
        self.etas, self.step_sizes = (eta_minus, eta_plus), (lo, hi)

    def init(self, params):
        xp = backend.xp
        return {"prev": xp.zeros_like(params), "step_size": xp.zeros_like(params),
                "_tmp": xp.empty_like(params)}

    def update(self, u, state, params, t, lr):
        xp = backend.xp
        prev, step, tmp = state["prev"], state["step_size"], state["_tmp"]
        if t == 1:
            step[...] = lr
        eta_minus, eta_plus = self.etas
        xp.multiply(u, prev, out=tmp)
        factor = xp.where(tmp > 0, eta_plus, xp.where(tmp < 0, eta_minus, 1.0)).astype(u.dtype, copy=False)
        step *= factor
        xp.clip(step, self.step_sizes[0], self.step_sizes[1], out=step)
        u[tmp < 0] = 0
        prev[...] = u
        xp.sign(u, out=u)
        u *= step
        return u

    def get_config(self):
        return {"etas": list(self.etas), "step_sizes": list(self.step_sizes)}


@optimizers.register("rprop")
class Rprop(Optimizer):
    """Resilient backpropagation (Riedmiller & Braun 1993) — ``torch.optim.Rprop``.

    Each weight has its own step size Δ, grown by η₊ while its gradient keeps its sign
    and shrunk by η₋ when the sign flips; the step is −sign(g)·Δ, so the gradient's
    magnitude does not matter. A classic *full-batch* method: with mini-batches the sign
    flips from batch noise and Δ collapses — train with ``batch_size="full"``.
    Defaults as torch: lr = 0.01 (the initial Δ), etas = (η₋, η₊) = (0.5, 1.2),
    step_sizes = (Δ_min, Δ_max) = (1e-6, 50). Chain: [ScaleByRprop], plus the optimizer
    pieces ``clip_norm``, ``clip_value``, ``max_norm``.
    """

    def __init__(self, lr=0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), **pieces):
        scale = ScaleByRprop(etas, step_sizes)
        self.etas, self.step_sizes = scale.etas, scale.step_sizes
        super().__init__([scale], lr, **pieces)

    def get_config(self):
        return {**super().get_config(), "etas": list(self.etas), "step_sizes": list(self.step_sizes)}
