"""Observe one forward/backward pass of a model, layer by layer, without changing layer code.

For the duration of one pass a :class:`Probe` puts a stand-in in place of every leaf
module inside its container (the list slot of a ``Sequential``, the attribute of a
``Residual``): the stand-in's ``forward`` and ``backward`` call the leaf's, reduce what
they see to a few numbers at once, and the leaves are put back on exit. The leaves
themselves are never modified (not even their instance dictionaries, which CPython
would otherwise keep in a slower form for the rest of training), and nothing is
installed outside a probe: a model that is not being observed runs exactly the code it
always runs, so statistics cost nothing when off.

For each leaf it records, from the layer's output y and the gradient δ = ∂L/∂y that
backpropagation hands it (the "delta" of the BP texts; for a Dense layer it is the
gradient with respect to the pre-activation s = xW + b):

- ``out_mean``, ``out_std``: mean and standard deviation of y over the batch and units;
- ``saturation`` (sigmoid, tanh): fraction of outputs where the local derivative is
  below 5 % of its peak — σ(s)(1 − σ(s)) < 0.0125, i.e. y < 0.0127 or y > 0.9873;
  1 − tanh² < 0.05, i.e. |y| > 0.9747;
- ``zero_fraction`` and ``dead_fraction`` (ReLU): outputs that are 0, and units
  (channels for NCHW outputs) that are 0 for every sample of the batch (the per-unit
  mask is left under ``_dead`` for :class:`~bpnn.diagnostics.LayerStats`, which
  combines it over several observed batches);
- ``unit_spread`` (layers with parameters): max over samples (and positions) of
  max_j y_j − min_j y_j over the units j (axis 1), relative to std(y): 0 exactly
  when all units of the layer compute the same value — the unbroken symmetry of a
  zero or constant init;
- ``delta_rms`` = √mean(δ²) and ``delta_std`` = std(δ) of the back-propagated gradient
  (layers with parameters; δ at an activation's output is the next weighted layer's
  input gradient, nothing new).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .._kernels import stats as _sk
from .._kernels import use_compiled

_MISSING = object()

# Saturation: local derivative below 5 % of its maximum (see the module docstring).
SIGMOID_SATURATION = 0.5 * (1.0 - math.sqrt(1.0 - 4 * 0.05 * 0.25))   # ≈ 0.01266
TANH_SATURATION = math.sqrt(1.0 - 0.05)                                # ≈ 0.97468


def named_leaves(model, prefix: str = ""):
    """Yield ``(name, module)`` for every leaf module, named as ``named_parameters`` does
    (``"0"``, ``"3.block.1"``); a model that is itself a leaf is named by its kind."""
    kids = model.children()
    if not kids:
        yield (prefix[:-1] if prefix else kind_of(model)), model
        return
    for name, child in kids:
        yield from named_leaves(child, f"{prefix}{name}.")


def kind_of(module) -> str:
    """The registry name of a module's class (``"dense"``, ``"relu"``), else its class name."""
    return getattr(type(module), "registry_name", type(module).__name__.lower())


def _mean_std(a) -> tuple[float, float]:
    """Mean and standard deviation from one sum and one dot product (cheaper than
    ``a.std()``, which makes several passes and temporaries)."""
    flat = a.reshape(-1)
    n = flat.size
    mean = float(backend.xp.add.reduce(flat)) / n
    var = float(flat @ flat) / n - mean * mean
    return mean, math.sqrt(var) if var > 0 else 0.0


_MODES = {"sigmoid": (_sk.SIGMOID, 0.5 - SIGMOID_SATURATION), "tanh": (_sk.TANH, TANH_SATURATION),
          "relu": (_sk.RELU, 0.0)}


def _output_stats_compiled(y, kind, spread) -> dict:
    mode, threshold = _MODES.get(kind, (_sk.PLAIN, 0.0))
    n = y.shape[0]
    c = y.shape[1] if y.ndim >= 2 else 1
    y3 = np.ascontiguousarray(y).reshape(n, c, -1)
    unit_max = np.empty(c)
    s, ss, count, width = _sk.output(y3, mode, threshold, spread and c > 1, unit_max)
    size = y.size
    mean = s / size
    var = ss / size - mean * mean
    std = math.sqrt(var) if var > 0 else 0.0
    out = {"out_mean": mean, "out_std": std}
    if mode in (_sk.SIGMOID, _sk.TANH):
        out["saturation"] = count / size
    elif mode == _sk.RELU:
        out["zero_fraction"] = 1.0 - count / size
        if y.ndim > 1:
            dead = unit_max <= 0
            out["dead_fraction"] = float(np.count_nonzero(dead)) / c
            out["_dead"] = dead
    if spread and c > 1:
        out["unit_spread"] = width / std if std > 0 else 0.0
    return out


def output_stats(y, kind: str, spread: bool = True) -> dict:
    """Statistics of a layer output ``y`` (batch axis first); see the module docstring.
    ``spread`` asks for ``unit_spread`` too. One compiled pass when numba is on."""
    if use_compiled(y):
        return _output_stats_compiled(y, kind, spread)
    xp = backend.xp
    mean, std = _mean_std(y)
    out = {"out_mean": mean, "out_std": std}
    if kind == "sigmoid":
        lo = SIGMOID_SATURATION
        out["saturation"] = float(xp.count_nonzero(xp.abs(y - 0.5) > 0.5 - lo)) / y.size
    elif kind == "tanh":
        out["saturation"] = float(xp.count_nonzero(xp.abs(y) > TANH_SATURATION)) / y.size
    elif kind == "relu":  # y >= 0: a unit is dead on the batch when its largest output is 0
        out["zero_fraction"] = 1.0 - float(xp.count_nonzero(y)) / y.size
        if y.ndim > 1:
            dead = y.max(axis=0 if y.ndim == 2 else (0, *range(2, y.ndim))) <= 0
            out["dead_fraction"] = float(xp.count_nonzero(dead)) / dead.size
            out["_dead"] = dead  # per-unit mask: LayerStats combines it over several batches
    if spread and y.ndim >= 2 and y.shape[1] > 1:
        width = y.max(axis=1)
        width -= y.min(axis=1)
        out["unit_spread"] = float(width.max()) / std if std > 0 else 0.0
    return out


def delta_stats(g) -> dict:
    """Statistics of the back-propagated gradient δ = ∂L/∂(layer output)."""
    if use_compiled(g):
        s, ss = _sk.moments(np.ascontiguousarray(g).reshape(-1))
        mean = s / g.size
        var = ss / g.size - mean * mean
        return {"delta_rms": math.sqrt(ss / g.size), "delta_std": math.sqrt(var) if var > 0 else 0.0}
    mean, std = _mean_std(g)
    return {"delta_rms": math.sqrt(std * std + mean * mean), "delta_std": std}


class Probe:
    """Context manager: while active, every leaf of ``model`` reports the statistics of
    its output and of the gradient it receives into ``probe.entries[name]``.

    Use::

        with Probe(model) as probe:
            out = model.forward(x, training=True)
            loss.forward(out, y); model.backward(loss.backward(), input_grad=False)
        probe.entries["0"]["delta_rms"]

    A leaf that a pass does not reach (e.g. layers before the first trainable one when
    the input gradient is not asked for) keeps no ``delta_*`` entries.
    """

    def __init__(self, model, leaves=None, holders=None):
        self.model = model
        self.leaves = list(named_leaves(model)) if leaves is None else list(leaves)
        where_held = holders if holders is not None else globals()["holders"](model)
        # The stand-ins are made once; each entry into the probe gives them fresh records,
        # so one Probe serves every observation of a training run.
        self._observed = [(name, module, _Observed(module, kind_of(module), bool(module.params)),
                           where_held.get(id(module))) for name, module in self.leaves]
        self.entries = {name: {} for name, _ in self.leaves}
        self._saved = []

    def __enter__(self) -> "Probe":
        self.entries = {}
        for name, module, observed, holder in self._observed:
            observed._entry = self.entries[name] = {}
            if holder is not None:
                # Stand in for the leaf in its container (a list slot or an attribute that
                # already exists): the leaf itself is left untouched.
                where, key = holder
                if isinstance(where, list):
                    where[key] = observed
                else:
                    setattr(where, key, observed)
                self._saved.append((where, key, module))
            else:  # the model is itself a leaf: wrap its methods on the instance
                for attr in ("forward", "backward"):
                    self._saved.append((module, attr, module.__dict__.get(attr, _MISSING)))
                module.forward, module.backward = observed.forward, observed.backward
        return self

    def __exit__(self, *exc) -> None:
        for where, key, value in reversed(self._saved):
            if isinstance(where, list):
                where[key] = value
            elif value is _MISSING:
                where.__dict__.pop(key, None)
            else:
                setattr(where, key, value)
        self._saved.clear()


class _Observed:
    """Stands in for a leaf during one observed pass: its ``forward`` and ``backward``
    report statistics, every other attribute is the leaf's own."""

    __slots__ = ("_leaf", "_entry", "_kind", "_weighted", "_fwd", "_bwd")

    def __init__(self, leaf, kind, weighted):
        self._leaf, self._entry, self._kind, self._weighted = leaf, {}, kind, weighted
        self._fwd, self._bwd = leaf.forward, leaf.backward

    def forward(self, x, training=False):
        y = self._fwd(x, training)
        self._entry.update(output_stats(y, self._kind, self._weighted))
        return y

    def backward(self, grad_out, input_grad=True):
        if self._weighted:  # symmetry and δ are questions about weighted layers
            self._entry.update(delta_stats(grad_out))
        return self._bwd(grad_out, input_grad)

    def __call__(self, x, training=False):
        return self.forward(x, training)

    def __getattr__(self, name):
        return getattr(self._leaf, name)


def holders(model) -> dict:
    """id(leaf) → (container list, index) or (parent module, attribute name): where each
    leaf of ``model`` is held, so that it can be stood in for."""
    out = {}
    for parent in model.modules():
        kids = parent.children()
        if not kids:
            continue
        lists = [v for v in vars(parent).values() if isinstance(v, list)]
        for name, child in kids:
            if child.children():
                continue
            if getattr(parent, name, None) is child and name in vars(parent):
                out[id(child)] = (parent, name)
                continue
            for lst in lists:
                idx = next((i for i, item in enumerate(lst) if item is child), None)
                if idx is not None:
                    out[id(child)] = (lst, idx)
                    break
    return out
