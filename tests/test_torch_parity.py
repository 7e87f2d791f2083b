"""PyTorch parity in float64: layers, random MLPs, BatchNorm statistics and losses.

Every bpnn network here is rebuilt as a ``torch.nn`` module with identical weights
(:func:`to_torch`), then outputs, input gradients and every parameter gradient are
compared at rtol 1e-6. The upstream gradient is a fixed random array R (the gradient
of L = Σ y ⊙ R), so every output entry contributes.
"""
from __future__ import annotations

import numpy as np
import pytest

import bpnn
from bpnn.nn import (
    ELU, BatchNorm, Dense, Dropout, Flatten, Identity, LeakyReLU, ReLU, Residual, Sequential,
    Sigmoid, Softmax, Softplus, Tanh,
)

torch = pytest.importorskip("torch")
tnn = torch.nn

RTOL, ATOL = 1e-6, 1e-12


# --------------------------------------------------------------------------- bpnn -> torch
# The converter is the library's (bpnn.io): the same code users take their models to torch with.
from bpnn.io.torch_interop import _linear_layout  # noqa: E402  (the one (in, out) <-> (out, in) helper)
from bpnn.io.torch_interop import to_torch_module  # noqa: E402
from bpnn.io.torch_modules import TorchResidual  # noqa: E402


def _t(a) -> "torch.Tensor":
    return torch.from_numpy(np.array(a, dtype=np.float64))


def to_torch(m: bpnn.Module) -> "tnn.Module":
    """A float64 torch module computing the same function as the built float64 bpnn module ``m``.

    Parameters and buffers (BatchNorm running statistics) are copied; parameter names
    come out the same as bpnn's ``named_parameters`` ("0.weight", "1.block.2.bias", ...).
    """
    assert m.built, "build the bpnn module before converting it"
    t = to_torch_module(m)
    assert all(p.dtype == torch.float64 for p in t.parameters()), "parity is checked in float64"
    return t


def _randomize(model: bpnn.Module, rng) -> None:
    """Random biases, BatchNorm γ/β and running statistics (their defaults are 0/1)."""
    for name, p, _ in model.named_parameters():
        if not name.endswith("weight") or p.ndim == 1:  # keep Dense weights from the initializer
            p[...] = rng.normal(0.0, 0.5, size=p.shape) + (1.0 if name.endswith("weight") else 0.0)
    for name, b in model.named_buffers():
        b[...] = rng.uniform(0.3, 2.5, size=b.shape) if name.endswith("running_var") else rng.normal(size=b.shape)


def _close(actual, expected, what):
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs torch {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


def _torch_grad_in_bpnn_layout(tmodel, name, param):
    owner = tmodel.get_submodule(name.rpartition(".")[0])
    g = param.grad.detach().numpy()
    return _linear_layout(g) if isinstance(owner, tnn.Linear) and name.endswith("weight") else g


def assert_parity(model: bpnn.Module, x: np.ndarray, training: bool, seed: int = 0, tmodel=None):
    """Forward, input gradient, parameter gradients and running statistics vs torch."""
    tmodel = to_torch(model) if tmodel is None else tmodel
    tmodel.train(training)
    rng = np.random.default_rng(seed)

    y = model.forward(x, training=training)
    xt = _t(x).requires_grad_(True)
    yt = tmodel(xt)
    _close(y, yt, "forward output")

    R = rng.standard_normal(y.shape)
    model.zero_grad()
    gx = model.backward(R.copy())
    tmodel.zero_grad(set_to_none=True)
    yt.backward(_t(R))
    _close(gx, xt.grad, "input gradient")

    bparams = {name: g for name, _, g in model.named_parameters()}
    tparams = dict(tmodel.named_parameters())
    assert list(bparams) == list(tparams), "parameter names differ from torch's"
    for name, g in bparams.items():
        _close(g, _torch_grad_in_bpnn_layout(tmodel, name, tparams[name]), f"gradient of {name}")

    tbuffers = {n: b for n, b in tmodel.named_buffers() if not n.endswith("num_batches_tracked")}
    bbuffers = dict(model.named_buffers())
    assert list(bbuffers) == list(tbuffers), "buffer names differ from torch's"
    for name, b in bbuffers.items():
        _close(b, tbuffers[name], f"buffer {name}")
    return tmodel


# --------------------------------------------------------------------------- random MLPs
ACTIVATIONS = [
    Sigmoid, Tanh, ReLU, LeakyReLU, lambda: LeakyReLU(0.2), ELU, lambda: ELU(alpha=0.6),
    Softplus, lambda: Softplus(beta=2.0, threshold=1.5), Identity,
]


def random_mlp(depth: int, seed: int, training: bool):
    """A float64 MLP of ``depth`` Dense layers with random widths, activations,
    BatchNorm (at least one when depth ≥ 2) and Dropout (rate 0 in training, 0.5 in eval)."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(2, 7))
    layers, has_bn = [], False
    for i in range(depth):
        layers.append(Dense(int(rng.integers(2, 8)), use_bias=bool(rng.random() < 0.8)))
        last = i == depth - 1
        if not last and (rng.random() < 0.4 or (i == depth - 2 and not has_bn)):
            layers.append(BatchNorm(momentum=float(rng.choice([0.1, 0.3])), eps=float(rng.choice([1e-5, 1e-3]))))
            has_bn = True
        if not last or rng.random() < 0.5:
            layers.append(ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]())
        if not last and rng.random() < 0.3:
            layers.append(Dropout(0.0 if training else 0.5))
    model = Sequential(layers, input_shape=(n_in,), seed=seed, dtype="float64")
    _randomize(model, rng)
    batch = int(rng.integers(3, 9)) if training else int(rng.choice([1, 5]))
    x = rng.normal(0.0, 1.5, size=(batch, n_in))
    return model, x


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("depth", range(1, 7))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_mlp_matches_torch(seed, depth, training):
    model, x = random_mlp(depth, 100 * seed + depth, training)
    if depth >= 2:
        assert any(isinstance(layer, BatchNorm) for layer in model.layers)
    before = {n: b.copy() for n, b in model.named_buffers()}
    assert_parity(model, x, training, seed=seed)
    for n, b in model.named_buffers():  # running statistics move in training mode only
        assert np.array_equal(b, before[n]) != training, n


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_every_activation_in_one_network_matches_torch(training):
    acts = [Sigmoid(), Tanh(), ReLU(), LeakyReLU(0.05), ELU(alpha=1.3), Softplus(), Identity(),
            Softplus(beta=0.5, threshold=2.0)]
    layers = [Dense(6)]
    for k, act in enumerate(acts):
        layers += [act, Dense(6)] if k % 3 else [BatchNorm(), act, Dropout(0.0 if training else 0.4), Dense(6)]
    model = Sequential(layers, input_shape=(4,), seed=7, dtype="float64")
    rng = np.random.default_rng(7)
    _randomize(model, rng)
    assert_parity(model, rng.normal(0, 2.0, size=(6, 4)), training, seed=7)


def test_backward_without_input_gradient_still_matches_torch_parameter_gradients():
    # Layers before the first trainable one are skipped when the input gradient is not asked for.
    model = Sequential([Flatten(), Tanh(), Dense(5), BatchNorm(), ELU(), Dense(3)],
                       input_shape=(2, 3), seed=4, dtype="float64")
    rng = np.random.default_rng(4)
    _randomize(model, rng)
    x = rng.standard_normal((7, 2, 3))
    tmodel = to_torch(model).train()
    y = model.forward(x, training=True)
    R = rng.standard_normal(y.shape)
    assert model.backward(R, input_grad=False) is None
    tmodel(_t(x)).backward(_t(R))
    for name, _, g in model.named_parameters():
        _close(g, _torch_grad_in_bpnn_layout(tmodel, name, tmodel.get_parameter(name)), name)


def test_dropout_with_rate_zero_in_training_and_any_rate_in_eval_is_the_identity():
    x = np.random.default_rng(0).standard_normal((4, 5))
    for rate, training in ((0.0, True), (0.7, False)):
        model = Sequential([Dense(3), Dropout(rate)], input_shape=(5,), seed=0, dtype="float64")
        assert_parity(model, x, training)


# --------------------------------------------------------------------------- BatchNorm
@pytest.mark.parametrize("shape", [(8, 3), (5, 4, 6), (4, 2, 3, 3)], ids=["NC", "NCL", "NCHW"])
@pytest.mark.parametrize("momentum,eps", [(0.1, 1e-5), (0.25, 1e-3)])
def test_batchnorm_outputs_gradients_and_running_statistics_match_torch(shape, momentum, eps):
    rng = np.random.default_rng(shape[0] + int(100 * momentum))
    bn = BatchNorm(momentum=momentum, eps=eps)
    bn.build(shape[1:], 0, np.float64)
    _randomize(bn, rng)
    tbn = to_torch(bn)
    for step in range(3):  # running statistics accumulate over several batches
        x = rng.normal(1.0, 2.0, size=shape)
        assert_parity(bn, x, training=True, seed=step, tmodel=tbn)
    # evaluation uses the accumulated (unbiased-variance) statistics
    assert_parity(bn, rng.normal(size=(1,) + shape[1:]), training=False, tmodel=tbn)
    assert_parity(bn, rng.normal(size=shape), training=False, tmodel=tbn)


def test_batchnorm_running_variance_is_unbiased_as_in_torch():
    bn = BatchNorm(momentum=1.0)
    bn.build((2,), 0, np.float64)
    x = np.random.default_rng(0).standard_normal((5, 2))
    tbn = to_torch(bn).train()
    bn.forward(x, training=True)
    tbn(_t(x))
    np.testing.assert_allclose(bn.buffers["running_var"], x.var(axis=0, ddof=1), rtol=1e-12)
    _close(bn.buffers["running_var"], tbn.running_var, "running_var")
    _close(bn.buffers["running_mean"], tbn.running_mean, "running_mean")


def test_batchnorm_without_affine_matches_torch():
    bn = BatchNorm(affine=False)
    bn.build((3, 4), 0, np.float64)
    rng = np.random.default_rng(3)
    _randomize(bn, rng)
    tbn = to_torch(bn)
    assert_parity(bn, rng.standard_normal((3, 3, 4)), training=True, tmodel=tbn)
    assert_parity(bn, rng.standard_normal((2, 3, 4)), training=False, tmodel=tbn)


# --------------------------------------------------------------------------- Softmax, Residual
@pytest.mark.parametrize("shape,scale", [((1, 4), 1.0), ((6, 5), 3.0), ((3, 2, 4), 1.0), ((5, 3), 60.0)])
def test_softmax_layer_matches_torch(shape, scale):
    sm = Softmax()
    sm.build(shape[1:], 0, np.float64)
    x = scale * np.random.default_rng(shape[0]).standard_normal(shape)
    assert_parity(sm, x, training=False)
    assert np.all(np.isfinite(sm.forward(x)))


@pytest.mark.parametrize("shortcut", ["identity", "projection"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_residual_block_matches_torch(shortcut, training):
    n_in = 5 if shortcut == "identity" else 3
    block = Residual([Dense(4), BatchNorm(), Tanh(), Dense(5)],
                     shortcut=Dense(5, use_bias=False) if shortcut == "projection" else None)
    model = Sequential([block, ReLU(), Residual(Sigmoid()), Dense(2)],
                       input_shape=(n_in,), seed=11, dtype="float64")
    rng = np.random.default_rng(11)
    _randomize(model, rng)
    x = rng.standard_normal((6, n_in))
    tmodel = assert_parity(model, x, training, seed=1)
    # the torch reference really has the intended structure
    assert isinstance(tmodel[0], TorchResidual)
    assert (tmodel[0].shortcut is None) == (shortcut == "identity")


# --------------------------------------------------------------------------- losses
def _loss_parity(loss, torch_loss, pred, target, torch_target):
    value = float(loss.forward(pred, target))
    grad = np.array(loss.backward())
    pt = _t(pred).requires_grad_(True)
    tv = torch_loss(pt, torch_target)
    tv.backward()
    np.testing.assert_allclose(value, tv.item(), rtol=1e-10, atol=1e-12, err_msg="loss value")
    _close(grad, pt.grad, "gradient with respect to the prediction")


LOSS_SHAPES = [(1, 1), (1, 4), (7, 3)]


@pytest.mark.parametrize("shape", LOSS_SHAPES)
@pytest.mark.parametrize("reduction,torch_loss", [
    ("mean", lambda p, t: tnn.MSELoss()(p, t)),
    ("half_sum", lambda p, t: 0.5 * tnn.MSELoss(reduction="sum")(p, t)),
    ("half_mean", lambda p, t: 0.5 * tnn.MSELoss(reduction="sum")(p, t) / p.shape[0]),
    ("sum", lambda p, t: tnn.MSELoss(reduction="sum")(p, t)),
])
def test_mse_matches_torch(shape, reduction, torch_loss):
    rng = np.random.default_rng(sum(shape))
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    _loss_parity(bpnn.MSE(reduction), torch_loss, pred, target, _t(target))


def test_mse_with_flat_targets_matches_torch():
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((6, 1)), rng.standard_normal(6)
    _loss_parity(bpnn.MSE(), tnn.MSELoss(), pred, target, _t(target.reshape(-1, 1)))


@pytest.mark.parametrize("shape,scale", [((1, 3), 1.0), ((8, 4), 1.0), ((5, 6), 40.0)])
def test_softmax_cross_entropy_with_labels_matches_torch(shape, scale):
    rng = np.random.default_rng(shape[0])
    pred = scale * rng.standard_normal(shape)
    labels = rng.integers(0, shape[1], size=shape[0])
    _loss_parity(bpnn.SoftmaxCrossEntropy(), tnn.CrossEntropyLoss(), pred, labels, torch.from_numpy(labels))


@pytest.mark.parametrize("kind", ["one_hot", "soft"])
@pytest.mark.parametrize("shape,scale", [((1, 3), 1.0), ((8, 4), 1.0), ((5, 6), 40.0)])
def test_softmax_cross_entropy_with_probability_targets_matches_torch(kind, shape, scale):
    rng = np.random.default_rng(shape[0] + 1)
    pred = scale * rng.standard_normal(shape)
    if kind == "one_hot":
        target = np.eye(shape[1])[rng.integers(0, shape[1], size=shape[0])]
    else:
        target = rng.dirichlet(np.ones(shape[1]), size=shape[0])
    _loss_parity(bpnn.SoftmaxCrossEntropy(), tnn.CrossEntropyLoss(), pred, target, _t(target))


@pytest.mark.parametrize("shape,scale", [((1, 1), 1.0), ((6, 3), 2.0), ((4, 5), 50.0)])
@pytest.mark.parametrize("soft", [False, True], ids=["binary", "soft"])
def test_bce_with_logits_matches_torch(shape, scale, soft):
    rng = np.random.default_rng(shape[0] * 10 + soft)
    pred = scale * rng.standard_normal(shape)
    target = rng.uniform(size=shape) if soft else rng.integers(0, 2, size=shape).astype(np.float64)
    _loss_parity(bpnn.BinaryCrossEntropyWithLogits(), tnn.BCEWithLogitsLoss(), pred, target, _t(target))


def test_loss_backward_can_be_called_twice():
    # backward() returns the same gradient every time it is asked (no in-place drift).
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((4, 3))
    for loss, target in ((bpnn.SoftmaxCrossEntropy(), rng.integers(0, 3, size=4)),
                         (bpnn.SoftmaxCrossEntropy(), np.eye(3)[[0, 2, 1, 1]]),
                         (bpnn.MSE(), rng.standard_normal((4, 3))),
                         (bpnn.BinaryCrossEntropyWithLogits(), rng.uniform(size=(4, 3)))):
        loss.forward(pred, target)
        first = np.array(loss.backward())
        np.testing.assert_array_equal(loss.backward(), first, err_msg=type(loss).__name__)


def test_model_and_loss_end_to_end_match_torch():
    rng = np.random.default_rng(5)
    model = Sequential([Dense(8), BatchNorm(), ReLU(), Residual([Dense(8), ELU()]), Dense(4)],
                       input_shape=(3,), seed=5, dtype="float64")
    _randomize(model, rng)
    tmodel = to_torch(model).train()
    x, labels = rng.standard_normal((10, 3)), rng.integers(0, 4, size=10)
    loss = bpnn.SoftmaxCrossEntropy()
    value = loss.forward(model.forward(x, training=True), labels)
    model.zero_grad()
    gx = model.backward(loss.backward())
    xt = _t(x).requires_grad_(True)
    tv = tnn.CrossEntropyLoss()(tmodel(xt), torch.from_numpy(labels))
    tv.backward()
    np.testing.assert_allclose(float(value), tv.item(), rtol=1e-10)
    _close(gx, xt.grad, "input gradient")
    for name, _, g in model.named_parameters():
        _close(g, _torch_grad_in_bpnn_layout(tmodel, name, tmodel.get_parameter(name)), name)
