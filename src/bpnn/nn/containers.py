"""Containers: Sequential and Residual."""
from __future__ import annotations

from .. import backend
from .module import (Module, backward_shared, child_from_config, forward_shared, layers, mark_shared,
                     serialize_child, sharing_scope)


def _forward(m, x, training):
    return m.forward(x, training) if m._uses == 1 else forward_shared(m, x, training)


def _backward(m, g, input_grad):
    return m.backward(g, input_grad) if m._uses == 1 else backward_shared(m, g, input_grad)


def _layer(obj):
    if isinstance(obj, Module):
        return obj
    return layers.get(obj)


@layers.register("sequential")
class Sequential(Module):
    """Layers applied in order: y = f_L(… f_2(f_1(x))).

    Backward runs the layers in reverse, each receiving the gradient returned by the
    next. Layers that precede every trainable layer are not back-propagated through
    when the input gradient is not asked for (``backward(g, input_grad=False)``).

    Parameters
    ----------
    layers : list of modules (or registry names / config dicts, e.g. ``"relu"``).
    input_shape : tuple, optional — shape of one sample; without it the model is built
        when it first sees data.
    seed : int or Generator, optional — the one seed behind every random draw of this
        model (initializers, dropout masks, and the Trainer's shuffling).
    dtype : ``"float32"`` (default) or ``"float64"``.
    """

    def __init__(self, layers=(), input_shape=None, seed=None, dtype=None, trainable: bool = True):
        super().__init__(trainable)
        self.layers = [_layer(obj) for obj in layers]
        self.rng = backend.rng(seed)
        self.dtype = backend.as_dtype(dtype)
        if not trainable:
            self.trainable = False
        if input_shape is not None:
            self.build(input_shape, self.rng, self.dtype)

    def add(self, layer) -> "Sequential":
        if self.built:
            raise RuntimeError("add: the model is already built; add layers before it sees data")
        self.layers.append(_layer(layer))
        return self

    def children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def build(self, input_shape, rng=None, dtype=None):
        """Build every layer; without ``rng``/``dtype`` the model's own seed and dtype are used."""
        return super().build(input_shape, self.rng if rng is None else rng,
                             self.dtype if dtype is None else dtype)

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def _build(self, input_shape):
        shape = input_shape
        for layer in self.layers:
            shape = layer.build(shape, self.rng, self.dtype)
        mark_shared(self)
        return shape

    def forward(self, x, training=False):
        x = backend.xp.asarray(x, dtype=self.dtype)
        if not self.built:
            self.build(x.shape[1:], self.rng, self.dtype)
        elif x.shape[1:] != self.input_shape:
            self._check_built(x)
        for layer in self.layers:
            x = layer.forward(x, training) if layer._uses == 1 else forward_shared(layer, x, training)
        return x

    def _first_trainable(self) -> int:
        for i, layer in enumerate(self.layers):
            for _ in layer.named_parameters(trainable_only=True):
                return i
        return len(self.layers)

    def backward(self, grad_out, input_grad=True):
        first = 0 if input_grad else self._first_trainable()
        g = grad_out
        for i in range(len(self.layers) - 1, first - 1, -1):
            layer = self.layers[i]
            if layer._uses == 1:
                g = layer.backward(g, input_grad or i > first)
            else:
                g = backward_shared(layer, g, input_grad or i > first)
        return g if input_grad else None

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """Per-sample backward through the layers in reverse (see ``Module.backward_per_sample``)."""
        first = 0 if input_grad else self._first_trainable()
        g = grad_out
        for i in range(len(self.layers) - 1, first - 1, -1):
            g = self.layers[i].backward_per_sample(g, sink, f"{prefix}{i}.", input_grad or i > first)
        return g if input_grad else None

    def get_config(self):
        with sharing_scope():
            cfg = {"layers": [serialize_child(layer) for layer in self.layers]}
        if self.input_shape is not None:
            cfg["input_shape"] = list(self.input_shape)
        cfg["dtype"] = self.dtype.name
        return {**cfg, **super().get_config()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        with sharing_scope():
            config["layers"] = [child_from_config(c) for c in config.get("layers", [])]
        return cls(**config)

    def __repr__(self):
        inner = ",\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"


@layers.register("residual")
class Residual(Module):
    """Residual block (He et al. 2016): y = F(x) + S(x), S the identity unless a
    ``shortcut`` module (e.g. a projection ``Dense``) is given.

    Backward: the gradient G reaches both branches and their input gradients add,
    ∂L/∂x = ∂F/∂xᵀ G + ∂S/∂xᵀ G (= … + G for the identity shortcut).
    """

    def __init__(self, block, shortcut=None, trainable: bool = True):
        super().__init__(trainable)
        self.block = Sequential(block) if isinstance(block, (list, tuple)) else _layer(block)
        self.shortcut = None if shortcut is None else _layer(shortcut)
        if not trainable:
            self.trainable = False

    def children(self):
        kids = [("block", self.block)]
        if self.shortcut is not None:
            kids.append(("shortcut", self.shortcut))
        return kids

    def _build(self, input_shape):
        out = self.block.build(input_shape, self.rng, self.dtype)
        short = input_shape if self.shortcut is None else self.shortcut.build(input_shape, self.rng, self.dtype)
        mark_shared(self)
        if tuple(out) != tuple(short):
            raise ValueError(
                f"Residual: the block maps {input_shape} to {out} but the shortcut gives {short}; "
                f"give a projection shortcut (e.g. shortcut=Dense({out[0] if out else '?'}))"
            )
        return out

    def forward(self, x, training=False):
        y = _forward(self.block, x, training)
        return y + (x if self.shortcut is None else _forward(self.shortcut, x, training))

    def backward(self, grad_out, input_grad=True):
        # backward in the reverse order of forward (matters when a module is shared)
        gs = None if self.shortcut is None else _backward(self.shortcut, grad_out, input_grad)
        g = _backward(self.block, grad_out, input_grad)
        if not input_grad:
            return None
        return g + (grad_out if gs is None else gs)

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """Per-sample backward: both branches see G; their input cotangents add."""
        g = self.block.backward_per_sample(grad_out, sink, prefix + "block.", input_grad)
        if self.shortcut is not None:
            gs = self.shortcut.backward_per_sample(grad_out, sink, prefix + "shortcut.", input_grad)
            return g + gs if input_grad else None
        return g + grad_out if input_grad else None

    def get_config(self):
        with sharing_scope():
            cfg = {"block": serialize_child(self.block)}
            if self.shortcut is not None:
                cfg["shortcut"] = serialize_child(self.shortcut)
        return {**cfg, **super().get_config()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        with sharing_scope():
            config["block"] = child_from_config(config["block"])
            if config.get("shortcut") is not None:
                config["shortcut"] = child_from_config(config["shortcut"])
        return cls(**config)
