"""Geometry of bpnn's image layers as exporters need it (explicit zero padding per side)."""
from __future__ import annotations


def padding_pairs(m) -> tuple:
    """((top, bottom), (left, right)) zero padding of a built bpnn image layer (Conv2D, pooling).

    Explicit padding p is (p, p); ``"same"`` and ``"valid"`` are read from the layer's
    :attr:`~bpnn.nn.Conv2D.window`: the padding before is stored, the padding after is
    what the output size implies (for ``"same"`` the odd pixel goes after, as in Keras
    and PyTorch).
    """
    if isinstance(m.padding, tuple):
        return tuple((p, p) for p in m.padding)
    win = m.window
    (bottom, right) = win.padding_after
    return (win.ph, bottom), (win.pw, right)
