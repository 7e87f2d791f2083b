"""MaxPool2D, AvgPool2D and GlobalAvgPool2D: hand-worked examples, ties, padding, errors."""
from __future__ import annotations

import numpy as np
import pytest

from bpnn.nn import AvgPool2D, GlobalAvgPool2D, MaxPool2D, layers


def _built(layer, shape):
    layer.build(shape, 0, np.float64)
    return layer


def test_max_pool_hand_worked_example(kernels):
    x = np.array([[1., 5., 2., 0.],
                  [3., 4., 8., 1.],
                  [0., 2., 7., 7.],
                  [6., 1., 7., 3.]]).reshape(1, 1, 4, 4)
    pool = _built(MaxPool2D(2), (1, 4, 4))
    np.testing.assert_array_equal(pool.forward(x)[0, 0], [[5., 8.], [6., 7.]])
    g = pool.backward(np.array([[[[10., 20.], [30., 40.]]]]))
    # each window's gradient goes to its maximum; the 7s tie: the first in scan order wins
    np.testing.assert_array_equal(g[0, 0], [[0, 10, 0, 0], [0, 0, 20, 0], [0, 0, 40, 0], [30, 0, 0, 0]])


def test_overlapping_windows_sum_their_gradients_and_padding_never_wins(kernels):
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # all negative: a zero from padding would win
    pool = _built(MaxPool2D(3, stride=1, padding=1), (1, 3, 3))
    y = pool.forward(x)
    np.testing.assert_array_equal(y[0, 0], [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])
    g = pool.backward(np.ones_like(y))
    np.testing.assert_array_equal(g[0, 0], [[4, 2, 0], [2, 1, 0], [0, 0, 0]])
    assert g.sum() == y.size


def test_avg_pool_hand_worked_example(kernels):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    pool = _built(AvgPool2D(2), (1, 4, 4))
    np.testing.assert_array_equal(pool.forward(x)[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(pool.backward(np.full((1, 1, 2, 2), 4.0)), np.ones((1, 1, 4, 4)))
    # padding with count_include_pad (PyTorch's default) divides corners by 9; without it, by 4
    inc = _built(AvgPool2D(3, stride=1, padding=1), (1, 4, 4)).forward(np.ones((1, 1, 4, 4)))
    exc = _built(AvgPool2D(3, stride=1, padding=1, count_include_pad=False), (1, 4, 4)).forward(np.ones((1, 1, 4, 4)))
    assert inc[0, 0, 0, 0] == pytest.approx(4 / 9) and inc[0, 0, 1, 1] == 1.0
    np.testing.assert_array_equal(exc, np.ones((1, 1, 4, 4)))


def test_global_avg_pool():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    gap = _built(GlobalAvgPool2D(), (3, 4, 5))
    np.testing.assert_allclose(gap.forward(x), x.mean(axis=(2, 3)))
    assert gap.output_shape == (3,)
    g = gap.backward(np.ones((2, 3)))
    assert g.shape == x.shape and np.allclose(g, 1 / 20)
    # any map size, as torch's AdaptiveAvgPool2d(1)
    assert gap.forward(np.ones((1, 3, 2, 2))).shape == (1, 3)


def test_stride_defaults_to_the_kernel_and_config_round_trips():
    pool = MaxPool2D((2, 3))
    assert pool.stride == (2, 3)
    for layer in (MaxPool2D(3, stride=2, padding=1, dilation=2), AvgPool2D(2, count_include_pad=False),
                  GlobalAvgPool2D()):
        clone = layers.get(layers.serialize(layer))
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()


def test_output_keeps_the_channels_last_layout_and_accepts_either_layout(kernels):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6))
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    for pool in (MaxPool2D(2), AvgPool2D(3, stride=1, padding=1)):
        pool = _built(pool, (3, 6, 6))
        a, b = pool.forward(x), pool.forward(x_cl)
        np.testing.assert_array_equal(a, b)
        assert b.transpose(0, 2, 3, 1).flags.c_contiguous


@pytest.mark.parametrize("make,match", [
    (lambda: MaxPool2D(0), r"kernel_size: got 0"),
    (lambda: MaxPool2D(2, stride=-1), r"stride: got -1"),
    (lambda: MaxPool2D(2, padding=2), r"padding: got 2; padding must be at most half the \(dilated\) kernel"),
    (lambda: AvgPool2D(3, padding=(1, 2)), r"padding: got \(1, 2\); .*at most half"),
    (lambda: AvgPool2D(2, count_include_pad=1), r"count_include_pad: got 1; expected True or False"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_input():
    pool = _built(MaxPool2D(2), (3, 6, 6))
    with pytest.raises(ValueError, match=r"x: MaxPool2D expects a 4-d input \(N, C, H, W\)"):
        pool.forward(np.zeros((3, 6, 6)))
    with pytest.raises(ValueError, match=r"x: MaxPool2D was built for 3 input channels but got an input with 6"):
        pool.forward(np.zeros((1, 6, 6, 3)))
    with pytest.raises(ValueError, match=r"x: AvgPool2D needs images of at least 3×3 after padding"):
        _built(AvgPool2D(3), (1, 2, 5))
    gap = _built(GlobalAvgPool2D(), (3, 4, 4))
    with pytest.raises(ValueError, match=r"GlobalAvgPool2D was built for 3 input channels but got an input with 4"):
        gap.forward(np.zeros((2, 4, 4, 3)))
