"""Fan-in / fan-out of weight shapes and the gain table per activation."""
from __future__ import annotations

import math


def compute_fans(shape) -> tuple[int, int]:
    """Fan-in and fan-out of a weight of ``shape``.

    Shape conventions (the layouts bpnn's layers use):

    - ``(n,)`` — a vector (bias): fan_in = fan_out = n.
    - ``(n_in, n_out)`` — a Dense weight, ``y = x @ W + b``: fan_in = n_in, fan_out = n_out.
      (PyTorch stores the transpose ``(out, in)``; the fans are the same numbers.)
    - ``(out_channels, in_channels, *kernel)`` — a convolution kernel in PyTorch's OIHW
      layout: with r = prod(kernel) the receptive field, fan_in = in_channels · r and
      fan_out = out_channels · r, exactly as ``torch.nn.init._calculate_fan_in_and_fan_out``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0 or any(s <= 0 for s in shape):
        raise ValueError(f"shape: got {shape}; fans need at least one dimension, all positive")
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


_GAINS = {
    "linear": 1.0, "identity": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0,
    "conv_transpose1d": 1.0, "conv_transpose2d": 1.0, "conv_transpose3d": 1.0,
    "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "selu": 3.0 / 4.0,
}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain for an activation, as ``torch.nn.init.calculate_gain``.

    ============================================  =================================================
    nonlinearity                                  gain
    ============================================  =================================================
    linear, conv{1,2,3}d, conv_transpose{1,2,3}d  1
    sigmoid                                       1
    tanh                                          5/3
    relu                                          √2
    leaky_relu                                    √(2 / (1 + negative_slope²)), slope default 0.01
    selu                                          3/4
    ============================================  =================================================
    """
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"param: got {param!r}; expected the negative slope as a number")
        return math.sqrt(2.0 / (1.0 + slope**2))
    if nonlinearity not in _GAINS:
        valid = ", ".join(sorted([*_GAINS, "leaky_relu"]))
        raise ValueError(f"nonlinearity: got {nonlinearity!r}; valid values are {valid}")
    return _GAINS[nonlinearity]
