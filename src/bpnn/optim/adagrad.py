"""AdaGrad."""
from __future__ import annotations

from .. import _checks, backend
from .optimizer import Optimizer, optimizers
from .transforms import AddWeightDecay, Transform, transforms


@transforms.register("scale_by_adagrad")
class ScaleByAdagrad(Transform):
    """AdaGrad's per-parameter scaling, as ``torch.optim.Adagrad``.

    s_t = s_{t−1} + u² (s₀ = ``initial_accumulator_value``);
    u ← u / (√s_t + ε) / (1 + (t − 1) k), k = ``lr_decay`` (ε outside the square root).
    """

    def __init__(self, lr_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        self.lr_decay = float(_checks.positive("lr_decay", lr_decay, allow_zero=True))
        self.initial_accumulator_value = float(
            _checks.positive("initial_accumulator_value", initial_accumulator_value, allow_zero=True))
        self.eps = float(_checks.positive("eps", eps, allow_zero=True))

    def init(self, params):
        xp = backend.xp
        return {"sum": xp.full_like(params, self.initial_accumulator_value), "_tmp": xp.empty_like(params)}

    def update(self, u, state, params, t, lr):
        xp = backend.xp
        s, tmp = state["sum"], state["_tmp"]
        xp.multiply(u, u, out=tmp)
        s += tmp
        xp.sqrt(s, out=tmp)
        tmp += self.eps
        u /= tmp
        if self.lr_decay:
            u *= 1.0 / (1.0 + (t - 1) * self.lr_decay)
        return u

    def get_config(self):
        return {"lr_decay": self.lr_decay, "initial_accumulator_value": self.initial_accumulator_value,
                "eps": self.eps}


@optimizers.register("adagrad")
class AdaGrad(Optimizer):
    """AdaGrad (Duchi, Hazan & Singer 2011) — ``torch.optim.Adagrad`` with its defaults.

    g ← g + λ θ;  s_t = s_{t−1} + g²;  θ ← θ − η / (1 + (t − 1) k) · g / (√s_t + ε).
    λ ``weight_decay``, k ``lr_decay``, s₀ ``initial_accumulator_value``.
    Defaults: lr = 0.01, lr_decay = 0, weight_decay = 0, initial_accumulator_value = 0,
    eps = 1e-10. Chain: [AddWeightDecay(λ), ScaleByAdagrad], plus the optimizer pieces
    ``clip_norm``, ``clip_value``, ``max_norm``.
    """

    def __init__(self, lr=0.01, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, **pieces):
        scale = ScaleByAdagrad(lr_decay, initial_accumulator_value, eps)
        self.lr_decay, self.weight_decay = scale.lr_decay, weight_decay
        self.initial_accumulator_value, self.eps = scale.initial_accumulator_value, scale.eps
        super().__init__([AddWeightDecay(weight_decay), scale], lr, **pieces)

    def get_config(self):
        return {**super().get_config(), "lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}
