"""ReLU and its gradient, one compiled pass over the elements in their memory order."""
from __future__ import annotations

import numpy as np

from .. import backend
from . import use_compiled
from .compiler import kernel


@kernel(fastmath=False, error_model="numpy")
def _relu(x, y):
    # y = max(x, 0) with NaN passed on (as np.maximum and torch.relu)
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = 0 if v < 0 else v


@kernel(fastmath=False, error_model="numpy")
def _relu_backward(g, y, dx):
    # ∂L/∂x = ∂L/∂y where y > 0, else 0 (torch's threshold_backward)
    for i in range(g.shape[0]):
        dx[i] = g[i] if y[i] > 0 else 0


def _memory_order(*arrays):
    """1-d views of arrays that all hold their elements contiguously in the same order
    (C-contiguous, or e.g. the channels-last images seen as NCHW), else None."""
    flats = []
    for a in arrays:
        if a.strides != arrays[0].strides:
            return None
        f = a.ravel(order="K")
        if not np.may_share_memory(f, a):
            return None
        flats.append(f)
    return flats


def relu(x):
    """max(x, 0), in x's memory layout (one compiled pass where the arrays allow it)."""
    xp = backend.xp
    if use_compiled(x):
        y = np.empty_like(x)
        flats = _memory_order(x, y)
        if flats is not None:
            _relu(*flats)
            return y
    return xp.maximum(x, 0)


def relu_backward(g, y):
    """∂L/∂y where y > 0, else 0."""
    if use_compiled(g, y):
        dx = np.empty_like(g)
        flats = _memory_order(g, y, dx)
        if flats is not None:
            _relu_backward(*flats)
            return dx
    return g * (y > 0)
