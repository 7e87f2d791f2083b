"""What the image layers share: input checks, the window over each input size, and the
channels-last layout in which they hand data to each other."""
from __future__ import annotations

from .. import _geometry as geometry
from .. import backend
from .module import Module


class WindowedLayer(Module):
    """Base of the layers that slide a window over images (Conv2D, MaxPool2D, AvgPool2D).

    Subclasses set ``kernel_size``, ``stride``, ``padding`` and ``dilation``; the layer's
    :attr:`window` is their geometry over the input shape it was built for. Images of
    any height and width (at least the dilated kernel) are accepted, as in PyTorch: the
    geometry of each new size is computed once (:meth:`_window_for`).
    """

    def __init__(self, trainable: bool = True):
        super().__init__(trainable)
        self._window = None  # over the input shape of build()
        self._windows: dict = {}  # (H, W) -> Window, for inputs of other sizes

    @property
    def window(self) -> geometry.Window | None:
        """The :class:`bpnn._geometry.Window` over the input shape the layer was built
        for (None before it is built): kernel, stride, dilation, the padding before each
        axis, input and output sizes; ``window.padding_after`` gives the rest."""
        return self._window

    def _geometry(self, input_shape) -> geometry.Window:
        return geometry.window(type(self).__name__, input_shape, self.kernel_size, self.stride, self.padding,
                               self.dilation)

    def _build_window(self, input_shape) -> geometry.Window:
        self._window = self._geometry(input_shape)
        return self._window

    def _window_for(self, x) -> geometry.Window:
        """The window over the images ``x``, after the input checks."""
        if self.built:
            win = self._window
            if x.ndim == 4 and x.shape[2] == win.H and x.shape[3] == win.W and x.shape[1] == self.input_shape[0]:
                return win
        check_images(self, x)
        key = tuple(x.shape[2:])
        if key not in self._windows:
            self._windows[key] = self._geometry((x.shape[1], *key))
        return self._windows[key]


def check_images(layer: Module, x) -> None:
    """Input checks of the image layers, with messages naming what is wrong; a layer used
    on its own (outside a container) is built from its first input."""
    if not layer.built:
        layer.build(x.shape[1:], layer.rng, layer.dtype or x.dtype)
        return
    if x.ndim != 4:
        raise ValueError(
            f"x: {type(layer).__name__} expects a 4-d input (N, C, H, W) (NCHW, as PyTorch), got an "
            f"array of shape {tuple(x.shape)}"
            + ("; add a channel axis, e.g. x[:, None]" if x.ndim == 3 else ""))
    c = layer.input_shape[0]
    if x.shape[1] != c:
        raise ValueError(
            f"x: {type(layer).__name__} was built for {c} input channel{'s' * (c != 1)} but got an "
            f"input with {x.shape[1]} (shape {tuple(x.shape)}, NCHW: channels are axis 1)")


def channels_last(x):
    """The (N, C, H, W) array ``x`` as a C-contiguous (N, H, W, C) array (a view when it is
    stored channels-last already, e.g. the output of another image layer)."""
    xl = x.transpose(0, 2, 3, 1)
    return xl if xl.flags.c_contiguous else backend.xp.ascontiguousarray(xl)


def as_nchw(xl):
    """A C-contiguous (N, H, W, C) array seen as (N, C, H, W): a view, no copy."""
    return xl.transpose(0, 3, 1, 2)
