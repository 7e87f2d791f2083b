"""Geometry of a window sliding over images: the one place its arithmetic is written.

Along one axis, a grid of n windows of k taps with stride s and dilation d reads the
input entries t·s + j·d (window t < n, tap j < k) of the padded input, so it reads

    extent(n, s, k, d) = (n − 1)·s + (k − 1)·d + 1

entries; conversely a padded input of P entries holds ⌊(P − extent(1, s, k, d))/s⌋ + 1
windows (:func:`output_size`, PyTorch's floor mode). Everything else here follows from
these two: the :class:`Window` of a layer over an input size (the padding before each
axis stored, the padding after implied by the output size), ``"same"`` padding, and the
padded shape that the windows read.

Pure Python with no imports from bpnn: convolution, pooling, the kernels and the
exporters all import it (it sits below :mod:`bpnn._kernels` in the import order).
"""
from __future__ import annotations

import numbers
from typing import NamedTuple


def extent(n: int, stride: int, kernel: int, dilation: int) -> int:
    """Input entries read along one axis by ``n`` windows of ``kernel`` taps spaced
    ``dilation`` apart, the windows ``stride`` apart: (n − 1)·s + (k − 1)·d + 1."""
    return (n - 1) * stride + (kernel - 1) * dilation + 1


def kernel_extent(kernel: int, dilation: int) -> int:
    """Input entries under one window: the dilated kernel, (k − 1)·d + 1."""
    return extent(1, 1, kernel, dilation)


def output_size(padded: int, kernel: int, stride: int, dilation: int) -> int:
    """Windows that fit along an axis of ``padded`` entries (the floor mode of PyTorch)."""
    return (padded - kernel_extent(kernel, dilation)) // stride + 1


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) padding for ``"same"``: ⌈size/s⌉ outputs, the odd entry after."""
    total = max(extent(-(-size // stride), stride, kernel, dilation) - size, 0)
    return total // 2, total - total // 2


class Window(NamedTuple):
    """Geometry of a sliding window over (H, W) images.

    ``ph``/``pw`` are the padding before the first row/column (the padding after is
    implied by the output size), so asymmetric "same" padding needs no special case.
    Output position (ho, wo), kernel tap (i, k) reads input row ho·sh − ph + i·dh and
    column wo·sw − pw + k·dw.
    """

    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    H: int
    W: int
    Ho: int
    Wo: int

    @property
    def padded_shape(self) -> tuple[int, int]:
        """(rows, columns) of the padded input that the windows read: the padding before,
        the image and as much padding after as the last window reaches (none past it)."""
        return extent(self.Ho, self.sh, self.kh, self.dh), extent(self.Wo, self.sw, self.kw, self.dw)

    @property
    def padding_after(self) -> tuple[int, int]:
        """(bottom, right) zero padding that the last windows read past the image."""
        hp, wp = self.padded_shape
        return max(hp - self.H - self.ph, 0), max(wp - self.W - self.pw, 0)


def window(layer: str, input_shape, kernel, stride, padding, dilation) -> Window:
    """The :class:`Window` of ``kernel``, ``stride``, ``dilation`` (pairs) and ``padding``
    (``"same"``, ``"valid"`` or a pair added on both sides) over samples of shape
    (C, H, W); errors name ``layer`` and say what is wrong with the input."""
    if len(input_shape) != 3:
        raise ValueError(
            f"x: {layer} expects images of shape (N, C, H, W) (NCHW, as PyTorch), got samples of shape "
            f"{tuple(input_shape)}, i.e. a {len(input_shape) + 1}-d input"
            + ("; add a channel axis, e.g. x[:, None]" if len(input_shape) == 2 else ""))
    _, H, W = input_shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    if padding == "same":
        (pt, pb), (pl, pr) = same_padding(H, kh, sh, dh), same_padding(W, kw, sw, dw)
    elif padding == "valid":
        pt = pb = pl = pr = 0
    else:
        pt = pb = padding[0]
        pl = pr = padding[1]
    eh, ew = kernel_extent(kh, dh), kernel_extent(kw, dw)
    if H + pt + pb < eh or W + pl + pr < ew:
        raise ValueError(
            f"x: {layer} needs images of at least {eh}×{ew} after padding (kernel {kh}×{kw}, "
            f"dilation {dh}×{dw}, padding {pt + pb}×{pl + pr} in total), got {H}×{W} images "
            f"(samples of shape {tuple(input_shape)})")
    Ho = output_size(H + pt + pb, kh, sh, dh)
    Wo = output_size(W + pl + pr, kw, sw, dw)
    return Window(kh, kw, sh, sw, pt, pl, dh, dw, H, W, Ho, Wo)


# ----------------------------------------------------------------------------- arguments
def pair(name: str, value, allow_zero: bool = False) -> tuple[int, int]:
    """An int or a pair of ints (height, width), each > 0 (>= 0 with ``allow_zero``)."""
    both = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    ok = len(both) == 2 and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                and (v >= 0 if allow_zero else v > 0) for v in both)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: got {value!r}; expected an int {bound} or a pair of them (height, width)")
    return int(both[0]), int(both[1])


def padding_argument(value):
    """``"same"``, ``"valid"`` (= 0), an int or a pair (rows, columns) added on both sides."""
    if isinstance(value, str):
        if value not in ("same", "valid"):
            raise ValueError(f"padding: got {value!r}; expected 'same', 'valid', an int >= 0 "
                             f"or a pair of them (height, width)")
        return value
    try:
        return pair("padding", value, allow_zero=True)
    except ValueError:
        raise ValueError(f"padding: got {value!r}; expected 'same', 'valid', an int >= 0 or a pair "
                         f"of them (height, width)") from None
