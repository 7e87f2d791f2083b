"""RMSprop."""
from __future__ import annotations

from .. import _checks, backend
from .optimizer import Optimizer, optimizers
from .transforms import AddWeightDecay, Trace, Transform, transforms


@transforms.register("scale_by_rms")
class ScaleByRms(Transform):
    """RMSprop's scaling, as ``torch.optim.RMSprop``.

    s_t = α s_{t−1} + (1 − α) u²;  plain: u ← u / (√s_t + ε);
    ``centered`` (Graves 2013): m_t = α m_{t−1} + (1 − α) u, u ← u / (√(s_t − m_t²) + ε).
    s₀ = m₀ = 0; ε outside the square root.
    """

    def __init__(self, alpha: float = 0.99, eps: float = 1e-8, centered: bool = False):
        self.alpha = float(_checks.in_range("alpha", alpha, 0.0, 1.0))
        self.eps = float(_checks.positive("eps", eps, allow_zero=True))
        self.centered = bool(centered)

    def init(self, params):
        xp = backend.xp
        state = {"square_avg": xp.zeros_like(params), "_tmp": xp.empty_like(params)}
        if self.centered:
            state["grad_avg"] = xp.zeros_like(params)
        return state

    def update(self, u, state, params, t, lr):
        xp = backend.xp
        a = self.alpha
        sq, tmp = state["square_avg"], state["_tmp"]
        xp.multiply(u, u, out=tmp)
        sq *= a
        tmp *= 1.0 - a
        sq += tmp
        if self.centered:
            m = state["grad_avg"]
            xp.subtract(u, m, out=tmp)      # m ← m + (1 − α)(u − m), torch's lerp
            tmp *= 1.0 - a
            m += tmp
            xp.multiply(m, m, out=tmp)
            xp.subtract(sq, tmp, out=tmp)
            xp.sqrt(tmp, out=tmp)
        else:
            xp.sqrt(sq, out=tmp)
        tmp += self.eps
        u /= tmp
        return u

    def get_config(self):
        return {"alpha": self.alpha, "eps": self.eps, "centered": self.centered}


@optimizers.register("rmsprop")
class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012, lecture 6e) — ``torch.optim.RMSprop`` with its defaults.

    g ← g + λ θ;  s_t = α s + (1 − α) g²;  d = g / (√s_t + ε) (centered: √(s_t − m_t²),
    m_t = α m + (1 − α) g);  with momentum μ: b ← μ b + d, θ ← θ − η b (b₀ = 0);
    else θ ← θ − η d. Defaults: lr = 0.01, alpha = 0.99, eps = 1e-8, weight_decay = 0,
    momentum = 0, centered = False. Chain: [AddWeightDecay(λ), ScaleByRms, Trace(μ)],
    plus the optimizer pieces ``clip_norm``, ``clip_value``, ``max_norm``.
    """

    def __init__(self, lr=0.01, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, **pieces):
        scale = ScaleByRms(alpha, eps, centered)
        self.alpha, self.eps, self.centered = scale.alpha, scale.eps, scale.centered
        self.weight_decay, self.momentum = weight_decay, momentum
        super().__init__([AddWeightDecay(weight_decay), scale, Trace(momentum)], lr, **pieces)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum, "centered": self.centered}
