"""The per-sample Jacobian (Module.backward_per_sample, bpnn.nn.jacobian): finite
differences, PyTorch's torch.func.jacrev/vmap, and agreement with ordinary backward."""
from __future__ import annotations

import numpy as np
import pytest

import bpnn
from bpnn.nn import jacobian

EPS = 1e-6


def _randomize(model, rng):
    for _, p, _ in model.named_parameters():
        p[...] = rng.standard_normal(p.shape) * 0.7
    for name, b in model.named_buffers():
        b[...] = rng.uniform(0.5, 2.0, b.shape) if name.endswith("running_var") else rng.standard_normal(b.shape)


def _numerical_jacobian(model, x):
    flat = model.flat_parameters()
    cols = []
    for j in range(len(flat)):
        old = flat.params[j]
        flat.params[j] = old + EPS
        yp = np.asarray(model.forward(x, training=False)).ravel()
        flat.params[j] = old - EPS
        ym = np.asarray(model.forward(x, training=False)).ravel()
        flat.params[j] = old
        cols.append((yp - ym) / (2 * EPS))
    return np.stack(cols, axis=1)


def _models():
    D, S = bpnn.Dense, bpnn.Sequential
    return {
        "dense-tanh-dense": (lambda: S([D(5), bpnn.Tanh(), D(3)]), (7, 4)),
        "sigmoid-softmax": (lambda: S([D(4), bpnn.Sigmoid(), D(3), bpnn.Softmax()]), (6, 3)),
        "relu-leaky-elu-softplus": (lambda: S([D(6), bpnn.ReLU(), D(5), bpnn.LeakyReLU(0.2), D(4), bpnn.ELU(),
                                               D(3), bpnn.Softplus(), D(2), bpnn.Identity()]), (5, 3)),
        "residual-projection": (lambda: S([D(4), bpnn.Residual([D(6), bpnn.Tanh(), D(3)], shortcut=D(3)),
                                           bpnn.Residual([D(3), bpnn.Tanh(), D(3)]), D(2)]), (5, 3)),
        "batchnorm-eval": (lambda: S([D(4), bpnn.BatchNorm(), bpnn.Tanh(), D(2)]), (6, 3)),
        "flatten-dropout-nobias": (lambda: S([bpnn.Flatten(), D(5, use_bias=False), bpnn.Tanh(), bpnn.Dropout(0.5),
                                              D(2)]), (4, 2, 3)),
        "batchnorm-2d-input": (lambda: S([bpnn.BatchNorm(), bpnn.Flatten(), D(3)]), (4, 2, 3)),
        "frozen-middle": (lambda: S([D(4), bpnn.Tanh(), D(4, trainable=False), bpnn.Tanh(), D(2)]), (5, 3)),
        # small CNNs: several and one input channels, stride, dilation, 1×1, every pooling
        "conv-maxpool": (lambda: S([bpnn.Conv2D(3, 3, padding=1), bpnn.Tanh(), bpnn.MaxPool2D(2),
                                    bpnn.Conv2D(2, 2, stride=2, dilation=1), bpnn.Flatten(), D(2)]), (3, 2, 6, 6)),
        "conv1ch-avgpool-gap": (lambda: S([bpnn.Conv2D(3, 3, dilation=2, padding="same"), bpnn.Tanh(),
                                           bpnn.AvgPool2D(2, padding=1), bpnn.Conv2D(2, 1, use_bias=False),
                                           bpnn.GlobalAvgPool2D(), D(2)]), (4, 1, 5, 6)),
        "conv-residual-bn-eval": (lambda: S([bpnn.Conv2D(2, 3, padding=1),
                                             bpnn.Residual([bpnn.Conv2D(2, 3, padding=1), bpnn.BatchNorm(), bpnn.Tanh()],
                                                           shortcut=bpnn.Conv2D(2, 1)),
                                             bpnn.Flatten(), D(2)]), (3, 2, 4, 4)),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_jacobian_matches_central_differences(name, rng):
    make, shape = _models()[name]
    model = make()
    model.dtype = np.dtype("float64")
    x = rng.standard_normal(shape)
    model.build(shape[1:], rng=np.random.default_rng(0), dtype="float64")
    _randomize(model, rng)
    y, J = jacobian(model, x)
    n, k = y.shape[0], int(np.prod(y.shape[1:]))
    assert J.shape == (n * k, len(model.flat_parameters()))
    Jn = _numerical_jacobian(model, x)
    scale = np.abs(Jn).max()
    assert np.abs(J - Jn).max() <= 1e-7 * max(scale, 1.0), f"{name}: max |J − J_fd| {np.abs(J - Jn).max():.3e}"
    np.testing.assert_allclose(y, model.forward(x, training=False))


def test_frozen_layers_have_no_columns(rng):
    model = bpnn.Sequential([bpnn.Dense(4), bpnn.Tanh(), bpnn.Dense(4, trainable=False), bpnn.Dense(2)],
                            input_shape=(3,), seed=0, dtype="float64")
    _, J = jacobian(model, rng.standard_normal((5, 3)))
    assert J.shape[1] == (3 * 4 + 4) + (4 * 2 + 2)


def test_per_sample_rows_sum_to_the_ordinary_gradient(rng):
    # Σ_n J_nᵀ g_n must equal what backward() stores for the cotangent g (MSE, mean).
    model = bpnn.Sequential([bpnn.Dense(6), bpnn.Tanh(), bpnn.Dense(3)], input_shape=(4,), seed=1,
                            dtype="float64")
    x, t = rng.standard_normal((9, 4)), rng.standard_normal((9, 3))
    y, J = jacobian(model, x)
    loss = bpnn.losses.MSE()
    model.forward(x, training=True)
    loss.forward(y, t)
    g = loss.backward()
    model.backward(g, input_grad=False)
    np.testing.assert_allclose(J.T @ g.ravel(), model.flat_parameters().grads, rtol=1e-12, atol=1e-14)


def test_jacobian_equals_torch_jacrev_vmap(rng):
    torch = pytest.importorskip("torch")
    from torch.func import functional_call, jacrev, vmap

    model = bpnn.Sequential([bpnn.Dense(5), bpnn.Tanh(), bpnn.Dense(4), bpnn.Sigmoid(), bpnn.Dense(3)],
                            input_shape=(4,), seed=3, dtype="float64")
    _randomize(model, rng)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4), torch.nn.Sigmoid(),
                             torch.nn.Linear(4, 3)).double()
    with torch.no_grad():
        for i in (0, 2, 4):
            tm[i].weight.copy_(torch.from_numpy(model[i].params["weight"].T.copy()))
            tm[i].bias.copy_(torch.from_numpy(model[i].params["bias"].copy()))
    x = rng.standard_normal((8, 4))
    params = {k: v.detach() for k, v in tm.named_parameters()}

    def f(p, xi):
        return functional_call(tm, p, (xi.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(f), in_dims=(None, 0))(params, torch.from_numpy(x))
    blocks = []
    for name in model.flat_parameters().names:
        j = jac[name].numpy()  # (N, K, *torch shape)
        if name.endswith("weight"):
            j = j.swapaxes(-1, -2)  # torch (out, in) -> bpnn (in, out)
        blocks.append(j.reshape(j.shape[0], j.shape[1], -1))
    J_torch = np.concatenate(blocks, axis=2).reshape(8 * 3, -1)
    _, J = jacobian(model, x)
    np.testing.assert_allclose(J, J_torch, rtol=1e-12, atol=1e-14)


def test_out_buffer_is_filled_and_checked(rng):
    model = bpnn.Sequential([bpnn.Dense(3), bpnn.Tanh(), bpnn.Dense(2)], input_shape=(2,), seed=0, dtype="float64")
    x = rng.standard_normal((4, 2))
    p = len(model.flat_parameters())
    buf = np.full(4 * 2 * p, np.nan)
    _, J = jacobian(model, x, out=buf)
    assert np.shares_memory(J, buf) and np.isfinite(buf).all()
    with pytest.raises(ValueError, match="out: has 3 entries"):
        jacobian(model, x, out=np.empty(3))


def test_batchnorm_in_training_mode_refuses_per_sample_backward(rng):
    bn = bpnn.BatchNorm()
    bn.build((3,), dtype="float64")
    bn.forward(rng.standard_normal((5, 3)), training=True)
    with pytest.raises(NotImplementedError, match="evaluation mode"):
        bn.backward_per_sample(np.ones((1, 5, 3)), lambda name: None)


def test_layer_without_support_names_itself(rng):
    class Doubler(bpnn.Module):
        def forward(self, x, training=False):
            return 2 * x

        def backward(self, grad_out, input_grad=True):
            return 2 * grad_out

    model = bpnn.Sequential([bpnn.Dense(3), Doubler(), bpnn.Dense(1)], input_shape=(2,), seed=0, dtype="float64")
    with pytest.raises(NotImplementedError, match="Doubler does not implement backward_per_sample"):
        jacobian(model, rng.standard_normal((4, 2)))
