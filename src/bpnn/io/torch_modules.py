"""The torch side of :mod:`bpnn.io.torch_interop` (imported only when torch is used).

Importing this module imports torch; :mod:`bpnn.io.torch_interop` imports it lazily, so
bpnn never needs torch unless these functions are called.
"""
from __future__ import annotations

from .._checks import missing_dependency

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing_dependency("converting to or from torch modules", "PyTorch (to_torch_state_dict and "
                             "from_torch_state_dict work without it)", "torch", exc) from exc

from .. import nn as bnn
from ..nn.module import Module
from ._image import padding_pairs
from .torch_interop import from_torch_state_dict

__all__ = ["TorchResidual", "TorchGlobalAvgPool2d", "to_torch_module", "from_torch_module", "TO_TORCH", "FROM_TORCH"]


class TorchResidual(nn.Module):
    """``y = block(x) + shortcut(x)``, the shortcut the identity when None (as ``bpnn.Residual``).

    Submodule names ``block`` and ``shortcut`` make parameter names equal bpnn's
    (``"0.block.1.weight"``).
    """

    def __init__(self, block: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.block = block
        self.shortcut = shortcut

    def forward(self, x):
        return self.block(x) + (x if self.shortcut is None else self.shortcut(x))


class TorchGlobalAvgPool2d(nn.Module):
    """(N, C, H, W) → (N, C), the mean over (H, W), as ``bpnn.GlobalAvgPool2D``."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def _conv2d(m, dtype):
    (pt, pb), (pl, pr) = padding_pairs(m)
    if isinstance(m.padding, str) and m.stride == (1, 1):
        padding = m.padding  # torch's "same" (the odd pixel after, as bpnn) and "valid"
    elif (pt, pl) == (pb, pr):
        padding = (pt, pl)
    else:
        raise NotImplementedError(f"Conv2D with padding 'same', stride {m.stride} and uneven padding "
                                  f"{((pt, pb), (pl, pr))} has no single torch.nn.Conv2d equivalent")
    return nn.Conv2d(m.input_shape[0], m.out_channels, m.kernel_size, stride=m.stride, padding=padding,
                     dilation=m.dilation, bias=m.use_bias, dtype=dtype)


def _avg_pool2d(m, dtype):
    if m.dilation != (1, 1):
        raise NotImplementedError("AvgPool2D with dilation has no torch equivalent (nn.AvgPool2d has none)")
    return nn.AvgPool2d(m.kernel_size, stride=m.stride, padding=m.padding, count_include_pad=m.count_include_pad)


def _torch_dtype(m: Module):
    return torch.float64 if m.dtype is not None and m.dtype.name == "float64" else torch.float32


def _batch_norm(m, dtype):
    rank = len(m.input_shape)
    classes = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}
    if rank not in classes:
        raise NotImplementedError(f"BatchNorm on samples of shape {m.input_shape} has no torch equivalent")
    return classes[rank](m.input_shape[0], eps=m.eps, momentum=m.momentum, affine=m.affine, dtype=dtype)


#: registry name -> (bpnn module, torch dtype) -> torch module (children converted by the caller)
TO_TORCH = {
    "dense": lambda m, dt: nn.Linear(m.input_shape[0], m.units, bias=m.use_bias, dtype=dt),
    "batch_norm": _batch_norm,
    "identity": lambda m, dt: nn.Identity(),
    "sigmoid": lambda m, dt: nn.Sigmoid(),
    "tanh": lambda m, dt: nn.Tanh(),
    "relu": lambda m, dt: nn.ReLU(),
    "leaky_relu": lambda m, dt: nn.LeakyReLU(m.negative_slope),
    "elu": lambda m, dt: nn.ELU(m.alpha),
    "softplus": lambda m, dt: nn.Softplus(beta=m.beta, threshold=m.threshold),
    "softmax": lambda m, dt: nn.Softmax(dim=-1),
    "dropout": lambda m, dt: nn.Dropout(m.rate),
    "flatten": lambda m, dt: nn.Flatten(),
    "conv2d": _conv2d,
    "max_pool2d": lambda m, dt: nn.MaxPool2d(m.kernel_size, stride=m.stride, padding=m.padding,
                                             dilation=m.dilation),
    "avg_pool2d": _avg_pool2d,
    "global_avg_pool2d": lambda m, dt: TorchGlobalAvgPool2d(),
}


def _to_torch(m: Module, dtype) -> nn.Module:
    if isinstance(m, bnn.Sequential):
        return nn.Sequential(*[_to_torch(layer, dtype) for layer in m.layers])
    if isinstance(m, bnn.Residual):
        return TorchResidual(_to_torch(m.block, dtype),
                             None if m.shortcut is None else _to_torch(m.shortcut, dtype))
    name = getattr(type(m), "registry_name", None)
    if name not in TO_TORCH:
        raise NotImplementedError(f"{type(m).__name__} has no torch equivalent yet; add one to "
                                  f"bpnn.io.torch_modules.TO_TORCH")
    return TO_TORCH[name](m, dtype)


def to_torch_module(model: Module, state: dict) -> nn.Module:
    """See :func:`bpnn.io.torch_interop.to_torch_module`; ``state`` is its torch-keyed state dict."""
    dtype = _torch_dtype(model)
    tmodule = _to_torch(model, dtype)
    tmodule.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return tmodule


# --------------------------------------------------------------------------- torch -> bpnn
def _from_batch_norm(t):
    if t.momentum is None:
        raise NotImplementedError(f"{t}: momentum=None (a cumulative moving average) has no bpnn equivalent")
    if not t.track_running_stats:
        raise NotImplementedError(f"{t}: track_running_stats=False has no bpnn equivalent")
    return bnn.BatchNorm(momentum=float(t.momentum), eps=float(t.eps), affine=bool(t.affine))


def _from_flatten(t):
    if (t.start_dim, t.end_dim) != (1, -1):
        raise NotImplementedError(f"{t}: only Flatten(start_dim=1, end_dim=-1) has a bpnn equivalent")
    return bnn.Flatten()


def _from_conv2d(t):
    if t.groups != 1 or t.padding_mode != "zeros":
        raise NotImplementedError(f"{t}: only groups=1 and padding_mode='zeros' have a bpnn equivalent")
    padding = t.padding if isinstance(t.padding, str) else tuple(t.padding)
    return bnn.Conv2D(t.out_channels, tuple(t.kernel_size), stride=tuple(t.stride), padding=padding,
                      dilation=tuple(t.dilation), use_bias=t.bias is not None)


def _from_pool(t):
    if t.ceil_mode:
        raise NotImplementedError(f"{t}: ceil_mode=True has no bpnn equivalent (bpnn floors, as torch's default)")
    if isinstance(t, nn.MaxPool2d):
        if t.return_indices:
            raise NotImplementedError(f"{t}: return_indices=True has no bpnn equivalent")
        return bnn.MaxPool2D(t.kernel_size, stride=t.stride, padding=t.padding, dilation=t.dilation)
    if t.divisor_override is not None:
        raise NotImplementedError(f"{t}: divisor_override has no bpnn equivalent")
    return bnn.AvgPool2D(t.kernel_size, stride=t.stride, padding=t.padding,
                         count_include_pad=bool(t.count_include_pad))


def _from_softmax(t):
    if t.dim not in (-1,):
        raise NotImplementedError(f"{t}: bpnn's Softmax is over the last axis; use nn.Softmax(dim=-1)")
    return bnn.Softmax()


#: torch class -> torch module -> bpnn module (containers handled by the caller)
FROM_TORCH = {
    nn.Linear: lambda t: bnn.Dense(t.out_features, use_bias=t.bias is not None),
    nn.BatchNorm1d: _from_batch_norm,
    nn.BatchNorm2d: _from_batch_norm,
    nn.BatchNorm3d: _from_batch_norm,
    nn.Identity: lambda t: bnn.Identity(),
    nn.Sigmoid: lambda t: bnn.Sigmoid(),
    nn.Tanh: lambda t: bnn.Tanh(),
    nn.ReLU: lambda t: bnn.ReLU(),
    nn.LeakyReLU: lambda t: bnn.LeakyReLU(float(t.negative_slope)),
    nn.ELU: lambda t: bnn.ELU(alpha=float(t.alpha)),
    nn.Softplus: lambda t: bnn.Softplus(beta=float(t.beta), threshold=float(t.threshold)),
    nn.Softmax: _from_softmax,
    nn.Dropout: lambda t: bnn.Dropout(float(t.p)),
    nn.Flatten: _from_flatten,
    nn.Conv2d: _from_conv2d,
    nn.MaxPool2d: _from_pool,
    nn.AvgPool2d: _from_pool,
    TorchGlobalAvgPool2d: lambda t: bnn.GlobalAvgPool2D(),
}


def _from_torch(t) -> Module:
    if type(t) is nn.Sequential:
        return bnn.Sequential([_from_torch(child) for child in t])
    if isinstance(t, TorchResidual):
        return bnn.Residual(_from_torch(t.block), None if t.shortcut is None else _from_torch(t.shortcut))
    convert = FROM_TORCH.get(type(t))
    if convert is None:
        raise NotImplementedError(f"{type(t).__name__} has no bpnn equivalent; add one to "
                                  f"bpnn.io.torch_modules.FROM_TORCH")
    return convert(t)


_SHAPE_AGNOSTIC = (nn.Sequential, TorchResidual, nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU,
                   nn.ELU, nn.Softplus, nn.Dropout)


def _infer_input_shape(t) -> tuple:
    for sub in t.modules():
        if isinstance(sub, nn.Linear):
            return (int(sub.in_features),)
        if not isinstance(sub, _SHAPE_AGNOSTIC):
            break
    raise ValueError("input_shape: cannot be inferred (the first layer is not an nn.Linear); "
                     "give the shape of one sample, e.g. input_shape=(3, 28, 28)")


def from_torch_module(t, input_shape=None, dtype=None, seed=None) -> Module:
    """See :func:`bpnn.io.torch_interop.from_torch_module`."""
    if not isinstance(t, nn.Module):
        raise ValueError(f"module: got {type(t).__name__}; expected a torch.nn.Module")
    if input_shape is None:
        input_shape = _infer_input_shape(t)
    if dtype is None:
        first = next(iter(t.parameters()), None)
        if first is None:
            first = next((b for b in t.buffers() if b.is_floating_point()), None)
        dtype = "float32" if first is None else str(first.dtype).replace("torch.", "")
    model = _from_torch(t)
    if isinstance(model, bnn.Sequential):
        model = bnn.Sequential(model.layers, input_shape=input_shape, seed=seed, dtype=dtype)
    else:
        model.build(input_shape, seed, dtype)
    return from_torch_state_dict(model, t.state_dict())
