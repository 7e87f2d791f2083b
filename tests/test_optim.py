"""Optimizers: parity with torch.optim, schedules, hand-worked golden examples,
state round trips and convergence.

Tests taking the ``kernels`` fixture (tests/conftest.py) run twice: with the compiled
numba kernels and with the NumPy fallbacks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import bpnn
from bpnn import optim

torch.set_num_threads(1)  # tiny problems: one thread is fastest and spares the shared cores

N_IN, N_HID, N_OUT, BATCH, STEPS = 5, 8, 3, 16, 20


# --------------------------------------------------------------------------- helpers
def make_pair(seed=0):
    """A bpnn MLP and the same torch MLP with copied weights (float64)."""
    model = bpnn.Sequential([bpnn.Dense(N_HID, init="he_uniform", bias_init=bpnn.init.Uniform(-0.5, 0.5)),
                             bpnn.Tanh(),
                             bpnn.Dense(N_OUT, init="xavier_normal", bias_init=bpnn.init.Uniform(-0.5, 0.5))],
                            input_shape=(N_IN,), seed=seed, dtype="float64")
    tmodel = torch.nn.Sequential(torch.nn.Linear(N_IN, N_HID), torch.nn.Tanh(),
                                 torch.nn.Linear(N_HID, N_OUT)).double()
    with torch.no_grad():
        for i in (0, 2):  # bpnn's (n_in, n_out) is the transpose of torch's (out, in)
            tmodel[i].weight.copy_(torch.from_numpy(model[i].params["weight"].T.copy()))
            tmodel[i].bias.copy_(torch.from_numpy(model[i].params["bias"].copy()))
    return model, tmodel


def assert_same_params(model, tmodel, rtol=1e-6, atol=1e-12, step=None):
    for i in (0, 2):
        np.testing.assert_allclose(model[i].params["weight"], tmodel[i].weight.detach().numpy().T,
                                   rtol=rtol, atol=atol, err_msg=f"step {step}: layer {i} weight")
        np.testing.assert_allclose(model[i].params["bias"], tmodel[i].bias.detach().numpy(),
                                   rtol=rtol, atol=atol, err_msg=f"step {step}: layer {i} bias")


def batches(loss, n=STEPS, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.standard_normal((BATCH, N_IN))
        y = rng.standard_normal((BATCH, N_OUT)) if loss == "mse" else rng.integers(0, N_OUT, BATCH)
        out.append((x, y))
    return out


LOSSES = {"mse": (bpnn.MSE, torch.nn.MSELoss), "ce": (bpnn.SoftmaxCrossEntropy, torch.nn.CrossEntropyLoss)}


def bpnn_step(model, opt, loss, x, y):
    out = model.forward(x, training=True)
    value = float(loss.forward(out, y))
    model.backward(loss.backward())
    opt.step()
    return value


def first_weight_after(opt, steps):
    """The first layer's weight after ``steps`` cross-entropy steps of ``opt`` on a fresh
    make_pair() model and the batches() data."""
    model, _ = make_pair()
    opt.attach(model)
    for x, y in batches("ce", steps):
        bpnn_step(model, opt, bpnn.SoftmaxCrossEntropy(), x, y)
    return model[0].params["weight"].copy()


def torch_step(tmodel, topt, tloss, x, y):
    topt.zero_grad()
    yt = torch.from_numpy(y)
    value = tloss(tmodel(torch.from_numpy(x)), yt)
    value.backward()
    topt.step()
    return float(value.detach())


def run_parity(bpnn_opt, torch_opt_factory, loss_name, steps=STEPS, scheduler_factory=None):
    model, tmodel = make_pair()
    bpnn_opt.attach(model)
    topt = torch_opt_factory(tmodel.parameters())
    sched = scheduler_factory(topt) if scheduler_factory else None
    loss, tloss = LOSSES[loss_name][0](), LOSSES[loss_name][1]()
    moved = 0.0
    w0 = model[0].params["weight"].copy()
    for step, (x, y) in enumerate(batches(loss_name, steps)):
        if sched is not None:
            assert bpnn_opt.current_lr == pytest.approx(sched.get_last_lr()[0], rel=1e-15)
        v = bpnn_step(model, bpnn_opt, loss, x, y)
        tv = torch_step(tmodel, topt, tloss, x, y)
        assert v == pytest.approx(tv, rel=1e-9)
        if sched is not None:
            sched.step()
        assert_same_params(model, tmodel, step=step)
        moved = max(moved, float(np.abs(model[0].params["weight"] - w0).max()))
    assert bpnn_opt.step_count == steps
    assert moved > 1e-3, "the parameters should move noticeably for the comparison to mean something"
    return model


# --------------------------------------------------------------------------- parity
SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.5),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.05),
    dict(lr=0.05, momentum=0.8, weight_decay=0.1),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(lr=0.05, momentum=0.5, dampening=0.3, weight_decay=0.02),
]


@pytest.mark.parametrize("loss_name", ["mse", "ce"])
@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_matches_torch(cfg, loss_name, kernels):
    run_parity(optim.SGD(**cfg), lambda p: torch.optim.SGD(p, **cfg), loss_name)


ADAM_CONFIGS = [
    dict(),  # all defaults, lr = 1e-3
    dict(lr=0.02),
    dict(lr=0.02, weight_decay=0.1),
    dict(lr=0.02, amsgrad=True),
    dict(lr=0.02, amsgrad=True, weight_decay=0.05),
    dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3),
]


@pytest.mark.parametrize("loss_name", ["mse", "ce"])
@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_adam_matches_torch(cfg, loss_name, kernels):
    if not cfg:  # lr = 1e-3 moves little in 20 steps: run longer to make the check meaningful
        model, tmodel = make_pair()
        opt = optim.Adam().attach(model)
        topt = torch.optim.Adam(tmodel.parameters())
        loss, tloss = LOSSES[loss_name][0](), LOSSES[loss_name][1]()
        w0 = model[0].params["weight"].copy()
        for step, (x, y) in enumerate(batches(loss_name, 60)):
            bpnn_step(model, opt, loss, x, y)
            torch_step(tmodel, topt, tloss, x, y)
            assert_same_params(model, tmodel, step=step)
        assert np.abs(model[0].params["weight"] - w0).max() > 1e-2
        return
    run_parity(optim.Adam(**cfg), lambda p: torch.optim.Adam(p, **cfg), loss_name)


def test_adam_defaults_are_torch_defaults():
    ours = optim.Adam()
    theirs = torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults
    assert ours.lr == theirs["lr"]
    assert tuple(ours.betas) == tuple(theirs["betas"])
    assert ours.eps == theirs["eps"]
    assert ours.weight_decay == theirs["weight_decay"]
    assert ours.amsgrad == theirs["amsgrad"]


def test_sgd_through_trainer_matches_torch_minibatch_loop():
    """The Trainer (no shuffling, mini-batches of 16, last batch short) against a torch loop."""
    model, tmodel = make_pair()
    rng = np.random.default_rng(7)
    X = rng.standard_normal((70, N_IN))
    Y = rng.standard_normal((70, N_OUT))
    trainer = bpnn.Trainer(model, loss="mse", optimizer=optim.SGD(lr=0.05, momentum=0.9, nesterov=True))
    trainer.fit(X, Y, epochs=3, batch_size=16, shuffle=False, verbose=False)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    for _ in range(3):
        for i in range(0, 70, 16):
            torch_step(tmodel, topt, torch.nn.MSELoss(), X[i:i + 16], Y[i:i + 16])
    assert trainer.optimizer.step_count == 3 * 5
    assert_same_params(model, tmodel)


# --------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_callable_lr_behaves_like_lambda_lr(kind, kernels):
    base = 0.1 if kind == "sgd" else 0.02

    def factor(step):  # warm-up for 3 steps, then exponential decay
        return (step + 1) / 3 if step < 3 else 0.8 ** (step - 3)

    if kind == "sgd":
        ours = optim.SGD(lr=lambda s: base * factor(s), momentum=0.9)
        theirs = lambda p: torch.optim.SGD(p, lr=base, momentum=0.9)  # noqa: E731
    else:
        ours = optim.Adam(lr=lambda s: base * factor(s))
        theirs = lambda p: torch.optim.Adam(p, lr=base)  # noqa: E731
    run_parity(ours, theirs, "mse", steps=12,
               scheduler_factory=lambda o: torch.optim.lr_scheduler.LambdaLR(o, factor))
    assert ours.current_lr == pytest.approx(base * factor(12))


def test_schedule_giving_a_non_positive_lr_is_an_error():
    model, _ = make_pair()
    opt = optim.SGD(lr=lambda s: 0.1 - 0.05 * s).attach(model)
    opt.step()
    opt.step()
    with pytest.raises(ValueError, match="lr"):
        opt.step()  # step 2: 0.1 − 0.1 = 0


def test_setting_lr_replaces_it():
    model, _ = make_pair()
    opt = optim.SGD(lr=0.1).attach(model)
    opt.lr = 0.25
    assert opt.current_lr == 0.25
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0


# --------------------------------------------------------------------------- golden examples
# One weight, no bias: pred = w·x with x = 2, target y = 1, MSE (mean over 1 entry):
#   L(w) = (2w − 1)²,   g(w) = dL/dw = 2·(2w − 1)·2 = 8w − 4.   Minimum at w = ½.
def _one_weight(w0=1.0):
    model = bpnn.Sequential([bpnn.Dense(1, use_bias=False, init=bpnn.init.Constant(w0))],
                            input_shape=(1,), seed=0, dtype="float64")
    return model


def _golden_run(opt, steps):
    model = _one_weight()
    opt.attach(model)
    loss = bpnn.MSE()
    x, y = np.array([[2.0]]), np.array([[1.0]])
    ws = []
    for _ in range(steps):
        bpnn_step(model, opt, loss, x, y)
        ws.append(float(model[0].params["weight"][0, 0]))
    return ws


def test_golden_sgd(kernels):
    # η = 0.1, w₀ = 1:  w ← w − 0.1·(8w − 4), i.e. (w − ½) shrinks by 0.2 per step
    #   g₁ = 4      → w₁ = 1 − 0.4     = 0.6
    #   g₂ = 0.8    → w₂ = 0.6 − 0.08  = 0.52
    #   g₃ = 0.16   → w₃ = 0.52 − 0.016 = 0.504
    ws = _golden_run(optim.SGD(lr=0.1), 3)
    np.testing.assert_allclose(ws, [0.6, 0.52, 0.504], rtol=0, atol=1e-12)


def test_golden_sgd_momentum(kernels):
    # η = 0.1, μ = 0.9, w₀ = 1; PyTorch's form b₁ = g₁, b_t = μ b_{t−1} + g_t, w ← w − η b
    #   g₁ = 4                    b₁ = 4                         w₁ = 1 − 0.4     = 0.6
    #   g₂ = 8·0.6 − 4 = 0.8      b₂ = 0.9·4 + 0.8 = 4.4         w₂ = 0.6 − 0.44  = 0.16
    #   g₃ = 8·0.16 − 4 = −2.72   b₃ = 0.9·4.4 − 2.72 = 1.24     w₃ = 0.16 − 0.124 = 0.036
    ws = _golden_run(optim.SGD(lr=0.1, momentum=0.9), 3)
    np.testing.assert_allclose(ws, [0.6, 0.16, 0.036], rtol=0, atol=1e-12)


def test_golden_sgd_nesterov(kernels):
    # η = 0.1, μ = 0.9, w₀ = 1; b as above, step d = g + μ b, w ← w − η d
    #   g₁ = 4                      b₁ = 4
    #       d₁ = 4 + 0.9·4 = 7.6                          w₁ = 1 − 0.76 = 0.24
    #   g₂ = 8·0.24 − 4 = −2.08     b₂ = 0.9·4 − 2.08 = 1.52
    #       d₂ = −2.08 + 0.9·1.52 = −0.712                w₂ = 0.24 + 0.0712 = 0.3112
    #   g₃ = 8·0.3112 − 4 = −1.5104 b₃ = 0.9·1.52 − 1.5104 = −0.1424
    #       d₃ = −1.5104 + 0.9·(−0.1424) = −1.63856       w₃ = 0.3112 + 0.163856 = 0.475056
    ws = _golden_run(optim.SGD(lr=0.1, momentum=0.9, nesterov=True), 3)
    np.testing.assert_allclose(ws, [0.24, 0.3112, 0.475056], rtol=0, atol=1e-12)


def test_golden_adam(kernels):
    # η = 0.1, β₁ = 0.9, β₂ = 0.999, ε = 1 (large on purpose: it shows ε sits outside the
    # square root — inside it step 1 would divide by √17 instead of 5), w₀ = 1.
    #   g₁ = 4:  m₁ = 0.1·4 = 0.4,  v₁ = 0.001·16 = 0.016
    #            m̂ = 0.4/0.1 = 4,   v̂ = 0.016/0.001 = 16,  √v̂ = 4
    #            w₁ = 1 − 0.1·4/(4 + 1) = 0.92
    #   g₂ = 8·0.92 − 4 = 3.36:  m₂ = 0.9·0.4 + 0.1·3.36 = 0.696
    #            v₂ = 0.999·0.016 + 0.001·3.36² = 0.015984 + 0.0112896 = 0.0272736
    #            1 − β₁² = 0.19,  1 − β₂² = 0.001999
    #            m̂ = 0.696/0.19 = 3.66315789…,  v̂ = 0.0272736/0.001999 = 13.6436218…, √v̂ = 3.69372736…
    #            w₂ = 0.92 − 0.1·3.66315789…/(3.69372736… + 1) = 0.84195631289…
    ws = _golden_run(optim.Adam(lr=0.1, eps=1.0), 2)
    w2 = 0.92 - 0.1 * (0.696 / 0.19) / (math.sqrt(0.0272736 / 0.001999) + 1.0)
    np.testing.assert_allclose(ws, [0.92, w2], rtol=0, atol=1e-12)
    assert ws[1] == pytest.approx(0.8419563128898, abs=1e-12)


def test_golden_adam_no_bias_correction(kernels):
    # The BP articles' Adam: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², w ← w − η m/(√v + ε),
    # no 1 − βᵗ factors. η = 0.1, β = (0.9, 0.75) (β₂ chosen so the roots come out round),
    # ε = 0.5, w₀ = 1, g = 8w − 4.
    #   g₁ = 4:      m₁ = 0.1·4 = 0.4,   v₁ = 0.25·16 = 4,  √v₁ = 2
    #                w₁ = 1 − 0.1·0.4/(2 + 0.5) = 1 − 0.016 = 0.984
    #                (bias-corrected: m̂ = 4, √v̂ = 4, w₁ = 1 − 0.1·4/4.5 = 0.91111…)
    #   g₂ = 8·0.984 − 4 = 3.872:
    #                m₂ = 0.9·0.4 + 0.1·3.872 = 0.36 + 0.3872 = 0.7472
    #                v₂ = 0.75·4 + 0.25·3.872² = 3 + 0.25·14.992384 = 6.748096,  √v₂ = 2.59770976…
    #                w₂ = 0.984 − 0.1·0.7472/(2.59770976… + 0.5) = 0.984 − 0.02412105… = 0.95987895…
    ws = _golden_run(optim.Adam(lr=0.1, betas=(0.9, 0.75), eps=0.5, bias_correction=False), 2)
    w2 = 0.984 - 0.1 * 0.7472 / (math.sqrt(6.748096) + 0.5)
    np.testing.assert_allclose(ws, [0.984, w2], rtol=0, atol=1e-12)
    assert ws[1] == pytest.approx(0.9598789538801, abs=1e-12)
    corrected = _golden_run(optim.Adam(lr=0.1, betas=(0.9, 0.75), eps=0.5), 1)
    assert corrected[0] == pytest.approx(1 - 0.1 * 4 / 4.5, abs=1e-12)


def test_golden_adamw_no_bias_correction(kernels):
    # As above plus decoupled decay λ = 0.5: w ← w − η m/(√v + ε) − η λ w
    #   g₁ = 4: w₁ = 1 − 0.016 − 0.1·0.5·1 = 0.934
    #   g₂ = 8·0.934 − 4 = 3.472:  m₂ = 0.36 + 0.3472 = 0.7072,  v₂ = 3 + 0.25·12.054784 = 6.013696
    #           w₂ = 0.934 − 0.1·0.7072/(√6.013696 + 0.5) − 0.05·0.934
    ws = _golden_run(optim.AdamW(lr=0.1, betas=(0.9, 0.75), eps=0.5, weight_decay=0.5,
                                 bias_correction=False), 2)
    w2 = 0.934 - 0.1 * 0.7072 / (math.sqrt(6.013696) + 0.5) - 0.05 * 0.934
    np.testing.assert_allclose(ws, [0.934, w2], rtol=0, atol=1e-12)


@pytest.mark.parametrize("clip_norm", [None, 1.0])
def test_adam_no_bias_correction_fused_and_chain_agree(clip_norm, kernels):
    """The one-pass step (compiled, ``adam_step``) and the transform chain
    (``adam_direction`` then the update) take the same steps, with and without clipping."""

    class Unfused(optim.ScaleByAdam):  # its own update(): the facade never fuses it
        def update(self, u, state, params, t, lr):
            return super().update(u, state, params, t, lr)

    named_opt = optim.Adam(lr=0.05, bias_correction=False, clip_norm=clip_norm)
    named = first_weight_after(named_opt, 6)
    assert named_opt._fused is not None  # runs when the kernels are compiled (the numba case)
    chain_opt = optim.Optimizer([Unfused(bias_correction=False)], lr=0.05, clip_norm=clip_norm)
    chain = first_weight_after(chain_opt, 6)
    assert chain_opt._fused is None
    np.testing.assert_allclose(named, chain, rtol=1e-12, atol=1e-15)
    default = first_weight_after(optim.Adam(lr=0.05, clip_norm=clip_norm), 6)
    assert not np.allclose(named, default)


# --------------------------------------------------------------------------- state round trip
@pytest.mark.parametrize("make", [
    lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda: optim.SGD(lr=0.05, momentum=0.9, dampening=0.3),
    lambda: optim.Adam(lr=0.02, weight_decay=0.05, amsgrad=True),
    lambda: optim.Adam(lr=0.02),
    lambda: optim.Adam(lr=0.02, bias_correction=False),
], ids=["sgd_nesterov_wd", "sgd_dampening", "adam_amsgrad_wd", "adam", "adam_no_bias_correction"])
def test_state_dict_round_trip_continues_identically(make, kernels):
    check_round_trip(make)


def check_round_trip(make):
    data = batches("ce", 12, seed=3)
    loss = bpnn.SoftmaxCrossEntropy()

    model_a, _ = make_pair()
    opt_a = make().attach(model_a)
    for x, y in data[:6]:
        bpnn_step(model_a, opt_a, loss, x, y)
    saved = opt_a.state_dict()
    params = [p.copy() for _, p, _ in model_a.named_parameters()]
    saved_copy = {k: [dict((kk, vv.copy()) for kk, vv in s.items()) for s in v] if k == "state" else v
                  for k, v in saved.items()}
    for x, y in data[6:]:
        bpnn_step(model_a, opt_a, loss, x, y)
    final_a = [p.copy() for _, p, _ in model_a.named_parameters()]

    # the saved state is a copy: later steps did not change it
    assert saved["step_count"] == 6
    for s, c in zip(saved["state"], saved_copy["state"]):
        for k in c:
            np.testing.assert_array_equal(s[k], c[k])
    assert any(len(s) for s in saved["state"]), "the optimizer should have state to save"

    def resume(load):
        model, _ = make_pair(seed=123)  # different init, overwritten below
        for (_, p, _), v in zip(model.named_parameters(), params):
            p[...] = v
        opt = make().attach(model)
        if load:
            opt.load_state_dict(saved)
        for x, y in data[6:]:
            bpnn_step(model, opt, loss, x, y)
        return opt, [p.copy() for _, p, _ in model.named_parameters()]

    opt_b, final_b = resume(load=True)
    assert opt_b.step_count == 12
    for a, b in zip(final_a, final_b):
        np.testing.assert_array_equal(a, b)
    _, final_c = resume(load=False)  # without the state the run differs
    assert not all(np.allclose(a, c, rtol=1e-9, atol=0) for a, c in zip(final_a, final_c))


def test_load_state_dict_rejects_a_mismatched_state():
    model, _ = make_pair()
    sgd = optim.SGD(lr=0.1, momentum=0.9).attach(model)
    adam = optim.Adam().attach(model)
    with pytest.raises(ValueError, match="state"):
        adam.load_state_dict(sgd.state_dict())
    other, _ = make_pair()
    small = bpnn.Sequential([bpnn.Dense(2)], input_shape=(3,), dtype="float64")
    adam2 = optim.Adam().attach(small)
    with pytest.raises(ValueError, match="state"):
        adam2.load_state_dict(optim.Adam().attach(other).state_dict())


def test_step_before_attach_is_an_error():
    with pytest.raises(RuntimeError, match="attach"):
        optim.SGD(lr=0.1).step()


# --------------------------------------------------------------------------- convergence
# f(θ) = ½ θᵀAθ − bᵀθ with A SPD (condition number 10): minimum at θ* = A⁻¹b.
_Q = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]
A = _Q @ np.diag([1.0, 3.0, 10.0]) @ _Q.T
B = np.array([1.0, -2.0, 0.5])
THETA_STAR = np.linalg.solve(A, B)


def _minimize(opt, steps):
    model = bpnn.Sequential([bpnn.Dense(3, use_bias=False, init="zeros")], input_shape=(1,), dtype="float64")
    layer = model[0]
    opt.attach(model)
    theta = layer.params["weight"][0]  # a view: the optimizer updates it in place
    f0 = 0.5 * theta @ A @ theta - B @ theta
    for _ in range(steps):
        layer.grads["weight"][0] = A @ theta - B
        opt.step()
    f = 0.5 * theta @ A @ theta - B @ theta
    return theta.copy(), f0, f


@pytest.mark.parametrize("make, steps, tol", [
    (lambda: optim.SGD(lr=0.15), 200, 1e-8),
    (lambda: optim.SGD(lr=0.05, momentum=0.9), 600, 1e-8),
    (lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True), 600, 1e-8),
    (lambda: optim.Adam(lr=0.05), 1500, 1e-4),
    (lambda: optim.Adam(lr=lambda s: 0.1 * 0.995**s, amsgrad=True), 1500, 1e-4),
], ids=["sgd", "sgd_momentum", "sgd_nesterov", "adam", "adam_amsgrad_schedule"])
def test_optimizers_minimize_a_quadratic(make, steps, tol, kernels):
    theta, f0, f = _minimize(make(), steps)
    f_star = -0.5 * B @ THETA_STAR
    assert f < f0
    np.testing.assert_allclose(theta, THETA_STAR, atol=tol)
    assert f - f_star < tol


# =========================================================================== issue 3: the other optimizers
@pytest.fixture
def torch_float64_scalars():
    """torch keeps NAdam's μ-product (and step counters) in float32 unless the default
    dtype is float64; bpnn keeps them in float64. Compare with torch in full precision."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


NEW_CONFIGS = {
    "adagrad": [
        dict(lr=0.1),
        dict(lr=0.1, lr_decay=0.05, weight_decay=0.02),
        dict(lr=0.05, initial_accumulator_value=0.3, eps=1e-3),
    ],
    "rmsprop": [
        dict(lr=0.01),
        dict(lr=0.01, alpha=0.9, weight_decay=0.05),
        dict(lr=0.005, centered=True),
        dict(lr=0.005, momentum=0.9),
        dict(lr=0.003, centered=True, momentum=0.8, weight_decay=0.01, eps=1e-4),
    ],
    "adamw": [
        dict(lr=0.02),  # torch's default weight_decay = 1e-2
        dict(lr=0.02, weight_decay=0.3),
        dict(lr=0.02, weight_decay=0.1, amsgrad=True, betas=(0.8, 0.99)),
    ],
    "nadam": [
        dict(lr=0.02),
        dict(lr=0.02, momentum_decay=0.04, weight_decay=0.05),
        dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True, betas=(0.8, 0.95), eps=1e-4),
    ],
    "rprop": [
        dict(lr=0.01),
        dict(lr=0.003, etas=(0.3, 1.5), step_sizes=(1e-4, 0.02)),
    ],
    "adam": [dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True)],
}
TORCH_NAMES = {"adagrad": "Adagrad", "rmsprop": "RMSprop", "adamw": "AdamW", "nadam": "NAdam",
               "rprop": "Rprop", "adam": "Adam"}
# each configuration with one loss, the two losses alternating, to keep the suite fast
NEW_CASES = [(name, cfg, ("mse", "ce")[i % 2])
             for name, cfgs in NEW_CONFIGS.items() for i, cfg in enumerate(cfgs)]


@pytest.mark.parametrize("name, cfg, loss_name", NEW_CASES,
                         ids=[f"{n}:{loss}:" + ",".join(f"{k}={v}" for k, v in c.items()) for n, c, loss in NEW_CASES])
def test_new_optimizers_match_torch(name, cfg, loss_name, kernels, torch_float64_scalars):
    torch_cls = getattr(torch.optim, TORCH_NAMES[name])
    run_parity(optim.get(name).__class__(**cfg), lambda p: torch_cls(p, **cfg), loss_name, steps=25)


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam", "rprop"])
def test_defaults_are_torch_defaults(name):
    ours = optim.get(name)
    theirs = getattr(torch.optim, TORCH_NAMES.get(name, "SGD"))([torch.zeros(1, requires_grad=True)]).defaults
    shared = [k for k in ours.get_config() if k in theirs and k != "lr"]
    assert shared, f"{name}: no hyperparameter shared with torch"
    for k in shared:
        mine, want = ours.get_config()[k], theirs[k]
        assert (tuple(mine) if isinstance(mine, list) else mine) == pytest.approx(want), k
    # lr: every default equals torch's, except SGD's, kept at 0.01 since the first release
    if name != "sgd":
        assert ours.lr == theirs["lr"]


@pytest.mark.parametrize("cfg", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                 dict(momentum=0.8, dampening=0.4, weight_decay=0.05)],
                         ids=["momentum", "nesterov", "dampening_wd"])
def test_classic_momentum_equals_torch_form_for_a_constant_lr(cfg, kernels):
    """v ← μv + ηg, θ ← θ − v gives torch's iterates while η is constant (v = η b)…"""
    run_parity(optim.SGD(lr=0.05, momentum_form="classic", **cfg),
               lambda p: torch.optim.SGD(p, lr=0.05, **cfg), "mse")


def test_classic_momentum_parts_ways_with_torch_form_when_lr_changes(kernels):
    """…and differs as soon as η changes: the torch form rescales the whole buffer at once,
    the classic form only the new gradient's share. Torch's form still equals torch with
    the same schedule."""
    sched = lambda s: 0.1 if s < 5 else 0.02  # noqa: E731
    run_parity(optim.SGD(lr=sched, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
               "mse", steps=12, scheduler_factory=lambda o: torch.optim.lr_scheduler.LambdaLR(
                   o, lambda s: 1.0 if s < 5 else 0.2))
    data = batches("mse", 12)
    runs = {}
    for form in ("torch", "classic"):
        model, _ = make_pair()
        opt = optim.SGD(lr=sched, momentum=0.9, momentum_form=form).attach(model)
        trace = []
        for x, y in data:
            bpnn_step(model, opt, bpnn.MSE(), x, y)
            trace.append(model[0].params["weight"].copy())
        runs[form] = trace
    for s in range(5):  # the same up to the step where η changes
        np.testing.assert_allclose(runs["torch"][s], runs["classic"][s], rtol=1e-12, atol=1e-15)
    gap = np.abs(runs["torch"][5] - runs["classic"][5]).max()
    assert gap > 1e-4, f"the two momentum forms should part ways after η changes (gap {gap:.2e})"


def test_golden_sgd_classic_momentum_with_a_changing_lr(kernels):
    # μ = 0.9, w₀ = 1, η = 0.1 for step 1, then 0.05.   g = 8w − 4.
    # torch form (b ← μb + g, w ← w − ηb):
    #   g₁ = 4      b₁ = 4                    w₁ = 1 − 0.1·4     = 0.6
    #   g₂ = 0.8    b₂ = 0.9·4 + 0.8 = 4.4    w₂ = 0.6 − 0.05·4.4 = 0.38
    # classic form (v ← μv + ηg, w ← w − v):
    #   g₁ = 4      v₁ = 0.1·4 = 0.4                   w₁ = 1 − 0.4   = 0.6
    #   g₂ = 0.8    v₂ = 0.9·0.4 + 0.05·0.8 = 0.4      w₂ = 0.6 − 0.4 = 0.2
    sched = lambda s: 0.1 if s == 0 else 0.05  # noqa: E731
    np.testing.assert_allclose(_golden_run(optim.SGD(lr=sched, momentum=0.9), 2), [0.6, 0.38], atol=1e-12)
    np.testing.assert_allclose(_golden_run(optim.SGD(lr=sched, momentum=0.9, momentum_form="classic"), 2),
                               [0.6, 0.2], atol=1e-12)


def test_golden_adagrad(kernels):
    # η = 0.25, lr_decay k = 0.5, ε = 0, w₀ = 1; η_t = η / (1 + (t − 1) k); s ← s + g²
    #   g₁ = 4:                  s₁ = 16,   √s = 4          w₁ = 1 − 0.25·4/4          = 0.75
    #   g₂ = 8·0.75 − 4 = 2:     s₂ = 20,   √s = 4.4721360  w₂ = 0.75 − (0.25/1.5)·2/√20
    #                                                          = 0.75 − 0.0745356    = 0.6754644
    #   g₃ = 1.4037152:          s₃ = 21.970416, √s = 4.6872611
    #                            w₃ = 0.6754644 − (0.25/2)·1.4037152/4.6872611      = 0.6380301
    ws = _golden_run(optim.AdaGrad(lr=0.25, lr_decay=0.5, eps=0.0), 3)
    np.testing.assert_allclose(ws, [0.75, 0.75 - (0.25 / 1.5) * 2 / math.sqrt(20), 0.6380300871999375],
                               rtol=0, atol=1e-12)


def test_golden_rmsprop_centered(kernels):
    # η = 0.01, α = 0.9, ε = 0, centered, w₀ = 1; s ← αs + (1−α)g², m ← αm + (1−α)g,
    # w ← w − η g / √(s − m²)
    #   g₁ = 4:   s₁ = 0.1·16 = 1.6,  m₁ = 0.4,  s − m² = 1.44,  √ = 1.2
    #             w₁ = 1 − 0.01·4/1.2 = 0.96666…
    #   g₂ = 8·0.96666… − 4 = 3.73333…:  s₂ = 0.9·1.6 + 0.1·13.93777… = 2.83377…
    #             m₂ = 0.36 + 0.37333… = 0.73333…,  s − m² = 2.296,  √ = 1.51525575
    #             w₂ = 0.96666… − 0.01·3.73333…/1.51525575 = 0.94202836
    ws = _golden_run(optim.RMSprop(lr=0.01, alpha=0.9, eps=0.0, centered=True), 2)
    np.testing.assert_allclose(ws, [1 - 0.04 / 1.2, 0.9420283617237388], rtol=0, atol=1e-12)
    assert ws[1] == pytest.approx(1 - 0.04 / 1.2 - 0.01 * (8 * (1 - 0.04 / 1.2) - 4) / math.sqrt(2.296), abs=1e-12)


def test_golden_adamw(kernels):
    # η = 0.1, λ = 0.5, ε = 1, β = (0.9, 0.999), w₀ = 1; w ← w − η·d − η·λ·w (decoupled)
    #   g₁ = 4: Adam direction d = 4/(4 + 1) = 0.8 (as in test_golden_adam)
    #           w₁ = 1 − 0.08 − 0.05·1 = 0.87
    #   g₂ = 8·0.87 − 4 = 2.96:  m₂ = 0.36 + 0.296 = 0.656,  v₂ = 0.015984 + 0.001·8.7616 = 0.0247456
    #           m̂ = 0.656/0.19 = 3.4526316,  √v̂ = √(0.0247456/0.001999) = 3.5183788
    #           d = 3.4526316/4.5183788 = 0.7641306
    #           w₂ = 0.87 − 0.07641306 − 0.05·0.87 = 0.75008694
    ws = _golden_run(optim.AdamW(lr=0.1, eps=1.0, weight_decay=0.5), 2)
    d2 = (0.656 / 0.19) / (math.sqrt(0.0247456 / 0.001999) + 1)
    np.testing.assert_allclose(ws, [0.87, 0.87 - 0.1 * d2 - 0.05 * 0.87], rtol=0, atol=1e-12)
    assert ws[1] == pytest.approx(0.7500869386, abs=1e-9)


def test_golden_nadam(kernels):
    # η = 0.1, ε = 1, β = (0.9, 0.999), ψ = 0.004, w₀ = 1;  μ_t = 0.9(1 − ½·0.96^(0.004 t))
    #   μ₁ = 0.45007347, μ₂ = 0.45014694, μ₃ = 0.45022038;  Π₁ = μ₁, Π₂ = μ₁μ₂ = 0.20259919
    #   g₁ = 4:  m₁ = 0.4, v₁ = 0.016, D = √(0.016/0.001) + 1 = 5
    #            c₁ = (1 − μ₁)/(1 − Π₁) = 1,  c₂ = μ₂/(1 − Π₁μ₂) = 0.56451778
    #            w₁ = 1 − 0.1·(1·4 + 0.56451778·0.4)/5 = 0.91548386
    #   g₂ = 3.32387086:  m₂ = 0.69238709, v₂ = 0.02703212, D = √(v₂/0.001999) + 1 = 4.67733873
    #            c₁ = (1 − μ₂)/(1 − Π₂) = 0.68955670,  c₂ = μ₃/(1 − Π₂μ₃) = 0.49540874
    #            w₂ = w₁ − 0.1·(c₁g₂ + c₂m₂)/D = 0.85914815
    ws = _golden_run(optim.NAdam(lr=0.1, eps=1.0), 2)
    mu = [0.9 * (1 - 0.5 * 0.96 ** (0.004 * t)) for t in (1, 2, 3)]
    w1 = 1 - 0.1 * (4 + mu[1] / (1 - mu[0] * mu[1]) * 0.4) / 5
    np.testing.assert_allclose(ws, [w1, 0.859148146892976], rtol=0, atol=1e-12)
    assert w1 == pytest.approx(0.91548386, abs=1e-8)


def test_golden_rprop(kernels):
    # Δ₀ = η = 0.1, (η₋, η₊) = (0.5, 1.2), w₀ = 1, g = 8w − 4; step = −sign(g)·Δ
    #   g₁ = 4      (no previous g: Δ = 0.1)           w₁ = 0.9
    #   g₂ = 3.2    same sign: Δ = 0.12                w₂ = 0.78
    #   g₃ = 2.24   same sign: Δ = 0.144               w₃ = 0.636
    #   g₄ = 1.088  same sign: Δ = 0.1728              w₄ = 0.4632
    #   g₅ = −0.2944 sign flip: Δ = 0.0864, no step, g forgotten     w₅ = 0.4632
    #   g₆ = −0.2944 (previous g taken as 0): Δ kept   w₆ = 0.4632 + 0.0864 = 0.5496
    ws = _golden_run(optim.Rprop(lr=0.1), 6)
    np.testing.assert_allclose(ws, [0.9, 0.78, 0.636, 0.4632, 0.4632, 0.5496], rtol=0, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: optim.AdaGrad(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1),
    lambda: optim.RMSprop(lr=0.01, centered=True, momentum=0.9),
    lambda: optim.AdamW(lr=0.02, amsgrad=True),
    lambda: optim.NAdam(lr=0.02),
    lambda: optim.Rprop(lr=0.01),
    lambda: optim.SGD(lr=0.05, momentum=0.9, momentum_form="classic", clip_norm=0.5),
], ids=["adagrad", "rmsprop_centered_momentum", "adamw_amsgrad", "nadam", "rprop", "sgd_classic_clip"])
def test_new_optimizers_state_round_trip(make, kernels):
    check_round_trip(make)


@pytest.mark.parametrize("make", [
    lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, momentum_form="classic"),
    lambda: optim.AdaGrad(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, clip_value=2.0),
    lambda: optim.RMSprop(lr=0.01, centered=True, momentum=0.9, max_norm=3.0),
    lambda: optim.Adam(lr=optim.CosineAnnealing(0.01, T_max=10), clip_norm=1.0),
    lambda: optim.AdamW(lr=optim.LinearWarmup(optim.StepDecay(0.01, 3), 2, unit="epoch"), amsgrad=True),
    lambda: optim.NAdam(lr=0.02, decoupled_weight_decay=True, weight_decay=0.1),
    lambda: optim.Rprop(lr=0.01, etas=(0.4, 1.3)),
    lambda: optim.Optimizer([optim.ClipByValue(1.0), optim.ScaleByAdam(amsgrad=True),
                             optim.AddDecoupledWeightDecay(0.1)], lr=0.01, max_norm=2.0),
    lambda: optim.Adam(lr=0.01, bias_correction=False),
    lambda: optim.AdamW(lr=0.01, bias_correction=False, amsgrad=True),
    lambda: optim.Optimizer([optim.ScaleByAdam(bias_correction=False)], lr=0.01),
], ids=["sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam", "rprop", "chain", "adam_no_bias_correction",
        "adamw_no_bias_correction", "chain_no_bias_correction"])
def test_config_round_trip(make):
    """repr, config and the registry come from one get_config: rebuilding from the
    config gives the same config and the same updates."""
    a = make()
    cfg = optim.optimizers.serialize(a)
    b = optim.get(cfg)
    assert type(b) is type(a)
    assert optim.optimizers.serialize(b) == cfg
    assert repr(a) == repr(b)
    np.testing.assert_array_equal(first_weight_after(a, 4), first_weight_after(b, 4))


#: Optimizers without a torch.optim twin, and where their reference test is instead.
NO_TORCH_TWIN = {"kfac": "torch.optim has no K-FAC: tests/test_kfac.py checks it against the explicit "
                         "(A ⊗ G + λ I)⁻¹ vec(∇W) and curvlinops' KFACLinearOperator"}


def test_golden_kfac():
    """Dense(1, no bias), one sample x = 2, target t = 3, w₀ = 0.5, MSE ½ sum (s = 1),
    empirical Fisher, lr 0.5, no momentum, no KL clip, λ = 4, factor_decay 0.5.
    Step 1: z = 1, g = z − t = −2, ∇w = x g = −4, A = x² = 4, G = g² = 4.
      eigen:   Δ = ∇ / (A G + λ) = −4 / 20 = −0.2,        w₁ = 0.5 + 0.5 · 0.2 = 0.6;
      factored (π = √(A/G) = 1): Δ = ∇ / ((A + 2)(G + 2)) = −4/36,  w₁ = 0.5 + 0.5/9.
    Step 2 (eigen): z = 1.2, g = −1.8, ∇w = −3.6, A = 4, G = ½·4 + ½·3.24 = 3.62,
      Δ = −3.6 / (4 · 3.62 + 4) = −3.6/18.48,  w₂ = 0.6 + 0.5 · 3.6/18.48."""
    def run(form, steps):
        model = bpnn.Sequential([bpnn.Dense(1, use_bias=False, init="zeros")], input_shape=(1,), dtype="float64")
        model[0].params["weight"][...] = 0.5
        loss = bpnn.MSE("half_sum")
        opt = optim.KFAC(lr=0.5, damping=4.0, momentum=0.0, kl_clip=None, factor_decay=0.5, inv_update_steps=1,
                         fisher="empirical", damping_form=form).attach(model)
        x, t = np.array([[2.0]]), np.array([[3.0]])
        for _ in range(steps):
            out = model.forward(x, training=True)
            loss.forward(out, t)
            opt.before_backward(model, loss, out)
            model.backward(loss.backward(), input_grad=False)
            opt.step()
        return float(model[0].params["weight"][0, 0])

    assert run("eigen", 1) == pytest.approx(0.6, rel=1e-14)
    assert run("tikhonov_factored", 1) == pytest.approx(0.5 + 0.5 / 9, rel=1e-14)
    assert run("eigen", 2) == pytest.approx(0.6 + 0.5 * 3.6 / 18.48, rel=1e-14)


def test_every_registered_optimizer_has_parity_and_a_golden_example():
    """A new optimizer must come with its torch parity test (or a reason in NO_TORCH_TWIN)
    and its golden example."""
    covered_parity = {"sgd", "adam"} | set(NEW_CONFIGS) | set(NO_TORCH_TWIN)
    goldens = {name[len("test_golden_"):] for name in globals() if name.startswith("test_golden_")}
    for name in optim.optimizers.names():
        if name == "chain":
            continue
        assert name in covered_parity, f"no torch parity test for optimizer {name!r}"
        assert any(g == name or g.startswith(name + "_") for g in goldens), f"no golden example for {name!r}"
