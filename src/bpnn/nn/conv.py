"""2-d convolution (GEMM over im2col columns)."""
from __future__ import annotations

import threading
import warnings

from .. import _geometry as geometry
from .. import backend
from .. import init as initializers
from .._checks import positive
from .._kernels import gemm, parallel, windows
from ._images import WindowedLayer, as_nchw, channels_last
from .module import layers


# Temporaries shared by the layers of one thread (threads, e.g. joblib's threading
# backend for restarts, each get their own).
_SCRATCH = threading.local()
#: Size of the blocks of X_col (and ∂L/∂X_col) that are filled and multiplied while
#: they are in cache.
_FUSE_BYTES = 1 << 20


def _shared_temp(shape, dtype, name: str):
    """One temporary (rows, cols) array per name and dtype, shared by every Conv2D: blocks
    of X_col and of ∂L/∂X_col live only within one layer call, so one buffer serves all
    layers (and is not touched for the first time again by every new model)."""
    size = shape[0] * shape[1]
    key = (name, backend.xp.__name__, backend.xp.dtype(dtype).str)
    store = _SCRATCH.__dict__
    buf = store.get(key)
    if buf is None or buf.size < size:
        buf = backend.xp.empty(size, dtype=dtype)
        store[key] = buf
    return buf[:size].reshape(shape)


#: Largest X_col (bytes) kept from forward for backward; larger ones are recomputed
#: block by block in backward (see ``Conv2D._product``). Measured at batch 64: keeping
#: wins for LeNet-5's second layer (3.9 MB: backward 0.65 vs 0.85 ms), recomputing from
#: 7 MB up (a 16→32 3×3 stride-2 layer on 28×28 even, 14.5 and 29 MB clearly).
_KEEP_BYTES = 6 << 20

#: Row blocks of X_colᵀ G for a whole kept X_col with few output columns: OpenBLAS
#: handles a tall X_col times a narrow G poorly when X_col does not fit in cache; blocks
#: of ~256 KB measured 1.3-2x faster for LeNet-5's and a 16-channel ResNet's layers
#: (single thread, same run), and no faster for 32 output columns.
_BLOCK_BYTES = 1 << 18
_BLOCK_MAX_COLUMNS = 16


def _block_rows(a, n_out: int) -> int:
    if n_out > _BLOCK_MAX_COLUMNS:
        return a.shape[0]
    return max(256, _BLOCK_BYTES // ((a.shape[1] + n_out) * a.itemsize))


def _matmul_tn_chunked(a, g):
    """aᵀ @ g, summed over row blocks of ``a`` and ``g``."""
    rows = _block_rows(a, g.shape[1])
    out = backend.xp.empty((a.shape[1], g.shape[1]), dtype=g.dtype)
    for s in range(0, a.shape[0], rows):
        gemm.matmul(a[s:s + rows].T, g[s:s + rows], out, accumulate=s > 0)
    return out


#: Inputs with at most this many channels take the row-tile product (``Conv2D._row_product``)
#: instead of im2col. Measured per layer (forward + backward with ∂L/∂x, batch 64, float32,
#: paired), rows/im2col: 0.79 for LeNet-5's 6→16 channels 5×5 on 14×14, 0.84 for 3→16
#: 3×3 on 32×32; but 1.04 for 8→16 5×5 on 14×14, 1.33 for 8→16 3×3 on 28×28, 1.24 for
#: 12→24 5×5 on 14×14, 1.41-1.47 for 16 channels (whole LeNet-5 epochs: 0.90-0.97).
_ROW_MAX_CHANNELS = 6


def _row_tile(wo: int) -> int:
    """Outputs per tile of the row-tile product (``Conv2D._row_product``): a divisor
    of W_out from 8 down to 4 (no outputs past the image), else 6 (or W_out if smaller).
    Measured at batch 64 on 28×28 images, 5×5 and 3×3 kernels: tiles of 4-7 are fastest;
    1 (im2col) and 28 (whole rows) are 1.5-3x slower."""
    for t in (8, 7, 6, 5, 4):
        if wo % t == 0:
            return t
    return min(6, wo)


# ----------------------------------------------------------------------------- layer
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
    Forward, with x̃ the zero-padded input:
        y[n, o, i, j] = b[o] + Σ_{c, p, q} W[o, c, p, q] · x̃[n, c, i·s_h + p·d_h, j·s_w + q·d_w].
    As one matrix product over the im2col matrix X_col (rows (n, i, j), columns (p, q, c)):
        Y = X_col W_mat + b,   W_mat = W rearranged to (kh·kw·C, O).
    Backward, with G = ∂L/∂y arranged as (N·H_out·W_out, O):
        ∂L/∂W_mat = X_colᵀ G,   ∂L/∂b = Σ_rows G,   ∂L/∂X_col = G W_matᵀ,
        ∂L/∂x = col2im(∂L/∂X_col) (the adjoint of im2col: every entry of x gets the sum
        over the windows that read it; padding entries are dropped).
    The weight is shared by every window (weight sharing inherent in convolution), so its
    gradient sums over all of them.

    Implementation (measured choices, see ``benchmarks/bench_cnn.py``): the layer works
    channels-last. Its output is an (N, H, W, O) C-contiguous array returned as the
    (N, O, H, W) view ``transpose(0, 3, 1, 2)``: the matrix product above writes it with
    no reordering and the next image layer (pooling, Conv2D) reads it without a copy; an
    NCHW-contiguous input is transposed once. X_col carries a last column of ones and
    W_mat a last row b, so the forward product adds the bias and X_colᵀ G gives ∂L/∂b
    as its last row. X_col is filled and multiplied a few samples at a time while they
    are in cache; in training, an X_col of at most ``_KEEP_BYTES`` (6 MB) is kept for
    backward in a buffer reused across steps (one per use when the layer object appears
    several times in a model), a larger one is filled again in backward. With few input
    channels (at most ``_ROW_MAX_CHANNELS``, 6) the product runs over tiles of input rows
    and a banded weight matrix instead (``_row_product``): far less data to move for a
    few more multiplications. im2col and col2im (over the windows or over the row tiles)
    are fused kernels (:mod:`bpnn._kernels.windows`). With numba on an AVX-512 CPU the
    products run in register-tile kernels (:mod:`bpnn._kernels.gemm`), and when O is a multiple
    of their vector width (16 float32, 8 float64) there is no X_col at all: the layer
    convolves its zero-padded input in place (``_direct_forward``), its weight gradient
    likewise, and ∂L/∂x, for stride 1, as the convolution of the padded G with the
    flipped kernel (``_direct_backward``); long calls split the batch between threads
    (``NUMBA_NUM_THREADS``, all cores by default).

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
            warnings.warn("Conv2D(bias=...) is deprecated; use Conv2D(use_bias=...), as Dense does",
                          DeprecationWarning, stacklevel=2)
            if use_bias is not True:
                raise ValueError(f"bias: got bias={bias!r} and use_bias={use_bias!r}; pass use_bias only")
            name, use_bias = "bias", bias
        if not isinstance(use_bias, bool):
            raise ValueError(f"{name}: got {use_bias!r}; expected True or False")
        self.use_bias = use_bias
        self.init = initializers.get(init)
        self.bias_init = initializers.get(bias_init)
        self._scratch: dict = {}
        self._calls = 0
        self._rows = False  # the last forward used the row-tile product
        self._direct = False  # ... or the direct convolution

    # ------------------------------------------------------------------ building
    def _build(self, input_shape):
        win = self._build_window(input_shape)
        c = input_shape[0]
        self._add_param("weight", self.init, (self.out_channels, c, *self.kernel_size))
        if self.use_bias:
            self._add_param("bias", self.bias_init, (self.out_channels,))
        # A 1×1 kernel with stride 1 and no padding reads every pixel once: X_col is x itself.
        self._pointwise = ((self.kernel_size, self.stride) == ((1, 1), (1, 1))
                           and self.padding in ((0, 0), "valid", "same"))
        return (self.out_channels, win.Ho, win.Wo)

    def _buffer(self, name: str, shape, dtype):
        """A scratch array of ``shape`` kept across calls (reallocated when too small)."""
        size = shape[0] * shape[1]
        buf = self._scratch.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = backend.xp.empty(size, dtype=dtype)
            self._scratch[name] = buf
            self._scratch.pop(name + ".ones", None)
            self._scratch.pop(name + ".geometry", None)
        return buf[:size].reshape(shape)

    def _kept_buffer(self, rows: int, ncol: int, dtype, name: str):
        """A buffer kept across steps for X_col (rows, ncol + bias) with the bias column
        of ones in place (written once per buffer and number of rows)."""
        buf = self._buffer(name, (rows, ncol + self.use_bias), dtype)
        if self._scratch.get(name + ".ones") != rows:
            self._scratch[name + ".ones"] = rows
            if self.use_bias:
                buf[:, ncol] = 1
        return buf

    def _kept_slot(self, prefix: str = "cols") -> str:
        """The name of the buffer this forward keeps for backward: one per use of this
        object in the model (see ``Module._uses``), since a second forward must not
        overwrite columns the first one's backward still needs."""
        slot = self._calls % getattr(self, "_uses", 1)
        self._calls += 1
        return f"{prefix}{slot}"

    def _padding_buffer(self, name: str, src, top: int, left: int, hp: int, wp: int):
        """The (N, hp, wp, C) buffer kept under ``name`` that ``_place`` fills with src
        (N, h, w, C) at (top, left), its border zero (written once per buffer and
        geometry); src itself when it needs no padding."""
        n, h, w, c = src.shape
        if top == 0 and left == 0 and hp <= h and wp <= w:
            return src
        buf = self._buffer(name, (n * hp * wp, c), src.dtype).reshape(n, hp, wp, c)
        geometry = (buf.shape, src.dtype.str, top, left, h, w)
        if self._scratch.get(name + ".geometry") != geometry:
            buf[...] = 0
            self._scratch[name + ".geometry"] = geometry
        return buf

    @staticmethod
    def _place(buf, src, top: int, left: int, a: int, b: int) -> None:
        """Samples a..b−1 of src into ``_padding_buffer``'s buffer at (top, left); rows and
        columns that fall outside are dropped (no window reads them)."""
        if buf is src:
            return
        h, w = src.shape[1:3]
        r0, r1 = max(0, -top), min(h, buf.shape[1] - top)
        c0, c1 = max(0, -left), min(w, buf.shape[2] - left)
        buf[a:b, top + r0:top + r1, left + c0:left + c1] = src[a:b, r0:r1, c0:c1]

    def _taps(self, kh: int, kw: int, dh: int, dw: int, width: int, c: int):
        """Element offsets of the kernel positions (i, k), row-major, from a window's corner
        in a channels-last image of ``width`` columns and ``c`` channels (cached)."""
        key = ("taps", kh, kw, dh, dw, width, c)
        taps = self._scratch.get(key)
        if taps is None:
            xp = backend.xp
            i, k = xp.ogrid[:kh, :kw]
            taps = self._scratch[key] = ((i * dh * width + k * dw) * c).reshape(-1).astype(xp.int64)
        return taps

    # ------------------------------------------------------------------ direct convolution
    def _direct_forward(self, xl, win, w, training: bool):
        r"""Y straight from the padded input, no X_col (``bpnn.gemm.conv``): for each
        output row, tiles of outputs × vectors of output channels accumulate, for every
        kernel position, the input channels under it times that position's rows of
        W_mat. Used when the register-tile kernels run and O is a multiple of their
        vector width (16 float32); the padded input is kept for backward."""
        n = xl.shape[0]
        hp, wp = win.padded_shape
        xpad = self._padding_buffer(self._kept_slot("pad") if training else "pad", xl, win.ph, win.pw, hp, wp)
        taps = self._taps(win.kh, win.kw, win.dh, win.dw, xpad.shape[2], xl.shape[3])
        y = backend.xp.empty((n, win.Ho, win.Wo, self.out_channels), dtype=xl.dtype)
        w = backend.xp.ascontiguousarray(w)

        def part(a, b):  # samples a..b−1: pad them, convolve them
            self._place(xpad, xl, win.ph, win.pw, a, b)
            gemm.conv(xpad[a:b], taps, w, y[a:b], win.sh, win.sw)

        parallel.split_samples(n, part, y.size * taps.size * xl.shape[3])
        if self.use_bias:
            y += self.params["bias"]
        self._xpad, self._taps_x = xpad, taps
        return y.reshape(-1, self.out_channels)

    def _direct_backward(self, g, win, n, c, input_grad):
        r"""Backward of ``_direct_forward`` from G (N, H_out, W_out, O):
            ∂L/∂W_mat[(t, c), :] = Σ over outputs of x̃ under position t, channel c, times G,
        and, with stride 1 and C a multiple of the vector width, ∂L/∂x as the forward
        convolution of G̃, G padded by (k − 1)·d − p, with the flipped kernel:
            ∂L/∂x[n, h, w] = Σ_{i, k} G̃[n, h + i·d_h, w + k·d_w] W[:, :, kh−1−i, kw−1−k],
        else G W_matᵀ and col2im (as ``_input_grad``). With stride 1 and "same" padding G̃
        lies on the padded input's grid (rows as wide, zeros between G's rows), and ∂L/∂W
        is one long product per image and kernel position over it
        (``gemm.conv_weight_grad_flat``) instead of one per output row."""
        xp = backend.xp
        o, xpad = self.out_channels, self._xpad
        top, left = (win.kh - 1) * win.dh - win.ph, (win.kw - 1) * win.dw - win.pw
        # G̃: the extent that H × W stride-1 windows read (the correlation producing ∂L/∂x)
        hg, wg = geometry.extent(win.H, 1, win.kh, win.dh), geometry.extent(win.W, 1, win.kw, win.dw)
        stride1 = (win.sh, win.sw) == (1, 1)
        on_grid = (stride1 and wg == xpad.shape[2] and 0 <= top and top + win.Ho <= hg
                   and 0 <= left and left + win.Wo <= wg)
        dx_direct = input_grad and stride1 and gemm.conv_applies(g.dtype, c)
        trainable = self._trainable
        gpad = self._padding_buffer("gpad", g, top, left, hg, wg) if dx_direct or (on_grid and trainable) else None
        on_grid = on_grid and gpad is not None and gpad.shape[2] == wg  # (G itself when it needs no padding)
        taps = self._taps_x
        dx = xp.empty((n, win.H, win.W, c), dtype=g.dtype) if input_grad else None
        if dx_direct:
            wf = xp.ascontiguousarray(self.params["weight"][:, :, ::-1, ::-1].transpose(2, 3, 0, 1)).reshape(-1, c)
            taps_g = self._taps(win.kh, win.kw, win.dh, win.dw, gpad.shape[2], o)

        def part(a, b):  # samples a..b−1: their G̃, their share of ∂L/∂W, their ∂L/∂x
            if gpad is not None:
                self._place(gpad, g, top, left, a, b)
            dw = None
            if trainable:
                dw = xp.zeros((taps.size * c, o), dtype=g.dtype)
                if on_grid:
                    gemm.conv_weight_grad_flat(xpad[a:b], taps, gpad[a:b], (top * wg + left) * o,
                                                (win.Ho - 1) * wg + win.Wo, dw)
                else:
                    gemm.conv_weight_grad(xpad[a:b], taps, g[a:b], dw, win.sh, win.sw)
            if dx_direct:
                gemm.conv(gpad[a:b], taps_g, wf, dx[a:b], 1, 1)
            elif input_grad:
                self._input_grad_into(dx, g.reshape(-1, o), win, taps.size * c, a, b)
            return dw

        parts = parallel.split_samples(n, part, g.size * taps.size * c * (1 + input_grad))
        if trainable:
            dw = parts[0]
            for extra in parts[1:]:
                dw += extra
            self.grads["weight"][...] = dw.reshape(win.kh, win.kw, c, o).transpose(3, 2, 0, 1)
            if self.use_bias:
                self.grads["bias"][...] = g.reshape(-1, o).sum(axis=0)
        return as_nchw(dx) if input_grad else None

    def _product(self, xl, win, w, ncol, keep: bool):
        """Y = X_col W_mat; returns (X_col or None, Y).

        X_col is filled and multiplied block by block of samples, while the block is in
        cache. With ``keep`` (training) and an X_col of at most ``_KEEP_BYTES``, the
        blocks go to a buffer kept across steps for backward (``_kept_slot``). A larger
        X_col (9× the input for a 3×3 kernel: 29 MB for 64 images of 16×28×28) is not
        kept: its blocks live in a temporary shared by all layers and backward fills them
        again, which costs less than writing it out and reading it back (measured on a
        16-channel ResNet block: forward 4.5 → 2.5 ms, backward unchanged).
        """
        xp = backend.xp
        n, hw, o = xl.shape[0], win.Ho * win.Wo, w.shape[1]
        m = n * hw
        per = self._per_block(hw, ncol + self.use_bias, xl.itemsize)
        keep = keep and m * (ncol + self.use_bias) * xl.itemsize <= _KEEP_BYTES
        if keep:
            buf = self._kept_buffer(m, ncol, xl.dtype, self._kept_slot())
        else:
            buf = self._column_block(min(per, n) * hw, ncol, xl.dtype)
        y = xp.empty((m, o), dtype=xl.dtype)
        for s in range(0, n, per):
            k = min(per, n - s)
            rows = slice(s * hw, (s + k) * hw)
            cols = buf[rows] if keep else buf[:k * hw]
            windows.im2col(xl[s:s + k], cols, win)
            gemm.matmul(cols, w, y[rows])
        return (buf if keep else None), y

    # ------------------------------------------------------------------ few input channels
    def _row_plan(self, win):
        """(tiles, index map) of the row-tile product over images of ``win``'s size.

        The index map ``dst`` (tile, O·C·kh·kw) gives, for output column u of a tile and
        each weight entry in OIHW order, its place in the flat Toeplitz matrix T (see
        ``_row_product``): T[(i, u·s_w + k·d_w, c), (u, o)] = W[o, c, i, k]."""
        plans = self.__dict__.setdefault("_row_plans", {})
        plan = plans.get(win)
        if plan is None:
            xp = backend.xp
            tl = windows.tiles_for(win, _row_tile(win.Wo))
            o, c, kh, kw = self.params["weight"].shape
            u, oo, cc, i, k = xp.ogrid[:tl.tile, :o, :c, :kh, :kw]
            dst = ((i * tl.span + u * win.sw + k * win.dw) * c + cc) * (tl.tile * o) + u * o + oo
            plan = plans[win] = (tl, dst.reshape(tl.tile, -1))
        return plan

    def _row_product(self, xl, win, keep: bool):
        r"""Y for few input channels, as a product over row tiles; returns (A or None, Y).

        X_col of an image with few channels is kh·kw times the image and slow to fill
        (runs of kw·C values). Instead, each row of A holds the kh input rows under a
        tile of ``tile`` consecutive outputs of one output row, span = (tile − 1)·s_w +
        (kw − 1)·d_w + 1 values each (im2col over the tiles' window, ``Tiles.window``), and a banded
        (Toeplitz) matrix T, (kh·span·C + bias, tile·O), computes the tile's outputs at once:
            Y_tiles = A T,   ∂L/∂T = Aᵀ G_tiles,
            ∂L/∂W[o, c, i, k] = Σ_u ∂L/∂T[(i, u·s_w + k·d_w, c), (u, o)],
        where G_tiles is G (N, H_out, W_out, O) seen as (N·H_out·nt, tile·O). The product
        does span/kw times the multiplications of X_col W_mat but moves far less data:
        measured for LeNet-5's first layer at batch 64 (tile 7, A 1.6 MB instead of
        5.2 MB): forward 0.45 vs 0.63 ms, ∂L/∂W 0.30 vs 0.56 ms. A is kept for backward
        under the same rule as X_col (``_KEEP_BYTES``); otherwise it is filled and
        multiplied block by block of samples, here and again in backward.
        """
        xp = backend.xp
        tl, dst = self._row_plan(win)
        n, o, dtype = xl.shape[0], self.out_channels, xl.dtype
        kcols, per_sample = win.kh * tl.span * xl.shape[3], win.Ho * tl.nt
        keep = keep and n * per_sample * (kcols + self.use_bias) * xl.itemsize <= _KEEP_BYTES
        t = self._t = self._toeplitz(tl, dst, kcols, dtype)  # kept for ∂L/∂x in backward
        y = xp.empty((n * per_sample, tl.tile * o), dtype=dtype)
        a = self._kept_buffer(n * per_sample, kcols, dtype, self._kept_slot()) if keep else None
        for rows, block in self._row_blocks(xl, win, tl, kcols, a):
            gemm.matmul(block, t, y[rows])
        y = y.reshape(n, win.Ho, tl.nt * tl.tile, o)
        if tl.nt * tl.tile != win.Wo:  # the last tile reached past the image: drop its extra outputs
            y = xp.ascontiguousarray(y[:, :, :win.Wo])
        return a, y.reshape(-1, o)

    def _row_blocks(self, xl, win, tl, kcols, a=None):
        """Yields (rows, block of A) over the batch, each block filled when it is yielded:
        all of ``a`` at once when given (kept), else blocks of a few samples (about
        ``_FUSE_BYTES``) in the shared temporary."""
        n, per_sample = xl.shape[0], win.Ho * tl.nt
        per = n if a is not None else self._per_block(per_sample, kcols + self.use_bias, xl.itemsize)
        if a is None:
            a = self._column_block(min(per, n) * per_sample, kcols, xl.dtype)
        for s in range(0, n, per):
            k = min(per, n - s)
            block = a[:k * per_sample]
            windows.im2col(xl[s:s + k], block, tl.window)
            yield slice(s * per_sample, (s + k) * per_sample), block

    def _toeplitz(self, tl, dst, kcols, dtype):
        """T of ``_row_product`` from the current weights (and the bias as its last row)."""
        o = self.out_channels
        t = backend.xp.zeros((kcols + self.use_bias, tl.tile * o), dtype=dtype)
        t.reshape(-1)[dst] = self.params["weight"].reshape(1, -1)
        if self.use_bias:
            t[kcols].reshape(tl.tile, o)[...] = self.params["bias"]
        return t

    def _row_backward(self, g, win, n, input_grad):
        """Backward of ``_row_product`` from G (N·H_out·W_out, O): ∂L/∂W, ∂L/∂b from Aᵀ
        G_tiles (A filled again, block by block, when it was not kept), and ∂L/∂x as the
        adjoint of the row tiles of G_tiles Tᵀ (col2im over the tiles' window),
        block by block of samples. Measured at batch 64 (paired, float32), ∂L/∂x against
        G W_matᵀ and col2im: 0.38 vs 0.64 ms for LeNet-5's second layer (6→16 channels,
        5×5 on 14×14), 1.26 vs 1.83 ms for 3→16 channels 3×3 on 32×32."""
        xp = backend.xp
        tl, dst = self._row_plan(win)
        o, c = self.out_channels, self.input_shape[0]
        kcols, per_sample = win.kh * tl.span * c, win.Ho * tl.nt
        if tl.nt * tl.tile != win.Wo:  # zero gradient for the outputs past the image
            gp = xp.zeros((n, win.Ho, tl.nt * tl.tile, o), dtype=g.dtype)
            gp[:, :, :win.Wo] = g.reshape(n, win.Ho, win.Wo, o)
            g = gp
        g = g.reshape(-1, tl.tile * o)
        if self._trainable:
            self._row_weight_grads(g, win, tl, dst, kcols)
        if not input_grad:
            return None
        tt = xp.ascontiguousarray(self._t[:kcols].T)  # T of the forward (the weights have not changed since)
        return self._scattered_products(g, tt, win, per_sample,
                                        lambda block, dx: windows.col2im(block, dx, tl.window))

    def _row_weight_grads(self, g, win, tl, dst, kcols):
        """∂L/∂W and ∂L/∂b from G_tiles (N·H_out·nt, tile·O) and A."""
        xp = backend.xp
        o = self.out_channels
        dt = xp.empty((kcols + self.use_bias, tl.tile * o), dtype=g.dtype)
        if self._cols is not None:
            gemm.matmul(self._cols.T, g, dt)
        else:
            for rows, block in self._row_blocks(self._xl, win, tl, kcols):
                gemm.matmul(block.T, g[rows], dt, accumulate=rows.start > 0)
        self.grads["weight"][...] = dt.reshape(-1)[dst].sum(axis=0).reshape(self.grads["weight"].shape)
        if self.use_bias:
            self.grads["bias"][...] = dt[kcols].reshape(tl.tile, o).sum(axis=0)

    @staticmethod
    def _per_block(hw: int, width: int, itemsize: int) -> int:
        """Samples per block of X_col (about ``_FUSE_BYTES``)."""
        return max(1, _FUSE_BYTES // (hw * width * itemsize))

    def _column_block(self, rows: int, ncol: int, dtype):
        """The shared block of X_col, (rows, ncol + bias), with the bias column of ones."""
        buf = _shared_temp((rows, ncol + self.use_bias), dtype, "cols")
        if self.use_bias:
            buf[:, ncol] = 1
        return buf

    # ------------------------------------------------------------------ computing
    def forward(self, x, training=False):
        win, o = self._window_for(x), self.out_channels
        n = x.shape[0]
        xl = channels_last(x)
        m, ncol = n * win.Ho * win.Wo, win.kh * win.kw * xl.shape[3]
        w = self.params["weight"].transpose(2, 3, 1, 0).reshape(ncol, o)  # W_mat, a small copy
        if self._pointwise:
            cols = xl.reshape(m, ncol)  # 1×1 kernel, stride 1: the input itself, no copy
            y = cols @ w
            if self.use_bias:
                y += self.params["bias"]
        else:
            self._rows = xl.shape[3] <= _ROW_MAX_CHANNELS
            self._direct = not self._rows and gemm.conv_applies(xl.dtype, o)
            if self._rows:
                cols, y = self._row_product(xl, win, keep=training)
            elif self._direct:
                cols, y = None, self._direct_forward(xl, win, w, training)
            else:
                if self.use_bias:
                    w = backend.xp.concatenate([w, self.params["bias"][None, :]])
                cols, y = self._product(xl, win, w, ncol, keep=training)
        self._cols, self._xl, self._wmat, self._n, self._fwin = cols, xl, w, n, win
        return as_nchw(y.reshape(n, win.Ho, win.Wo, o))

    def backward(self, grad_out, input_grad=True):
        xp = backend.xp
        win, o, n = self._fwin, self.out_channels, self._n
        c = self.input_shape[0]
        ncol = win.kh * win.kw * c
        g = channels_last(grad_out).reshape(-1, o)
        if not self._pointwise and self._rows:
            return self._row_backward(g, win, n, input_grad)
        if not self._pointwise and self._direct:
            return self._direct_backward(g.reshape(n, win.Ho, win.Wo, o), win, n, c, input_grad)
        if self._pointwise or self._cols is not None:
            return self._backward_kept(g, win, n, c, ncol, input_grad)
        # X_col again block by block (see _product): ∂L/∂W_mat = Σ_blocks X_colᵀ G, and
        # ∂L/∂X_col = G W_matᵀ followed by col2im, while the block is in cache
        hw = win.Ho * win.Wo
        per = self._per_block(hw, ncol + self.use_bias, g.itemsize)
        rows = min(per, n) * hw
        trainable = self._trainable
        if trainable:
            cols = self._column_block(rows, ncol, g.dtype)
            dwmat = xp.empty((ncol + self.use_bias, o), dtype=g.dtype)
        if input_grad:
            wt = self._wmat_t(ncol)
            dcols = _shared_temp((rows, ncol), g.dtype, "dcols")
            dx = xp.empty((n, win.H, win.W, c), dtype=g.dtype)
        for s in range(0, n, per):
            k = min(per, n - s)
            gb = g[s * hw:(s + k) * hw]
            if trainable:
                block = cols[:k * hw]
                windows.im2col(self._xl[s:s + k], block, win)
                gemm.matmul(block.T, gb, dwmat, accumulate=s > 0)
            if input_grad:
                part = dcols[:k * hw]
                gemm.matmul(gb, wt, part)
                windows.col2im(part, dx[s:s + k], win)
        if trainable:
            self._set_weight_grads(dwmat, win, c, o, ncol)
        return as_nchw(dx) if input_grad else None

    def _set_weight_grads(self, dwmat, win, c, o, ncol):
        """∂L/∂W from ∂L/∂W_mat (last row ∂L/∂b when the bias rides along)."""
        self.grads["weight"][...] = dwmat[:ncol].reshape(win.kh, win.kw, c, o).transpose(3, 2, 0, 1)
        if self.use_bias and not self._pointwise:
            self.grads["bias"][...] = dwmat[ncol]

    def _backward_kept(self, g, win, n, c, ncol, input_grad):
        """Backward from a whole X_col: x itself for a 1×1 stride-1 kernel, or the columns
        kept from forward."""
        xp = backend.xp
        o = self.out_channels
        if self._trainable:
            self._set_weight_grads(_matmul_tn_chunked(self._cols, g), win, c, o, ncol)  # X_colᵀ G
            if self.use_bias and self._pointwise:
                xp.matmul(xp.ones(g.shape[0], dtype=g.dtype), g, out=self.grads["bias"])
        if not input_grad:
            return None
        return self._input_grad(g, win, n, c, ncol)

    def _wmat_t(self, ncol: int):
        """W_matᵀ (O, kh·kw·C) of the forward, C-contiguous (the tile products need it so),
        for ∂L/∂X_col = G W_matᵀ."""
        return backend.xp.ascontiguousarray(self._wmat[:ncol].T)

    def _input_grad(self, g, win, n, c, ncol):
        """∂L/∂x from G (N·H_out·W_out, O): G W_matᵀ, then col2im block by block."""
        if self._pointwise:
            return as_nchw((g @ self._wmat_t(ncol)).reshape(n, win.H, win.W, c))
        dx = backend.xp.empty((n, win.H, win.W, c), dtype=g.dtype)
        self._input_grad_into(dx, g, win, ncol, 0, n)
        return as_nchw(dx)

    def _input_grad_into(self, dx, g, win, ncol: int, start: int, stop: int) -> None:
        """Samples start..stop−1 of ``_input_grad`` into dx (N, H, W, C)."""
        self._scatter_into(dx, g, self._wmat_t(ncol), win.Ho * win.Wo,
                           lambda block, d: windows.col2im(block, d, win), start, stop)

    def _scattered_products(self, g, m, win, per_sample: int, scatter):
        """∂L/∂x (N, C, H, W) from the rows of G (``per_sample`` rows per sample) times
        ``m``, block by block of samples (about ``_FUSE_BYTES``) in a shared temporary,
        each block added into ∂L/∂x by ``scatter(block, dx of the block's samples)``."""
        n, c = g.shape[0] // per_sample, self.input_shape[0]
        dx = backend.xp.empty((n, win.H, win.W, c), dtype=g.dtype)
        self._scatter_into(dx, g, m, per_sample, scatter, 0, n)
        return as_nchw(dx)

    def _scatter_into(self, dx, g, m, per_sample: int, scatter, start: int, stop: int) -> None:
        """Samples start..stop−1 of ``_scattered_products`` into dx (N, H, W, C)."""
        per = self._per_block(per_sample, m.shape[1], g.itemsize)
        temp = _shared_temp((min(per, stop - start) * per_sample, m.shape[1]), g.dtype, "dcols")
        for s in range(start, stop, per):
            k = min(per, stop - s)
            block = temp[:k * per_sample]
            gemm.matmul(g[s * per_sample:(s + k) * per_sample], m, block)
            scatter(block, dx[s:s + k])

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """Per-sample gradients for the Jacobian. With G (T, N, O, H_out, W_out) the
        cotangents and X_col,n the n-th sample's rows of X_col:
            ∂/∂W_mat [n, t] = X_col,nᵀ G_{t,n},   ∂/∂b [n, t] = Σ_{i,j} G_{t,n}[:, i, j],
        input cotangents col2im(G_t W_matᵀ) for each t."""
        xp = backend.xp
        win, o, n = self._fwin, self.out_channels, self._n
        c = self.input_shape[0]
        ncol, hw, t = win.kh * win.kw * c, win.Ho * win.Wo, grad_out.shape[0]
        g = grad_out.transpose(0, 1, 3, 4, 2)  # (T, N, H_out, W_out, O)
        dw = sink(prefix + "weight") if self._trainable else None
        db = sink(prefix + "bias") if self._trainable and self.use_bias else None
        if dw is not None or db is not None:
            cols = xp.empty((n * hw, ncol), dtype=grad_out.dtype)
            windows.im2col(self._xl, cols, win)
            for i in range(n):
                gi = g[:, i].reshape(t, hw, o)
                if dw is not None:
                    dwm = xp.matmul(cols[i * hw:(i + 1) * hw].T, gi)  # (T, ncol, O)
                    dw[i] = dwm.reshape(t, win.kh, win.kw, c, o).transpose(0, 4, 3, 1, 2)
                if db is not None:
                    db[i] = gi.sum(axis=1)
        if not input_grad:
            return None
        return xp.stack([self._input_grad(xp.ascontiguousarray(g[k]).reshape(-1, o), win, n, c, ncol)
                         for k in range(t)])

    def get_config(self):
        serialize = initializers.initializers.serialize
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
