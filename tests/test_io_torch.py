"""PyTorch interop: state dicts keyed as torch's, and bpnn → torch → bpnn round trips.

For random architectures (Dense, BatchNorm, every activation, Dropout, nested residual
blocks; and CNNs: Conv2D, pooling, convolutional residual blocks) in float64: the bpnn model, its torch twin (``to_torch_module``) and the bpnn
model rebuilt from that twin (``from_torch_module``) agree on outputs, input gradients,
every parameter gradient and the running statistics to rtol 1e-6 (bpnn ↔ bpnn exactly).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import bpnn
from bpnn.io import from_torch_state_dict, to_torch_state_dict
from bpnn.nn import (
    ELU, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, Identity, LeakyReLU,
    MaxPool2D, Module, ReLU, Residual, Sequential, Sigmoid, Softmax, Softplus, Tanh,
)

RTOL, ATOL = 1e-6, 1e-12

ACTIVATIONS = [Sigmoid, Tanh, ReLU, lambda: LeakyReLU(0.2), lambda: ELU(alpha=0.6), Identity,
               lambda: Softplus(beta=2.0, threshold=1.5), Softplus]


def _block(rng, width, depth):
    layers = []
    for i in range(depth):
        layers.append(Dense(width if i == depth - 1 else int(rng.integers(2, 7)),
                            use_bias=bool(rng.random() < 0.8)))
        if rng.random() < 0.5:
            layers.append(BatchNorm(momentum=float(rng.choice([0.1, 0.3])), eps=float(rng.choice([1e-5, 1e-3])),
                                    affine=bool(rng.random() < 0.8)))
        layers.append(ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]())
    return layers


def random_architecture(seed, training):
    """Random widths, activations, BatchNorm and Dropout, and residual blocks (identity or
    projection shortcut, some nested), as a float64 Sequential with random weights and statistics."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(2, 6))
    layers = [Dense(int(rng.integers(3, 7))), BatchNorm(), ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]()]
    for j in range(int(rng.integers(1, 4))):
        kind = rng.random() * (0.7 if j == 0 else 1.0)  # at least one residual block
        if kind < 0.4:
            width = int(rng.integers(2, 7))
            layers += [Residual(_block(rng, width, int(rng.integers(1, 3))), shortcut=Dense(width))]
        elif kind < 0.7:
            layers += [Dense(5), Residual(_block(rng, 5, 2) + [Residual(Tanh())])]
        else:
            layers += _block(rng, int(rng.integers(2, 6)), 1)
        if rng.random() < 0.4:
            layers.append(Dropout(0.0 if training else 0.5))
    layers.append(Dense(int(rng.integers(1, 4))))
    if rng.random() < 0.3:
        layers.append(Softmax())
    model = Sequential(layers, input_shape=(n_in,), seed=seed, dtype="float64")
    for name, p, _ in model.named_parameters():
        if p.ndim == 1:
            p[...] = rng.normal(0.0, 0.5, size=p.shape) + (1.0 if name.endswith("weight") else 0.0)
    for name, b in model.named_buffers():
        b[...] = rng.uniform(0.3, 2.5, size=b.shape) if name.endswith("running_var") else rng.normal(size=b.shape)
    x = rng.normal(0.0, 1.5, size=(int(rng.integers(3, 8)), n_in))
    return model, x


def random_cnn_architecture(seed, training):
    """Convolutions (kernel, stride, padding incl. "same", dilation, bias), BatchNorm over
    channels, activations, max / average pooling, convolutional residual blocks, Dropout,
    then global pooling or Flatten and a Dense head; float64, random weights and statistics."""
    rng = np.random.default_rng(500 + seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(6, 10)), int(rng.integers(6, 10))
    layers = []
    for j in range(2):
        oc, stride = int(rng.integers(2, 5)), int(rng.integers(1, 3))
        padding = "same" if stride == 1 and rng.random() < 0.4 else int(rng.integers(0, 2))
        layers.append(Conv2D(oc, int(rng.integers(1, 4)), stride=stride, padding=padding,
                             dilation=2 if rng.random() < 0.2 else 1, use_bias=bool(rng.random() < 0.8)))
        if rng.random() < 0.6:
            layers.append(BatchNorm(momentum=float(rng.choice([0.1, 0.3]))))
        layers.append(ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]())
        if j == 0 or rng.random() < 0.4:
            layers.append(Residual([Conv2D(oc, 3, padding="same"), Tanh()]) if rng.random() < 0.5 else
                          Residual([Conv2D(2, 3, padding=1), ReLU()], shortcut=Conv2D(2, 1, use_bias=False)))
        if rng.random() < 0.5:
            layers.append(MaxPool2D(2, stride=1, padding=int(rng.integers(0, 2))) if rng.random() < 0.5 else
                          AvgPool2D(2, stride=1, padding=1, count_include_pad=bool(rng.random() < 0.5)))
        if rng.random() < 0.3:
            layers.append(Dropout(0.0 if training else 0.5))
    layers += [GlobalAvgPool2D()] if rng.random() < 0.5 else [Flatten()]
    layers.append(Dense(int(rng.integers(2, 4))))
    model = Sequential(layers, input_shape=(c, h, w), seed=seed, dtype="float64")
    for name, p, _ in model.named_parameters():
        if p.ndim == 1:
            p[...] = rng.normal(0.0, 0.5, size=p.shape) + (1.0 if name.endswith("weight") else 0.0)
    for name, b in model.named_buffers():
        b[...] = rng.uniform(0.3, 2.5, size=b.shape) if name.endswith("running_var") else rng.normal(size=b.shape)
    return model, rng.normal(size=(int(rng.integers(2, 5)), c, h, w))


def _grads(model):
    return {name: g.copy() for name, _, g in model.named_parameters()}


def _close(a, b, what, exact=False):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: {a.shape} vs {b.shape}"
    if exact:
        assert a.tobytes() == b.tobytes(), what
    else:
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=what)


# --------------------------------------------------------------------------- without torch
def test_state_dict_names_and_layouts_follow_torch_sequential():
    model = Sequential([Dense(4), BatchNorm(), ReLU(), Residual([Dense(3), Tanh(), Dense(4)], shortcut=None),
                        Dense(2, use_bias=False)], input_shape=(5,), seed=0)
    sd = to_torch_state_dict(model)
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                        "1.num_batches_tracked", "3.block.0.weight", "3.block.0.bias", "3.block.2.weight",
                        "3.block.2.bias", "4.weight"]
    assert sd["0.weight"].shape == (4, 5)  # torch's (out, in)
    np.testing.assert_array_equal(sd["0.weight"], model[0].params["weight"].T)
    assert sd["1.num_batches_tracked"].dtype == np.int64 and sd["1.num_batches_tracked"].shape == ()
    sd["0.weight"][...] = 0  # copies, not views
    assert np.abs(model[0].params["weight"]).max() > 0


def test_from_torch_state_dict_round_trips_and_checks_everything_before_writing():
    a = Sequential([Dense(4), BatchNorm(), ELU(), Dense(2)], input_shape=(3,), seed=0)
    b = Sequential([Dense(4), BatchNorm(), ELU(), Dense(2)], input_shape=(3,), seed=1)
    from_torch_state_dict(b, to_torch_state_dict(a))
    assert b.state_dict().keys() == a.state_dict().keys()
    for name, value in a.state_dict().items():
        assert value.tobytes() == b.state_dict()[name].tobytes(), name
    before = b.state_dict()
    bad = to_torch_state_dict(a)
    bad["0.bias"] = np.zeros(4)
    bad["3.weight"] = np.zeros((4, 2))  # bpnn's layout instead of torch's
    with pytest.raises(ValueError, match=r"'3.weight'\]: has shape \(4, 2\) \(torch layout\); this model needs \(2, 4\)"):
        from_torch_state_dict(b, bad)
    with pytest.raises(ValueError, match=r"missing: \['3.bias'\]"):
        from_torch_state_dict(b, {k: v for k, v in to_torch_state_dict(a).items() if k != "3.bias"})
    with pytest.raises(ValueError, match=r"unexpected: \['head.weight'\]"):
        from_torch_state_dict(b, {**to_torch_state_dict(a), "head.weight": np.ones((2, 2))})
    nan = to_torch_state_dict(a)
    nan["1.running_var"][0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        from_torch_state_dict(b, nan)
    for name, value in b.state_dict().items():  # nothing was written by the failed calls
        assert value.tobytes() == before[name].tobytes(), name


def test_non_strict_loading_keeps_a_new_head():
    body = Sequential([Dense(4), Tanh(), Dense(3)], input_shape=(2,), seed=0)
    new = Sequential([Dense(4), Tanh(), Dense(3)], input_shape=(2,), seed=5)
    head = new[2].params["weight"].copy()
    sd = {k: v for k, v in to_torch_state_dict(body).items() if k.startswith("0.")}
    from_torch_state_dict(new, sd, strict=False)
    np.testing.assert_array_equal(new[0].params["weight"], body[0].params["weight"])
    np.testing.assert_array_equal(new[2].params["weight"], head)


def test_layers_without_a_known_torch_layout_are_refused_not_guessed():
    class Scale(Module):  # an unregistered layer with a parameter
        def _build(self, input_shape):
            self._add_param("weight", bpnn.init.get("ones"), input_shape)
            return input_shape

    model = Sequential([Dense(3), Scale()], input_shape=(2,))
    with pytest.raises(NotImplementedError, match="no known PyTorch layout"):
        to_torch_state_dict(model)
    with pytest.raises(ValueError, match="not built"):
        to_torch_state_dict(Sequential([Dense(2)]))


def test_state_dict_functions_work_without_torch_installed():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import bpnn\n"
        "from bpnn.io import to_torch_state_dict, from_torch_state_dict, to_torch_module\n"
        "m = bpnn.Sequential([bpnn.Dense(3), bpnn.BatchNorm(), bpnn.Dense(2)], input_shape=(4,), seed=0)\n"
        "from_torch_state_dict(m, to_torch_state_dict(m))\n"
        "try:\n    to_torch_module(m)\nexcept ImportError as e:\n    print('ImportError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ImportError: converting to or from torch modules needs PyTorch" in out.stdout


# --------------------------------------------------------------------------- with torch
def _torch():
    return pytest.importorskip("torch")


def _forward_backward_bpnn(model, x, R, training):
    y = model.forward(x, training=training)
    model.zero_grad()
    gx = model.backward(R.copy())
    return np.array(y), np.array(gx), _grads(model)


def _forward_backward_torch(torch, tmodel, x, R, training):
    tmodel.train(training)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    tmodel.zero_grad(set_to_none=True)
    yt = tmodel(xt)
    yt.backward(torch.from_numpy(R))
    grads = {}
    for name, p in tmodel.named_parameters():
        g = p.grad.detach().numpy() if p.grad is not None else np.zeros(tuple(p.shape))
        owner = tmodel.get_submodule(name.rpartition(".")[0])
        grads[name] = g.T if isinstance(owner, torch.nn.Linear) and name.endswith("weight") else g
    return yt.detach().numpy(), xt.grad.numpy(), grads


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("seed", [f"mlp{i}" for i in range(12)] + [f"cnn{i}" for i in range(6)])
def test_bpnn_to_torch_to_bpnn_reproduces_outputs_and_gradients(seed, training):
    torch = _torch()
    from bpnn.io import from_torch_module, to_torch_module
    from bpnn.io.torch_modules import TorchResidual

    make = random_cnn_architecture if seed.startswith("cnn") else random_architecture
    seed = int(seed[3:])
    model, x = make(seed, training)
    tmodel = to_torch_module(model)
    assert next(tmodel.parameters()).dtype == torch.float64
    assert [n for n, _ in tmodel.named_parameters()] == [n for n, _, _ in model.named_parameters()]
    assert any(isinstance(m, TorchResidual) for m in tmodel.modules())
    back = from_torch_module(tmodel, input_shape=model.input_shape, seed=seed)
    if make is random_architecture:
        assert bpnn.nn.layers.serialize(back)["config"]["layers"] == bpnn.nn.layers.serialize(model)["config"]["layers"]
    else:  # a strided "same" convolution comes back as its explicit padding: the same function
        assert [type(m) for m in back.modules()] == [type(m) for m in model.modules()]

    R = np.random.default_rng(seed + 1).standard_normal((len(x), model.output_shape[-1]))
    y_b, gx_b, g_b = _forward_backward_bpnn(model, x, R, training)
    y_t, gx_t, g_t = _forward_backward_torch(torch, tmodel, x, R, training)
    y_r, gx_r, g_r = _forward_backward_bpnn(back, x, R, training)

    _close(y_t, y_b, "torch output")
    _close(gx_t, gx_b, "torch input gradient")
    _close(y_r, y_b, "round-trip output", exact=True)
    _close(gx_r, gx_b, "round-trip input gradient", exact=True)
    assert list(g_t) == list(g_b) == list(g_r)
    for name in g_b:
        _close(g_t[name], g_b[name], f"torch gradient of {name}")
        _close(g_r[name], g_b[name], f"round-trip gradient of {name}", exact=True)
    tbuf = {n: b.numpy() for n, b in tmodel.named_buffers() if not n.endswith("num_batches_tracked")}
    for name, b in model.named_buffers():  # running statistics moved identically (training) or not at all
        _close(tbuf[name], b, f"running statistic {name}")
        _close(dict(back.named_buffers())[name], b, f"round-trip running statistic {name}", exact=True)


def test_fine_tuning_a_torch_trained_network_in_bpnn():
    torch = _torch()
    from bpnn.io import from_torch_module

    torch.manual_seed(0)
    tnet = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.BatchNorm1d(12), torch.nn.ReLU(),
                               torch.nn.Dropout(0.1), torch.nn.Linear(12, 3))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(128, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    opt = torch.optim.SGD(tnet.parameters(), lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(tnet(torch.from_numpy(X)), torch.from_numpy(y)).backward()
        opt.step()
    tnet.eval()
    model = from_torch_module(tnet, seed=0)
    assert model.dtype == np.float32 and model.input_shape == (6,)
    with torch.no_grad():
        expected = tnet(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-5, atol=1e-5)
    # and it trains on in bpnn, from the torch weights
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.1))
    before = trainer.evaluate(X, y)["loss"]
    trainer.fit(X, y, epochs=5, batch_size=32, verbose=False)
    assert trainer.evaluate(X, y)["loss"] < before


def test_from_torch_module_refuses_what_bpnn_cannot_represent():
    torch = _torch()
    from bpnn.io import from_torch_module

    nn = torch.nn
    with pytest.raises(NotImplementedError, match="GELU has no bpnn equivalent"):
        from_torch_module(nn.Sequential(nn.Linear(3, 2), nn.GELU()))
    with pytest.raises(NotImplementedError, match="momentum=None"):
        from_torch_module(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2, momentum=None)))
    with pytest.raises(NotImplementedError, match="last axis"):
        from_torch_module(nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=0)))
    with pytest.raises(ValueError, match="input_shape: cannot be inferred"):
        from_torch_module(nn.Sequential(nn.Flatten(), nn.Linear(6, 2)))
    model = from_torch_module(nn.Sequential(nn.Flatten(), nn.Linear(6, 2)), input_shape=(2, 3))
    assert model.output_shape == (2,) and isinstance(model[0], Flatten)


def test_a_strided_same_convolution_with_uneven_padding_is_refused_not_approximated():
    _torch()
    from bpnn.io import to_torch_module

    model = Sequential([Conv2D(2, 2, stride=2, padding="same"), Flatten(), Dense(2)], input_shape=(1, 5, 5))
    with pytest.raises(NotImplementedError, match="uneven padding"):
        to_torch_module(model)
    even = Sequential([Conv2D(2, 3, stride=2, padding="same"), Flatten(), Dense(2)], input_shape=(1, 5, 5))
    assert to_torch_module(even)[0].padding == (1, 1)


def test_drop_connect_parameters_travel_as_linear_ones():
    a = bpnn.Sequential([bpnn.nn.DropConnect(4, p=0.5), bpnn.nn.ReLU(), bpnn.Dense(2)], input_shape=(3,), seed=0)
    sd = to_torch_state_dict(a)
    assert sd["0.weight"].shape == (4, 3)  # torch's (out, in)
    b = bpnn.Sequential([bpnn.Dense(4), bpnn.nn.ReLU(), bpnn.Dense(2)], input_shape=(3,), seed=1)
    from_torch_state_dict(b, sd)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
