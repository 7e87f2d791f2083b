"""L1 / L2 penalties: values and gradients checked numerically, the Trainer's hook
(penalty reported apart from the data loss, gradient added before the step) against a
torch loop with the penalty in its loss, and the per-layer / per-module mechanism."""
from __future__ import annotations

import numpy as np
import pytest

import bpnn
from bpnn import optim
from bpnn.nn.regularizers import penalties


def _w(rng, shape, dtype=np.float64):
    w = rng.standard_normal(shape)
    w[np.abs(w) < 1e-3] = 0.5  # |w| is not differentiable at 0: keep finite differences away from it
    return w.astype(dtype)


def _numeric_grad(f, w, eps=1e-6):
    g = np.zeros_like(w)
    flat, gf = w.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f(w)
        flat[i] = old - eps
        down = f(w)
        flat[i] = old
        gf[i] = (up - down) / (2 * eps)
    return g


REGS = [optim.L2(0.3), optim.L1(0.2), optim.L1L2(l1=0.05, l2=0.4)]


@pytest.mark.parametrize("reg", REGS, ids=lambda r: repr(r))
def test_penalty_values_and_gradients(reg, kernels, rng):
    # values by the formulas λΣ|w| and λ/2 Σw²
    w = _w(rng, (6, 5))
    l1 = getattr(reg, "l1", 0.0)
    l2 = getattr(reg, "l2", 0.0)
    want = l1 * np.abs(w).sum() + 0.5 * l2 * (w**2).sum()
    assert reg(w) == pytest.approx(want, rel=1e-13)
    # gradients by central differences, and add_to = gradient added in place + the value
    numeric = _numeric_grad(reg.penalty, w.copy())
    np.testing.assert_allclose(reg.gradient(w), numeric, rtol=1e-7, atol=1e-9)
    g0 = rng.standard_normal(w.shape)
    g = g0.copy()
    assert reg.add_to(w, g) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(g, g0 + numeric, rtol=1e-7, atol=1e-9)


def test_l1_subgradient_is_zero_at_zero(kernels):
    w = np.array([[0.0, -2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(optim.L1(0.5).gradient(w), [[0.0, -0.5], [0.5, 0.0]])


def test_float32_penalties_accumulate_accurately(kernels, rng):
    w = _w(rng, (300, 200), np.float32)
    g = np.zeros_like(w)
    got = optim.L2(1.0).add_to(w, g)
    assert got == pytest.approx(0.5 * (w.astype(np.float64) ** 2).sum(), rel=1e-5)
    np.testing.assert_allclose(g, w, rtol=1e-6)


def _model(reg_first=None, reg_second=None, seed=0):
    return bpnn.Sequential([bpnn.Dense(7, init="he_uniform", bias_init=bpnn.init.Uniform(-0.5, 0.5),
                                       regularizer=reg_first),
                            bpnn.Tanh(),
                            bpnn.Dense(3, bias_init=bpnn.init.Uniform(-0.5, 0.5), regularizer=reg_second)],
                           input_shape=(4,), seed=seed, dtype="float64")


def test_trainer_gradient_is_the_gradient_of_loss_plus_penalty(kernels, rng):
    """The hook's gradients equal central differences of data loss + Σ R(θ)."""
    model = _model(optim.L1L2(l1=0.01, l2=0.1), optim.L2(0.2))
    X, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    loss = bpnn.SoftmaxCrossEntropy()
    opt = optim.SGD(lr=0.1).attach(model)
    pen = penalties(model)
    assert [name for name, *_ in pen.terms] == ["0.weight", "2.weight"]

    def objective(_=None):
        return float(loss.forward(model.forward(X, training=True), y)) + pen.value()

    loss.forward(model.forward(X, training=True), y)
    model.backward(loss.backward(), input_grad=False)
    value = pen.apply()
    assert value == pytest.approx(pen.value())
    analytic = opt._flat.grads.copy()
    numeric = _numeric_grad(lambda _: objective(), opt._flat.params)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["l2", "l1"])
def test_trainer_with_penalty_matches_torch(kind, kernels):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    lam = 0.05
    reg = optim.L2(lam) if kind == "l2" else optim.L1(lam)
    model = _model(reg, None)
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    with torch.no_grad():
        for i in (0, 2):
            tmodel[i].weight.copy_(torch.from_numpy(model[i].params["weight"].T.copy()))
            tmodel[i].bias.copy_(torch.from_numpy(model[i].params["bias"].copy()))
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((48, 4)), rng.integers(0, 3, 48)
    trainer = bpnn.Trainer(model, optimizer=optim.SGD(lr=0.2, momentum=0.9))
    hist = trainer.fit(X, y, epochs=4, batch_size=16, shuffle=False, verbose=False)

    topt = torch.optim.SGD(tmodel.parameters(), lr=0.2, momentum=0.9)
    data_loss, penalty = [], []
    for _ in range(4):
        d_sum = p_sum = 0.0
        for i in range(0, 48, 16):
            topt.zero_grad()
            data = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(X[i:i + 16])),
                                                     torch.from_numpy(y[i:i + 16]))
            w = tmodel[0].weight
            pen = lam / 2 * (w**2).sum() if kind == "l2" else lam * w.abs().sum()
            (data + pen).backward()
            topt.step()
            d_sum += float(data.detach()) * 16
            p_sum += float(pen.detach()) * 16
        data_loss.append(d_sum / 48)
        penalty.append(p_sum / 48)
    for i in (0, 2):
        np.testing.assert_allclose(model[i].params["weight"], tmodel[i].weight.detach().numpy().T, rtol=1e-6)
        np.testing.assert_allclose(model[i].params["bias"], tmodel[i].bias.detach().numpy(), rtol=1e-6)
    # History: `loss` is the data loss alone, `penalty` the penalty term, both epoch means
    np.testing.assert_allclose(hist.history["loss"], data_loss, rtol=1e-9)
    np.testing.assert_allclose(hist.history["penalty"], penalty, rtol=1e-9)
    assert min(hist.history["penalty"]) > 0.01 * max(hist.history["loss"])  # a term that matters


def test_l2_on_every_parameter_equals_sgd_weight_decay(kernels):
    """L2(λ) on all weights and biases adds the same gradient as SGD's weight_decay=λ."""
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((32, 4)), rng.integers(0, 3, 32)
    finals = []
    for with_reg in (True, False):
        model = _model()
        if with_reg:
            for layer in (model[0], model[2]):
                layer.regularizers = {"weight": optim.L2(0.1), "bias": optim.L2(0.1)}
        opt = optim.SGD(lr=0.1, momentum=0.5, weight_decay=0.0 if with_reg else 0.1)
        bpnn.Trainer(model, optimizer=opt).fit(X, y, epochs=3, batch_size=8, shuffle=False, verbose=False)
        finals.append(np.concatenate([p.ravel() for _, p, _ in model.named_parameters()]))
    np.testing.assert_allclose(finals[0], finals[1], rtol=1e-12)


def test_no_regularizer_means_no_penalty_key_and_no_work():
    model = _model()
    model.build((4,))
    assert penalties(model) is None
    rng = np.random.default_rng(0)
    hist = bpnn.Trainer(model, optimizer="sgd").fit(rng.standard_normal((8, 4)), rng.integers(0, 3, 8),
                                                    epochs=1, verbose=False)
    assert "penalty" not in hist.history


def test_frozen_layers_are_not_penalized():
    model = _model(optim.L2(1.0), optim.L1(1.0))
    model[0].trainable = False
    assert [name for name, *_ in penalties(model).terms] == ["2.weight"]


def test_dense_regularizer_config_round_trip():
    layer = bpnn.Dense(4, regularizer=optim.L1L2(l1=0.001, l2=0.01))
    cfg = layer.get_config()
    assert cfg["regularizer"] == {"class_name": "l1_l2", "config": {"l1": 0.001, "l2": 0.01}}
    again = bpnn.Dense.from_config(cfg)
    assert repr(again.regularizers["weight"]) == repr(layer.regularizers["weight"])
    assert "regularizer" not in bpnn.Dense(4).get_config()
    assert isinstance(bpnn.Dense(4, regularizer="l2").regularizers["weight"], optim.L2)
    model = bpnn.Sequential([bpnn.Dense(3, regularizer={"class_name": "l1", "config": {"l1": 0.5}})])
    rebuilt = bpnn.nn.layers.get(bpnn.nn.layers.serialize(model))
    assert rebuilt[0].regularizers["weight"].l1 == 0.5


@pytest.mark.parametrize("build, match", [
    (lambda: optim.L2(-1.0), "l2"),
    (lambda: optim.L1(float("nan")), "l1"),
    (lambda: bpnn.Dense(3, regularizer="l3"), "l3"),
])
def test_bad_regularizer_arguments_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_a_regularizer_on_a_missing_parameter_is_an_error():
    model = _model()
    model[0].regularizers["kernel"] = optim.L2(0.1)
    with pytest.raises(ValueError, match="kernel"):
        penalties(model)
