"""Adam and AdamW."""
from __future__ import annotations

from .optimizer import Optimizer, optimizers
from .transforms import AddDecoupledWeightDecay, AddWeightDecay, ScaleByAdam


@optimizers.register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) — ``torch.optim.Adam`` with its defaults.

    g ← g + λ θ (coupled L2, ``weight_decay``);  m_t = β₁ m + (1 − β₁) g;
    v_t = β₂ v + (1 − β₂) g²;  θ ← θ − η (m_t / (1 − β₁ᵗ)) / (√(v_t / (1 − β₂ᵗ)) + ε).
    ε sits outside the square root, as in PyTorch and the paper. ``amsgrad`` uses
    max(v_1..v_t) in the denominator (Reddi et al. 2018). With
    ``decoupled_weight_decay`` (torch's flag of the same name) the decay is AdamW's.
    Defaults: lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0,
    bias_correction = True.

    ``bias_correction=False`` is the form the BP articles bpnn serves write, with the
    moments used as they are (no 1 − βᵗ factors), ε again outside the root:

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,   θ ← θ − η m / (√v + ε).

    Since m and v start at 0, the first steps are shorter than the corrected ones: at
    t = 1, m = (1 − β₁) g and ``√v = √(1 − β₂) |g|``, so the step is
    η (1 − β₁)/√(1 − β₂) ≈ 3.16 η per coordinate with the default betas, instead of
    η. A NumPy script written that way trains to the same weights with the same lr.
    Chain: [AddWeightDecay(λ), ScaleByAdam] (or [ScaleByAdam, AddDecoupledWeightDecay(λ)]),
    plus the optimizer pieces ``clip_norm``, ``clip_value``, ``max_norm``.
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, decoupled_weight_decay: bool = False,
                 bias_correction: bool = True, **pieces):
        scale = ScaleByAdam(betas, eps, amsgrad, bias_correction)
        self.betas, self.eps, self.amsgrad, self.weight_decay = scale.betas, eps, amsgrad, weight_decay
        self.bias_correction = scale.bias_correction
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        chain = ([scale, AddDecoupledWeightDecay(weight_decay)] if self.decoupled_weight_decay
                 else [AddWeightDecay(weight_decay), scale])
        super().__init__(chain, lr, **pieces)

    def get_config(self):
        cfg = {**super().get_config(), "betas": list(self.betas), "eps": self.eps,
               "weight_decay": self.weight_decay, "amsgrad": self.amsgrad,
               "bias_correction": self.bias_correction}
        if self.decoupled_weight_decay and type(self) is Adam:
            cfg["decoupled_weight_decay"] = True
        return cfg


@optimizers.register("adamw")
class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): Adam plus decoupled weight decay — ``torch.optim.AdamW``.

    θ ← θ − η λ θ − η (m̂_t / (√v̂_t + ε)): the decay shrinks the weights directly
    instead of entering the moments as coupled L2 would, so it is not rescaled by Adam's
    per-parameter step size. Same as ``Adam(..., decoupled_weight_decay=True)``.
    Defaults as torch: lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8, weight_decay = 1e-2.
    ``bias_correction=False`` uses m and v uncorrected, θ ← θ − η λ θ − η m / (√v + ε),
    as in :class:`Adam`. Chain: [ScaleByAdam, AddDecoupledWeightDecay(λ)].
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 amsgrad: bool = False, bias_correction: bool = True, **pieces):
        super().__init__(lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True,
                         bias_correction=bias_correction, **pieces)
