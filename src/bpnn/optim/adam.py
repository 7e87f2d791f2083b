"""Adam."""
from __future__ import annotations

from .optimizer import Optimizer, optimizers
from .transforms import AddWeightDecay, ScaleByAdam


@optimizers.register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) — ``torch.optim.Adam`` with its defaults.

    g ← g + λ θ (coupled L2, ``weight_decay``);  m_t = β₁ m + (1 − β₁) g;
    v_t = β₂ v + (1 − β₂) g²;  θ ← θ − η (m_t / (1 − β₁ᵗ)) / (√(v_t / (1 − β₂ᵗ)) + ε).
    ε sits outside the square root, as in PyTorch and the paper. ``amsgrad`` uses
    max(v_1..v_t) in the denominator (Reddi et al. 2018).
    Defaults: lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0.
    """

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        scale = ScaleByAdam(betas, eps, amsgrad)
        self.betas, self.eps, self.amsgrad, self.weight_decay = scale.betas, eps, amsgrad, weight_decay
        super().__init__([AddWeightDecay(weight_decay), scale], lr)

    def get_config(self):
        return {**super().get_config(), "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "amsgrad": self.amsgrad}
