"""Conv2D: shapes, configuration, initialization fans, memory layout, buffer reuse, weight
sharing, and clear errors for bad input."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import bpnn
from bpnn.nn import (
    BatchNorm, Conv2D, Dense, Flatten, GlobalAvgPool2D, MaxPool2D, ReLU, Residual, Sequential, Tanh, layers,
)

pytestmark = pytest.mark.every_tile_width  # the kernels fixture runs every tile width


def _built(layer, shape, dtype=np.float64, seed=0):
    layer.build(shape, seed, dtype)
    return layer


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("kw,shape,expected", [
    (dict(kernel_size=5), (1, 28, 28), (6, 24, 24)),
    (dict(kernel_size=5, padding=2), (1, 28, 28), (6, 28, 28)),
    (dict(kernel_size=3, padding="same"), (2, 7, 9), (6, 7, 9)),
    (dict(kernel_size=4, padding="same"), (2, 7, 8), (6, 7, 8)),
    (dict(kernel_size=3, stride=2, padding="same"), (2, 7, 8), (6, 4, 4)),  # ceil(H / stride)
    (dict(kernel_size=3, padding="valid"), (2, 7, 8), (6, 5, 6)),
    (dict(kernel_size=(3, 1), stride=(2, 1), dilation=(2, 1)), (2, 9, 4), (6, 3, 4)),
    (dict(kernel_size=1, stride=3), (3, 7, 7), (6, 3, 3)),
])
def test_output_shape(kw, shape, expected):
    conv = _built(Conv2D(6, **kw), shape)
    assert conv.output_shape == expected
    y = conv.forward(np.random.default_rng(0).standard_normal((2, *shape)))
    assert y.shape == (2, *expected)


def test_in_channels_are_inferred_and_weights_are_oihw():
    model = Sequential([Conv2D(4, (3, 2), use_bias=True), ReLU()], seed=0)
    model.forward(np.zeros((2, 3, 6, 6), dtype=np.float32))
    conv = model[0]
    assert conv.params["weight"].shape == (4, 3, 3, 2) and conv.params["bias"].shape == (4,)
    assert conv.params["weight"].dtype == np.float32
    assert Conv2D(2, 3, use_bias=False).build((1, 5, 5)) and "bias" not in Conv2D(2, 3, use_bias=False).params


def test_the_old_bias_keyword_warns_and_means_use_bias():
    with pytest.warns(DeprecationWarning, match=r"Conv2D\(bias=\.\.\.\) is deprecated.*use Conv2D\(use_bias=\.\.\.\)"):
        old = Conv2D(8, 3, bias=False)
    new = Conv2D(8, 3, use_bias=False)
    assert old.use_bias is False and old.get_config() == new.get_config() and repr(old) == repr(new)
    assert not hasattr(old, "bias")  # the flag is use_bias; "bias" is the parameter's key
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=r"bias: got bias=False and use_bias=0; "
                                                                           r"pass use_bias only"):
        Conv2D(8, 3, use_bias=0, bias=False)


def test_a_config_written_with_bias_still_loads_without_a_warning():
    """Model files and configs from before ``use_bias`` say ``"bias": false``."""
    import warnings

    config = Conv2D(8, 3, use_bias=False).get_config()
    old = {k: v for k, v in config.items() if k != "use_bias"}
    old["bias"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conv = layers.get({"class_name": "conv2d", "config": old})
    assert conv.use_bias is False and conv.get_config() == config
    conv.build((2, 5, 5))
    assert "bias" not in conv.params


def test_images_of_another_size_are_accepted_as_in_torch():
    conv = _built(Conv2D(2, 3, padding=1), (3, 8, 8))
    assert conv.forward(np.ones((1, 3, 5, 7))).shape == (1, 2, 5, 7)
    assert conv.forward(np.ones((1, 3, 8, 8))).shape == (1, 2, 8, 8)


def test_config_round_trip_through_the_registry():
    conv = Conv2D(8, (3, 5), stride=(2, 1), padding="same", dilation=2, use_bias=False, init="he_normal")
    clone = layers.get(layers.serialize(conv))
    assert isinstance(clone, Conv2D) and clone.get_config() == conv.get_config()
    assert repr(clone) == repr(conv)
    assert isinstance(layers.get("conv2d", out_channels=3, kernel_size=3), Conv2D)
    model = Sequential([Conv2D(3, 3), MaxPool2D(), Flatten(), Dense(2)], input_shape=(1, 8, 8), seed=0)
    again = layers.get(layers.serialize(model))
    again.build((1, 8, 8))
    assert [p.shape for _, p, _ in again.named_parameters()] == [p.shape for _, p, _ in model.named_parameters()]


@pytest.mark.parametrize("init,var", [
    ("he_normal", lambda fi, fo: 2.0 / fi), ("xavier_uniform", lambda fi, fo: 2.0 / (fi + fo)),
    ("lecun_normal", lambda fi, fo: 1.0 / fi),
])
def test_initializers_use_receptive_field_fans(init, var):
    conv = _built(Conv2D(64, 5, init=init), (32, 12, 12))
    fan_in, fan_out = 32 * 25, 64 * 25  # as torch.nn.init._calculate_fan_in_and_fan_out
    assert bpnn.init.compute_fans(conv.params["weight"].shape) == (fan_in, fan_out)
    w = conv.params["weight"]
    assert abs(w.var() / var(fan_in, fan_out) - 1) < 0.05  # 51,200 draws: ±3 % sampling error


# --------------------------------------------------------------------------- layout and buffers
def test_output_is_a_channels_last_view_and_the_next_layer_reads_it_without_a_copy():
    conv = _built(Conv2D(5, 3), (2, 6, 6))
    y = conv.forward(np.random.default_rng(0).standard_normal((3, 2, 6, 6)))
    assert y.shape == (3, 5, 4, 4)
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous  # memory order (N, H, W, C)
    from bpnn.nn._images import channels_last

    assert np.shares_memory(channels_last(y), y)  # what the next image layer reads: no copy
    x_nchw = np.zeros((1, 2, 3, 3))
    assert not np.shares_memory(channels_last(x_nchw), x_nchw)  # an NCHW input is transposed once


def test_im2col_buffer_is_reused_across_steps_and_outputs_are_not(kernels):
    """One input channel: X_col is kept for backward, in a buffer reused step after step."""
    conv = _built(Conv2D(3, 3, padding=1), (1, 5, 5))
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((4, 1, 5, 5)), rng.standard_normal((4, 1, 5, 5))
    y1 = conv.forward(x1, training=True)
    y1_copy = y1.copy()
    buf = conv._buffers.array("cols0")
    y2 = conv.forward(x2, training=True)
    assert conv._buffers.array("cols0") is buf  # same memory, step after step
    np.testing.assert_array_equal(y1, y1_copy)  # an earlier output is never overwritten
    assert not np.shares_memory(y1, y2)
    g1 = conv.backward(np.ones_like(y2))
    g2 = conv.backward(np.ones_like(y2))
    assert not np.shares_memory(g1, g2)
    # a smaller batch (the last of an epoch) uses the front of the same buffer
    conv.forward(x1[:3], training=True)
    assert conv._buffers.array("cols0") is buf


def test_several_channels_keep_no_columns_and_share_one_block_temporary(kernels, conv_product, monkeypatch):
    """More channels and an X_col above KEEP_BYTES: X_col is filled block by block in a
    temporary shared by all layers and refilled in backward, so no layer keeps it; results
    do not depend on the sharing."""
    from bpnn.nn import _conv_strategies as strategies

    monkeypatch.setattr(strategies, "KEEP_BYTES", 0)

    # odd output channels: no vector width divides them, so the direct convolution never runs
    a, b = _built(Conv2D(3, 3, padding=1), (2, 5, 5)), _built(Conv2D(5, 3, padding=1), (3, 5, 5))
    rng = np.random.default_rng(0)
    x, ga, gb = rng.standard_normal((4, 2, 5, 5)), rng.standard_normal((4, 3, 5, 5)), rng.standard_normal((4, 5, 5, 5))
    a.forward(x, training=True)
    dxa_alone = a.backward(ga).copy()
    dwa_alone = a.grads["weight"].copy()
    ya = a.forward(x, training=True)
    ya_copy = ya.copy()
    b.forward(ya, training=True)  # fills the shared block with another layer's columns
    b.backward(gb)
    np.testing.assert_array_equal(ya, ya_copy)
    np.testing.assert_array_equal(a.backward(ga), dxa_alone)  # refilled from a's own input
    np.testing.assert_array_equal(a.grads["weight"], dwa_alone)
    assert not a._buffers and not b._buffers
    assert ("cols", "numpy", "<f8") in strategies.shared_buffers()  # the one block, shared


@pytest.mark.parametrize("channels,rows", [(1, True), (6, True), (7, False), (16, False)])
def test_few_input_channels_take_the_row_tile_product(channels, rows):
    """The product is chosen by the input channels (``ROW_MAX_CHANNELS``, measured); both
    give the same numbers (the parity and gradient tests run each on every case)."""
    conv = _built(Conv2D(4, 5, padding=2), (channels, 9, 9))
    conv.forward(np.random.default_rng(0).standard_normal((2, channels, 9, 9)), training=True)
    assert bool(conv._row_plans) == rows
    if not rows:
        assert conv._strategy.cols.shape == (2 * 9 * 9, 5 * 5 * channels + 1)  # X_col with its bias column
    else:  # tiles of W_out = 9: no divisor from 8 to 4, so tiles of 6, the last past the edge
        (tl, _), = conv._row_plans.values()
        assert (tl.tile, tl.nt, tl.span) == (6, 2, 10)
        assert conv._strategy.cols.shape == (2 * 9 * 2, 5 * 10 * channels + 1)


@pytest.mark.parametrize("out_channels,wo,tile", [(8, 9, 2), (16, 10, 2), (32, 1, 1), (6, 28, 7), (4, 9, 6)])
def test_row_tiles_are_two_outputs_wide_once_the_output_channels_fill_a_vector(out_channels, wo, tile):
    """Tiles of 2 outputs from 8 output channels on (measured at both vector widths), the
    divisors from 8 down to 4 below."""
    conv = _built(Conv2D(out_channels, 3, padding=1), (3, 5, wo))
    conv.forward(np.random.default_rng(0).standard_normal((2, 3, 5, wo)), training=True)
    (tl, _), = conv._row_plans.values()
    assert tl.tile == tile and tl.nt == -(-wo // tile)


@pytest.mark.parametrize("stride,dilation,padding", [(1, 1, 1), (2, 1, 1), (1, 2, "same"), (2, 2, 0)])
def test_kept_and_recomputed_columns_give_the_same_gradients(kernels, conv_product, monkeypatch, stride, dilation, padding):
    from bpnn.nn import _conv_strategies as strategies

    x = np.random.default_rng(0).standard_normal((5, 3, 7, 6))
    results = []
    for keep in (1 << 40, 0):
        monkeypatch.setattr(strategies, "KEEP_BYTES", keep)
        monkeypatch.setattr(strategies, "FUSE_BYTES", 3000)  # blocks of a sample or two
        # 5 output channels: no vector width divides them, so X_col is filled (no direct convolution)
        conv = _built(Conv2D(5, 3, stride=stride, padding=padding, dilation=dilation), (3, 7, 6))
        y = conv.forward(x, training=True)
        assert (conv._strategy.cols is not None) == bool(keep)
        dx = conv.backward(np.cos(y))
        results.append((y, dx, conv.grads["weight"].copy(), conv.grads["bias"].copy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_blockwise_products_equal_whole_batch_products(kernels, conv_product, monkeypatch, channels):
    """X_col is filled and multiplied block by block of samples (training and evaluation),
    and ∂L/∂x computed block by block: the results equal one product over the batch."""
    from bpnn.nn import _conv_strategies as strategies

    conv = _built(Conv2D(4, 3, padding=1), (channels, 6, 5))
    x = np.random.default_rng(0).standard_normal((11, channels, 6, 5))
    R = np.random.default_rng(1).standard_normal((11, 4, 6, 5))
    results = {}
    for block in (1 << 30, 4000):  # one block; blocks of a few samples
        monkeypatch.setattr(strategies, "FUSE_BYTES", block)
        monkeypatch.setattr(strategies, "BLOCK_BYTES", block)
        y_eval = conv.forward(x, training=False)
        gx_eval = conv.backward(R)  # a backward after an evaluation forward still works
        gw_eval = conv.grads["weight"].copy()
        y = conv.forward(x, training=True)
        gx = conv.backward(R)
        results[block] = (y_eval, gx_eval, gw_eval, y, gx, conv.grads["weight"].copy(), conv.grads["bias"].copy())
    for a, b in zip(results[1 << 30], results[4000]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(results[4000][0], results[4000][3], rtol=1e-13)


def test_float32_forward_and_backward_stay_float32():
    model = Sequential([Conv2D(3, 3), ReLU(), MaxPool2D(), Flatten(), Dense(2)], input_shape=(1, 6, 6), seed=0)
    x = np.random.default_rng(0).random((4, 1, 6, 6), dtype=np.float32)
    y = model.forward(x, training=True)
    assert y.dtype == np.float32
    assert model.backward(np.ones_like(y)).dtype == np.float32
    assert all(g.dtype == np.float32 for _, _, g in model.named_parameters())


# --------------------------------------------------------------------------- weight sharing
def test_a_layer_used_twice_is_one_set_of_parameters_with_summed_gradients():
    conv = Conv2D(2, 3, padding=1)
    model = Sequential([conv, Tanh(), conv, Flatten(), Dense(2)], seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 4))
    model.build(x.shape[1:])
    names = [n for n, _, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "4.weight", "4.bias"]  # listed once, as torch does
    assert model.num_parameters() == 2 * 2 * 9 + 2 + 32 * 2 + 2
    assert len(model.flat_parameters()) == model.num_parameters()
    # the summed gradient equals the sum of the two uses' gradients computed separately
    R = np.random.default_rng(1).standard_normal((3, 2))
    model.forward(x, training=True)
    model.backward(R)
    summed = conv.grads["weight"].copy()

    a, b = copy.deepcopy(conv), copy.deepcopy(conv)  # the two uses as two layers with equal weights
    sep = Sequential([a, Tanh(), b, Flatten(), copy.deepcopy(model[4])], seed=0, dtype="float64")
    sep.build(x.shape[1:])
    for layer, like in ((a, conv), (b, conv), (sep[4], model[4])):
        for key in layer.params:
            layer.params[key][...] = like.params[key]
    sep.forward(x, training=True)
    sep.backward(R)
    np.testing.assert_allclose(summed, a.grads["weight"] + b.grads["weight"], rtol=1e-12)
    assert not np.allclose(a.grads["weight"], 0) and not np.allclose(b.grads["weight"], 0)


def test_training_a_model_with_a_shared_layer_updates_the_one_weight():
    conv = Conv2D(2, 3, padding=1)
    model = Sequential([conv, ReLU(), conv, GlobalAvgPool2D(), Dense(2)], seed=0)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 2, 5, 5)).astype(np.float32), rng.integers(0, 2, 32)
    before = None
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=1e-2))
    model.build(X.shape[1:])
    before = conv.params["weight"].copy()
    trainer.fit(X, y, epochs=2, batch_size=8, verbose=False)
    assert not np.allclose(before, conv.params["weight"])
    assert model[0].params["weight"] is model[2].params["weight"]


def test_layers_used_once_take_the_plain_path():
    model = Sequential([Conv2D(2, 3), ReLU(), Residual([Conv2D(2, 3, padding=1), BatchNorm()])], seed=0)
    model.build((1, 6, 6))
    assert all(m._uses == 1 and "_share_stack" not in vars(m) for m in model.modules())


# --------------------------------------------------------------------------- bad input
def test_input_that_is_not_4d_gets_a_clear_error():
    conv = _built(Conv2D(2, 3), (1, 8, 8))
    with pytest.raises(ValueError, match=r"x: Conv2D expects a 4-d input \(N, C, H, W\).*\(5, 8, 8\).*x\[:, None\]"):
        conv.forward(np.zeros((5, 8, 8)))
    with pytest.raises(ValueError, match=r"x: Conv2D expects a 4-d input.*\(5, 64\)"):
        conv.forward(np.zeros((5, 64)))
    with pytest.raises(ValueError, match=r"x: Conv2D expects images of shape \(N, C, H, W\).*\(28, 28\).*3-d"):
        Sequential([Conv2D(2, 3)], input_shape=(28, 28))
    with pytest.raises(ValueError, match=r"x: MaxPool2D expects images of shape \(N, C, H, W\).*\(64,\)"):
        Sequential([MaxPool2D()], input_shape=(64,))


def test_wrong_channel_count_gets_a_clear_error():
    conv = _built(Conv2D(2, 3), (3, 8, 8))
    with pytest.raises(ValueError, match=r"x: Conv2D was built for 3 input channels but got an input with 1 "
                                         r"\(shape \(2, 1, 8, 8\), NCHW: channels are axis 1\)"):
        conv.forward(np.zeros((2, 1, 8, 8)))
    # an NHWC image (channels last) is the usual way to get this wrong
    with pytest.raises(ValueError, match="built for 3 input channels but got an input with 8"):
        conv.forward(np.zeros((2, 8, 8, 3)))


def test_images_smaller_than_the_dilated_kernel_get_a_clear_error():
    with pytest.raises(ValueError, match=r"x: Conv2D needs images of at least 5×5 after padding \(kernel 5×5, "
                                         r"dilation 1×1, padding 0×0 in total\), got 4×4 images"):
        Sequential([Conv2D(2, 5)], input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match=r"at least 5×5 .*kernel 3×3, dilation 2×2"):
        Sequential([Conv2D(2, 3, dilation=2)], input_shape=(1, 4, 9))
    conv = _built(Conv2D(2, 3), (1, 8, 8))
    with pytest.raises(ValueError, match=r"needs images of at least 3×3.*got 2×8"):
        conv.forward(np.zeros((1, 1, 2, 8)))
    # padding counts: a 5×5 kernel fits a 3×3 image padded by 1 on each side
    assert Sequential([Conv2D(2, 5, padding=1)], input_shape=(1, 3, 3)).output_shape == (2, 1, 1)
    # the pooling layers say the same; a LeNet whose second pool gets 1×1 maps fails at build
    with pytest.raises(ValueError, match=r"x: MaxPool2D needs images of at least 2×2.*got 1×1"):
        Sequential([Conv2D(6, 5), MaxPool2D(), Conv2D(16, 5), MaxPool2D()], input_shape=(1, 14, 14))


@pytest.mark.parametrize("kw,match", [
    (dict(out_channels=0, kernel_size=3), r"out_channels: got 0; expected a finite integer > 0"),
    (dict(out_channels=2, kernel_size=0), r"kernel_size: got 0; expected an int > 0 or a pair"),
    (dict(out_channels=2, kernel_size=(3, 3, 3)), r"kernel_size: got \(3, 3, 3\)"),
    (dict(out_channels=2, kernel_size=3, stride=0), r"stride: got 0"),
    (dict(out_channels=2, kernel_size=3, stride=1.5), r"stride: got 1.5"),
    (dict(out_channels=2, kernel_size=3, padding="full"), r"padding: got 'full'; expected 'same', 'valid'"),
    (dict(out_channels=2, kernel_size=3, padding=-1), r"padding: got -1"),
    (dict(out_channels=2, kernel_size=3, dilation=(1, 0)), r"dilation: got \(1, 0\)"),
    (dict(out_channels=2, kernel_size=3, bias="yes"), r"bias: got 'yes'; expected True or False"),
    (dict(out_channels=2, kernel_size=3, use_bias="yes"), r"use_bias: got 'yes'; expected True or False"),
    (dict(out_channels=2, kernel_size=3, init="he_normel"), r"he_normal"),
])
@pytest.mark.filterwarnings(r"ignore:Conv2D\(bias=\.\.\.\) is deprecated:DeprecationWarning")
def test_bad_arguments_name_the_argument_and_the_valid_values(kw, match):
    with pytest.raises(ValueError, match=match):
        Conv2D(**kw)


# --------------------------------------------------------------------------- real data
MNIST_DIR = __import__("os").environ.get("BPNN_MNIST_DIR") or str(
    __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")


def test_lenet5_learns_mnist_digits():
    """One epoch on 2,000 MNIST images takes LeNet-5 far past chance (10 %) on unseen digits
    (84 % measured)."""
    import pathlib

    if not pathlib.Path(MNIST_DIR).is_dir():
        pytest.skip(f"MNIST IDX files not found in {MNIST_DIR} (set BPNN_MNIST_DIR)")
    from bpnn.data import load_mnist

    X, y, Xt, yt = load_mnist(data_dir=MNIST_DIR, download=False, flatten=False)
    model = Sequential([Conv2D(6, 5, padding=2, init="he_uniform"), ReLU(), MaxPool2D(2),
                        Conv2D(16, 5, init="he_uniform"), ReLU(), MaxPool2D(2), Flatten(),
                        Dense(120), ReLU(), Dense(84), ReLU(), Dense(10)], input_shape=(1, 28, 28), seed=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=2e-3))
    trainer.fit(X[:2000], y[:2000], epochs=1, batch_size=32, verbose=False)
    accuracy = trainer.evaluate(Xt[:1000], yt[:1000])["accuracy"]
    assert accuracy > 0.75, f"test accuracy {accuracy:.3f} after one epoch on 2,000 images"


# --------------------------------------------------------------------------- direct convolution
@pytest.mark.parametrize("bits,dtype,out,direct", [
    (512, "float32", 16, True), (512, "float32", 24, False), (512, "float64", 8, True), (512, "float64", 12, False),
    (256, "float32", 16, True), (256, "float32", 20, False), (256, "float64", 8, True), (256, "float64", 6, False),
    (256, "float32", 24, False), (256, "float64", 12, False),  # more than 2 vectors (DIRECT_MAX_VECTORS)
    (128, "float32", 12, True), (128, "float64", 6, True), (128, "float64", 7, False)])
def test_the_direct_convolution_runs_when_the_output_channels_fill_vectors(monkeypatch, bits, dtype, out, direct):
    """With the register-tile kernels (numba) and O a multiple of their vector width (16
    float32 at 512 bits, 8 at 256, 4 at 128), Conv2D reads its padded input in place
    instead of filling X_col; without the compiled kernels it fills X_col."""
    from bpnn import _kernels
    from bpnn._kernels import gemm
    from bpnn.nn._conv_strategies import Direct

    pytest.importorskip("numba")
    monkeypatch.setattr(gemm, "vector_bits", lambda: bits)
    conv = _built(Conv2D(out, 3, padding=1), (8, 6, 5), dtype=np.dtype(dtype))
    x = np.random.default_rng(0).standard_normal((3, 8, 6, 5)).astype(dtype)
    conv.forward(x, training=True)
    assert isinstance(conv._strategy, Direct) == (direct and _kernels.enabled())
    monkeypatch.setattr(_kernels, "_enabled", False)
    conv.forward(x, training=True)
    assert not isinstance(conv._strategy, Direct)


def test_the_padded_input_keeps_its_zero_border_across_image_sizes(kernels):
    """The padded copy of the input is a buffer kept across steps whose border is written
    once: images of another size must not leave values where the border is."""
    from bpnn.nn._conv_strategies import Buffers

    conv = _built(Conv2D(16, 3, padding=2, use_bias=False), (8, 6, 6))
    rng = np.random.default_rng(0)
    fresh = _built(Conv2D(16, 3, padding=2, use_bias=False), (8, 6, 6))
    fresh.params["weight"][...] = conv.params["weight"]
    for shape in [(2, 8, 6, 6), (2, 8, 5, 7), (1, 8, 6, 6), (2, 8, 6, 6)]:
        x = rng.standard_normal(shape) + 5  # no zeros anywhere inside the images
        y = conv.forward(x, training=True)
        np.testing.assert_allclose(y, fresh.forward(x, training=True), rtol=1e-12)
        fresh._buffers = Buffers()  # a new buffer every time


@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=(2, 0), stride=(1, 2), dilation=2), dict(padding=0)],
                         ids=["same", "stride_dilation", "valid"])
def test_the_direct_convolution_split_between_threads_equals_one_call(monkeypatch, kw):
    """Long direct convolutions split the batch between threads, each part padding its
    samples, convolving them and adding its share of ∂L/∂W."""
    from bpnn import _kernels
    from bpnn._kernels import gemm, parallel
    from bpnn.nn._conv_strategies import Direct

    pytest.importorskip("numba")
    monkeypatch.setattr(gemm, "vector_bits", lambda: 512)
    monkeypatch.setattr(parallel, "threads", lambda: 3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 8, 7, 9))
    results = []
    before = _kernels.enabled()
    _kernels.set_enabled(True)
    try:
        for threshold in (10 ** 12, 0):
            monkeypatch.setattr(parallel, "SPLIT_MULTIPLY_ADDS", threshold)
            conv = _built(Conv2D(16, 3, **kw), (8, 7, 9))
            y = conv.forward(x, training=True)
            assert isinstance(conv._strategy, Direct)
            gx = conv.backward(np.cos(y))
            results.append((y, gx, conv.grads["weight"].copy(), conv.grads["bias"].copy()))
    finally:
        _kernels.set_enabled(before)
    for one, split in zip(*results):
        np.testing.assert_allclose(split, one, rtol=1e-12, atol=1e-12)
