"""Geometry of bpnn's image layers as exporters need it (explicit zero padding per side)."""
from __future__ import annotations


def padding_pairs(m) -> tuple:
    """((top, bottom), (left, right)) zero padding of a built bpnn image layer (Conv2D, pooling).

    Explicit padding p is (p, p); ``"same"`` and ``"valid"`` are read from the layer's window:
    the padding before is stored, the padding after is what the output size implies (for
    ``"same"`` the odd pixel goes after, as in Keras and PyTorch).
    """
    win = m._win
    explicit = m.padding if isinstance(m.padding, tuple) else None
    out = []
    axes = ((win.ph, win.H, win.kh, win.sh, win.dh, win.Ho), (win.pw, win.W, win.kw, win.sw, win.dw, win.Wo))
    for axis, (before, size, k, s, d, n_out) in enumerate(axes):
        if explicit is not None:
            out.append((explicit[axis], explicit[axis]))
        else:
            out.append((before, max((n_out - 1) * s + d * (k - 1) + 1 - size - before, 0)))
    return tuple(out)
