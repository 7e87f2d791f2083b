"""Nguyen–Widrow initialization of a whole network (MATLAB's ``initnw``).

It is a model-level initializer rather than an entry of the per-array registry: the
bias of each hidden unit depends on its weights, and the scaling on the range of the
layer's inputs (the data for the first layer, the activation's range after that).
"""
from __future__ import annotations

import numpy as np

from .. import backend

#: Output range of the bounded activations Nguyen–Widrow is defined for.
_RANGES = {"Tanh": (-1.0, 1.0), "Sigmoid": (0.0, 1.0)}


def _dense_then_activation(model):
    """(Dense, activation class name) pairs in the order the layers run, for Sequential models.

    Layers are recognized by their registry names ("sequential", "dense"), so that this
    module, below ``bpnn.nn`` in the import order, needs no import of the layer classes."""
    if getattr(model, "registry_name", None) != "sequential":
        raise ValueError(f"model: Nguyen–Widrow initializes a Sequential model, got {type(model).__name__}")
    layers = list(model.layers)
    for i, layer in enumerate(layers):
        if getattr(layer, "registry_name", None) == "dense":
            nxt = type(layers[i + 1]).__name__ if i + 1 < len(layers) else None
            yield layer, nxt


def nguyen_widrow(model, rng=None, input_range=(-1.0, 1.0)) -> None:
    r"""Nguyen & Widrow (1990) initialization, in place, as MATLAB ``initnw``.

    For every Dense layer followed by ``Tanh`` or ``Sigmoid``, with n inputs z ∈ [−1, 1]ⁿ
    and H units, β = 0.7 · H^{1/n}:

        w_j = β · d_j / ‖d_j‖,  d_j ~ U(−1, 1)ⁿ   (unit j's weight column),
        b_j = β · s_j · sign(w_{1j}),  s = linspace(−1, 1, H)

    so the units' active regions are spread evenly over the input range instead of
    piling up around 0. The weights are then mapped from z to the layer's real input
    range [lo, hi] (z = a x + c, a = 2/(hi − lo), c = −1 − a·lo): W ← diag(a) W,
    b ← b + cᵀW. The first layer's range is ``input_range`` (a pair, or per-feature
    arrays (lo, hi), e.g. the training data's minimum and maximum); later layers take
    the previous activation's range ((−1, 1) for tanh, (0, 1) for the sigmoid). Other
    Dense layers (a linear output layer) keep the weights of their own initializer.
    With a single hidden unit s = 0. Draws come from ``rng`` (default: the model's).

    It makes Levenberg–Marquardt on small networks converge in a few epochs; it is the
    default of MATLAB's ``feedforwardnet``/``newff``.
    """
    pairs = list(_dense_then_activation(model))
    if not model.built:
        raise RuntimeError("nguyen_widrow: build the model first (give input_shape or run it once)")
    rng = model.rng if rng is None else backend.rng(rng)
    lo, hi = (np.asarray(v, dtype=np.float64) for v in input_range)
    for layer, act in pairs:
        w = backend.to_numpy(layer.params["weight"])
        n_in, h = w.shape
        lo_b = np.broadcast_to(lo, (n_in,)).astype(np.float64)
        hi_b = np.broadcast_to(hi, (n_in,)).astype(np.float64)
        if act in _RANGES:
            beta = 0.7 * h ** (1.0 / n_in)
            d = rng.uniform(-1.0, 1.0, size=(n_in, h))
            norms = np.linalg.norm(d, axis=0)
            norms[norms == 0] = 1.0
            w_new = beta * d / norms
            s = np.linspace(-1.0, 1.0, h) if h > 1 else np.zeros(1)
            b_new = beta * s * np.sign(w_new[0])
            span = np.where(hi_b > lo_b, hi_b - lo_b, 2.0)
            a = 2.0 / span
            c = -1.0 - a * lo_b
            b_new = b_new + c @ w_new
            w_new = a[:, None] * w_new
            layer.params["weight"][...] = backend.to_device(w_new)
            if layer.use_bias:
                layer.params["bias"][...] = backend.to_device(b_new)
        lo, hi = _RANGES.get(act, (-1.0, 1.0))
        lo, hi = np.asarray(lo), np.asarray(hi)
