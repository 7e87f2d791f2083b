"""Composable gradient transformations, the pieces optimizers are chained from.

As in optax, each piece is a small transformation with explicit state held as plain
data (a dict of arrays); unlike optax, updates happen in place on flat vectors for
speed. A transform sees the update vector u (initially the gradient g), the
parameters θ, the 1-based step count t, and returns the new u. The
:class:`~bpnn.optim.Optimizer` facade finally applies θ ← θ − η u.
"""
from __future__ import annotations

from .. import _checks, _kernels, backend
from .._registry import Configurable


class Transform(Configurable):
    """Base class: ``init(params) -> state``; ``update(u, state, params, t) -> u``."""

    def init(self, params) -> dict:
        return {}

    def update(self, u, state, params, t):
        raise NotImplementedError


class AddWeightDecay(Transform):
    """Coupled L2 weight decay, u ← u + λ θ — the ``weight_decay`` of ``torch.optim.SGD/Adam``.

    The gradient of (λ/2)‖θ‖² added to the loss; with adaptive methods this is *not*
    decoupled decay (see AdamW).
    """

    def __init__(self, weight_decay: float):
        self.weight_decay = float(_checks.positive("weight_decay", weight_decay, allow_zero=True))

    def init(self, params):
        return {"_tmp": backend.xp.empty_like(params)} if self.weight_decay else {}

    def update(self, u, state, params, t):
        if self.weight_decay:
            _kernels.axpy(u, self.weight_decay, params, state["_tmp"])
        return u

    def get_config(self):
        return {"weight_decay": self.weight_decay}


class Momentum(Transform):
    """Heavy-ball momentum in PyTorch's convention (``torch.optim.SGD``).

    b₁ = u₁;  b_t = μ b_{t−1} + (1 − τ) u_t  (τ = dampening);
    u ← b_t, or with Nesterov u ← u_t + μ b_t.
    """

    def __init__(self, momentum: float, dampening: float = 0.0, nesterov: bool = False):
        self.momentum = float(_checks.in_range("momentum", momentum, 0.0, 1.0))
        self.dampening = float(_checks.in_range("dampening", dampening, 0.0, 1.0))
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov: Nesterov momentum needs momentum > 0 and dampening = 0, got "
                f"momentum={momentum!r}, dampening={dampening!r}"
            )

    def init(self, params):
        return {"momentum_buffer": backend.xp.zeros_like(params)}

    def update(self, u, state, params, t):
        if not self.momentum:
            return u
        buf = state["momentum_buffer"]
        if t == 1:
            buf[...] = u
        else:
            buf *= self.momentum
            if self.dampening:
                buf += (1.0 - self.dampening) * u
            else:
                buf += u
        if self.nesterov:
            u += self.momentum * buf
            return u
        u[...] = buf
        return u

    def get_config(self):
        return {"momentum": self.momentum, "dampening": self.dampening, "nesterov": self.nesterov}


class ScaleByAdam(Transform):
    """Adam's direction (Kingma & Ba 2015) as ``torch.optim.Adam`` computes it.

    m_t = β₁ m + (1 − β₁) u,  v_t = β₂ v + (1 − β₂) u²,
    u ← (m_t / (1 − β₁ᵗ)) / (√v_t / √(1 − β₂ᵗ) + ε)   (ε outside the square root);
    with ``amsgrad`` the running maximum of v_t replaces v_t in the denominator.
    """

    def __init__(self, betas=(0.9, 0.999), eps: float = 1e-8, amsgrad: bool = False):
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas: got {betas!r}; expected a pair (beta1, beta2) in [0, 1)") from None
        self.betas = (float(_checks.in_range("betas[0]", b1, 0.0, 1.0, high_open=True)),
                      float(_checks.in_range("betas[1]", b2, 0.0, 1.0, high_open=True)))
        self.eps = float(_checks.positive("eps", eps, allow_zero=True))
        self.amsgrad = bool(amsgrad)

    def init(self, params):
        xp = backend.xp
        state = {"exp_avg": xp.zeros_like(params), "exp_avg_sq": xp.zeros_like(params),
                 "_tmp": xp.empty_like(params)}
        if self.amsgrad:
            state["max_exp_avg_sq"] = xp.zeros_like(params)
        return state

    def update(self, u, state, params, t):
        b1, b2 = self.betas
        _kernels.adam_direction(u, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                                b1, b2, self.eps, t, state["_tmp"])
        return u

    def get_config(self):
        return {"betas": list(self.betas), "eps": self.eps, "amsgrad": self.amsgrad}
