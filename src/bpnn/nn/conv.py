"""2-d convolution: the layer, its math and which computation runs.

How each computation runs, and the buffers it keeps, is in :mod:`bpnn.nn._conv_strategies`.
"""
from __future__ import annotations

from .. import _geometry as geometry
from .. import backend
from .. import init as initializers
from .._checks import positive
from .._deprecation import warn_renamed
from .._kernels import windows
from . import _conv_strategies as strategies
from ._images import WindowedLayer, as_nchw, channels_last
from .module import layers


@layers.register("conv2d", "conv_2d", "convolution2d")
class Conv2D(WindowedLayer):
    r"""2-d convolution (cross-correlation, as ``torch.nn.Conv2d``; LeCun et al. 1998).

    Shapes are NCHW at the API, as PyTorch: x (N, C, H, W) → y (N, O, H_out, W_out); the
    kernel W is OIHW (O, C, kh, kw), as PyTorch, so ``compute_fans`` gives the receptive
    field fans (fan_in = C·kh·kw, fan_out = O·kh·kw) and weights copy to and from
    ``torch.nn.Conv2d`` unchanged. ``C`` is inferred from the first input (lazy shapes);
    later inputs may have other heights and widths (at least the dilated kernel), as in
    PyTorch — the weights do not depend on them.
    H_out = ⌊(H + p_top + p_bottom − d_h(kh − 1) − 1)/s_h⌋ + 1, W_out alike.

    Notes
    -----
    ::

      Forward, with x̃ the zero-padded input:
          y[n, o, i, j] = b[o] + Σ_{c, p, q} W[o, c, p, q] · x̃[n, c, i·s_h + p·d_h, j·s_w + q·d_w].
      As one matrix product over the im2col matrix X_col (rows (n, i, j), columns (p, q, c)):
          Y = X_col W_mat + b,   W_mat = W rearranged to (kh·kw·C, O).
      Backward, with G = ∂L/∂y arranged as (N·H_out·W_out, O):
          ∂L/∂W_mat = X_colᵀ G,   ∂L/∂b = Σ_rows G,   ∂L/∂X_col = G W_matᵀ,
          ∂L/∂x = col2im(∂L/∂X_col) (the adjoint of im2col: every entry of x gets the sum
          over the windows that read it; padding entries are dropped).

    The weight is shared by every window (weight sharing inherent in convolution), so its
    gradient sums over all of them. For curvature methods (K-FAC, KFC) the two factors are
    exposed: ``input_rows()`` is X_col without the bias column ((N·H_out·W_out, kh·kw·C),
    a new array) and, with ``keep_output_grad`` set, ``output_grad`` is a copy of G.

    Implementation: each forward computes these formulas in one of four ways, chosen by
    :meth:`_choose` (X_col itself, a product over row tiles, a direct convolution of the
    padded input, or X_col filled block by block; see :mod:`bpnn.nn._conv_strategies`).
    All give the same numbers up to rounding. The layer works channels-last: its output
    is an (N, H, W, O) C-contiguous array returned as the (N, O, H, W) view
    ``transpose(0, 3, 1, 2)``, which the next image layer (pooling, Conv2D) reads without
    a copy; an NCHW-contiguous input is transposed once.

    Parameters
    ----------
    out_channels : int
        Number of output channels (filters) O.
    kernel_size : int or (kh, kw)
    stride : int or (s_h, s_w), default 1.
    padding : int, (p_h, p_w), ``"valid"`` (= 0) or ``"same"``, default 0
        Zeros added on both sides. ``"same"`` pads so that H_out = ⌈H/s_h⌉ (Keras/TF rule;
        with stride 1 it is PyTorch's ``padding="same"``, output size = input size); an odd
        total puts the extra row/column at the bottom/right, as both frameworks do.
    dilation : int or (d_h, d_w), default 1 — spacing between kernel taps.
    use_bias : bool, default True (as in ``Dense``). ``bias=`` is the deprecated old name
        of this argument: it still works for a release, with a ``DeprecationWarning``.
    init : initializer of W, default ``"xavier_uniform"`` (Keras' default for Conv2D, fans
        from the receptive field; PyTorch's default is ``"uniform"`` with bound 1/√fan_in).
    bias_init : default ``"zeros"``.
    trainable : bool, default True.
    """

    def __init__(self, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 use_bias: bool = True, init="xavier_uniform", bias_init="zeros", trainable: bool = True, *,
                 bias=None):
        super().__init__(trainable)
        self.out_channels = positive("out_channels", out_channels, integer=True)
        self.kernel_size = geometry.pair("kernel_size", kernel_size)
        self.stride = geometry.pair("stride", stride)
        self.padding = geometry.padding_argument(padding)
        self.dilation = geometry.pair("dilation", dilation)
        name = "use_bias"
        if bias is not None:
            warn_renamed("Conv2D(bias=...)", "Conv2D(use_bias=...), as Dense does", stacklevel=3)
            if use_bias is not True:
                raise ValueError(f"bias: got bias={bias!r} and use_bias={use_bias!r}; pass use_bias only")
            name, use_bias = "bias", bias
        if not isinstance(use_bias, bool):
            raise ValueError(f"{name}: got {use_bias!r}; expected True or False")
        self.use_bias = use_bias
        self.init = initializers.get(init)
        self.bias_init = initializers.get(bias_init)
        # A 1×1 kernel with stride 1 and no padding reads every pixel once: X_col is x itself.
        self._pointwise = ((self.kernel_size, self.stride) == ((1, 1), (1, 1))
                           and self.padding in ((0, 0), "valid", "same"))
        # what the last forward ran, with what its backward reads (a Strategy instance)
        self._strategy = None
        # arrays kept across steps (X_col, padded inputs), one per use of the layer in a model
        self._buffers = strategies.Buffers()
        self._calls = 0  # forwards that kept a buffer, to give each use of the layer its own
        self._row_plans: dict = {}  # window -> the row-tile product's tiles and index map
        self._taps: dict = {}  # geometry -> element offsets of the kernel positions

    def _build(self, input_shape):
        win = self._build_window(input_shape)
        c = input_shape[0]
        self._add_param("weight", self.init, (self.out_channels, c, *self.kernel_size))
        if self.use_bias:
            self._add_param("bias", self.bias_init, (self.out_channels,))
        return (self.out_channels, win.Ho, win.Wo)

    def _choose(self, xl) -> type[strategies.Strategy]:
        """The computation of this forward over the channels-last input ``xl``, and why:

        - :class:`~bpnn.nn._conv_strategies.Pointwise` for a 1×1 kernel with stride 1 and
          no padding: X_col is the input itself, nothing to fill;
        - :class:`~bpnn.nn._conv_strategies.Direct` for one input channel where it runs
          (below): its forward is much faster than the row tiles' and, in a first layer
          (no input gradient, the usual place of a one-channel convolution), so is the
          whole step at both vector widths (``benchmarks/README.md``, "Dispatch per width");
        - :class:`~bpnn.nn._conv_strategies.RowTiles` for at most ``ROW_MAX_CHANNELS``
          input channels: X_col would be kh·kw times the image, filled in runs of only
          kw·C values; rows of input under tiles of outputs times a banded weight matrix
          move far less data for a few more multiplications;
        - :class:`~bpnn.nn._conv_strategies.Direct` when the register-tile kernels run
          (numba) and O is a multiple of their vector width (float32: 16 with AVX-512, 8
          with AVX2, 4 with 128-bit vectors), and, where the width has a limit
          (``bpnn._kernels.gemm.DIRECT_MAX_VECTORS``: AVX2, at most 16 float32), not more
          channels than one tile holds: they convolve the zero-padded input in place, no
          X_col at all;
        - :class:`~bpnn.nn._conv_strategies.Im2col` otherwise: X_col W_mat, X_col filled
          and multiplied block by block while the block is in cache.
        """
        if self._pointwise:
            return strategies.Pointwise
        if xl.shape[3] == 1 and strategies.Direct.applies(xl.dtype, self.out_channels):
            return strategies.Direct
        if xl.shape[3] <= strategies.ROW_MAX_CHANNELS:
            return strategies.RowTiles
        if strategies.Direct.applies(xl.dtype, self.out_channels):
            return strategies.Direct
        return strategies.Im2col

    def forward(self, x, training=False):
        win = self._window_for(x)
        xl = channels_last(x)
        wmat = self.params["weight"].transpose(2, 3, 1, 0).reshape(-1, self.out_channels)  # W_mat, a small copy
        self._strategy = self._choose(xl)(xl, win, wmat)
        y = self._strategy.forward(self, training)
        return as_nchw(y.reshape(xl.shape[0], win.Ho, win.Wo, self.out_channels))

    def input_rows(self):
        """X_col of the last forward, (N·H_out·W_out, kh·kw·C), columns (p, q, c) as the rows
        of W_mat = W.transpose(2, 3, 1, 0).reshape(-1, O); rows (n, i, j) as ``output_grad``."""
        last = self._strategy
        if last is None:
            raise RuntimeError("Conv2D.input_rows: no forward has run yet")
        win = last.win
        cols = backend.xp.empty((last.n * win.Ho * win.Wo, win.kh * win.kw * last.xl.shape[3]), dtype=last.xl.dtype)
        windows.im2col(backend.xp.ascontiguousarray(last.xl), cols, win)
        return cols

    def backward(self, grad_out, input_grad=True):
        g = channels_last(grad_out).reshape(-1, self.out_channels)
        if self.keep_output_grad:
            self.output_grad = g.copy()
        return self._strategy.backward(self, g, input_grad)

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """Per-sample gradients for the Jacobian. With G (T, N, O, H_out, W_out) the
        cotangents and X_col,n the n-th sample's rows of X_col::

            ∂/∂W_mat [n, t] = X_col,nᵀ G_{t,n},   ∂/∂b [n, t] = Σ_{i,j} G_{t,n}[:, i, j],

        input cotangents col2im(G_t W_matᵀ) for each t."""
        xp, last = backend.xp, self._strategy
        win, o, n = last.win, self.out_channels, last.n
        c = self.input_shape[0]
        ncol, hw, t = win.kh * win.kw * c, win.Ho * win.Wo, grad_out.shape[0]
        g = grad_out.transpose(0, 1, 3, 4, 2)  # (T, N, H_out, W_out, O)
        dw = sink(prefix + "weight") if self._trainable else None
        db = sink(prefix + "bias") if self._trainable and self.use_bias else None
        if dw is not None or db is not None:
            cols = xp.empty((n * hw, ncol), dtype=grad_out.dtype)
            windows.im2col(last.xl, cols, win)
            for i in range(n):
                gi = g[:, i].reshape(t, hw, o)
                if dw is not None:
                    dwm = xp.matmul(cols[i * hw:(i + 1) * hw].T, gi)  # (T, ncol, O)
                    dw[i] = dwm.reshape(t, win.kh, win.kw, c, o).transpose(0, 4, 3, 1, 2)
                if db is not None:
                    db[i] = gi.sum(axis=1)
        if not input_grad:
            return None
        return xp.stack([last.input_grad(xp.ascontiguousarray(g[k]).reshape(-1, o)) for k in range(t)])

    def get_config(self):
        serialize = initializers.serialize
        padding = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": padding, "dilation": list(self.dilation),
                "use_bias": self.use_bias, "init": serialize(self.init), "bias_init": serialize(self.bias_init),
                **super().get_config()}

    @classmethod
    def from_config(cls, config: dict):
        """The layer of a config; configs written before ``use_bias`` say ``"bias"``, and
        load the same (without a warning: the user loading an old file did nothing wrong)."""
        config = dict(config)
        if "bias" in config:
            config["use_bias"] = config.pop("bias")
        return cls(**config)
