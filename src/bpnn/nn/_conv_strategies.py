"""How :class:`bpnn.nn.Conv2D` computes: four strategies, and the buffers they keep.

Conv2D states the math (Y = X_col W_mat + b and its gradients) and picks one strategy
per forward (``Conv2D._choose``); the strategy's instance keeps what its backward reads.

- :class:`Pointwise` — a 1×1 kernel with stride 1 and no padding: X_col is x itself.
- :class:`RowTiles` — few input channels: a product over tiles of input rows with a
  banded (Toeplitz) weight matrix, which moves far less data than X_col.
- :class:`Direct` — register-tile kernels available (numba, any vector width) and O a
  multiple of their vector width (within the width's limit): the padded input is
  convolved in place, no X_col at all.
- :class:`Im2col` — otherwise: X_col W_mat, X_col filled and multiplied a few samples
  at a time while they are in cache.

The layer works channels-last: its output is an (N, H, W, O) C-contiguous array, which
Conv2D returns as the (N, O, H, W) view. X_col carries a last column of ones and W_mat
a last row b, so the forward product adds the bias and X_colᵀ G gives ∂L/∂b as its
last row. Arrays reused across calls come from one mechanism, :class:`Buffers`: one per
layer for what it keeps across steps, and one per thread shared by every layer for
blocks that live only within one call. The measurements behind the thresholds below
are in ``benchmarks/README.md``.
"""
from __future__ import annotations

import threading

from .. import backend
from .._geometry import extent
from .._kernels import gemm, parallel, windows
from ._images import as_nchw

#: Size of the blocks of X_col (and ∂L/∂X_col) that are filled and multiplied while
#: they are in cache.
FUSE_BYTES = 1 << 20

#: Largest X_col (bytes) kept from forward for backward; larger ones are filled again,
#: block by block, in backward (writing a large X_col out and reading it back costs more).
KEEP_BYTES = 6 << 20

#: Row blocks of X_colᵀ G for a whole kept X_col with at most BLOCK_MAX_COLUMNS output
#: columns: OpenBLAS handles a tall X_col times a narrow G poorly when X_col does not
#: fit in cache, and well in blocks of this size.
BLOCK_BYTES = 1 << 18
BLOCK_MAX_COLUMNS = 16

#: Inputs with at most this many channels take the row-tile product (:class:`RowTiles`)
#: instead of im2col: for more channels X_col's runs are long enough, and the banded
#: matrix's extra multiplications cost more than the data they save.
ROW_MAX_CHANNELS = 6


# ----------------------------------------------------------------------------- buffers
class Buffers:
    """Arrays kept across calls under names (one flat array each, viewed in the shape
    asked for): reallocated when too small or of another dtype, and prepared by
    ``fill`` only when the array is new or the (shape, ``layout``) asked for differs
    from the last time (e.g. the zero border of a padded copy is written once)."""

    def __init__(self):
        self._arrays: dict = {}
        self._layouts: dict = {}

    def get(self, name, shape, dtype, fill=None, layout=None):
        size = 1
        for d in shape:
            size *= d
        buf = self._arrays.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = backend.xp.empty(size, dtype=dtype)
            self._arrays[name] = buf
            self._layouts.pop(name, None)
        view = buf[:size].reshape(shape)
        if fill is not None and self._layouts.get(name) != (tuple(shape), layout):
            fill(view)
            self._layouts[name] = (tuple(shape), layout)
        return view

    def array(self, name):
        """The whole array kept under ``name``."""
        return self._arrays[name]

    def __contains__(self, name) -> bool:
        return name in self._arrays

    def __len__(self) -> int:
        return len(self._arrays)


_SHARED = threading.local()


def shared_buffers() -> Buffers:
    """The temporaries shared by every Conv2D of this thread (threads, e.g. joblib's
    threading backend for restarts, each get their own): blocks of X_col and of
    ∂L/∂X_col live only within one layer call, so one buffer serves all layers (and is
    not touched for the first time again by every new model)."""
    buffers = getattr(_SHARED, "buffers", None)
    if buffers is None:
        buffers = _SHARED.buffers = Buffers()
    return buffers


def _temporary(name: str, shape, dtype):
    """The shared temporary ``name`` for arrays of ``dtype`` on the current backend."""
    xp = backend.xp
    return shared_buffers().get((name, xp.__name__, xp.dtype(dtype).str), shape, dtype)


def _fill_ones_column(column: int):
    def fill(buf):
        buf[:, column] = 1

    return fill


def _zero(buf):
    buf[...] = 0


def _per_block(per_sample: int, width: int, itemsize: int) -> int:
    """Samples per block of X_col (about FUSE_BYTES)."""
    return max(1, FUSE_BYTES // (per_sample * width * itemsize))


def _block_rows(a, n_out: int) -> int:
    if n_out > BLOCK_MAX_COLUMNS:
        return a.shape[0]
    return max(256, BLOCK_BYTES // ((a.shape[1] + n_out) * a.itemsize))


def _matmul_tn_chunked(a, g):
    """aᵀ @ g, summed over row blocks of ``a`` and ``g``."""
    rows = _block_rows(a, g.shape[1])
    out = backend.xp.empty((a.shape[1], g.shape[1]), dtype=g.dtype)
    for s in range(0, a.shape[0], rows):
        gemm.matmul(a[s:s + rows].T, g[s:s + rows], out, accumulate=s > 0)
    return out


def _row_tile(wo: int, o: int) -> int:
    """Outputs per tile of the row-tile product. With at least 8 output channels, 2 (or
    W_out if smaller): the tile's 2·O columns fill the product's vectors, and every
    output more per tile adds kh·s_w·C multiply-adds per output row for nothing (faster
    than 4–8 at both vector widths, as measured in benchmarks/README.md). With fewer
    channels a divisor of W_out from 8 down to 4 (no outputs past the image), else 6 (or
    W_out if smaller): 1 output per tile would be im2col with a vector mostly empty."""
    if o >= 8:
        return min(2, wo)
    for t in (8, 7, 6, 5, 4):
        if wo % t == 0:
            return t
    return min(6, wo)


# ----------------------------------------------------------------------------- strategies
class Strategy:
    """One way to run Conv2D. Each forward makes an instance (``Conv2D._strategy``) that
    keeps what the backward of that forward reads: the channels-last input ``xl``, the
    window ``win``, W_mat (``wmat``, (kh·kw·C, O)) and, where kept, X_col (``cols``).
    The layer is passed to each call, not kept (no reference cycle holds a model)."""

    def __init__(self, xl, win, wmat):
        self.xl, self.win, self.wmat = xl, win, wmat
        self.n = xl.shape[0]
        self.cols = None

    def forward(self, layer, training: bool):
        """Y as (N·H_out·W_out, O), channels-last."""
        raise NotImplementedError

    def backward(self, layer, g, input_grad: bool):
        """∂L/∂x (N, C, H, W) or None, from G (N·H_out·W_out, O); the parameter gradients
        into the layer's ``grads``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared pieces
    @property
    def ncol(self) -> int:
        return self.wmat.shape[0]

    @staticmethod
    def _kept_slot(layer, prefix: str = "cols") -> str:
        """The name of the buffer this forward keeps for backward: one per use of the
        layer object in the model (see ``Module._uses``), since a second forward must
        not overwrite what the first one's backward still needs."""
        slot = layer._calls % layer._uses
        layer._calls += 1
        return f"{prefix}{slot}"

    def _kept_columns(self, layer, rows: int, ncol: int, dtype):
        """A buffer kept across steps for X_col (rows, ncol + bias), the bias column of
        ones in place (written once per buffer and shape)."""
        bias = layer.use_bias
        return layer._buffers.get(self._kept_slot(layer), (rows, ncol + bias), dtype,
                                  fill=_fill_ones_column(ncol) if bias else None)

    @staticmethod
    def _column_block(use_bias: bool, rows: int, ncol: int, dtype):
        """The shared block of X_col, (rows, ncol + bias), with the bias column of ones
        (written every time: other layers use the block too)."""
        buf = _temporary("cols", (rows, ncol + use_bias), dtype)
        if use_bias:
            buf[:, ncol] = 1
        return buf

    def _set_weight_grads(self, layer, dwmat, bias_row: bool) -> None:
        """∂L/∂W from ∂L/∂W_mat, and ∂L/∂b from its last row when the bias rides along."""
        win, ncol, grads = self.win, self.ncol, layer.grads
        c, o = self.xl.shape[3], self.wmat.shape[1]
        grads["weight"][...] = dwmat[:ncol].reshape(win.kh, win.kw, c, o).transpose(3, 2, 0, 1)
        if bias_row:
            grads["bias"][...] = dwmat[ncol]

    def _wmat_t(self):
        """W_matᵀ (O, kh·kw·C) of the forward, C-contiguous (the tile products need it so),
        for ∂L/∂X_col = G W_matᵀ."""
        return backend.xp.ascontiguousarray(self.wmat.T)

    def input_grad(self, g):
        """∂L/∂x (N, C, H, W) from G (N·H_out·W_out, O): G W_matᵀ, then col2im, block by
        block of samples."""
        win = self.win
        dx = backend.xp.empty((self.n, win.H, win.W, self.xl.shape[3]), dtype=g.dtype)
        self._input_grad_into(dx, g, 0, self.n)
        return as_nchw(dx)

    def _input_grad_into(self, dx, g, start: int, stop: int) -> None:
        """Samples start..stop−1 of :meth:`input_grad` into dx (N, H, W, C)."""
        win = self.win
        _scatter_into(dx, g, self._wmat_t(), win.Ho * win.Wo, lambda block, d: windows.col2im(block, d, win),
                      start, stop)


def _scattered_products(g, m, win, n: int, c: int, per_sample: int, scatter):
    """∂L/∂x (N, C, H, W) from the rows of G (``per_sample`` rows per sample) times ``m``,
    block by block of samples (about FUSE_BYTES) in a shared temporary, each block
    added into ∂L/∂x by ``scatter(block, dx of the block's samples)``."""
    dx = backend.xp.empty((n, win.H, win.W, c), dtype=g.dtype)
    _scatter_into(dx, g, m, per_sample, scatter, 0, n)
    return as_nchw(dx)


def _scatter_into(dx, g, m, per_sample: int, scatter, start: int, stop: int) -> None:
    """Samples start..stop−1 of :func:`_scattered_products` into dx (N, H, W, C)."""
    per = _per_block(per_sample, m.shape[1], g.itemsize)
    temp = _temporary("dcols", (min(per, stop - start) * per_sample, m.shape[1]), g.dtype)
    for s in range(start, stop, per):
        k = min(per, stop - s)
        block = temp[:k * per_sample]
        gemm.matmul(g[s * per_sample:(s + k) * per_sample], m, block)
        scatter(block, dx[s:s + k])


class Pointwise(Strategy):
    """1×1 kernel, stride 1, no padding: every pixel is read once, and X_col is x itself
    (no copy)."""

    def forward(self, layer, training):
        self.cols = self.xl.reshape(-1, self.ncol)
        y = self.cols @ self.wmat
        if layer.use_bias:
            y += layer.params["bias"]
        return y

    def backward(self, layer, g, input_grad):
        xp = backend.xp
        if layer._trainable and not layer.output_grad_only:
            self._set_weight_grads(layer, _matmul_tn_chunked(self.cols, g), bias_row=False)  # X_colᵀ G
            if layer.use_bias:
                xp.matmul(xp.ones(g.shape[0], dtype=g.dtype), g, out=layer.grads["bias"])
        if not input_grad:
            return None
        return self.input_grad(g)

    def input_grad(self, g):
        win = self.win
        return as_nchw((g @ self._wmat_t()).reshape(self.n, win.H, win.W, self.xl.shape[3]))


class Im2col(Strategy):
    """Y = X_col W_mat, X_col filled and multiplied block by block of samples while the
    block is in cache.

    In training an X_col of at most KEEP_BYTES goes to a buffer kept across steps for
    backward (one per use of the layer in the model). A larger X_col (9× the input for
    a 3×3 kernel) is not kept: its blocks live in a temporary shared by all layers, and
    backward fills them again, which costs less than writing X_col out and reading it
    back."""

    def forward(self, layer, training):
        xp, xl, win, ncol = backend.xp, self.xl, self.win, self.ncol
        w = self.wmat
        if layer.use_bias:
            w = xp.concatenate([w, layer.params["bias"][None, :]])
        n, hw, o = self.n, win.Ho * win.Wo, w.shape[1]
        m = n * hw
        per = _per_block(hw, ncol + layer.use_bias, xl.itemsize)
        keep = training and m * (ncol + layer.use_bias) * xl.itemsize <= KEEP_BYTES
        if keep:
            buf = self._kept_columns(layer, m, ncol, xl.dtype)
        else:
            buf = self._column_block(layer.use_bias, min(per, n) * hw, ncol, xl.dtype)
        y = xp.empty((m, o), dtype=xl.dtype)
        for s in range(0, n, per):
            k = min(per, n - s)
            rows = slice(s * hw, (s + k) * hw)
            cols = buf[rows] if keep else buf[:k * hw]
            windows.im2col(xl[s:s + k], cols, win)
            gemm.matmul(cols, w, y[rows])
        self.cols = buf if keep else None
        return y

    def backward(self, layer, g, input_grad):
        if self.cols is not None:
            if layer._trainable and not layer.output_grad_only:
                self._set_weight_grads(layer, _matmul_tn_chunked(self.cols, g), bias_row=layer.use_bias)  # X_colᵀ G
            return self.input_grad(g) if input_grad else None
        return self._refilled_backward(layer, g, input_grad)

    def _refilled_backward(self, layer, g, input_grad):
        """X_col again block by block (see the class docstring): ∂L/∂W_mat = Σ_blocks
        X_colᵀ G, and ∂L/∂X_col = G W_matᵀ followed by col2im, while the block is in cache."""
        xp, win, n, ncol = backend.xp, self.win, self.n, self.ncol
        o, c = self.wmat.shape[1], self.xl.shape[3]
        hw = win.Ho * win.Wo
        per = _per_block(hw, ncol + layer.use_bias, g.itemsize)
        rows = min(per, n) * hw
        trainable = layer._trainable and not layer.output_grad_only
        if trainable:
            cols = self._column_block(layer.use_bias, rows, ncol, g.dtype)
            dwmat = xp.empty((ncol + layer.use_bias, o), dtype=g.dtype)
        if input_grad:
            wt = self._wmat_t()
            dcols = _temporary("dcols", (rows, ncol), g.dtype)
            dx = xp.empty((n, win.H, win.W, c), dtype=g.dtype)
        for s in range(0, n, per):
            k = min(per, n - s)
            gb = g[s * hw:(s + k) * hw]
            if trainable:
                block = cols[:k * hw]
                windows.im2col(self.xl[s:s + k], block, win)
                gemm.matmul(block.T, gb, dwmat, accumulate=s > 0)
            if input_grad:
                part = dcols[:k * hw]
                gemm.matmul(gb, wt, part)
                windows.col2im(part, dx[s:s + k], win)
        if trainable:
            self._set_weight_grads(layer, dwmat, bias_row=layer.use_bias)
        return as_nchw(dx) if input_grad else None


class RowTiles(Strategy):
    r"""Y for few input channels, as a product over row tiles.

    X_col of an image with few channels is kh·kw times the image and slow to fill (runs
    of kw·C values). Instead, each row of A holds the kh input rows under a tile of
    ``tile`` consecutive outputs of one output row, ``span`` values each (im2col over
    the tiles' window, :class:`bpnn._kernels.windows.Tiles`), and a banded (Toeplitz)
    matrix T, (kh·span·C + bias, tile·O), computes the tile's outputs at once:
        Y_tiles = A T,   ∂L/∂T = Aᵀ G_tiles,
        ∂L/∂W[o, c, i, k] = Σ_u ∂L/∂T[(i, u·s_w + k·d_w, c), (u, o)],
    where G_tiles is G (N, H_out, W_out, O) seen as (N·H_out·nt, tile·O). The product
    does span/kw times the multiplications of X_col W_mat but moves far less data. A is
    kept for backward under the same rule as X_col (KEEP_BYTES); otherwise it is filled
    and multiplied block by block of samples, here and again in backward. ∂L/∂x is the
    adjoint of the row tiles (col2im over the tiles' window) of G_tiles Tᵀ.
    """

    def forward(self, layer, training):
        xp, xl, win = backend.xp, self.xl, self.win
        tl, dst = self._plan(layer)
        n, o, dtype = self.n, layer.out_channels, xl.dtype
        kcols, per_sample = win.kh * tl.span * xl.shape[3], win.Ho * tl.nt
        keep = training and n * per_sample * (kcols + layer.use_bias) * xl.itemsize <= KEEP_BYTES
        t = self.t = self._toeplitz(layer, tl, dst, kcols, dtype)  # kept for ∂L/∂x in backward
        y = xp.empty((n * per_sample, tl.tile * o), dtype=dtype)
        a = self._kept_columns(layer, n * per_sample, kcols, dtype) if keep else None
        for rows, block in self._blocks(layer.use_bias, tl, kcols, a):
            gemm.matmul(block, t, y[rows])
        y = y.reshape(n, win.Ho, tl.nt * tl.tile, o)
        if tl.nt * tl.tile != win.Wo:  # the last tile reached past the image: drop its extra outputs
            y = xp.ascontiguousarray(y[:, :, :win.Wo])
        self.cols = a
        return y.reshape(-1, o)

    def backward(self, layer, g, input_grad):
        xp, win, n = backend.xp, self.win, self.n
        tl, dst = self._plan(layer)
        o, c = layer.out_channels, self.xl.shape[3]
        kcols, per_sample = win.kh * tl.span * c, win.Ho * tl.nt
        if tl.nt * tl.tile != win.Wo:  # zero gradient for the outputs past the image
            gp = xp.zeros((n, win.Ho, tl.nt * tl.tile, o), dtype=g.dtype)
            gp[:, :, :win.Wo] = g.reshape(n, win.Ho, win.Wo, o)
            g = gp
        g = g.reshape(-1, tl.tile * o)
        if layer._trainable and not layer.output_grad_only:
            self._weight_grads(layer, g, tl, dst, kcols)
        if not input_grad:
            return None
        tt = xp.ascontiguousarray(self.t[:kcols].T)  # T of the forward (the weights have not changed since)
        return _scattered_products(g, tt, win, n, c, per_sample,
                                   lambda block, dx: windows.col2im(block, dx, tl.window))

    def _plan(self, layer):
        """(tiles, index map) of the row-tile product over images of the window's size,
        cached per window in the layer.

        The index map ``dst`` (tile, O·C·kh·kw) gives, for output column u of a tile and
        each weight entry in OIHW order, its place in the flat Toeplitz matrix T:
        T[(i, u·s_w + k·d_w, c), (u, o)] = W[o, c, i, k]."""
        win = self.win
        plan = layer._row_plans.get(win)
        if plan is None:
            xp = backend.xp
            tl = windows.tiles_for(win, _row_tile(win.Wo, layer.out_channels))
            o, c, kh, kw = layer.params["weight"].shape
            u, oo, cc, i, k = xp.ogrid[:tl.tile, :o, :c, :kh, :kw]
            dst = ((i * tl.span + u * win.sw + k * win.dw) * c + cc) * (tl.tile * o) + u * o + oo
            plan = layer._row_plans[win] = (tl, dst.reshape(tl.tile, -1))
        return plan

    def _blocks(self, use_bias: bool, tl, kcols, a=None):
        """Yields (rows, block of A) over the batch, each block filled when it is yielded:
        all of ``a`` at once when given (kept), else blocks of a few samples (about
        FUSE_BYTES) in the shared temporary."""
        xl, win = self.xl, self.win
        n, per_sample = self.n, win.Ho * tl.nt
        per = n if a is not None else _per_block(per_sample, kcols + use_bias, xl.itemsize)
        if a is None:
            a = self._column_block(use_bias, min(per, n) * per_sample, kcols, xl.dtype)
        for s in range(0, n, per):
            k = min(per, n - s)
            block = a[:k * per_sample]
            windows.im2col(xl[s:s + k], block, tl.window)
            yield slice(s * per_sample, (s + k) * per_sample), block

    @staticmethod
    def _toeplitz(layer, tl, dst, kcols, dtype):
        """T from the current weights (and the bias as its last row)."""
        o = layer.out_channels
        t = backend.xp.zeros((kcols + layer.use_bias, tl.tile * o), dtype=dtype)
        t.reshape(-1)[dst] = layer.params["weight"].reshape(1, -1)
        if layer.use_bias:
            t[kcols].reshape(tl.tile, o)[...] = layer.params["bias"]
        return t

    def _weight_grads(self, layer, g, tl, dst, kcols):
        """∂L/∂W and ∂L/∂b from G_tiles (N·H_out·nt, tile·O) and A."""
        xp = backend.xp
        o = layer.out_channels
        dt = xp.empty((kcols + layer.use_bias, tl.tile * o), dtype=g.dtype)
        if self.cols is not None:
            gemm.matmul(self.cols.T, g, dt)
        else:
            for rows, block in self._blocks(layer.use_bias, tl, kcols):
                gemm.matmul(block.T, g[rows], dt, accumulate=rows.start > 0)
        layer.grads["weight"][...] = dt.reshape(-1)[dst].sum(axis=0).reshape(layer.grads["weight"].shape)
        if layer.use_bias:
            layer.grads["bias"][...] = dt[kcols].reshape(tl.tile, o).sum(axis=0)


class Direct(Strategy):
    r"""Y straight from the padded input, no X_col (:func:`bpnn._kernels.gemm.conv`):
    for each output row, tiles of outputs × vectors of output channels accumulate, for
    every kernel position, the input channels under it times that position's rows of
    W_mat. The padded input is kept for backward, in a buffer whose zero border is
    written once per geometry (one buffer per use of the layer in training).

    Backward, from G (N, H_out, W_out, O):
        ∂L/∂W_mat[(t, c), :] = Σ over outputs of x̃ under position t, channel c, times G,
    and, with stride 1 and C a multiple of the vector width, ∂L/∂x as the forward
    convolution of G̃, G padded by (k − 1)·d − p, with the flipped kernel:
        ∂L/∂x[n, h, w] = Σ_{i, k} G̃[n, h + i·d_h, w + k·d_w] W[:, :, kh−1−i, kw−1−k],
    else G W_matᵀ and col2im (as :meth:`Strategy.input_grad`). With stride 1 and "same"
    padding G̃ lies on the padded input's grid (rows as wide, zeros between G's rows),
    and ∂L/∂W is one long product per image and kernel position over it
    (:func:`bpnn._kernels.gemm.conv_weight_grad_flat`) instead of one per output row.
    Long calls split the batch between threads, each part padding its samples, then
    computing their share (:func:`bpnn._kernels.parallel.split_samples`).
    """

    @staticmethod
    def applies(dtype, out_channels: int) -> bool:
        """Whether the register-tile kernels run here and O fills their vectors (within
        the limit of this vector width, :func:`bpnn._kernels.gemm.conv_applies`)."""
        return gemm.conv_applies(dtype, out_channels)

    def forward(self, layer, training):
        xl, win, n = self.xl, self.win, self.n
        hp, wp = win.padded_shape
        xpad = _padded(layer, self._kept_slot(layer, "pad") if training else "pad", xl, win.ph, win.pw, hp, wp)
        taps = _tap_offsets(layer, win.kh, win.kw, win.dh, win.dw, xpad.shape[2], xl.shape[3])
        y = backend.xp.empty((n, win.Ho, win.Wo, layer.out_channels), dtype=xl.dtype)
        w = backend.xp.ascontiguousarray(self.wmat)

        def part(a, b):  # samples a..b−1: pad them, convolve them
            _place(xpad, xl, win.ph, win.pw, a, b)
            gemm.conv(xpad[a:b], taps, w, y[a:b], win.sh, win.sw)

        parallel.split_samples(n, part, y.size * taps.size * xl.shape[3])
        if layer.use_bias:
            y += layer.params["bias"]
        self.xpad, self.taps = xpad, taps
        return y.reshape(-1, layer.out_channels)

    def backward(self, layer, g, input_grad):
        xp, win, n = backend.xp, self.win, self.n
        o, c, xpad = layer.out_channels, self.xl.shape[3], self.xpad
        g = g.reshape(n, win.Ho, win.Wo, o)
        top, left = (win.kh - 1) * win.dh - win.ph, (win.kw - 1) * win.dw - win.pw
        # G̃: the extent that H × W stride-1 windows read (the correlation producing ∂L/∂x)
        hg, wg = extent(win.H, 1, win.kh, win.dh), extent(win.W, 1, win.kw, win.dw)
        stride1 = (win.sh, win.sw) == (1, 1)
        on_grid = (stride1 and wg == xpad.shape[2] and 0 <= top and top + win.Ho <= hg
                   and 0 <= left and left + win.Wo <= wg)
        dx_direct = input_grad and stride1 and gemm.conv_applies(g.dtype, c)
        trainable = layer._trainable and not layer.output_grad_only
        gpad = _padded(layer, "gpad", g, top, left, hg, wg) if dx_direct or (on_grid and trainable) else None
        on_grid = on_grid and gpad is not None and gpad.shape[2] == wg  # (G itself when it needs no padding)
        taps = self.taps
        dx = xp.empty((n, win.H, win.W, c), dtype=g.dtype) if input_grad else None
        if dx_direct:
            wf = xp.ascontiguousarray(layer.params["weight"][:, :, ::-1, ::-1].transpose(2, 3, 0, 1)).reshape(-1, c)
            taps_g = _tap_offsets(layer, win.kh, win.kw, win.dh, win.dw, gpad.shape[2], o)

        def part(a, b):  # samples a..b−1: their G̃, their share of ∂L/∂W, their ∂L/∂x
            if gpad is not None:
                _place(gpad, g, top, left, a, b)
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
                self._input_grad_into(dx, g.reshape(-1, o), a, b)
            return dw

        parts = parallel.split_samples(n, part, g.size * taps.size * c * (1 + input_grad))
        if trainable:
            dw = parts[0]
            for extra in parts[1:]:
                dw += extra
            layer.grads["weight"][...] = dw.reshape(win.kh, win.kw, c, o).transpose(3, 2, 0, 1)
            if layer.use_bias:
                layer.grads["bias"][...] = g.reshape(-1, o).sum(axis=0)
        return as_nchw(dx) if input_grad else None


def _padded(layer, name: str, src, top: int, left: int, hp: int, wp: int):
    """The (N, hp, wp, C) buffer of ``layer`` kept under ``name`` that :func:`_place` fills
    with src (N, h, w, C) at (top, left), its border zero (written once per buffer and
    geometry); src itself when it needs no padding."""
    n, h, w, c = src.shape
    if top == 0 and left == 0 and hp <= h and wp <= w:
        return src
    return layer._buffers.get(name, (n, hp, wp, c), src.dtype, fill=_zero, layout=(src.dtype.str, top, left, h, w))


def _place(buf, src, top: int, left: int, a: int, b: int) -> None:
    """Samples a..b−1 of src into a padded buffer at (top, left); rows and columns that
    fall outside are dropped (no window reads them)."""
    if buf is src:
        return
    h, w = src.shape[1:3]
    r0, r1 = max(0, -top), min(h, buf.shape[1] - top)
    c0, c1 = max(0, -left), min(w, buf.shape[2] - left)
    buf[a:b, top + r0:top + r1, left + c0:left + c1] = src[a:b, r0:r1, c0:c1]


def _tap_offsets(layer, kh: int, kw: int, dh: int, dw: int, width: int, c: int):
    """Element offsets of the kernel positions (i, k), row-major, from a window's corner
    in a channels-last image of ``width`` columns and ``c`` channels (cached per layer)."""
    key = (kh, kw, dh, dw, width, c)
    taps = layer._taps.get(key)
    if taps is None:
        xp = backend.xp
        i, k = xp.ogrid[:kh, :kw]
        taps = layer._taps[key] = ((i * dh * width + k * dw) * c).reshape(-1).astype(xp.int64)
    return taps
