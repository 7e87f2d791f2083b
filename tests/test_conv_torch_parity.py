"""PyTorch parity of the convolutional layers in float64 (rtol 1e-6).

Every check compares the forward output, the input gradient and every parameter
gradient (the upstream gradient is a fixed random R, i.e. L = Σ y ⊙ R), and BatchNorm's
running statistics. Layer-level checks run twice through the ``kernels`` fixture: once
with the compiled (numba) kernels and once with the NumPy fallbacks.
"""
from __future__ import annotations

import numpy as np
import pytest

import bpnn
from bpnn.nn import (
    AvgPool2D, BatchNorm, Conv2D, Dense, Flatten, GlobalAvgPool2D, MaxPool2D, ReLU, Residual, Sequential,
    Tanh,
)

pytestmark = pytest.mark.every_tile_width  # the kernels fixture runs every tile width

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional

RTOL, ATOL = 1e-6, 1e-12


def _t(a, grad=False):
    t = torch.from_numpy(np.array(a, dtype=np.float64))
    return t.requires_grad_(grad)


def _close(actual, expected, what):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs torch {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


# --------------------------------------------------------------------------- converter
class _TorchResidual(tnn.Module):
    def __init__(self, block, shortcut):
        super().__init__()
        self.block, self.shortcut = block, shortcut

    def forward(self, x):
        return self.block(x) + (x if self.shortcut is None else self.shortcut(x))


class _TorchGAP(tnn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def _conv_torch(m: Conv2D):
    win = m.window
    pad_after = ((win.Ho - 1) * win.sh + win.dh * (win.kh - 1) + 1 - win.H - win.ph,
                 (win.Wo - 1) * win.sw + win.dw * (win.kw - 1) + 1 - win.W - win.pw)
    conv = tnn.Conv2d(m.input_shape[0], m.out_channels, m.kernel_size, stride=m.stride, padding=0,
                      dilation=m.dilation, bias=m.use_bias, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(_t(m.params["weight"]))  # OIHW in both
        if m.use_bias:
            conv.bias.copy_(_t(m.params["bias"]))
    pads = (win.pw, max(pad_after[1], 0), win.ph, max(pad_after[0], 0))
    if not any(pads):
        return conv
    return _Padded(conv, pads)


class _Padded(tnn.Module):
    """Explicit (possibly asymmetric) zero padding, then the convolution: the parameter
    names stay ``weight``/``bias`` of this module, as bpnn's."""

    def __init__(self, conv, pads):
        super().__init__()
        self.weight, self.bias, self.conv, self.pads = conv.weight, conv.bias, conv, pads
        del conv._parameters["weight"], conv._parameters["bias"]

    def forward(self, x):
        return F.conv2d(F.pad(x, self.pads), self.weight, self.bias, self.conv.stride, 0, self.conv.dilation)


def to_torch(m, memo=None):
    """float64 torch module equal to the built bpnn module ``m``; a bpnn module used at
    several places maps to one torch module used at the same places (shared weights)."""
    memo = {} if memo is None else memo
    if id(m) in memo:
        return memo[id(m)]
    if isinstance(m, Sequential):
        t = tnn.Sequential(*[to_torch(layer, memo) for layer in m.layers])
    elif isinstance(m, Residual):
        t = _TorchResidual(to_torch(m.block, memo), None if m.shortcut is None else to_torch(m.shortcut, memo))
    elif isinstance(m, Conv2D):
        t = _conv_torch(m)
    elif isinstance(m, Dense):
        t = tnn.Linear(m.input_shape[0], m.units, bias=m.use_bias, dtype=torch.float64)
        with torch.no_grad():
            t.weight.copy_(_t(m.params["weight"].T))
            if m.use_bias:
                t.bias.copy_(_t(m.params["bias"]))
    elif isinstance(m, BatchNorm):
        cls = tnn.BatchNorm2d if len(m.input_shape) == 3 else tnn.BatchNorm1d
        t = cls(m.input_shape[0], eps=m.eps, momentum=m.momentum, affine=m.affine, dtype=torch.float64)
        with torch.no_grad():
            if m.affine:
                t.weight.copy_(_t(m.params["weight"]))
                t.bias.copy_(_t(m.params["bias"]))
            t.running_mean.copy_(_t(m.buffers["running_mean"]))
            t.running_var.copy_(_t(m.buffers["running_var"]))
    elif isinstance(m, MaxPool2D):
        t = tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation)
    elif isinstance(m, AvgPool2D):
        t = tnn.AvgPool2d(m.kernel_size, m.stride, m.padding, count_include_pad=m.count_include_pad)
    elif isinstance(m, GlobalAvgPool2D):
        t = _TorchGAP()
    else:
        t = {ReLU: tnn.ReLU, Tanh: tnn.Tanh, Flatten: tnn.Flatten}[type(m)]()
    memo[id(m)] = t
    return t


def _randomize(model, rng):
    for name, p, _ in model.named_parameters():
        if p.ndim == 1:  # biases, BatchNorm γ/β: away from 0 and 1
            p[...] = rng.normal(0.3, 0.5, size=p.shape)
    for name, b in model.named_buffers():
        b[...] = rng.uniform(0.5, 2.0, size=b.shape) if name.endswith("running_var") else rng.normal(size=b.shape)


def assert_parity(model, x, training, seed=0):
    tmodel = to_torch(model)
    tmodel.train(training)
    y = model.forward(x, training=training)
    xt = _t(x, grad=True)
    yt = tmodel(xt)
    _close(y, yt, "forward output")
    R = np.random.default_rng(seed).standard_normal(y.shape)
    model.zero_grad()
    gx = model.backward(R.copy())
    yt.backward(_t(R))
    _close(gx, xt.grad, "input gradient")
    tparams = dict(tmodel.named_parameters())
    bparams = {n: g for n, _, g in model.named_parameters()}
    assert list(bparams) == list(tparams), "parameter names differ from torch's"
    for name, g in bparams.items():
        tg = tparams[name].grad
        if isinstance(tmodel.get_submodule(name.rpartition(".")[0]), tnn.Linear) and name.endswith("weight"):
            tg = tg.T
        _close(g, tg, f"gradient of {name}")
    tbuf = {n: b for n, b in tmodel.named_buffers() if not n.endswith("num_batches_tracked")}
    for name, b in model.named_buffers():
        _close(b, tbuf[name], f"buffer {name}")
    return y


# --------------------------------------------------------------------------- layers
CONV_CASES = [
    # (N, C, H, W), out_channels, kwargs
    ((2, 3, 9, 8), 4, dict(kernel_size=3, padding=1)),
    ((1, 2, 11, 7), 3, dict(kernel_size=(3, 2), stride=(2, 1), padding=(2, 1), dilation=(1, 2))),
    ((3, 4, 6, 6), 5, dict(kernel_size=1)),
    ((2, 3, 7, 9), 2, dict(kernel_size=1, stride=2, use_bias=False)),
    ((2, 3, 10, 9), 2, dict(kernel_size=3, stride=2, padding="same")),
    ((2, 2, 7, 7), 3, dict(kernel_size=4, padding="same", dilation=2)),  # odd total: extra pad after
    ((1, 1, 28, 28), 6, dict(kernel_size=5, padding=2)),  # LeNet-5's first layer
    ((2, 1, 8, 13), 4, dict(kernel_size=3, padding=1)),  # one channel, W_out 13: the last tile padded
    ((2, 1, 9, 12), 3, dict(kernel_size=(2, 3), stride=(2, 3), dilation=(2, 1), padding=(1, 2), use_bias=False)),
    ((2, 1, 3, 4), 2, dict(kernel_size=(1, 2), padding=(0, 11))),  # padding wider than a tile's span
    ((1, 3, 2, 2), 2, dict(kernel_size=1, padding=9)),  # and wider than the kernel, several channels
    ((3, 6, 14, 14), 16, dict(kernel_size=5, padding="valid")),  # and its second
    ((2, 5, 8, 8), 3, dict(kernel_size=3, stride=3, dilation=2, padding=3)),
    # wide enough for the register-tile products (bpnn._kernels.gemm: vectors of 8 float64)
    ((2, 8, 7, 9), 16, dict(kernel_size=3, padding=1)),
    ((3, 9, 9, 10), 24, dict(kernel_size=3, stride=2, dilation=(1, 2), padding=2, use_bias=False)),
    ((2, 16, 5, 6), 8, dict(kernel_size=1, stride=2)),
    ((2, 1, 12, 28), 16, dict(kernel_size=3, padding=1)),
    ((2, 8, 5, 6), 8, dict(kernel_size=3, padding=3)),  # padding wider than the kernel: ∂L/∂x drops rows of G
    ((2, 8, 6, 7), 16, dict(kernel_size=4, padding="same", dilation=(1, 2))),  # asymmetric padding
    ((2, 8, 5, 6), 16, dict(kernel_size=3, padding=2)),  # full padding: G̃ is G itself
    ((2, 8, 5, 6), 16, dict(kernel_size=(3, 1), padding=(1, 0))),  # "same" in rows only
]


@pytest.mark.parametrize("shape,out,kw", CONV_CASES, ids=[f"c{i}" for i in range(len(CONV_CASES))])
def test_conv2d_matches_torch(kernels, conv_product, shape, out, kw):
    rng = np.random.default_rng(len(shape) + out)
    conv = Conv2D(out, **kw)
    conv.build(shape[1:], 0, np.float64)
    _randomize(conv, rng)
    x = rng.standard_normal(shape)
    assert_parity(conv, x, training=True)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv2d_same_padding_has_torchs_output_size():
    for H, k, d in [(7, 3, 1), (8, 4, 1), (9, 3, 2), (6, 2, 3)]:
        conv = Conv2D(2, k, padding="same", dilation=d)
        conv.build((1, H, H + 1), 0, np.float64)
        y = torch.nn.Conv2d(1, 2, k, padding="same", dilation=d, dtype=torch.float64)(torch.zeros(1, 1, H, H + 1, dtype=torch.float64))
        assert conv.output_shape == tuple(y.shape[1:])


POOL_CASES = [
    (MaxPool2D, tnn.MaxPool2d, dict(kernel_size=2)),
    (MaxPool2D, tnn.MaxPool2d, dict(kernel_size=3, stride=2, padding=1)),
    (MaxPool2D, tnn.MaxPool2d, dict(kernel_size=(2, 3), stride=1, dilation=(2, 1), padding=(1, 1))),
    (AvgPool2D, tnn.AvgPool2d, dict(kernel_size=2)),
    (AvgPool2D, tnn.AvgPool2d, dict(kernel_size=3, stride=2, padding=1)),
    (AvgPool2D, tnn.AvgPool2d, dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    (AvgPool2D, tnn.AvgPool2d, dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0))),
]


@pytest.mark.parametrize("ours,theirs,kw", POOL_CASES, ids=[f"p{i}" for i in range(len(POOL_CASES))])
@pytest.mark.parametrize("shape", [(2, 3, 9, 8), (1, 1, 7, 7)])
def test_pooling_matches_torch(kernels, ours, theirs, kw, shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    layer = ours(**kw)
    layer.build(shape[1:], 0, np.float64)
    y = layer.forward(x, training=True)
    xt = _t(x, grad=True)
    yt = theirs(**kw)(xt)
    _close(y, yt, "forward")
    R = rng.standard_normal(y.shape)
    yt.backward(_t(R))
    _close(layer.backward(R), xt.grad, "input gradient")


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_global_avg_pool_matches_torch(kernels, layout):
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 6))
    if layout == "channels_last":  # as the image layers hand it on: NCHW view of NHWC memory
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    elif layout == "strided":
        x = np.random.default_rng(0).standard_normal((3, 4, 10, 6))[:, :, ::2]
    gap = GlobalAvgPool2D()
    gap.build(x.shape[1:], 0, np.float64)
    xt = _t(x, grad=True)
    yt = tnn.AdaptiveAvgPool2d(1)(xt).flatten(1)
    _close(gap.forward(x), yt, "forward")
    R = np.random.default_rng(1).standard_normal((3, 4))
    yt.backward(_t(R))
    _close(gap.backward(R), xt.grad, "input gradient")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_batchnorm_on_images_matches_batchnorm2d(training, channels_last):
    """The one BatchNorm class on (N, C, H, W) is torch's BatchNorm2d, also when its input
    is a Conv2D output stored channels-last."""
    rng = np.random.default_rng(5)
    x = rng.normal(0.5, 2.0, size=(4, 3, 5, 6))
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    bn = BatchNorm(momentum=0.2)
    bn.build((3, 5, 6), 0, np.float64)
    _randomize(bn, rng)
    assert_parity(bn, x, training)


# --------------------------------------------------------------------------- models
def _residual_cnn(seed, c1=4, c2=6):
    block = [Conv2D(c2, 3, stride=2, padding=1, use_bias=False), BatchNorm(), ReLU(),
             Conv2D(c2, 3, padding="same"), BatchNorm(momentum=0.3)]
    shortcut = Sequential([Conv2D(c2, 1, stride=2, use_bias=False), BatchNorm()])  # projection
    return Sequential([Conv2D(c1, 3, padding=1), BatchNorm(), ReLU(),
                       Residual(block, shortcut=shortcut), ReLU(),
                       Residual([Conv2D(c2, 3, padding=1), BatchNorm(), Tanh()]),
                       GlobalAvgPool2D(), Dense(3)], seed=seed, dtype="float64")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("channels", [(4, 6), (8, 16)], ids=["im2col_rows", "direct"])  # direct: vectors of 8 float64
def test_residual_cnn_block_with_batchnorm_matches_torch(kernels, training, channels):
    model = _residual_cnn(0, *channels)
    x = np.random.default_rng(1).standard_normal((4, 2, 9, 8))
    model.build(x.shape[1:])
    _randomize(model, np.random.default_rng(2))
    assert_parity(model, x, training)


def lenet5(dtype="float64", seed=0):
    return Sequential([Conv2D(6, 5, padding=2), ReLU(), MaxPool2D(2), Conv2D(16, 5), ReLU(), MaxPool2D(2),
                       Flatten(), Dense(120), ReLU(), Dense(84), ReLU(), Dense(10)],
                       input_shape=(1, 28, 28), seed=seed, dtype=dtype)


def test_lenet5_matches_torch(kernels):
    model = lenet5()
    _randomize(model, np.random.default_rng(0))
    assert_parity(model, np.random.default_rng(1).random((3, 1, 28, 28)), training=True)


def test_lenet5_adam_training_steps_match_torch():
    """Five Adam steps on softmax cross-entropy: the parameters stay equal to torch's."""
    model = lenet5()
    tmodel = to_torch(model)
    rng = np.random.default_rng(7)
    opt = bpnn.optim.Adam(lr=1e-3).attach(model)
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
    loss, tloss = bpnn.SoftmaxCrossEntropy(), tnn.CrossEntropyLoss()
    for _ in range(5):
        x, y = rng.random((8, 1, 28, 28)), rng.integers(0, 10, 8)
        out = model.forward(x, training=True)
        loss.forward(out, y)
        model.backward(loss.backward(), input_grad=False)
        opt.step()
        topt.zero_grad()
        tloss(tmodel(_t(x)), torch.from_numpy(y)).backward()
        topt.step()
    tparams = dict(tmodel.named_parameters())
    for name, p, _ in model.named_parameters():
        tp = tparams[name].detach().numpy()
        _close(p, tp.T if tp.ndim == 2 else tp, f"parameter {name} after 5 steps")


# --------------------------------------------------------------------------- weight sharing
@pytest.mark.parametrize("kept", [True, False], ids=["kept_columns", "refilled_columns"])
def test_one_conv_used_twice_sums_its_gradients_as_torch(kernels, conv_product, monkeypatch, kept):
    from bpnn.nn import _conv_strategies as strategies

    if not kept:  # X_col (or A) refilled in backward from each use's own input
        monkeypatch.setattr(strategies, "KEEP_BYTES", 0)
    conv = Conv2D(3, 3, padding=1)
    model = Sequential([conv, Tanh(), MaxPool2D(2), conv, ReLU(), Flatten(), Dense(2)], seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    model.build(x.shape[1:])
    _randomize(model, np.random.default_rng(1))
    assert [n for n, _, _ in model.named_parameters()] == ["0.weight", "0.bias", "6.weight", "6.bias"]
    tmodel = to_torch(model)
    assert tmodel[0] is tmodel[3]
    assert_parity(model, x, training=True)


def test_one_direct_convolution_used_twice_sums_its_gradients_as_torch(kernels):
    """The direct convolution (8 output channels: a vector of float64) keeps one padded
    input per use, as the other products keep their columns."""
    conv = Conv2D(8, 3, padding=1)
    model = Sequential([conv, Tanh(), MaxPool2D(2), conv, ReLU(), Flatten(), Dense(2)], seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 8, 6, 6))
    model.build(x.shape[1:])
    _randomize(model, np.random.default_rng(1))
    tmodel = to_torch(model)
    assert tmodel[0] is tmodel[3]
    assert_parity(model, x, training=True)
    from bpnn.nn._conv_strategies import Direct

    assert isinstance(conv._strategy, Direct) == (kernels == "numba")


@pytest.mark.parametrize("kept", [True, False], ids=["kept_columns", "refilled_columns"])
def test_one_residual_block_used_twice_matches_torch(conv_product, monkeypatch, kept):
    from bpnn.nn import _conv_strategies as strategies

    if not kept:
        monkeypatch.setattr(strategies, "KEEP_BYTES", 0)
    block = Residual([Conv2D(2, 3, padding=1), BatchNorm(), ReLU(), Conv2D(2, 3, padding=1)])
    model = Sequential([block, ReLU(), block, GlobalAvgPool2D(), Dense(2)], seed=1, dtype="float64")
    x = np.random.default_rng(2).standard_normal((3, 2, 5, 5))
    model.build(x.shape[1:])
    _randomize(model, np.random.default_rng(3))
    # the BatchNorm inside updates its running statistics once per use, as in torch
    assert_parity(model, x, training=True)
