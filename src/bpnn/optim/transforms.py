"""Composable gradient transformations, the pieces optimizers are chained from.

As in optax, each piece is a small transformation with explicit state held as plain
data (a dict of arrays); unlike optax, updates happen in place on flat vectors for
speed. A transform sees the update vector u (initially the gradient g), the
parameters θ, the 1-based step count t and the learning rate η_t of this step, and
returns the new u. The :class:`~bpnn.optim.Optimizer` facade finally applies
θ ← θ − η_t u — unless one transform of the chain has ``applies_lr = True`` (classic
momentum, Rprop): that one folds η into u itself and the facade applies θ ← θ − u.

State entries whose key starts with ``_`` are scratch space, not saved by
``state_dict``. Every other entry is an array (a scalar is kept as a 1-element array)
so checkpoints hold nothing but arrays.

The transforms of the optimizers themselves (Adam's scaling, RMSprop's, ...) live in
each optimizer's file; this file holds the base class and the pieces shared by many.
"""
from __future__ import annotations

import numpy as np

from .. import _checks, backend
from .._kernels import optim as kernels
from .._registry import Configurable, Registry

#: The gradient transforms by name, the pieces an :class:`~bpnn.optim.Optimizer` chains.
transforms = Registry("transform")


def check_betas(name: str, betas) -> tuple:
    """A pair (β₁, β₂) of numbers in [0, 1), or an error naming ``name``."""
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"{name}: got {betas!r}; expected a pair (beta1, beta2) in [0, 1)") from None
    return (float(_checks.in_range(f"{name}[0]", b1, 0.0, 1.0, high_open=True)),
            float(_checks.in_range(f"{name}[1]", b2, 0.0, 1.0, high_open=True)))


class Transform(Configurable):
    """Base class: ``init(params) -> state``; ``update(u, state, params, t, lr) -> u``.

    ``applies_lr`` (default False): whether this transform multiplies by the learning
    rate itself. At most one transform of a chain may.
    """

    applies_lr = False

    def init(self, params) -> dict:
        return {}

    def fused(self, state, weight_decay: float, decoupled_weight_decay: float):
        """A one-pass step ``step(params, grads, t, lr, grad_scale)`` doing θ ← θ − η·u for
        the chain [AddWeightDecay(λ), self, AddDecoupledWeightDecay(λ_d)] applied to
        ``grad_scale`` times the gradient, without touching the gradient, or None (the
        default) when this transform has none. The optimizer uses
        it when the compiled kernels are on; the chain of ``update`` calls stays the
        reference (and the NumPy path)."""
        return None

    def update(self, u, state, params, t, lr):
        raise NotImplementedError


@transforms.register("add_weight_decay")
class AddWeightDecay(Transform):
    """Coupled L2 weight decay, u ← u + λ θ — the ``weight_decay`` of ``torch.optim.SGD/Adam``.

    The gradient of (λ/2)‖θ‖² added to the loss, for every trainable parameter (biases
    included, as torch); with adaptive methods this is *not* decoupled decay (see
    :class:`AddDecoupledWeightDecay`, AdamW). Default λ = 0 (a no-op).
    """

    def __init__(self, weight_decay: float = 0.0):
        self.weight_decay = float(_checks.positive("weight_decay", weight_decay, allow_zero=True))

    def update(self, u, state, params, t, lr):
        if self.weight_decay:
            if "_tmp" not in state:  # scratch for the NumPy path, made on first use
                state["_tmp"] = backend.xp.empty_like(u)
            kernels.axpy(u, self.weight_decay, params, state["_tmp"])
        return u

    def get_config(self):
        return {"weight_decay": self.weight_decay}


@transforms.register("add_decoupled_weight_decay", "decoupled_weight_decay")
class AddDecoupledWeightDecay(AddWeightDecay):
    """Decoupled weight decay (Loshchilov & Hutter 2019), u ← u + λ θ placed *after* the
    optimizer's scaling, so that the facade's θ ← θ − η u gives θ ← θ − η λ θ − η u_opt —
    ``torch.optim.AdamW``'s θ ← θ (1 − η λ) then the Adam step (identical: Adam's
    direction does not depend on θ).

    Same arithmetic as :class:`AddWeightDecay`; what differs is where it sits in the
    chain (after ``ScaleByAdam``, not before), hence the separate name.
    """


@transforms.register("momentum")
class Momentum(Transform):
    """Heavy-ball momentum with dampening and Nesterov, as ``torch.optim.SGD``.

    μ ``momentum``, τ ``dampening``, η the learning rate of this step.

    ``form="torch"`` (default), the buffer b holds gradients::

        b₁ = u₁;  b_t = μ b_{t−1} + (1 − τ) u_t;   u ← b_t, or with Nesterov u ← u_t + μ b_t;
        the facade then applies θ ← θ − η_t u.

    ``form="classic"`` (the BP articles: Rumelhart, Hinton & Williams 1986; Plaut et al.
    1986), the velocity v holds steps::

        v₁ = η₁ u₁;  v_t = μ v_{t−1} + (1 − τ) η_t u_t;   u ← v_t, or with Nesterov
        u ← η_t u_t + μ v_t (Sutskever et al. 2013); then θ ← θ − u.

    With a constant η both give the same iterates (v = η b). When η changes they part
    ways: the torch form rescales the whole accumulated step at once, the classic form
    only the new gradient's share (the old velocity decays with μ).
    """

    FORMS = ("torch", "classic")

    def __init__(self, momentum: float = 0.9, dampening: float = 0.0, nesterov: bool = False,
                 form: str = "torch"):
        self.momentum = float(_checks.in_range("momentum", momentum, 0.0, 1.0))
        self.dampening = float(_checks.in_range("dampening", dampening, 0.0, 1.0))
        self.nesterov = bool(nesterov)
        self.form = _checks.one_of("momentum_form", form, self.FORMS)
        self.applies_lr = self.form == "classic"
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov: Nesterov momentum needs momentum > 0 and dampening = 0, got "
                f"momentum={momentum!r}, dampening={dampening!r}"
            )

    def init(self, params):
        if not self.momentum:
            return {}
        return {"momentum_buffer": backend.xp.zeros_like(params)}

    def fused(self, state, weight_decay, decoupled_weight_decay):
        if self.applies_lr:
            return None
        buf = state.get("momentum_buffer")
        mu, tau, nesterov = self.momentum, self.dampening, self.nesterov

        def step(params, grads, t, lr, grad_scale):
            kernels.sgd_step(params, grads, buf, lr, weight_decay, decoupled_weight_decay, mu, tau, nesterov,
                             t == 1, grad_scale)
        return step

    def update(self, u, state, params, t, lr):
        classic = self.applies_lr
        if not self.momentum:
            if classic:
                u *= lr
            return u
        buf = state["momentum_buffer"]
        scale = lr if classic else 1.0
        if t == 1:
            backend.xp.multiply(u, scale, out=buf)
        else:
            buf *= self.momentum
            kernels.axpy(buf, (1.0 - self.dampening) * scale, u)
        if self.nesterov:
            if classic:
                u *= lr
            kernels.axpy(u, self.momentum, buf)
            return u
        u[...] = buf
        return u

    def get_config(self):
        return {"momentum": self.momentum, "dampening": self.dampening, "nesterov": self.nesterov,
                "form": self.form}


@transforms.register("trace")
class Trace(Transform):
    """Momentum trace b ← μ b + u, u ← b with b₀ = 0 (no first-step special case) — the
    momentum buffer of ``torch.optim.RMSprop`` (applied to its scaled gradient)."""

    def __init__(self, momentum: float):
        self.momentum = float(_checks.in_range("momentum", momentum, 0.0, 1.0))

    def init(self, params):
        return {"momentum_buffer": backend.xp.zeros_like(params)} if self.momentum else {}

    def update(self, u, state, params, t, lr):
        if self.momentum:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += u
            u[...] = buf
        return u

    def get_config(self):
        return {"momentum": self.momentum}


@transforms.register("scale_by_adam", "adam_scaling")
class ScaleByAdam(Transform):
    """Adam's direction (Kingma & Ba 2015) as ``torch.optim.Adam`` computes it.

    m_t = β₁ m + (1 − β₁) u,  v_t = β₂ v + (1 − β₂) u²,
    u ← (m_t / (1 − β₁ᵗ)) / (√v_t / √(1 − β₂ᵗ) + ε)   (ε outside the square root);
    with ``amsgrad`` the running maximum of v_t replaces v_t in the denominator
    (Reddi et al. 2018). ``bias_correction=False`` drops the two factors:
    u ← m_t / (√v_t + ε), the moments used as they are — the form many BP texts
    write, whose first steps are about 1 − β₁ times shorter than the corrected ones.
    One fused pass over the parameters (``bpnn._kernels.optim``).
    """

    def __init__(self, betas=(0.9, 0.999), eps: float = 1e-8, amsgrad: bool = False,
                 bias_correction: bool = True):
        self.betas = check_betas("betas", betas)
        self.eps = float(_checks.positive("eps", eps, allow_zero=True))
        self.amsgrad = bool(amsgrad)
        if not isinstance(bias_correction, (bool, np.bool_)):
            raise ValueError(f"bias_correction: got {bias_correction!r}; expected True or False")
        self.bias_correction = bool(bias_correction)

    def init(self, params):
        xp = backend.xp
        state = {"exp_avg": xp.zeros_like(params), "exp_avg_sq": xp.zeros_like(params)}
        if self.amsgrad:
            state["max_exp_avg_sq"] = xp.zeros_like(params)
        return state

    def fused(self, state, weight_decay, decoupled_weight_decay):
        if self.amsgrad:
            return None
        m, v, (b1, b2), eps = state["exp_avg"], state["exp_avg_sq"], self.betas, self.eps

        def step(params, grads, t, lr, grad_scale):
            kernels.adam_step(params, grads, m, v, b1, b2, eps, t, lr, weight_decay, decoupled_weight_decay,
                              grad_scale, self.bias_correction)
        return step

    def update(self, u, state, params, t, lr):
        b1, b2 = self.betas
        if "_tmp" not in state:  # scratch for the NumPy path, made on first use
            state["_tmp"] = backend.xp.empty_like(u)
        kernels.adam_direction(u, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                               b1, b2, self.eps, t, state["_tmp"], self.bias_correction)
        return u

    def get_config(self):
        return {"betas": list(self.betas), "eps": self.eps, "amsgrad": self.amsgrad,
                "bias_correction": self.bias_correction}
