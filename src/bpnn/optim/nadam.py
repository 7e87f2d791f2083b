"""NAdam."""
from __future__ import annotations

from .. import _checks, backend
from .optimizer import Optimizer, optimizers
from .transforms import AddDecoupledWeightDecay, AddWeightDecay, Transform, check_betas, transforms


@transforms.register("scale_by_nadam")
class ScaleByNadam(Transform):
    """NAdam's direction (Dozat 2016) with torch's momentum schedule — ``torch.optim.NAdam``.

    μ_t = β₁ (1 − ½ · 0.96^(t ψ)),  ψ = ``momentum_decay``;  Π_t = μ₁ ⋯ μ_t;
    m_t = β₁ m + (1 − β₁) u;  v_t = β₂ v + (1 − β₂) u²;  D = √(v_t / (1 − β₂ᵗ)) + ε;
    u ← (1 − μ_t) / (1 − Π_t) · u / D + μ_{t+1} / (1 − Π_t μ_{t+1}) · m_t / D.
    Π_t is kept in the state (``mu_product``, a 1-element float64 array).
    """

    def __init__(self, betas=(0.9, 0.999), eps: float = 1e-8, momentum_decay: float = 4e-3):
        self.betas = check_betas("betas", betas)
        self.eps = float(_checks.positive("eps", eps, allow_zero=True))
        self.momentum_decay = float(_checks.positive("momentum_decay", momentum_decay, allow_zero=True))

    def init(self, params):
        xp = backend.xp
        return {"exp_avg": xp.zeros_like(params), "exp_avg_sq": xp.zeros_like(params),
                "mu_product": xp.ones(1, dtype="float64"), "_tmp": xp.empty_like(params)}

    def update(self, u, state, params, t, lr):
        xp = backend.xp
        b1, b2 = self.betas
        m, v, tmp = state["exp_avg"], state["exp_avg_sq"], state["_tmp"]
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * self.momentum_decay))
        state["mu_product"] *= mu
        prod = float(state["mu_product"][0])
        xp.subtract(u, m, out=tmp)      # m ← m + (1 − β₁)(u − m), torch's lerp
        tmp *= 1.0 - b1
        m += tmp
        xp.multiply(u, u, out=tmp)
        v *= b2
        tmp *= 1.0 - b2
        v += tmp
        xp.divide(v, 1.0 - b2**t, out=tmp)
        xp.sqrt(tmp, out=tmp)
        tmp += self.eps
        u *= (1.0 - mu) / (1.0 - prod)
        u += (mu_next / (1.0 - prod * mu_next)) * m
        u /= tmp
        return u

    def get_config(self):
        return {"betas": list(self.betas), "eps": self.eps, "momentum_decay": self.momentum_decay}


@optimizers.register("nadam")
class NAdam(Optimizer):
    """NAdam, Adam with Nesterov momentum (Dozat 2016) — ``torch.optim.NAdam`` with its defaults.

    g ← g + λ θ (or decoupled, θ ← θ − η λ θ, with ``decoupled_weight_decay``), then
    θ ← θ − η u with u from :class:`ScaleByNadam`. Defaults: lr = 2e-3,
    betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0, momentum_decay = 4e-3.
    Plus the optimizer pieces ``clip_norm``, ``clip_value``, ``max_norm``.
    """

    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False, **pieces):
        scale = ScaleByNadam(betas, eps, momentum_decay)
        self.betas, self.eps, self.momentum_decay = scale.betas, scale.eps, scale.momentum_decay
        self.weight_decay, self.decoupled_weight_decay = weight_decay, bool(decoupled_weight_decay)
        chain = ([scale, AddDecoupledWeightDecay(weight_decay)] if self.decoupled_weight_decay
                 else [AddWeightDecay(weight_decay), scale])
        super().__init__(chain, lr, **pieces)

    def get_config(self):
        return {**super().get_config(), "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum_decay": self.momentum_decay,
                "decoupled_weight_decay": self.decoupled_weight_decay}
