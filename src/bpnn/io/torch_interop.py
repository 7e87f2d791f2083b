"""PyTorch weights in and out, without making torch a dependency.

- :func:`to_torch_state_dict` / :func:`from_torch_state_dict` speak plain NumPy arrays
  keyed exactly as ``torch.nn.Sequential.state_dict()`` keys them (``"0.weight"``,
  ``"0.bias"``, ``"1.running_mean"``, ``"1.running_var"``, ``"1.num_batches_tracked"``,
  ``"2.block.0.weight"`` inside a residual block), so a state dict moves between the two
  libraries with ``torch.from_numpy`` / ``tensor.numpy()`` — or through a safetensors file.
- :func:`to_torch_module` (needs torch) builds the equivalent ``torch.nn.Sequential``
  with the weights copied; :func:`from_torch_module` builds the bpnn model back from one.

Layout conventions
------------------
bpnn's ``Dense`` stores W as (in, out) and computes ``y = x W + b``; torch's
``nn.Linear`` stores (out, in) and computes ``y = x Wᵀ + b``. :func:`_linear_layout` is
the one place that transposes, used in both directions. BatchNorm's γ, β and running
statistics, and Conv2D's OIHW kernels, have the same layout in both. torch's ``num_batches_tracked`` (used by torch
only when ``momentum=None``, which bpnn does not offer) is not counted by bpnn: it is
exported as 0 and ignored on import.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import backend
from ..nn.module import Module

__all__ = ["to_torch_state_dict", "from_torch_state_dict", "to_torch_module", "from_torch_module",
           "TORCH_LAYOUTS"]


def _linear_layout(w: np.ndarray) -> np.ndarray:
    """bpnn Dense weight (n_in, n_out) ↔ torch ``nn.Linear`` weight (out, in): a transpose.

    Its own inverse; the only place that knows the two layouts differ.
    """
    return np.ascontiguousarray(np.asarray(w).T)


def _same(a: np.ndarray) -> np.ndarray:
    return a


#: registry name of a layer with parameters -> {parameter key: layout converter}. A layer with
#: parameters that is not listed here has no known torch layout and is refused (not guessed).
TORCH_LAYOUTS: dict[str, dict] = {
    "dense": {"weight": _linear_layout, "bias": _same},
    "drop_connect": {"weight": _linear_layout, "bias": _same},  # Dense's parameters
    "batch_norm": {"weight": _same, "bias": _same},
    "conv2d": {"weight": _same, "bias": _same},  # OIHW, as torch.nn.Conv2d
}

#: layers whose torch counterpart carries an extra ``num_batches_tracked`` buffer
_COUNTS_BATCHES = {"batch_norm"}


def _layouts(module: Module) -> dict:
    name = getattr(type(module), "registry_name", None)
    if not module.params:
        return {}
    if name not in TORCH_LAYOUTS:
        raise NotImplementedError(
            f"{type(module).__name__} has parameters {sorted(module.params)} but no known PyTorch layout; "
            f"add an entry for {name!r} to bpnn.io.torch_interop.TORCH_LAYOUTS")
    return TORCH_LAYOUTS[name]


def _walk(module: Module, prefix: str = ""):
    """(prefix, module) depth first, parents before children, as torch orders state dicts."""
    yield prefix, module
    for name, child in module.children():
        yield from _walk(child, f"{prefix}{name}.")


def _check_built(model, what: str) -> None:
    if not isinstance(model, Module):
        raise ValueError(f"model: got {type(model).__name__}; expected a bpnn Module")
    if not model.built:
        raise ValueError(f"{what}: the model is not built; call model.build(input_shape) first "
                         f"(or give Sequential an input_shape)")


def to_torch_state_dict(model: Module) -> "OrderedDict[str, np.ndarray]":
    """The model's parameters and buffers as torch would key and lay them out.

    Returns an ordered dict of NumPy arrays (copies): for each module, parents first, its
    parameters then its buffers, as ``torch.nn.Module.state_dict()`` orders them. Load it
    into the module of :func:`to_torch_module` (or a hand-written equivalent) with
    ``tmodule.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    """
    _check_built(model, "to_torch_state_dict")
    out = OrderedDict()
    for prefix, m in _walk(model):
        layouts = _layouts(m)
        for key, value in m.params.items():
            out[prefix + key] = np.array(layouts[key](backend.to_numpy(value)), copy=True)
        for key, value in m.buffers.items():
            out[prefix + key] = np.array(backend.to_numpy(value), copy=True)
        if getattr(type(m), "registry_name", None) in _COUNTS_BATCHES:
            out[prefix + "num_batches_tracked"] = np.array(0, dtype=np.int64)
    return out


def _as_numpy(value, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        try:
            value = value.detach().cpu().numpy()
        except (TypeError, RuntimeError) as exc:
            raise ValueError(f"state_dict['{name}']: could not be converted to NumPy ({exc}); "
                             f"convert it to float32 or float64 first") from None
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"state_dict['{name}']: has dtype {arr.dtype}; expected numbers")
    return arr


def from_torch_state_dict(model: Module, state_dict, strict: bool = True) -> Module:
    """Copy a torch-keyed state dict (NumPy arrays or torch tensors) into ``model``.

    Names must match the model's exactly (``strict``; with ``strict=False`` missing names
    keep their values, e.g. a new classification head, but unknown names are still
    refused). ``num_batches_tracked`` entries are accepted and ignored. Values are cast to
    the model's dtype. Every name, shape and value is checked before anything is written,
    so on error the model is unchanged. Returns ``model``.
    """
    _check_built(model, "from_torch_state_dict")
    if not hasattr(state_dict, "items"):
        raise ValueError(f"state_dict: got {type(state_dict).__name__}; expected a mapping name -> array")
    targets = {}
    for prefix, m in _walk(model):
        layouts = _layouts(m)
        for key, value in m.params.items():
            targets[prefix + key] = (value, layouts[key])
        for key, value in m.buffers.items():
            targets[prefix + key] = (value, _same)
        if getattr(type(m), "registry_name", None) in _COUNTS_BATCHES:
            targets[prefix + "num_batches_tracked"] = (None, None)
    given = {str(k): v for k, v in state_dict.items()}
    unknown = sorted(set(given) - set(targets))
    missing = sorted(n for n, (v, _) in targets.items() if v is not None and n not in given)
    if unknown or (strict and missing):
        raise ValueError(f"state_dict: names do not match this model (missing: {missing or 'none'}; "
                         f"unexpected: {unknown or 'none'}); the model's names: "
                         f"{[n for n, (v, _) in targets.items() if v is not None]}")
    converted = {}
    for name, raw in given.items():
        target, layout = targets[name]
        arr = _as_numpy(raw, name)
        if target is None:  # num_batches_tracked
            if arr.size != 1 or arr.dtype.kind not in "iu":
                raise ValueError(f"state_dict['{name}']: expected an integer count, got shape {arr.shape} "
                                 f"dtype {arr.dtype}")
            continue
        value = layout(arr)
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"state_dict['{name}']: has shape {tuple(arr.shape)} (torch layout); this model "
                             f"needs {tuple(layout(np.empty(target.shape)).shape)}")
        value = value.astype(target.dtype, copy=False)
        if not np.isfinite(value).all():
            raise ValueError(f"state_dict['{name}']: contains NaN or infinite values")
        converted[name] = value
    for name, value in converted.items():
        targets[name][0][...] = backend.to_device(value)
    return model


def to_torch_module(model: Module):
    """The equivalent ``torch.nn`` module (needs PyTorch), weights and buffers copied.

    ``Sequential`` → ``torch.nn.Sequential``, ``Residual`` →
    ``bpnn.io.torch_modules.TorchResidual``, ``Dense`` → ``nn.Linear``, ``BatchNorm`` →
    ``nn.BatchNorm1d/2d/3d`` (by input rank), ``Conv2D`` → ``nn.Conv2d``, ``MaxPool2D`` /
    ``AvgPool2D`` → ``nn.MaxPool2d`` / ``nn.AvgPool2d``, ``GlobalAvgPool2D`` →
    ``bpnn.io.torch_modules.TorchGlobalAvgPool2d``, activations, ``Dropout``,
    ``Flatten`` and ``Softmax(dim=-1)`` to their namesakes. Parameter names equal bpnn's
    (``"0.weight"``), and the module's dtype is the model's (float32 or float64). Like
    every new torch module it is in training mode: call ``.eval()`` for inference.
    """
    _check_built(model, "to_torch_module")
    from . import torch_modules

    return torch_modules.to_torch_module(model, to_torch_state_dict(model))


def from_torch_module(module, input_shape=None, dtype=None, seed=None) -> Module:
    """A bpnn model equivalent to the torch module ``module`` (needs PyTorch), weights copied.

    ``input_shape`` (one sample, no batch axis) may be left out when the first layer with
    parameters is an ``nn.Linear`` (its ``in_features``). ``dtype`` defaults to the dtype of
    the module's first parameter (float32 or float64). ``seed`` seeds the model's generator
    (dropout, shuffling). Layers without a bpnn equivalent raise ``NotImplementedError``.
    """
    from . import torch_modules

    return torch_modules.from_torch_module(module, input_shape=input_shape, dtype=dtype, seed=seed)
