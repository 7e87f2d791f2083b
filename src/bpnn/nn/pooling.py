"""Pooling over (H, W): max, average and global average."""
from __future__ import annotations

import numpy as np

from .. import _geometry as geometry
from .. import backend
from .._kernels import windows
from ._images import WindowedLayer, as_nchw, channels_last, check_images
from .module import Module, layers


class _Pool2D(WindowedLayer):
    """Shared arguments and geometry of the windowed pooling layers (no parameters)."""

    _name = "Pool2D"

    def __init__(self, kernel_size=2, stride=None, padding=0, dilation=1):
        super().__init__()
        self.kernel_size = geometry.pair("kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else geometry.pair("stride", stride)
        self.padding = geometry.pair("padding", padding, allow_zero=True)
        self.dilation = geometry.pair("dilation", dilation)
        for p, k, d, axis in zip(self.padding, self.kernel_size, self.dilation, ("height", "width")):
            if 2 * p > geometry.kernel_extent(k, d):
                raise ValueError(
                    f"padding: got {padding!r}; padding must be at most half the (dilated) kernel "
                    f"({geometry.kernel_extent(k, d)} along the {axis}), as in PyTorch, so that every window "
                    f"holds at least one pixel")
        self._fwin = None  # the window of the last forward

    def _build(self, input_shape):
        win = self._build_window(input_shape)
        return (input_shape[0], win.Ho, win.Wo)

    def get_config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "dilation": list(self.dilation)}

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """No parameters: ``backward`` of each of the T cotangents (G: (T, N, C, H_out, W_out))."""
        return self._backward_each_cotangent(grad_out, input_grad)

    def _grad_buffers(self, grad_out):
        """The incoming gradient channels-last, an empty input-gradient buffer, the window."""
        win = self._fwin
        g = channels_last(grad_out)
        return g, backend.xp.empty((g.shape[0], win.H, win.W, g.shape[3]), dtype=g.dtype), win


@layers.register("max_pool2d", "maxpool2d", "max_pooling2d")
class MaxPool2D(_Pool2D):
    r"""Max pooling over windows of (H, W), as ``torch.nn.MaxPool2d`` (NCHW).

    Notes
    -----
    Forward: y[n, c, i, j] = max_{p, q} x̃[n, c, i·s_h + p·d_h, j·s_w + q·d_w], x̃ padded
    with −∞ (padding never wins). The position of the maximum is kept; among equal
    values the first in scan order (p, then q) wins, as in PyTorch's CPU kernel.
    Backward: ∂L/∂x[n, c, h, w] = Σ of ∂L/∂y over the windows whose maximum sits at
    (h, w) — a subgradient: each window routes its gradient to one input.

    Parameters
    ----------
    kernel_size : int or (kh, kw), default 2.
    stride : int or pair, default ``kernel_size`` (non-overlapping windows, as PyTorch).
    padding : int or pair, default 0; at most half the dilated kernel.
    dilation : int or pair, default 1.
    Output size: H_out = ⌊(H + 2p_h − d_h(kh − 1) − 1)/s_h⌋ + 1 (PyTorch's floor mode).
    """

    def __init__(self, kernel_size=2, stride=None, padding=0, dilation=1):
        super().__init__(kernel_size, stride, padding, dilation)
        self._arg = None  # the window position of each maximum, from the last forward

    def forward(self, x, training=False):
        xp, win = backend.xp, self._window_for(x)
        xl = channels_last(x)
        n, c = xl.shape[0], xl.shape[3]
        out = xp.empty((n, win.Ho, win.Wo, c), dtype=xl.dtype)
        arg = xp.empty(out.shape, dtype=np.uint8 if win.kh * win.kw <= 256 else np.int32)
        windows.max_pool(xl, out, arg, win)
        self._arg, self._fwin = arg, win
        return as_nchw(out)

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        g, dx, win = self._grad_buffers(grad_out)
        windows.max_pool_backward(g, self._arg, dx, win)
        return as_nchw(dx)


@layers.register("avg_pool2d", "avgpool2d", "average_pooling2d")
class AvgPool2D(_Pool2D):
    r"""Average pooling over windows of (H, W), as ``torch.nn.AvgPool2d`` (NCHW).

    Notes
    -----
    Forward: y[n, c, i, j] = (1/D) Σ_{p, q} x̃[n, c, i·s_h + p·d_h, j·s_w + q·d_w], x̃ padded
    with zeros; D = kh·kw when ``count_include_pad`` (PyTorch's default), else the number
    of window entries inside the image.
    Backward: ∂L/∂x[n, c, h, w] = Σ over the windows containing (h, w) of ∂L/∂y / D.

    Parameters
    ----------
    kernel_size : int or (kh, kw), default 2.
    stride : int or pair, default ``kernel_size``.
    padding : int or pair, default 0; at most half the kernel.
    count_include_pad : bool, default True.
    dilation : int or pair, default 1 (PyTorch's AvgPool2d has none; 1 matches it).
    """

    def __init__(self, kernel_size=2, stride=None, padding=0, count_include_pad: bool = True,
                 dilation=1):
        super().__init__(kernel_size, stride, padding, dilation)
        if not isinstance(count_include_pad, bool):
            raise ValueError(f"count_include_pad: got {count_include_pad!r}; expected True or False")
        self.count_include_pad = count_include_pad

    def forward(self, x, training=False):
        win = self._window_for(x)
        xl = channels_last(x)
        out = backend.xp.empty((xl.shape[0], win.Ho, win.Wo, xl.shape[3]), dtype=xl.dtype)
        windows.avg_pool(xl, out, win, self.count_include_pad)
        self._fwin = win
        return as_nchw(out)

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        g, dx, win = self._grad_buffers(grad_out)
        windows.avg_pool_backward(g, dx, win, self.count_include_pad)
        return as_nchw(dx)

    def get_config(self):
        return {**super().get_config(), "count_include_pad": self.count_include_pad}


@layers.register("global_avg_pool2d", "global_average_pooling2d", "gap2d")
class GlobalAvgPool2D(Module):
    r"""Global average pooling: (N, C, H, W) → (N, C), the mean of each channel's map
    (Lin et al. 2014, "Network in Network"), as ``torch.nn.AdaptiveAvgPool2d(1)``
    followed by ``flatten(1)`` or Keras' ``GlobalAveragePooling2D``.

    Notes
    -----
    Forward: y[n, c] = (1/(H·W)) Σ_{h, w} x[n, c, h, w].
    Backward: ∂L/∂x[n, c, h, w] = ∂L/∂y[n, c] / (H·W).
    """

    def __init__(self):
        super().__init__()
        self._hw = None  # (H, W) of the last forward

    def _build(self, input_shape):
        if len(input_shape) != 3:
            geometry.window("GlobalAvgPool2D", input_shape, (1, 1), (1, 1), (0, 0), (1, 1))
        return (input_shape[0],)

    def forward(self, x, training=False):
        if x.ndim != 4 or x.shape[1] != self.input_shape[0]:
            check_images(self, x)
        self._hw = x.shape[2:]
        n, c, h, w = x.shape
        xp = backend.xp
        weights = xp.full(h * w, 1.0 / (h * w), dtype=x.dtype)
        # the mean as a matrix-vector product over the memory order: much faster than
        # x.mean(axis=(2, 3)) over channels-last data (benchmarks/README.md)
        xl = x.transpose(0, 2, 3, 1)
        if xl.flags.c_contiguous:
            return xp.matmul(weights, xl.reshape(n, h * w, c))
        if x.flags.c_contiguous:
            return xp.matmul(x.reshape(n, c, h * w), weights)
        return x.mean(axis=(2, 3))

    def backward(self, grad_out, input_grad=True):
        if not input_grad:
            return None
        h, w = self._hw
        n, c = grad_out.shape
        dx = backend.xp.empty((n, h, w, c), dtype=grad_out.dtype)  # channels-last, as the image layers
        dx[...] = (grad_out * (1.0 / (h * w)))[:, None, None, :]
        return as_nchw(dx)

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """No parameters: ``backward`` of each of the T cotangents (G: (T, N, C))."""
        return self._backward_each_cotangent(grad_out, input_grad)
