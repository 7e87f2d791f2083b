"""L1 and L2 penalties on parameters: terms of the loss, per layer.

A module's ``regularizers`` dict maps a parameter key to a regularizer R; training then
minimizes  data loss + Σ R(θ_key)  over every regularized parameter of the trainable
modules. ``Dense(128, regularizer=L2(1e-4))`` fills it for the layer's weight; any
module (convolutions included) takes ``module.regularizers["weight"] = L1(1e-5)``.

The Trainer reports the two terms apart — History ``loss`` is the data loss, ``penalty``
the mean of Σ R over the epoch's steps (present only when some layer is regularized) —
and adds ∂R/∂θ to the parameter gradients after backpropagation, before the optimizer
step (and before gradient clipping). ``val_loss`` is the data loss alone.

Here, in ``nn`` rather than ``optim``, because layers name them in their constructors
and config (``nn`` may not import ``optim``); ``bpnn.optim`` re-exports them.
"""
from __future__ import annotations

from .. import _checks, backend
from .._kernels import optim as kernels
from .._registry import Configurable, Registry

#: The weight penalties by name (``"l1"``, ``"l2"``, ``"l1_l2"``).
regularizers = Registry("regularizer")


class Regularizer(Configurable):
    """Base class: ``penalty(w)`` → R(w); ``gradient(w)`` → ∂R/∂w;
    ``add_to(w, g)`` → adds ∂R/∂w to g in place and returns R(w) (one pass where it can)."""

    def __call__(self, w) -> float:
        return self.penalty(w)

    def penalty(self, w) -> float:
        raise NotImplementedError

    def gradient(self, w):
        g = backend.xp.zeros_like(w)
        self.add_to(w, g)
        return g

    def add_to(self, w, g) -> float:
        raise NotImplementedError


@regularizers.register("l2")
class L2(Regularizer):
    """L2 penalty R(w) = (λ/2) Σ w², ∂R/∂w = λ w (λ = ``l2``, default 0.01 as Keras).

    The ½ makes λ the weight decay it equals: ``L2(λ)`` on a weight adds the same
    gradient as ``weight_decay=λ`` in ``torch.optim.SGD`` (but only to that weight, and
    visibly in the loss). Keras' ``L2(k)`` is k Σ w² without the ½: it equals ``L2(2k)`` here.
    """

    def __init__(self, l2: float = 0.01):
        self.l2 = float(_checks.positive("l2", l2, allow_zero=True))

    def penalty(self, w) -> float:
        return 0.5 * self.l2 * float(backend.xp.vdot(w, w)) if self.l2 else 0.0

    def add_to(self, w, g) -> float:
        if not self.l2:
            return 0.0
        return 0.5 * self.l2 * kernels.l2_penalty_grad(g, w, self.l2)

    def get_config(self):
        return {"l2": self.l2}


@regularizers.register("l1")
class L1(Regularizer):
    """L1 penalty ``R(w) = λ Σ |w|``, ∂R/∂w = λ sign(w) (0 at w = 0, torch's subgradient of ``|w|``);
    λ = ``l1``, default 0.01 as Keras. It drives weights to exactly zero only with a
    proximal method; with gradient steps they hover around it (Tibshirani 1996).
    """

    def __init__(self, l1: float = 0.01):
        self.l1 = float(_checks.positive("l1", l1, allow_zero=True))

    def penalty(self, w) -> float:
        return self.l1 * float(backend.xp.abs(w).sum()) if self.l1 else 0.0

    def add_to(self, w, g) -> float:
        if not self.l1:
            return 0.0
        return self.l1 * kernels.l1_penalty_grad(g, w, self.l1)

    def get_config(self):
        return {"l1": self.l1}


@regularizers.register("l1_l2", "elastic_net")
class L1L2(Regularizer):
    """Both: ``R(w) = λ₁ Σ |w| + (λ₂/2) Σ w²`` (elastic net, Zou & Hastie 2005); defaults 0, as Keras."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self._l1, self._l2 = L1(l1), L2(l2)
        self.l1, self.l2 = self._l1.l1, self._l2.l2

    def penalty(self, w) -> float:
        return self._l1.penalty(w) + self._l2.penalty(w)

    def add_to(self, w, g) -> float:
        return self._l1.add_to(w, g) + self._l2.add_to(w, g)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


def get(identifier) -> Regularizer:
    """A regularizer from a name (``"l2"``: default λ), config dict, class or instance."""
    return regularizers.get(identifier)


class Penalties:
    """The regularized parameters of a model, found once; :meth:`apply` after each backward.

    ``terms``: list of (parameter name, regularizer, value, grad) — see
    :meth:`bpnn.nn.Module.named_regularizers`.
    """

    def __init__(self, terms):
        self.terms = list(terms)

    def value(self) -> float:
        """Σ R(θ) over the regularized parameters."""
        return sum(reg.penalty(w) for _, reg, w, _ in self.terms)

    def apply(self) -> float:
        """Add every ∂R/∂θ to the stored gradients; return Σ R(θ)."""
        total = 0.0
        for _, reg, w, g in self.terms:
            total += reg.add_to(w, g)
        return total


def penalties(model) -> Penalties | None:
    """The penalty terms of ``model``'s trainable parameters, or None when it has none
    (so a training loop without regularizers does no work for them)."""
    terms = list(model.named_regularizers(trainable_only=True))
    return Penalties(terms) if terms else None
