"""Numerical gradient check of layers, models and losses (float64 central differences)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from .. import _checks, backend


@dataclass
class GradcheckResult:
    """Worst relative error per parameter and for the input (or prediction, for a loss).

    The error of one entry is ``|a − n| / max(|a|, |n|, 1e-3 · s)``, with a the analytic
    (backprop) and n the numerical derivative and s the largest ``|a|`` or ``|n|`` over every
    array of the check: entries far smaller than that scale are compared to the scale,
    so finite-difference noise on near-zero derivatives is not mistaken for a bug —
    including an array whose derivatives are all zero (the bias of a Dense layer
    followed by BatchNorm in training mode).
    """

    errors: dict = field(default_factory=dict)
    tol: float = 1e-6

    @property
    def max_error(self) -> float:
        return max(self.errors.values()) if self.errors else 0.0

    @property
    def ok(self) -> bool:
        return self.max_error <= self.tol

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        width = max([len(k) for k in self.errors] + [9])
        lines = [f"{'gradient'.ljust(width)}  worst relative error"]
        lines += [f"{k.ljust(width)}  {v:.3e}{'' if v <= self.tol else '  <-- FAIL'}" for k, v in self.errors.items()]
        lines.append(f"{'passed' if self.ok else 'FAILED'} (tolerance {self.tol:g})")
        return "\n".join(lines)


def _relative_error(a, n, scale) -> float:
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if a.size == 0 or scale == 0.0:
        return 0.0
    denom = np.maximum(np.maximum(np.abs(a), np.abs(n)), 1e-3 * scale)
    return float((np.abs(a - n) / denom).max())


def _entries(size, max_entries, rng):
    if size <= max_entries:
        return np.arange(size)
    return np.sort(rng.choice(size, size=max_entries, replace=False))


class _Frozen:
    """Restores random-generator states and buffers so that every forward is the same function."""

    def __init__(self, module):
        self.module = module
        self.rngs = {id(m.rng): (m.rng, copy.deepcopy(m.rng.bit_generator.state))
                     for m in module.modules() if m.rng is not None}
        self.buffers = [(b, b.copy()) for _, b in module.named_buffers()]

    def reset(self):
        for gen, state in self.rngs.values():
            gen.bit_generator.state = copy.deepcopy(state)
        for b, saved in self.buffers:
            b[...] = saved


def gradcheck(obj, x, target=None, *, training: bool = True, eps: float = 1e-5,
              max_entries: int = 64, tol: float = 1e-5, seed: int = 0) -> GradcheckResult:
    """Compare backprop gradients with float64 central differences.

    ``obj`` is a layer or model (:class:`bpnn.nn.Module`) or a loss
    (:class:`bpnn.losses.Loss`, then ``target`` is required and the derivative is taken
    with respect to the prediction ``x``). A module is deep-copied and converted to
    float64; the user's object is never changed. With a module the checked scalar is
    L = Σ y ⊙ R for a fixed random R (random projection), so every output contributes.
    Up to ``max_entries`` randomly chosen entries of each parameter and of the input are
    perturbed by ±``eps``. Dropout masks and BatchNorm statistics are held fixed across
    the perturbed evaluations.
    """
    from ..losses import Loss

    _checks.positive("eps", eps)
    _checks.positive("max_entries", max_entries, integer=True)
    rng = np.random.default_rng(seed)
    x = np.array(_checks.array("x", x, min_ndim=1), dtype=np.float64)
    if isinstance(obj, Loss):
        if target is None:
            raise ValueError("target: a loss needs targets to be gradient-checked")
        t = np.asarray(target)
        t = backend.to_device(t if t.dtype.kind in "iu" else t.astype(np.float64))

        def loss_value():
            return float(obj.forward(backend.to_device(x), t))

        loss_value()
        grad = backend.to_numpy(obj.backward()).ravel()
        idx = _entries(x.size, max_entries, rng)
        return _result({"prediction": (grad[idx], _numeric(loss_value, x.reshape(-1), eps, idx))}, tol)

    module = copy.deepcopy(obj)
    if module.built:
        module.astype(np.float64)
    else:
        module.build(x.shape[1:], module.rng if module.rng is not None else seed, np.float64)
    frozen = _Frozen(module)
    out = backend.to_numpy(module.forward(backend.to_device(x), training))
    projection = rng.standard_normal(out.shape)

    def value():
        frozen.reset()
        y = module.forward(backend.to_device(x), training)
        return float((backend.to_numpy(y) * projection).sum())

    module.zero_grad()
    value()
    gx = backend.to_numpy(module.backward(backend.to_device(projection), input_grad=True)).ravel()
    idx = _entries(x.size, max_entries, rng)
    pairs = {"input": (gx[idx], _numeric(value, x.reshape(-1), eps, idx))}
    for name, p, g in module.named_parameters(trainable_only=True):
        idx = _entries(p.size, max_entries, rng)
        analytic = backend.to_numpy(g).ravel()[idx].copy()
        pairs[name] = (analytic, _numeric(value, p.reshape(-1), eps, idx))
    return _result(pairs, tol)


def _numeric(value, flat, eps, idx):
    """Central differences of ``value()`` with respect to the entries ``idx`` of ``flat`` (a view)."""
    grads = np.empty(len(idx))
    for j, i in enumerate(idx):
        old = float(flat[i])
        flat[i] = old + eps
        up = value()
        flat[i] = old - eps
        down = value()
        flat[i] = old
        grads[j] = (up - down) / (2 * eps)
    return grads


def _result(pairs, tol):
    res = GradcheckResult(tol=tol)
    scale = max((float(np.abs(v).max()) for pair in pairs.values() for v in pair if np.size(v)),
                default=0.0)
    for name, (analytic, numeric) in pairs.items():
        res.errors[name] = _relative_error(analytic, numeric, scale)
    return res
