"""The Module protocol: explicit backpropagation, layer by layer.

- ``build(input_shape, rng, dtype)`` creates the parameters once the input shape is
  known (lazy shapes: ``Dense(128)``, not ``Dense(784, 128)``) and returns the output shape.
- ``forward(x, training)`` computes the output and keeps exactly what ``backward`` reads.
- ``backward(grad_out, input_grad=True)`` stores the gradients of the layer's own
  parameters in ``grads`` (same keys as ``params``) and returns ∂L/∂x, or None when
  ``input_grad`` is False (the first layer of a network need not compute it).

Parameters and gradients are arrays owned by the module and are updated **in place**
(never rebound): optimizers, clipping, checkpoints and histograms then all walk one
structure, and a model may pack them into one flat buffer (see
:meth:`bpnn.nn.Module.flat_parameters`). Shapes exclude the batch axis.

Layers that are one matrix product Y = X̄ W̄ (``Dense``, ``Conv2D``) also expose the two
factors of their weight gradient ∂L/∂W̄ = X̄ᵀ G, for curvature methods such as K-FAC
(:class:`bpnn.optim.KFAC`), without per-sample gradients: ``input_rows()`` gives X
(the rows the weight multiplies, from the last forward) and, while ``keep_output_grad``
is True, backward keeps a copy of G in ``output_grad``. Other modules keep the
defaults below (``input_rows`` raises, ``output_grad`` stays None).
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import inspect

from .. import backend
from .._registry import Configurable, Registry

#: The layers by name (``"dense"``, ``"conv2d"``, ...); model files name their layers through it.
layers = Registry("layer")


class Module(Configurable):
    """Base class of layers and containers."""

    #: Number of places this object occurs in the model it belongs to (weight sharing);
    #: set by :func:`mark_shared` when a container is built.
    _uses = 1
    #: Whether the data step of a data-dependent initializer (LSUV) has been done; only
    #: :meth:`mark_data_initialized` sets it.
    _data_init_done = False
    _flat = None  # the packed trainable parameters (flat_parameters), made on first use
    #: Set True (by a curvature optimizer) to make ``backward`` keep ∂L/∂Y in
    #: ``output_grad``; only the matrix-product layers (Dense, Conv2D) act on it.
    keep_output_grad = False
    #: The (rows, n_out) gradient w.r.t. the output rows of the last backward run while
    #: ``keep_output_grad`` was True (rows = samples, or samples × output positions).
    output_grad = None
    #: Set True (by K-FAC's pass of sampled targets, which wants only ``output_grad``) to
    #: make the matrix-product layers skip their parameter gradients in ``backward``.
    output_grad_only = False

    def __init__(self, trainable: bool = True):
        if not isinstance(trainable, bool):
            raise ValueError(f"trainable: got {trainable!r}; expected True or False")
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}  # state that is not trained (e.g. BatchNorm running statistics)
        self.regularizers: dict = {}  # param key -> penalty added to the loss (nn.regularizers)
        self._trainable = trainable
        self.built = False
        self.input_shape: tuple | None = None
        self.output_shape: tuple | None = None
        self.dtype = None
        self.rng = None

    # ----------------------------------------------------------------- structure
    @property
    def trainable(self) -> bool:
        """Whether the optimizer updates this module's parameters (False: frozen)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"trainable: got {value!r}; expected True or False")
        self._trainable = value
        for _, child in self.children():
            child.trainable = value

    @property
    def needs_data_init(self) -> bool:
        """True while this layer's initializer is data dependent (``init.data_dependent``,
        e.g. LSUV) and its data step has not run: :class:`bpnn.Trainer` runs it on the
        first training data it gets."""
        return bool(getattr(getattr(self, "init", None), "data_dependent", False)) and not self._data_init_done

    def mark_data_initialized(self) -> None:
        """Record that this layer's weights no longer wait for a data-dependent init: its
        data step ran, or the weights came from elsewhere (a model file)."""
        self._data_init_done = True

    @property
    def uses(self) -> int:
        """The number of places this object occurs in the model it belongs to (more than
        1 under weight sharing; set when the container is built)."""
        return self._uses

    def children(self) -> list[tuple[str, "Module"]]:
        """Direct sub-modules as (name, module); empty for plain layers."""
        return []

    def modules(self):
        """This module and all its descendants, depth first; a module object used at several
        places (weight sharing) is listed once, as in PyTorch."""
        for m, _ in _walk(self, ""):
            yield m

    def named_parameters(self, prefix: str = "", trainable_only: bool = False):
        """Yield ``(name, value, grad)``, names as torch's ``nn.Sequential``: ``"0.weight"``.

        Parameters of a shared module appear once, under the first name (as PyTorch)."""
        for m, pre in _walk(self, prefix):
            if not (trainable_only and not m._trainable):
                for key, value in m.params.items():
                    yield pre + key, value, m.grads[key]

    def named_regularizers(self, prefix: str = "", trainable_only: bool = True):
        """Yield ``(name, regularizer, value, grad)`` for every parameter given a penalty in
        a module's ``regularizers`` dict (see ``bpnn.nn.regularizers``)."""
        for m, pre in _walk(self, prefix):
            if trainable_only and not m._trainable:
                continue
            for key, reg in getattr(m, "regularizers", {}).items():
                if key not in m.params:
                    if not m.built:
                        continue
                    raise ValueError(f"regularizers: {type(m).__name__} has no parameter {key!r}; "
                                     f"its parameters are {sorted(m.params)}")
                yield pre + key, reg, m.params[key], m.grads[key]

    def named_buffers(self, prefix: str = ""):
        """Yield ``(name, array)`` for non-trained state such as running statistics."""
        for m, pre in _walk(self, prefix):
            for key, value in m.buffers.items():
                yield pre + key, value

    def num_parameters(self) -> int:
        return sum(int(v.size) for _, v, _ in self.named_parameters())

    # ----------------------------------------------------------------- the layer table
    def layer_table(self) -> list[dict]:
        """One row per layer: the direct children of a container (a plain layer is its
        own one row), each a dict with

        - ``name`` (the prefix ``named_parameters`` gives it: ``"0"``, ``"block"``; ``""``
          for a plain layer), ``type`` (the class name) and ``inner`` (the class names of
          the layers inside a container, depth first, else empty);
        - ``output_shape`` (None while the layer is not built);
        - ``params`` and ``trainable_params``: the parameters this row adds to the model
          (a module used at several places, weights shared, counts at its first place
          only, so the rows add up to :meth:`num_parameters`);
        - ``shared_with``: the name of the earlier row that is the same object, or None.
        """
        children = self.children() or [("", self)]
        seen: set = set()
        first: dict = {}
        rows = []
        for name, child in children:
            new = [m for m in child.modules() if id(m) not in seen]
            seen.update(id(m) for m in new)
            sizes = [(int(v.size), m.trainable) for m in new for v in m.params.values()]
            inner = [type(m).__name__ for m in child.modules() if m is not child and not m.children()]
            rows.append({"name": name, "type": type(child).__name__, "inner": inner,
                         "output_shape": child.output_shape if child.built else None,
                         "params": sum(n for n, _ in sizes), "trainable_params": sum(n for n, t in sizes if t),
                         "shared_with": first.get(id(child))})
            first.setdefault(id(child), name)
        return rows

    def summary(self) -> str:
        """The layer table as text: layers, output shapes and parameter counts."""
        rows = [("#", "layer", "output shape", "params")]
        for row in self.layer_table():
            shape = "not built" if row["output_shape"] is None else str(row["output_shape"])
            kind = row["type"] + (f" (shared with {row['shared_with']})" if row["shared_with"] else "")
            rows.append((row["name"], kind, shape, str(row["params"]) if self.built else "—"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        lines.append(f"total parameters: {self.num_parameters()}" if self.built else
                     "not built: shapes and parameter counts are known once the model sees data "
                     "(or is given input_shape)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """How a notebook shows the model: its layer table (name, type, output shape,
        parameters, trainable or frozen) under a line with the input and output shapes
        and the totals. Every name is escaped; no style sheet, no script."""
        from .._html import esc, table

        rows = self.layer_table()
        cells = []
        for row in rows:
            kind = esc(row["type"])
            if row["inner"]:
                kind += f' ({esc(", ".join(row["inner"]))})'
            if row["shared_with"] is not None:
                kind += f" — the same layer as {esc(row['shared_with'])} (weights shared)"
            shape = "not built" if row["output_shape"] is None else esc(row["output_shape"])
            if not self.built:
                count, state = "—", "—"
            else:
                count = f"{row['params']:,}"
                state = ("—" if not row["params"] else "yes" if row["trainable_params"] == row["params"]
                         else "frozen" if not row["trainable_params"] else
                         f"partly ({row['trainable_params']:,} trainable)")
            cells.append([(esc(row["name"]), False), (kind, False), (shape, False), (count, True),
                          (state, False)])
        name = esc(type(self).__name__)
        if self.built:
            total = sum(row["params"] for row in rows)
            trainable = sum(row["trainable_params"] for row in rows)
            dtype = "" if self.dtype is None else f", {esc(self.dtype.name)}"
            head = (f"<p><b>{name}</b>: input {esc(self.input_shape)} → output {esc(self.output_shape)}{dtype}; "
                    f"{total:,} parameters ({trainable:,} trainable, {total - trainable:,} frozen)</p>")
        else:
            head = (f"<p><b>{name}</b>: not built — shapes and parameter counts are known once the model sees "
                    "data (or is given <code>input_shape</code>)</p>")
        body = table(["#", "layer", "output shape", "parameters", "trainable"], cells)
        return f'<div class="bpnn-model">{head}{body}</div>'

    # ----------------------------------------------------------------- building
    def build(self, input_shape, rng=None, dtype=None) -> tuple:
        """Create parameters for inputs of ``input_shape`` (no batch axis); return the output shape."""
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dtype = backend.as_dtype(dtype)
        self.rng = backend.rng(rng)
        self.output_shape = tuple(self._build(self.input_shape))
        self.built = True
        return self.output_shape

    def _build(self, input_shape) -> tuple:
        """Subclasses create ``params``/``grads``/``buffers`` here; default: shape-preserving."""
        return input_shape

    def _add_param(self, key, init, shape) -> None:
        mode = _ARRAYS.get()
        if mode == "shapes":
            self.params[key] = self.grads[key] = _placeholder(shape, self.dtype)
            return
        if mode == "empty":
            self.params[key] = backend.xp.empty(shape, dtype=self.dtype)
        else:
            self.params[key] = init(shape, self.rng, self.dtype)
        self.grads[key] = backend.xp.zeros_like(self.params[key])

    def _add_buffer(self, key, shape, fill: float) -> None:
        """A buffer (state that is not trained) of ``shape`` filled with ``fill``."""
        mode = _ARRAYS.get()
        if mode == "shapes":
            self.buffers[key] = _placeholder(shape, self.dtype)
        else:
            self.buffers[key] = backend.xp.full(shape, fill, dtype=self.dtype)

    # ----------------------------------------------------------------- computing
    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, grad_out, input_grad: bool = True):
        raise NotImplementedError

    def backward_per_sample(self, grad_out, sink, prefix: str = "", input_grad: bool = True):
        """Backward pass that keeps the parameter gradient of every sample apart.

        Second-order trainers need it: Levenberg–Marquardt builds the per-sample
        Jacobian J of the outputs from it (:func:`bpnn.nn.jacobian`). ``grad_out`` has
        shape ``(T, N, *output_shape)``: T cotangents for each of the N samples of the last
        ``forward``. For each trainable parameter ``key`` the layer asks ``sink(prefix +
        key)`` for an array of shape ``(N, T, *param_shape)`` (None: not wanted, e.g. frozen)
        and writes ∂(g_{t,n} · y_n)/∂θ into entry [n, t]. Returns the input cotangents,
        shape ``(T, N, *input_shape)``, or None when ``input_grad`` is False. The layers do
        not know which trainer asks. A layer without an implementation says so here.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement backward_per_sample, so the per-sample "
            f"Jacobian (Levenberg–Marquardt, Bayesian regularization) is not available for models "
            f"that contain it; train them with a gradient optimizer (SGD, Adam) instead"
        )

    def input_rows(self):
        """The (rows, fan_in) matrix X of the last forward that the weight multiplies
        (Y = X W + b), rows in the order of ``output_grad``'s. Only the matrix-product
        layers have it."""
        raise NotImplementedError(f"{type(self).__name__} is not a matrix-product layer (Dense, Conv2D): "
                                  f"it has no input rows")

    def __call__(self, x, training: bool = False):
        return self.forward(x, training)

    def _backward_each_cotangent(self, grad_out, input_grad: bool):
        """Input cotangents of a layer without parameters for ``backward_per_sample``:
        ``backward`` applied to each of the T cotangents (the layer acts per sample, so
        the rows of one cotangent do not interact)."""
        if not input_grad:
            return None
        return backend.xp.stack([self.backward(g, True) for g in grad_out])

    def zero_grad(self) -> None:
        for _, _, grad in self.named_parameters():
            grad[...] = 0

    def astype(self, dtype) -> "Module":
        """Convert parameters, gradients and buffers to ``dtype`` in this module tree.

        This rebinds the arrays, so any packed flat buffer is dropped (see
        :meth:`bpnn.nn.Module.flat_parameters`).
        """
        dtype = backend.as_dtype(dtype)
        for m in self.modules():
            m.dtype = dtype
            for store in (m.params, m.grads, m.buffers):
                for k in store:
                    store[k] = store[k].astype(dtype)
            m._flat = None
        return self

    def get_config(self) -> dict:
        # Layers without parameters take no `trainable` argument; freezing a container
        # marks them too, but that is not part of their configuration.
        if self._trainable or "trainable" not in inspect.signature(type(self).__init__).parameters:
            return {}
        return {"trainable": False}

    def _check_built(self, x, name: str = "x"):
        if x.shape[1:] != self.input_shape:
            raise ValueError(
                f"{name}: {type(self).__name__} was built for samples of shape {self.input_shape} "
                f"but got an input of shape {tuple(x.shape)} (samples of shape {tuple(x.shape[1:])})"
            )

    # ----------------------------------------------------------------- weights by name
    def state_dict(self) -> dict:
        """Copies of every parameter and buffer as NumPy arrays, keyed as ``named_parameters``
        and ``named_buffers`` name them (``"0.weight"``, ``"1.running_mean"``)."""
        out = {name: backend.to_numpy(v).copy() for name, v, _ in self.named_parameters()}
        out.update({name: backend.to_numpy(b).copy() for name, b in self.named_buffers()})
        return out

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers of the same names, in place.

        Every array is checked before anything is written, so a mismatch leaves the model
        untouched. With ``strict`` the names must match exactly; otherwise arrays for
        unknown names are refused and missing names keep their values (fine-tuning a
        model with a new head from a trained body).
        """
        targets = {name: v for name, v, _ in self.named_parameters()}
        targets.update(dict(self.named_buffers()))
        unknown = sorted(set(state) - set(targets))
        missing = sorted(set(targets) - set(state))
        if unknown or (strict and missing):
            raise ValueError(
                f"state: names do not match this model (unknown: {unknown or 'none'}; "
                f"missing: {missing or 'none'}); valid names: {sorted(targets)}"
            )
        for name, value in state.items():
            if tuple(value.shape) != tuple(targets[name].shape):
                raise ValueError(
                    f"state: '{name}' has shape {tuple(value.shape)}, the model's is {tuple(targets[name].shape)}"
                )
        for name, value in state.items():
            targets[name][...] = backend.to_device(value)

    # ----------------------------------------------------------------- flat view
    def flat_parameters(self) -> "FlatParameters":
        """Pack the trainable parameters and their gradients into two flat buffers.

        Each parameter (and gradient) becomes a view into one contiguous vector, so an
        optimizer updates the whole network with a few vector operations, and
        second-order methods see θ as one vector. Packing happens once and is redone
        only when the set of trainable parameters changes (freezing, unfreezing).
        """
        names = tuple(name for name, _, _ in self.named_parameters(trainable_only=True))
        flat = self._flat
        if flat is not None and flat.names == names:
            return flat
        self._flat = FlatParameters(self, names)
        return self._flat

    def is_packed_as(self, flat) -> bool:
        """Whether ``flat`` is this model's current packing of its trainable parameters
        (the one :meth:`flat_parameters` returns while that set is unchanged); an
        optimizer attached to the model holds it."""
        names = tuple(name for name, _, _ in self.named_parameters(trainable_only=True))
        return flat is not None and flat is self._flat and flat.names == names

    # ----------------------------------------------------------------- inference
    def predict(self, x, batch_size: int = 1024):
        """Outputs for ``x`` in evaluation mode, computed in batches, as a NumPy array."""
        import numpy as np  # result type only; arrays of the backend are moved back

        from .._checks import array, positive

        x = array("x", x, min_ndim=1)
        positive("batch_size", batch_size, integer=True)
        outs = [backend.to_numpy(self.forward(backend.to_device(x[i:i + batch_size]), training=False))
                for i in range(0, len(x), batch_size)]
        return np.concatenate(outs, axis=0)


class FlatParameters:
    """Trainable parameters of a module tree as views into one vector (see ``flat_parameters``).

    Attributes: ``params`` and ``grads`` (1-d arrays), ``names`` (parameter names in
    order) and ``slices`` (name → slice of the flat vector).
    """

    def __init__(self, root: Module, names: tuple):
        xp = backend.xp
        entries = []
        for m, prefix in _walk(root, ""):
            if not m._trainable:
                continue
            for key in m.params:
                entries.append((prefix + key, m, key))
        assert tuple(e[0] for e in entries) == names
        total = sum(int(m.params[k].size) for _, m, k in entries)
        dtype = root.dtype if root.dtype is not None else backend.default_dtype()
        self.params = xp.empty(total, dtype=dtype)
        self.grads = xp.zeros(total, dtype=dtype)
        self.names = names
        self.slices = {}
        offset = 0
        for name, m, key in entries:
            value = m.params[key]
            n = int(value.size)
            sl = slice(offset, offset + n)
            self.params[sl] = value.ravel()
            self.grads[sl] = m.grads[key].ravel()
            m.params[key] = self.params[sl].reshape(value.shape)
            m.grads[key] = self.grads[sl].reshape(value.shape)
            self.slices[name] = sl
            offset += n

    def __len__(self) -> int:
        return int(self.params.size)


def _walk(module: Module, prefix: str, seen: set | None = None):
    """(module, name prefix) over the tree, depth first, each module object once."""
    if seen is None:
        seen = set()
    if id(module) in seen:
        return
    seen.add(id(module))
    yield module, prefix
    for name, child in module.children():
        yield from _walk(child, f"{prefix}{name}.", seen)


# ----------------------------------------------------------------------------- building without weights
# Reading a model file checks the architecture it declares against the arrays the file
# holds before anything is allocated (a few bytes of JSON can declare a layer of
# gigabytes), then builds the model without running initializers (the file supplies
# every value). ``build_arrays`` switches what ``_add_param`` and ``_add_buffer`` create.
_ARRAYS = contextvars.ContextVar("bpnn_build_arrays", default="init")
BUILD_ARRAYS = ("init", "shapes", "empty")


@contextlib.contextmanager
def build_arrays(mode: str):
    """Within the block, layers built create their parameters and buffers as ``mode`` says:

    - ``"init"`` (the default): initialized by the layer's initializers;
    - ``"shapes"``: read-only placeholders of the right shape and dtype that take no
      memory (one element broadcast); the model can be inspected, never run;
    - ``"empty"``: allocated, not initialized (values to be copied in from a file).
    """
    if mode not in BUILD_ARRAYS:
        raise ValueError(f"mode: got {mode!r}; expected one of {', '.join(map(repr, BUILD_ARRAYS))}")
    token = _ARRAYS.set(mode)
    try:
        yield
    finally:
        _ARRAYS.reset(token)


def _placeholder(shape, dtype):
    return backend.xp.broadcast_to(backend.xp.zeros((), dtype=dtype), tuple(int(s) for s in shape))


# ----------------------------------------------------------------------------- weight sharing
# One module object may appear at several places of a model (its weights shared). The
# protocol keeps forward state on the module, so a second forward would overwrite what
# the first one's backward needs, and each backward would overwrite the other's
# parameter gradients. Containers therefore route modules used more than once
# (``_uses > 1``, counted by :func:`mark_shared` when a container is built) through
# these two functions: forward pushes a copy of the module's attributes (references, no
# array copies) on a stack, backward pops it (uses are undone in reverse order) and adds
# the parameter gradients of every use after the first. Modules used once take the
# plain path: the cost for them is one attribute test per call.

def mark_shared(root: Module) -> None:
    """Set ``_uses`` of every module under ``root`` to the number of places it occurs."""
    # an explicit stack: a recursive closure (a function in its own cell) is a reference
    # cycle that would keep ``counts``, and with it the model, alive until a full gc pass
    counts: dict = {}
    stack = [root]
    while stack:
        m = stack.pop()
        counts[id(m)] = (m, counts.get(id(m), (m, 0))[1] + 1)
        stack.extend(child for _, child in m.children())
    for m, n in counts.values():
        if n > 1:
            m._uses = n
            m._share_stack = collections.deque(maxlen=n)
            m._share_accumulate = False
        elif "_uses" in vars(m):
            del m._uses


def forward_shared(m: Module, x, training: bool):
    """``m.forward`` for a module used at several places (see above)."""
    m._share_accumulate = False
    y = m.forward(x, training)
    m._share_stack.append({k: v for k, v in vars(m).items() if not k.startswith("_share")})
    return y


def backward_shared(m: Module, grad_out, input_grad: bool):
    """``m.backward`` for a module used at several places: restores the state of the
    matching forward and sums the parameter gradients over the uses."""
    if m._share_stack:
        vars(m).update(m._share_stack.pop())
    saved = None
    if m._share_accumulate and m._trainable and m.grads:
        saved = [(g, g.copy()) for g in m.grads.values()]
    out = m.backward(grad_out, input_grad)
    if saved is not None:
        for g, before in saved:
            g += before
    m._share_accumulate = True
    return out


# ----------------------------------------------------------------------------- shared modules in configs
# A module used at several places is written in full once; every later place holds
# ``{"class_name": "shared", "config": {"index": k}}``, k counting the modules written
# so far in post-order (children before their container). Reading counts the modules
# it builds in the same order, so a reference finds the very object built for the
# first place and the weights stay shared after a save and load.
_SHARING = contextvars.ContextVar("bpnn_layer_sharing", default=None)
SHARED = "shared"


@contextlib.contextmanager
def sharing_scope():
    """One numbering of modules for a whole (nested) container config; containers open
    it in ``get_config`` and ``from_config`` (nested containers join the outer one)."""
    if _SHARING.get() is not None:
        yield
        return
    token = _SHARING.set({"ids": {}, "objects": []})
    try:
        yield
    finally:
        _SHARING.reset(token)


def serialize_child(child: Module) -> dict:
    """A child's config for its container's ``get_config`` (a reference when the same
    object was written before, inside the same ``sharing_scope``)."""
    memo = _SHARING.get()
    if memo is not None and id(child) in memo["ids"]:
        return {"class_name": SHARED, "config": {"index": memo["ids"][id(child)]}}
    config = layers.serialize(child)
    if memo is not None:
        memo["ids"][id(child)] = len(memo["objects"])
        memo["objects"].append(child)
    return config


def child_from_config(config) -> Module:
    """The inverse of :func:`serialize_child`, for a container's ``from_config``."""
    memo = _SHARING.get()
    if isinstance(config, dict) and config.get("class_name") == SHARED:
        index = (config.get("config") or {}).get("index")
        objects = memo["objects"] if memo is not None else []
        if not (isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(objects)):
            raise ValueError(f"layers: a shared-layer reference {config!r} names no layer written before it "
                             f"({len(objects)} so far)")
        return objects[index]
    child = layers.get(config)
    if memo is not None:
        memo["objects"].append(child)
    return child
