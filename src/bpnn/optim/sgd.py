"""Stochastic gradient descent."""
from __future__ import annotations

from .optimizer import Optimizer, optimizers
from .transforms import AddWeightDecay, Momentum


@optimizers.register("sgd", "gd")
class SGD(Optimizer):
    """Gradient descent with optional momentum and Nesterov momentum — ``torch.optim.SGD``.

    With g the gradient, λ ``weight_decay``, μ ``momentum``, τ ``dampening``, η ``lr``:
        g ← g + λ θ;   b₁ = g, b_t = μ b_{t−1} + (1 − τ) g;
        d = g + μ b_t (Nesterov) or d = b_t;   θ ← θ − η d.
    Plain gradient descent (μ = 0) is θ ← θ − η g; whether it is full-batch, stochastic
    or mini-batch is the Trainer's ``batch_size``.

    Momentum is in PyTorch's convention (v ← μv + g, θ ← θ − ηv): with a constant
    learning rate it equals the classic form v ← μv + ηg, θ ← θ − v.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
        self.weight_decay = weight_decay
        super().__init__([AddWeightDecay(weight_decay), Momentum(momentum, dampening, nesterov)], lr)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}
