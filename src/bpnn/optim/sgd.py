"""Stochastic gradient descent."""
from __future__ import annotations

from .optimizer import Optimizer, optimizers
from .transforms import AddWeightDecay, Momentum


@optimizers.register("sgd", "gd")
class SGD(Optimizer):
    """Gradient descent with optional momentum and Nesterov momentum — ``torch.optim.SGD``.

    With g the gradient, λ ``weight_decay``, μ ``momentum``, τ ``dampening``, η ``lr``::

        g ← g + λ θ;   b₁ = g, b_t = μ b_{t−1} + (1 − τ) g;
        d = g + μ b_t (Nesterov) or d = b_t;   θ ← θ − η d.

    Plain gradient descent (μ = 0) is θ ← θ − η g; whether it is full-batch, stochastic
    or mini-batch is the Trainer's ``batch_size``. Defaults: lr = 0.01 (torch's is
    1e-3), momentum = dampening = weight_decay = 0, nesterov = False.

    ``momentum_form`` picks the momentum convention (see :class:`Momentum`):

    - ``"torch"`` (default): v ← μ v + g, θ ← θ − η v, as ``torch.optim.SGD`` and Sutskever
      et al. (2013) write it. The default because (1) bpnn matches ``torch.optim`` and its
      schedulers step for step, (2) the buffer holds only gradients, so it does not
      depend on η: a schedule or ReduceLROnPlateau that changes η acts at once on the
      whole step, and a checkpoint's buffer stays valid under any η.
    - ``"classic"``: v ← μ v + η g, θ ← θ − v, as the BP articles write it (Rumelhart,
      Hinton & Williams 1986). The same iterates while η is constant; when η changes,
      the old velocity keeps the old η and fades with μ.

    Plus the optimizer pieces ``clip_norm``, ``clip_value`` and ``max_norm``
    (:class:`Optimizer`).
    """

    def __init__(self, lr=0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, momentum_form: str = "torch", **pieces):
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
        self.weight_decay, self.momentum_form = weight_decay, momentum_form
        super().__init__([AddWeightDecay(weight_decay), Momentum(momentum, dampening, nesterov, momentum_form)],
                         lr, **pieces)

    def get_config(self):
        cfg = {**super().get_config(), "momentum": self.momentum, "dampening": self.dampening,
               "nesterov": self.nesterov, "weight_decay": self.weight_decay}
        if self.momentum_form != "torch":
            cfg["momentum_form"] = self.momentum_form
        return cfg
