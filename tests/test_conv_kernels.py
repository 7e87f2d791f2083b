"""The convolution and pooling kernels (bpnn._kernels.windows; numba and NumPy fallback)
against plain-loop references."""
from __future__ import annotations

import numpy as np
import pytest

from bpnn import _kernels
from bpnn._geometry import Window
from bpnn._kernels import windows as K

GEOMETRIES = [
    # N, C, H, W, kh, kw, stride (h, w), padding (top, left), dilation (h, w)
    (2, 1, 7, 8, 3, 3, (1, 1), (1, 1), (1, 1)),
    (3, 3, 9, 7, 3, 2, (2, 1), (1, 0), (2, 2)),
    (2, 4, 6, 6, 2, 2, (2, 2), (0, 0), (1, 1)),
    (1, 2, 5, 5, 5, 5, (1, 1), (2, 2), (1, 1)),
    (2, 5, 10, 11, 3, 4, (3, 2), (2, 1), (2, 1)),
    (1, 1, 6, 9, 4, 1, (1, 3), (0, 0), (1, 1)),
]


def _window(N, C, H, W, kh, kw, s, p, d):
    Ho = (H + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    Wo = (W + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    return Window(kh, kw, s[0], s[1], p[0], p[1], d[0], d[1], H, W, Ho, Wo)


def _reference_cols(x, win):
    n, H, W, c = x.shape
    cols = np.zeros((n, win.Ho, win.Wo, win.kh, win.kw, c), dtype=x.dtype)
    for ho in range(win.Ho):
        for wo in range(win.Wo):
            for i in range(win.kh):
                for k in range(win.kw):
                    h, w = ho * win.sh - win.ph + i * win.dh, wo * win.sw - win.pw + k * win.dw
                    if 0 <= h < H and 0 <= w < W:
                        cols[:, ho, wo, i, k, :] = x[:, h, w, :]
    return cols.reshape(n * win.Ho * win.Wo, -1)


@pytest.mark.parametrize("geom", GEOMETRIES, ids=[f"g{i}" for i in range(len(GEOMETRIES))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_and_its_adjoint_col2im(kernels, geom, dtype):
    rng = np.random.default_rng(0)
    win = _window(*geom)
    n, c = geom[0], geom[1]
    x = rng.standard_normal((n, win.H, win.W, c)).astype(dtype)
    ncol = win.kh * win.kw * c
    cols = np.full((n * win.Ho * win.Wo, ncol + 1), 7.0, dtype=dtype)  # one extra column
    K.im2col(x, cols, win)
    np.testing.assert_array_equal(cols[:, :ncol], _reference_cols(x, win))
    assert np.all(cols[:, ncol] == 7.0), "the column after kh·kw·C (the bias column) must be left alone"
    # col2im is the adjoint of im2col: <im2col(x), D> = <x, col2im(D)> for every D
    D = rng.standard_normal((len(cols), ncol)).astype(dtype)
    dx = np.full_like(x, np.nan)  # every entry must be written
    K.col2im(D, dx, win)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    assert np.vdot(cols[:, :ncol], D) == pytest.approx(np.vdot(x, dx), rel=tol)
    assert np.isfinite(dx).all()


def _reference_row_tiles(x, win, tl):
    n, H, W, c = x.shape
    a = np.zeros((n, win.Ho, tl.nt, win.kh, tl.span, c), dtype=x.dtype)
    for ho in range(win.Ho):
        for t in range(tl.nt):
            for i in range(win.kh):
                for j in range(tl.span):
                    h, w = ho * win.sh - win.ph + i * win.dh, t * tl.tile * win.sw - win.pw + j
                    if 0 <= h < H and 0 <= w < W:
                        a[:, ho, t, i, j, :] = x[:, h, w, :]
    return a.reshape(n * win.Ho * tl.nt, -1)


@pytest.mark.parametrize("geom", GEOMETRIES, ids=[f"g{i}" for i in range(len(GEOMETRIES))])
@pytest.mark.parametrize("tile", [1, 2, 3, 5])
def test_row_tiles_and_its_adjoint(kernels, geom, tile):
    rng = np.random.default_rng(2)
    win = _window(*geom)
    n, c = geom[0], geom[1]
    x = rng.standard_normal((n, win.H, win.W, c))
    tl = K.tiles_for(win, tile)
    assert tl.nt * tile >= win.Wo > (tl.nt - 1) * tile
    ncol = win.kh * tl.span * c
    a = np.full((n * win.Ho * tl.nt, ncol + 2), 7.0)  # extra columns: left alone
    K.im2col(x, a, tl.window)  # the row tiles: im2col over the tiles' window
    np.testing.assert_array_equal(a[:, :ncol], _reference_row_tiles(x, win, tl))
    assert np.all(a[:, ncol:] == 7.0)
    # col2im over the same window is its adjoint: <row tiles of x, D> = <x, col2im(D)> for every D
    D = rng.standard_normal((len(a), ncol))
    dx = np.full_like(x, np.nan)  # every entry must be written
    K.col2im(D, dx, tl.window)
    assert np.vdot(a[:, :ncol], D) == pytest.approx(np.vdot(x, dx), rel=1e-11)
    if tile == 1 and win.dw == 1:  # one output per tile: the rows of X_col
        np.testing.assert_array_equal(a[:, :ncol], _reference_cols(x, win))


POOL_GEOMETRIES = GEOMETRIES + [(2, 8, 6, 7, 2, 2, (2, 2), (1, 0), (1, 1)), (1, 6, 6, 6, 3, 3, (1, 1), (1, 1), (1, 1))]


# channels 1-4 and 8 take the vectorized loop of the max-pooling kernel, 5 and 6 the scalar one
@pytest.mark.parametrize("geom", POOL_GEOMETRIES, ids=[f"g{i}" for i in range(len(POOL_GEOMETRIES))])
def test_pooling_kernels_match_loop_references(kernels, geom):
    rng = np.random.default_rng(1)
    N, C, H, W, kh, kw, s, p, d = geom
    p = (min(p[0], (d[0] * (kh - 1) + 1) // 2), min(p[1], (d[1] * (kw - 1) + 1) // 2))
    win = _window(N, C, H, W, kh, kw, s, p, d)
    x = rng.standard_normal((N, H, W, C))
    out = np.empty((N, win.Ho, win.Wo, C))
    arg = np.empty(out.shape, np.uint8)
    K.max_pool(x, out, arg, win)
    avg_in, avg_ex = np.empty_like(out), np.empty_like(out)
    K.avg_pool(x, avg_in, win, True)
    K.avg_pool(x, avg_ex, win, False)
    g = rng.standard_normal(out.shape)
    dmax, dain, daex = (np.full_like(x, np.nan) for _ in range(3))
    K.max_pool_backward(g, arg, dmax, win)
    K.avg_pool_backward(g, dain, win, True)
    K.avg_pool_backward(g, daex, win, False)
    ref_dmax, ref_dain, ref_daex = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for ho in range(win.Ho):
        for wo in range(win.Wo):
            taps = [(i, k, ho * win.sh - win.ph + i * win.dh, wo * win.sw - win.pw + k * win.dw)
                    for i in range(kh) for k in range(kw)]
            inside = [(i, k, h, w) for i, k, h, w in taps if 0 <= h < H and 0 <= w < W]
            vals = np.stack([x[:, h, w, :] for _, _, h, w in inside], axis=-1)
            best = vals.argmax(axis=-1)
            np.testing.assert_array_equal(out[:, ho, wo], vals.max(axis=-1))
            np.testing.assert_array_equal(arg[:, ho, wo], [[inside[b][0] * kw + inside[b][1] for b in row]
                                                           for row in best])
            np.testing.assert_allclose(avg_in[:, ho, wo], vals.sum(axis=-1) / (kh * kw))
            np.testing.assert_allclose(avg_ex[:, ho, wo], vals.mean(axis=-1))
            for j, (_, _, h, w) in enumerate(inside):
                ref_dmax[:, h, w, :] += g[:, ho, wo] * (best == j)
                ref_dain[:, h, w, :] += g[:, ho, wo] / (kh * kw)
                ref_daex[:, h, w, :] += g[:, ho, wo] / len(inside)
    np.testing.assert_allclose(dmax, ref_dmax, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dain, ref_dain, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(daex, ref_daex, rtol=1e-12, atol=1e-14)


def test_max_pool_ties_go_to_the_first_position_in_scan_order(kernels):
    win = Window(2, 2, 2, 2, 0, 0, 1, 1, 2, 4, 1, 2)
    x = np.array([[[1., 1.], [3., 3.]], [[3., 3.], [3., 3.]]]).reshape(1, 2, 4, 1)
    out, arg = np.empty((1, 1, 2, 1)), np.empty((1, 1, 2, 1), np.uint8)
    K.max_pool(x, out, arg, win)
    assert arg.ravel().tolist() == [2, 0]  # (1, 0) in the first window; (0, 0) in the second


def test_the_switch_selects_the_numpy_fallback(monkeypatch):
    pytest.importorskip("numba")
    calls = []
    monkeypatch.setattr(K, "_im2col", lambda *args: calls.append(1) or pytest.fail("numba path taken"))
    before = _kernels.enabled()
    try:
        _kernels.set_enabled(False)
        x = np.ones((1, 3, 3, 1))
        K.im2col(x, np.empty((1, 9)), Window(3, 3, 1, 1, 0, 0, 1, 1, 3, 3, 1, 1))
    finally:
        _kernels.set_enabled(before)
    assert not calls
