"""Finite-difference gradient checks over every registered layer and loss.

The layer test is parametrized over ``bpnn.nn.layers.names()`` and the loss test over
``bpnn.losses.losses.names()``, so a newly registered class is picked up automatically —
and fails until a constructor example is added to ``LAYER_CASES`` / ``LOSS_CASES`` below.

Every check runs in float64 (central differences, ε = ``EPS``) with random, non-default
parameter values, over several input shapes that include a batch of one.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import bpnn
from bpnn.losses import losses as loss_registry
from bpnn.nn import AvgPool2D, Conv2D, GlobalAvgPool2D, MaxPool2D
from bpnn.nn import (
    ELU, BatchNorm, Dense, DropConnect, Dropout, Flatten, Identity, LeakyReLU, ReLU, Residual, Sequential,
    Sigmoid, Softmax, Softplus, Tanh, layers as layer_registry,
)

#: Worst relative error accepted between backprop and central differences (float64).
TOL = 1e-6
#: Finite-difference step. In float64 the error of a central difference is about
#: u·|L|/ε (rounding) + ε²·|L‴|/6 (truncation), smallest near ε ≈ u^(1/3) ≈ 6e-6; with
#: ε = 1e-6 the rounding part alone reaches 4e-6 relative error on saturated
#: softmax-cross-entropy logits, so the checks run with 1e-5 (worst case seen: 4e-7).
EPS = 1e-5
THIS_FILE = "tests/test_gradcheck_registry.py"


# --------------------------------------------------------------------------- helpers
def _randomize(module: bpnn.Module, rng: np.random.Generator) -> None:
    """Move every parameter and running statistic away from its (often trivial) default.

    Biases start at 0 and BatchNorm at γ = 1, β = 0, r_mean = 0, r_var = 1; a check at
    those values could miss a wrongly placed term, so all of them get random values.
    """
    for _, p, _ in module.named_parameters():
        p += 0.5 * rng.standard_normal(p.shape)
    for name, b in module.named_buffers():
        if name.endswith("running_var"):
            b[...] = rng.uniform(0.5, 2.0, size=b.shape)
        else:
            b[...] = rng.standard_normal(b.shape)


@dataclass
class Case:
    """One constructor example of a registry entry, checked in one mode over ``shapes``.

    ``shapes`` are full input shapes (batch first). ``raises`` lists shapes whose
    forward must fail with a ValueError matching ``match`` (e.g. BatchNorm statistics
    of a single value). ``check`` may assert something about the built module and an
    input, to show that the case exercises what it claims to.
    """

    id: str
    make: Callable[[], bpnn.Module]
    training: bool
    shapes: tuple
    raises: tuple = ()
    match: str = ""
    check: Callable | None = field(default=None)


def _drops_something(module, x):
    # Dropout in training mode must really zero entries, or the case would test nothing.
    y = np.asarray(module.forward(x, training=True))
    assert np.any(y == 0) and np.any(y != 0), "dropout case masks nothing (or everything)"


def _drops_weights(module, x):
    # DropConnect in training mode must really drop some weights and keep others, and
    # its weight gradient must be zero exactly where the weight was dropped.
    module.forward(x, training=True)
    mask = np.asarray(module._mask)
    assert np.any(mask == 0) and np.any(mask != 0), "drop_connect case drops nothing (or everything)"
    module.backward(np.ones((x.shape[0], module.units)))
    assert np.all(module.grads["weight"][mask == 0] == 0)


def _bn_eval_uses_running_stats(module, x):
    # In evaluation mode the output must follow the (randomized) running statistics.
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    rm, rv = (module.buffers[k].reshape(bshape) for k in ("running_mean", "running_var"))
    gamma, beta = (module.params[k].reshape(bshape) for k in ("weight", "bias"))
    expected = (x - rm) / np.sqrt(rv + module.eps) * gamma + beta
    np.testing.assert_allclose(module.forward(x, training=False), expected, rtol=1e-12, atol=1e-12)
    assert not np.allclose(rm, 0) and not np.allclose(rv, 1), "running statistics left at their defaults"


def _mixed_stack():
    return Sequential([
        Dense(6), BatchNorm(), Tanh(), Dropout(0.3), Dense(5), ELU(alpha=0.7),
        Residual([Dense(4), Softplus(beta=1.5), Dense(5)]), LeakyReLU(0.1), Dense(4),
        Sigmoid(), Dense(3), Softmax(),
    ], seed=3)


#: registry name -> constructor examples. Every entry of ``bpnn.nn.layers`` needs one.
LAYER_CASES: dict[str, list[Case]] = {
    "identity": [Case("default", Identity, True, ((1, 3), (4, 5), (2, 3, 4)))],
    "sigmoid": [Case("default", Sigmoid, True, ((1, 3), (4, 5), (2, 3, 4)))],
    "tanh": [Case("default", Tanh, True, ((1, 3), (4, 5), (2, 3, 4)))],
    "relu": [Case("default", ReLU, True, ((1, 3), (4, 5), (2, 3, 4)))],
    "leaky_relu": [
        Case("default", LeakyReLU, True, ((1, 3), (4, 5))),
        Case("slope_0.2", lambda: LeakyReLU(0.2), True, ((1, 3), (2, 3, 4))),
    ],
    "elu": [
        Case("default", ELU, True, ((1, 3), (4, 5))),
        Case("alpha_0.5", lambda: ELU(alpha=0.5), True, ((1, 3), (2, 3, 4))),
    ],
    "softplus": [
        Case("default", Softplus, True, ((1, 3), (4, 5))),
        # β x crosses the threshold for some entries: both regimes are checked.
        Case("beta_2_threshold_1", lambda: Softplus(beta=2.0, threshold=1.0), True,
             ((1, 3), (6, 5), (2, 3, 4))),
    ],
    "softmax": [Case("last_axis", Softmax, True, ((1, 4), (5, 3), (2, 3, 4)))],
    "batch_norm": [
        Case("training", BatchNorm, True, ((2, 3), (6, 4), (3, 2, 5), (2, 3, 2, 2), (1, 3, 4)),
             raises=((1, 3), (1, 4, 1)), match="more than one value per channel"),
        Case("training_no_affine", lambda: BatchNorm(affine=False), True, ((5, 3), (3, 2, 4)),
             raises=((1, 2),), match="more than one value per channel"),
        Case("eval", BatchNorm, False, ((1, 3), (6, 4), (3, 2, 5), (1, 2, 2, 3)),
             check=_bn_eval_uses_running_stats),
        Case("eval_momentum_eps", lambda: BatchNorm(momentum=0.3, eps=1e-3), False, ((1, 4), (4, 4))),
    ],
    "sequential": [
        Case("mixed_stack_training", _mixed_stack, True, ((4, 3), (7, 3))),
        Case("mixed_stack_eval", _mixed_stack, False, ((1, 3), (7, 3))),
        Case("flatten_stack", lambda: Sequential(
            [Flatten(), Dense(5), ReLU(), Dense(4), Identity(), Dense(2)], seed=1),
            True, ((1, 2, 3), (4, 2, 3))),
    ],
    "residual": [
        Case("projection_shortcut",
             lambda: Residual([Dense(4), Tanh(), Dense(5)], shortcut=Dense(5)), True,
             ((1, 3), (6, 3))),
        Case("identity_shortcut", lambda: Residual([Dense(4), Tanh(), Dense(5)]), True,
             ((1, 5), (6, 5))),
        Case("single_layer_block", lambda: Residual(Sigmoid()), True, ((1, 4), (3, 2, 4))),
        Case("batchnorm_in_block", lambda: Residual([Dense(4), BatchNorm(), ReLU(), Dense(4)]),
             True, ((5, 4),), raises=((1, 4),), match="more than one value per channel"),
    ],
    "dense": [
        Case("default", lambda: Dense(3), True, ((1, 4), (5, 4), (8, 2))),
        Case("no_bias", lambda: Dense(2, use_bias=False), True, ((1, 3), (4, 3))),
    ],
    "dropout": [
        # gradcheck restores the generator before every forward: the mask is held fixed.
        Case("training", lambda: Dropout(0.5), True, ((1, 8), (6, 5), (2, 3, 4)),
             check=_drops_something),
        Case("eval", lambda: Dropout(0.5), False, ((1, 3), (4, 5))),
        Case("rate_0_training", lambda: Dropout(0.0), True, ((1, 3), (4, 5))),
    ],
    "drop_connect": [
        # the mask is drawn from the layer's generator, which gradcheck restores before
        # every forward: one fixed mask over all the finite differences, as for dropout.
        Case("training", lambda: DropConnect(4, p=0.6), True, ((1, 5), (6, 5), (3, 8)),
             check=_drops_weights),
        Case("training_no_bias", lambda: DropConnect(3, p=0.5, use_bias=False), True, ((1, 4), (5, 4))),
        Case("eval", lambda: DropConnect(3, p=0.5), False, ((1, 3), (4, 3))),
        Case("p_1_training", lambda: DropConnect(2, p=1.0), True, ((1, 3), (4, 3))),
    ],
    "flatten": [Case("default", Flatten, True, ((1, 3), (1, 2, 3), (4, 2, 3, 2)))],
    # ---- convolutional layers (shapes NCHW; odd sizes, a batch of one, several strides,
    # paddings and dilations)
    "conv2d": [
        Case("k3_pad1", lambda: Conv2D(3, 3, padding=1), True, ((1, 2, 5, 5), (3, 2, 6, 7))),
        Case("k2x3_stride2_pad_dilation", lambda: Conv2D(2, (2, 3), stride=2, padding=(1, 2), dilation=(2, 1)),
             True, ((1, 3, 7, 8), (2, 3, 9, 6))),
        Case("same_stride2", lambda: Conv2D(4, 3, stride=2, padding="same"), True, ((1, 2, 7, 7), (2, 1, 8, 5))),
        Case("same_dilation2_stride_1x2", lambda: Conv2D(2, 3, stride=(1, 2), padding="same", dilation=2),
             True, ((1, 2, 5, 6), (2, 2, 6, 5))),
        Case("one_channel_valid_eval", lambda: Conv2D(5, 5, padding="valid"), False, ((1, 1, 6, 6), (2, 1, 7, 5))),
        # one channel: tiles of output columns, the last one reaching past W_out = 13 and 7
        Case("one_channel_tiles_stride_dilation", lambda: Conv2D(2, 3, stride=(1, 2), padding=1, dilation=(1, 2)),
             True, ((1, 1, 5, 27), (2, 1, 6, 15))),
        Case("one_channel_no_bias_odd_width", lambda: Conv2D(3, (2, 4), padding=(1, 2), use_bias=False), True,
             ((1, 1, 4, 12), (2, 1, 3, 9))),
        Case("pointwise_no_bias", lambda: Conv2D(3, 1, use_bias=False), True, ((1, 4, 3, 3), (2, 2, 4, 5))),
        Case("pointwise_stride2", lambda: Conv2D(3, 1, stride=2), True, ((1, 2, 5, 5), (2, 3, 4, 3))),
        # wide enough for the register-tile products (bpnn._kernels.gemm: vectors of 8 float64)
        Case("register_tiles", lambda: Conv2D(16, 3, padding=1), True, ((1, 8, 4, 5), (2, 9, 5, 4))),
    ],
    "max_pool2d": [
        Case("default_2x2", MaxPool2D, True, ((1, 2, 4, 4), (3, 3, 6, 5))),
        Case("k3_stride2_pad1", lambda: MaxPool2D(3, stride=2, padding=1), True, ((1, 2, 7, 7), (2, 1, 6, 9))),
        Case("k2x3_stride_1x2_dilation_2x1", lambda: MaxPool2D((2, 3), stride=(1, 2), dilation=(2, 1)), False,
             ((1, 2, 6, 7), (2, 1, 5, 5))),
    ],
    "avg_pool2d": [
        Case("default_2x2", AvgPool2D, True, ((1, 2, 4, 4), (3, 3, 7, 5))),
        Case("k3_stride2_pad1_exclude_pad", lambda: AvgPool2D(3, stride=2, padding=1, count_include_pad=False),
             True, ((1, 2, 7, 7), (2, 1, 6, 9))),
        Case("k3_stride1_pad1_include_pad", lambda: AvgPool2D(3, stride=1, padding=1), False, ((1, 1, 5, 4),)),
    ],
    "global_avg_pool2d": [Case("default", GlobalAvgPool2D, True, ((1, 3, 4, 5), (2, 2, 3, 3), (2, 1, 1, 1)))],
}

def _cnn_stack():
    return Sequential([
        Conv2D(3, 3, padding=1), BatchNorm(), ReLU(), MaxPool2D(2), Conv2D(4, 3, stride=2, padding="same"),
        Tanh(), AvgPool2D(2, stride=1), GlobalAvgPool2D(), Dense(3),
    ], seed=5)


def _shared_weights():
    conv = Conv2D(2, 3, padding=1)  # one object at two places: its gradients must add up
    return Sequential([conv, Tanh(), conv, Flatten(), Dense(2)], seed=6)


def _conv_residual(stride):
    return Residual([Conv2D(4, 3, stride=stride, padding=1), BatchNorm(), ReLU(), Conv2D(4, 3, padding=1),
                     BatchNorm()], shortcut=Conv2D(4, 1, stride=stride))


LAYER_CASES["sequential"] += [
    Case("cnn_stack_training", _cnn_stack, True, ((2, 2, 8, 8), (3, 1, 9, 7))),
    Case("cnn_stack_eval", _cnn_stack, False, ((1, 2, 8, 8),)),
    Case("shared_conv_training", _shared_weights, True, ((1, 2, 5, 5), (3, 2, 4, 6))),
]
LAYER_CASES["residual"] += [
    Case("conv_projection_stride2_training", lambda: _conv_residual(2), True, ((2, 3, 6, 6), (3, 2, 5, 7))),
    Case("conv_projection_stride2_eval", lambda: _conv_residual(2), False, ((1, 3, 6, 6),)),
    Case("conv_identity_shortcut", lambda: Residual([Conv2D(3, 3, padding="same"), Tanh()]), True,
         ((1, 3, 5, 5), (2, 3, 4, 6))),
]


def _built(case: Case, shape, seed: int) -> bpnn.Module:
    module = case.make()
    module.build(shape[1:], seed, np.float64)
    _randomize(module, np.random.default_rng(seed + 100))
    return module


# --------------------------------------------------------------------------- layers
@pytest.mark.parametrize("name", layer_registry.names())
def test_every_registered_layer_passes_gradcheck(name):
    cls = layer_registry.lookup(name)
    if name not in LAYER_CASES:
        pytest.fail(f"layer registry entry {name!r} ({cls.__module__}.{cls.__qualname__}) has no "
                    f"gradient-check case: add constructor examples for it to LAYER_CASES in {THIS_FILE}")
    cases = LAYER_CASES[name]
    assert cases, f"LAYER_CASES[{name!r}] is empty; give at least one constructor example"
    failures, checked = _gradcheck_cases(name, cls, cases)
    assert checked >= 2, f"{name}: give at least two input shapes"
    assert any(shape[0] == 1 for case in cases for shape in case.shapes + case.raises), (
        f"LAYER_CASES[{name!r}]: include a batch of one among the input shapes")
    assert not failures, "\n\n".join(failures)


def test_conv2d_gradcheck_on_each_product(conv_product):
    """Conv2D computes with im2col or with row tiles depending on its input channels
    (``ROW_MAX_CHANNELS``): every conv2d case, forced through each of the two."""
    failures, _ = _gradcheck_cases("conv2d", Conv2D, LAYER_CASES["conv2d"])
    assert not failures, "\n\n".join(failures)


def _gradcheck_cases(name, cls, cases):
    """(failure reports, number of checks) of the float64 gradient check over ``cases``."""
    failures, checked = [], 0
    for k, case in enumerate(cases):
        mode = "training" if case.training else "eval"
        for j, shape in enumerate(case.shapes):
            seed = 10 * k + j
            module = _built(case, shape, seed)
            assert isinstance(module, cls), (
                f"LAYER_CASES[{name!r}] case {case.id!r} builds a {type(module).__name__}, not a {cls.__name__}")
            x = np.random.default_rng(seed).standard_normal(shape)
            if case.check is not None:
                case.check(copy.deepcopy(module), x.copy())
            result = bpnn.gradcheck(module, x, training=case.training, eps=EPS, tol=TOL,
                                    seed=seed + 1000)
            checked += 1
            n_params = len(list(module.named_parameters(trainable_only=True)))
            assert len(result.errors) == 1 + n_params, (
                f"{name}/{case.id}: gradcheck compared {sorted(result.errors)}, expected the input "
                f"and {n_params} parameter(s)")
            if not result.ok:
                failures.append(f"{name}/{case.id} ({mode}), input shape {shape}:\n{result}")
        for shape in case.raises:
            module = _built(case, shape, 0)
            x = np.random.default_rng(0).standard_normal(shape)
            with pytest.raises(ValueError, match=case.match):
                bpnn.gradcheck(module, x, training=case.training, eps=EPS, tol=TOL)
    return failures, checked


def test_layer_cases_only_name_registered_layers():
    stale = sorted(set(LAYER_CASES) - set(layer_registry.names()))
    assert not stale, f"LAYER_CASES has entries for unregistered layers {stale}; use canonical registry names"


def test_batchnorm_training_with_batch_of_one_raises_a_clear_error():
    bn = BatchNorm()
    bn.build((3,), 0, np.float64)
    with pytest.raises(ValueError, match=r"BatchNorm.*training mode.*\(1, 3\).*larger batch or evaluation"):
        bn.forward(np.ones((1, 3)), training=True)
    # the same input is fine in evaluation mode, and (1, C, L) has L values per channel
    assert bn.forward(np.ones((1, 3)), training=False).shape == (1, 3)
    bn2 = BatchNorm()
    bn2.build((3, 4), 0, np.float64)
    assert bn2.forward(np.random.default_rng(0).standard_normal((1, 3, 4)), training=True).shape == (1, 3, 4)


# --------------------------------------------------------------------------- losses
def _labels(n, k, rng):
    return rng.integers(0, k, size=n)


def _one_hot(n, k, rng):
    return np.eye(k)[rng.integers(0, k, size=n)]


def _soft(n, k, rng):
    t = rng.uniform(0.1, 1.0, size=(n, k))
    return t / t.sum(axis=1, keepdims=True)


@dataclass
class LossCase:
    id: str
    make: Callable
    shapes: tuple  # prediction shapes (N, K)
    target: Callable  # (pred_shape, rng) -> target
    scale: float = 1.0  # of the predictions (large logits test the stable forms)


def _regression_target(shape, rng):
    return rng.standard_normal(shape)


def _flat_regression_target(shape, rng):
    return rng.standard_normal(shape[0])  # (N,) targets for a single output


#: registry name -> examples. Every entry of ``bpnn.losses.losses`` needs one.
LOSS_CASES: dict[str, list[LossCase]] = {
    "mse": [
        *(LossCase(f"{r}", (lambda r=r: bpnn.MSE(reduction=r)), ((1, 1), (1, 3), (6, 4)), _regression_target)
          for r in ("mean", "half_mean", "half_sum", "sum")),
        LossCase("mean_flat_target", lambda: bpnn.MSE(), ((1, 1), (5, 1)), _flat_regression_target),
    ],
    "softmax_cross_entropy": [
        LossCase("int_labels", bpnn.SoftmaxCrossEntropy, ((1, 3), (6, 4), (5, 2)),
                 lambda s, rng: _labels(s[0], s[1], rng)),
        LossCase("one_hot", bpnn.SoftmaxCrossEntropy, ((1, 3), (6, 4)),
                 lambda s, rng: _one_hot(s[0], s[1], rng)),
        LossCase("soft_targets", bpnn.SoftmaxCrossEntropy, ((1, 3), (6, 4)),
                 lambda s, rng: _soft(s[0], s[1], rng)),
        LossCase("large_logits", bpnn.SoftmaxCrossEntropy, ((4, 5),),
                 lambda s, rng: _labels(s[0], s[1], rng), scale=30.0),
    ],
    "binary_cross_entropy_with_logits": [
        LossCase("binary_targets", bpnn.BinaryCrossEntropyWithLogits, ((1, 1), (1, 3), (6, 4)),
                 lambda s, rng: rng.integers(0, 2, size=s).astype(float)),
        LossCase("soft_targets", bpnn.BinaryCrossEntropyWithLogits, ((1, 2), (5, 3)),
                 lambda s, rng: rng.uniform(0, 1, size=s)),
        LossCase("flat_target", bpnn.BinaryCrossEntropyWithLogits, ((5, 1),),
                 lambda s, rng: rng.integers(0, 2, size=s[0]).astype(float)),
        LossCase("large_logits", bpnn.BinaryCrossEntropyWithLogits, ((4, 3),),
                 lambda s, rng: rng.integers(0, 2, size=s).astype(float), scale=8.0),
    ],
}


@pytest.mark.parametrize("name", loss_registry.names())
def test_every_registered_loss_passes_gradcheck(name):
    cls = loss_registry.lookup(name)
    if name not in LOSS_CASES:
        pytest.fail(f"loss registry entry {name!r} ({cls.__module__}.{cls.__qualname__}) has no "
                    f"gradient-check case: add examples for it to LOSS_CASES in {THIS_FILE}")
    failures, checked = [], 0
    for k, case in enumerate(LOSS_CASES[name]):
        for j, shape in enumerate(case.shapes):
            rng = np.random.default_rng(100 * k + j)
            loss = case.make()
            assert isinstance(loss, cls)
            pred = case.scale * rng.standard_normal(shape)
            target = case.target(shape, rng)
            result = bpnn.gradcheck(loss, pred, target, eps=EPS, tol=TOL, seed=j)
            checked += 1
            assert list(result.errors) == ["prediction"]
            if not result.ok:
                failures.append(f"{name}/{case.id}, prediction shape {shape}:\n{result}")
    assert checked >= 2
    assert not failures, "\n\n".join(failures)


def test_loss_cases_only_name_registered_losses():
    stale = sorted(set(LOSS_CASES) - set(loss_registry.names()))
    assert not stale, f"LOSS_CASES has entries for unregistered losses {stale}; use canonical registry names"


# --------------------------------------------------------------------------- gradcheck catches bugs
class _TanhOffByOnePercent(Tanh):
    def backward(self, grad_out, input_grad=True):
        g = super().backward(grad_out, input_grad)
        return None if g is None else 1.01 * g


class _DenseWrongWeightGrad(Dense):
    def backward(self, grad_out, input_grad=True):
        gx = super().backward(grad_out, input_grad)
        self.grads["weight"] *= 1.01
        return gx


class _DenseForgetsBias(Dense):
    def backward(self, grad_out, input_grad=True):
        gx = super().backward(grad_out, input_grad)
        self.grads["bias"][...] = 0
        return gx


class _BatchNormEvalGradient(BatchNorm):
    """The classic bug: in training mode, back-propagating as if the statistics were constants."""

    def backward(self, grad_out, input_grad=True):
        self._training = False
        return super().backward(grad_out, input_grad)


class _MSEWrongScale(bpnn.MSE):
    def backward(self):
        return 1.01 * super().backward()


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_gradcheck_catches_a_wrong_input_gradient():
    good = bpnn.gradcheck(Tanh(), _x((4, 3)), tol=TOL)
    bad = bpnn.gradcheck(_TanhOffByOnePercent(), _x((4, 3)), tol=TOL)
    assert good.ok, str(good)
    assert not bad.ok and not bad, str(bad)
    assert bad.errors["input"] > 1e-3, str(bad)
    assert "FAIL" in str(bad)


def test_gradcheck_catches_a_wrong_gradient_deep_inside_a_model():
    model = Sequential([Dense(5), _TanhOffByOnePercent(), Dense(4), ReLU(), Dense(2)], seed=0)
    bad = bpnn.gradcheck(model, _x((6, 3)), tol=TOL)
    assert not bad.ok, str(bad)
    # the error reaches the input and the layers below the broken one, not those above it
    assert bad.errors["input"] > 1e-3 and bad.errors["0.weight"] > 1e-3, str(bad)
    assert bad.errors["2.weight"] <= TOL and bad.errors["4.weight"] <= TOL, str(bad)


def test_gradcheck_catches_a_wrong_parameter_gradient():
    bad = bpnn.gradcheck(_DenseWrongWeightGrad(3), _x((5, 4)), tol=TOL)
    assert not bad.ok, str(bad)
    assert bad.errors["weight"] > 1e-3 and bad.errors["input"] <= TOL and bad.errors["bias"] <= TOL, str(bad)
    bad = bpnn.gradcheck(_DenseForgetsBias(3), _x((5, 4)), tol=TOL)
    assert not bad.ok and bad.errors["bias"] > 0.5, str(bad)


def test_gradcheck_catches_batchnorm_backward_that_ignores_batch_statistics():
    bad = bpnn.gradcheck(_BatchNormEvalGradient(), _x((6, 3)), training=True, tol=TOL)
    assert not bad.ok and bad.errors["input"] > 1e-2, str(bad)


def test_gradcheck_catches_a_wrong_loss_gradient():
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    assert bpnn.gradcheck(bpnn.MSE(), pred, target, tol=TOL).ok
    bad = bpnn.gradcheck(_MSEWrongScale(), pred, target, tol=TOL)
    assert not bad.ok and bad.errors["prediction"] > 1e-3, str(bad)


def test_gradcheck_leaves_the_checked_module_unchanged():
    model = Sequential([Dense(4), BatchNorm(), Dropout(0.5), Dense(2)], input_shape=(3,), seed=0)
    before = {n: v.copy() for n, v, _ in model.named_parameters()}
    buffers = {n: b.copy() for n, b in model.named_buffers()}
    state = model.rng.bit_generator.state
    bpnn.gradcheck(model, _x((5, 3)), training=True)
    for n, v, _ in model.named_parameters():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, before[n])
    for n, b in model.named_buffers():
        np.testing.assert_array_equal(b, buffers[n])
    assert model.rng.bit_generator.state == state
