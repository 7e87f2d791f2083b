"""K-FAC (bpnn.optim.KFAC): factors against their definitions sample by sample, the
preconditioned gradient against the explicit (A ⊗ G + λ I)⁻¹ vec(∇W̄), the true-Fisher
sampling against the analytic Fisher, factors against curvlinops, convergence, exact
resume, and the errors. Everything in float64 on tiny layers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import bpnn
from bpnn import optim
from bpnn.losses import MSE, BinaryCrossEntropyWithLogits, Loss, SoftmaxCrossEntropy
from bpnn.optim.kfac import sampled_output_grad


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _one_step(model, loss, x, y, opt):
    """One step as the Trainer runs it; returns the gradients and the weights before it."""
    opt.attach(model)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    out = model.forward(x, training=True)
    loss.forward(out, y)
    opt.before_backward(model, loss, out, np.random.default_rng(0))
    model.backward(loss.backward(), input_grad=False)
    grads = {name: g.copy() for name, _, g in model.named_parameters()}
    opt.step()
    return grads, before


def _state(opt, i):
    return opt.state_dict()["state"][2 + i]  # after the weight-decay and momentum states


EXACT = dict(lr=1.0, momentum=0.0, kl_clip=None, factor_decay=0.5, fisher="empirical", inv_update_steps=1)


# ============================================================ factors by their definitions
def test_dense_factors_equal_their_definition_sample_by_sample(rng):
    n, d, h, k = 6, 4, 5, 3
    x, y = rng.normal(size=(n, d)), rng.integers(0, k, n)
    model = bpnn.Sequential([bpnn.Dense(h), bpnn.Tanh(), bpnn.Dense(k, use_bias=False)], input_shape=(d,),
                            seed=1, dtype="float64")
    opt = optim.KFAC(**EXACT)
    _one_step(model, SoftmaxCrossEntropy(), x, y, opt)
    # the step moved the weights: the definitions use a twin built from the same seed
    m2 = bpnn.Sequential([bpnn.Dense(h), bpnn.Tanh(), bpnn.Dense(k, use_bias=False)], input_shape=(d,),
                         seed=1, dtype="float64")
    W1, b1, W2 = m2[0].params["weight"], m2[0].params["bias"], m2[2].params["weight"]
    A1 = np.zeros((d + 1, d + 1)); G1 = np.zeros((h, h)); A2 = np.zeros((h, h)); G2 = np.zeros((k, k))
    for i in range(n):
        a = x[i]
        z1 = a @ W1 + b1
        hid = np.tanh(z1)
        p = _softmax((hid @ W2)[None])[0]
        dl = p - np.eye(k)[y[i]]  # ∂ℓ_i/∂z2 of the sample's own loss = N · ∂L/∂z2
        dz1 = (dl @ W2.T) * (1 - hid ** 2)
        abar = np.append(a, 1.0)
        A1 += np.outer(abar, abar) / n
        G1 += np.outer(dz1, dz1) / n  # G = (1/N) Σ (N g)(N g)ᵀ
        A2 += np.outer(hid, hid) / n
        G2 += np.outer(dl, dl) / n
    s0, s1 = _state(opt, 0), _state(opt, 1)
    np.testing.assert_allclose(s0["A"], A1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s0["G"], G1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s1["A"], A2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s1["G"], G2, rtol=1e-12, atol=1e-14)


def _conv_model(seed=2):
    return bpnn.Sequential([bpnn.Conv2D(3, 3, stride=2, padding=1, dilation=2), bpnn.Flatten(), bpnn.Dense(4)],
                           input_shape=(2, 7, 6), seed=seed, dtype="float64")


def test_conv_factors_equal_their_definition_with_stride_padding_dilation(rng):
    n, o, k = 3, 3, 4
    x, y = rng.normal(size=(n, 2, 7, 6)), rng.integers(0, k, n)
    model = _conv_model()
    ref = _conv_model()
    opt = optim.KFAC(**EXACT)
    _one_step(model, SoftmaxCrossEntropy(), x, y, opt)
    Wc, bc, Wd, bd = (ref[0].params["weight"], ref[0].params["bias"], ref[2].params["weight"],
                      ref[2].params["bias"])
    win = ref[0].window
    ho, wo = win.Ho, win.Wo
    T = ho * wo
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dim = 9 * 2 + 1
    A = np.zeros((dim, dim)); G = np.zeros((o, o))
    for i in range(n):
        # the conv output and its gradient for sample i, by the definitions
        patches = np.zeros((ho, wo, dim))
        yconv = np.zeros((o, ho, wo))
        for r in range(ho):
            for c in range(wo):
                patch = np.array([xp[i, ch, r * 2 + p * 2, c * 2 + q * 2]
                                  for p in range(3) for q in range(3) for ch in range(2)])  # (p, q, c)
                patches[r, c] = np.append(patch, 1.0)
                wmat = Wc.transpose(2, 3, 1, 0).reshape(-1, o)
                yconv[:, r, c] = patch @ wmat + bc
        p_out = _softmax((yconv.reshape(-1) @ Wd + bd)[None])[0]
        dl = p_out - np.eye(k)[y[i]]  # N · ∂L/∂z
        gconv = (dl @ Wd.T).reshape(o, ho, wo)
        for r in range(ho):
            for c in range(wo):
                A += np.outer(patches[r, c], patches[r, c]) / n  # A = (1/N) Σ_{n,t} ā āᵀ
                G += np.outer(gconv[:, r, c], gconv[:, r, c]) / (n * T)  # G = (N/|T|) Σ g gᵀ
    s0 = _state(opt, 0)
    np.testing.assert_allclose(s0["A"], A, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s0["G"], G, rtol=1e-12, atol=1e-14)


# ============================================================ preconditioned gradient
def _explicit(A, G, grad, lam, form):
    """vec(ΔW̄) by np.kron and np.linalg.solve; vec is the row-major flattening of the
    (fan_in + 1, n_out) matrix W̄, so vec(Σ ā gᵀ) = Σ ā ⊗ g and the block is kron(A, G)."""
    if form == "eigen":
        M = np.kron(A, G) + lam * np.eye(A.shape[0] * G.shape[0])
    else:
        pi = np.sqrt((np.trace(A) / len(A)) / (np.trace(G) / len(G)))
        M = np.kron(A + pi * np.sqrt(lam) * np.eye(len(A)), G + np.sqrt(lam) / pi * np.eye(len(G)))
    return np.linalg.solve(M, grad.reshape(-1)).reshape(grad.shape)


@pytest.mark.parametrize("form", ["eigen", "tikhonov_factored"])
def test_dense_step_is_the_explicit_kronecker_solve(rng, form):
    n, d, k, lam, lr = 8, 3, 2, 0.05, 0.5
    x, y = rng.normal(size=(n, d)), rng.integers(0, k, n)
    model = bpnn.Sequential([bpnn.Dense(k)], input_shape=(d,), seed=0, dtype="float64")
    opt = optim.KFAC(**{**EXACT, "lr": lr}, damping=lam, damping_form=form)
    grads, before = _one_step(model, SoftmaxCrossEntropy(), x, y, opt)
    s = _state(opt, 0)
    gbar = np.vstack([grads["0.weight"], grads["0.bias"][None]])
    expect = _explicit(s["A"], s["G"], gbar, lam, form)
    got = np.vstack([before["0.weight"] - model[0].params["weight"],
                     (before["0.bias"] - model[0].params["bias"])[None]]) / lr
    np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-12)


def _wide_step(rng, monkeypatch, layer, fisher, no_scipy, use_bias):
    """One exact step of a wide Dense (30 → 40) at batch 4, where the low-rank form pays;
    returns (got, expected ΔW̄, whether the low-rank form produced the update)."""
    if no_scipy:
        monkeypatch.setitem(sys.modules, "scipy.linalg", None)  # `from scipy.linalg import lapack` fails
    used = []
    original = optim.KFAC._low_rank

    def spy(self, i, grad):
        out = original(self, i, grad)
        used.append(out is not None)
        return out

    monkeypatch.setattr(optim.KFAC, "_low_rank", spy)
    n, d, k, lam, lr = 4, 30, 40, 0.05, 0.5
    x, y = rng.normal(size=(n, d)), rng.integers(0, k, n)
    model = bpnn.Sequential([layer], input_shape=(d,), seed=0, dtype="float64")
    opt = optim.KFAC(**{**EXACT, "lr": lr, "fisher": fisher}, damping=lam)
    grads, before = _one_step(model, SoftmaxCrossEntropy(), x, y, opt)
    s = _state(opt, 0)
    rows = [grads["0.weight"]] + ([grads["0.bias"][None]] if use_bias else [])
    expect = _explicit(s["A"], s["G"], np.vstack(rows), lam, "tikhonov_factored")
    got = [before["0.weight"] - model[0].params["weight"]]
    if use_bias:
        got.append((before["0.bias"] - model[0].params["bias"])[None])
    return np.vstack(got) / lr, expect, used


@pytest.mark.parametrize("fisher", ["empirical", "true"])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("no_scipy", [False, True])
def test_the_low_rank_form_of_a_wide_dense_layer_is_the_explicit_kronecker_solve(rng, monkeypatch, fisher,
                                                                                 use_bias, no_scipy):
    """ΔW̄ = (Ā A_λ⁻¹)ᵀ (G_out G_λ⁻¹) for a batch with fewer rows than the layer's widths,
    with SciPy's triangular solves and with explicit inverses."""
    got, expect, used = _wide_step(rng, monkeypatch, bpnn.Dense(40, use_bias=use_bias), fisher, no_scipy,
                                   use_bias)
    assert used == [True]
    np.testing.assert_allclose(got, expect, rtol=1e-8, atol=1e-12)


def test_a_gradient_that_is_not_the_batch_outer_product_takes_the_matrix_form(rng, monkeypatch):
    """The probe sees a gradient changed between backward and step (here: doubled, as a
    hand-written loop might) and preconditions the gradient actually stored."""
    used = []
    original = optim.KFAC._low_rank
    monkeypatch.setattr(optim.KFAC, "_low_rank", lambda self, i, g: used.append(original(self, i, g)) or used[-1])
    n, d, k, lam = 4, 30, 40, 0.05
    x, y = rng.normal(size=(n, d)), rng.integers(0, k, n)
    model = bpnn.Sequential([bpnn.Dense(k)], input_shape=(d,), seed=0, dtype="float64")
    opt = optim.KFAC(**EXACT, damping=lam).attach(model)
    before = model[0].params["weight"].copy(), model[0].params["bias"].copy()
    out = model.forward(x, training=True)
    loss = SoftmaxCrossEntropy()
    loss.forward(out, y)
    opt.before_backward(model, loss, out, np.random.default_rng(0))
    model.backward(loss.backward(), input_grad=False)
    model[0].grads["weight"] *= 2.0
    gbar = np.vstack([model[0].grads["weight"], model[0].grads["bias"][None]])
    opt.step()
    assert used == [None]
    s = _state(opt, 0)
    got = np.vstack([before[0] - model[0].params["weight"], (before[1] - model[0].params["bias"])[None]])
    np.testing.assert_allclose(got, _explicit(s["A"], s["G"], gbar, lam, "tikhonov_factored"), rtol=1e-8)


def test_dropconnect_trains_under_kfac(rng):
    """DropConnect keeps its output gradient for the factors; its masked gradient is not
    the batch outer product, so the probe sends it to the matrix form."""
    x, y = rng.normal(size=(64, 20)), rng.integers(0, 3, 64)
    model = bpnn.Sequential([bpnn.DropConnect(32, p=0.8), bpnn.ReLU(), bpnn.Dense(3)], input_shape=(20,), seed=0)
    trainer = bpnn.Trainer(model, loss="softmax_cross_entropy", optimizer=optim.KFAC(lr=0.05), seed=0)
    history = trainer.fit(x, y, epochs=15, batch_size=16, verbose=False)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]


def test_a_new_damping_reaches_the_damped_inverses_between_eigendecompositions(rng):
    """The factored form keeps (A + π√λ I)⁻¹ and (G + √λ/π I)⁻¹ between eigendecompositions;
    a damping set in between (as the adaptation and users do) is used at once."""
    n, d, k = 8, 3, 2
    x, y = rng.normal(size=(n, d)), rng.integers(0, k, n)
    model = bpnn.Sequential([bpnn.Dense(k)], input_shape=(d,), seed=0, dtype="float64")
    opt = optim.KFAC(**{**EXACT, "inv_update_steps": 100}, damping=0.05)
    _one_step(model, SoftmaxCrossEntropy(), x, y, opt)
    s = _state(opt, 0)
    gbar = rng.normal(size=(d + 1, k))
    first = opt.precondition(0, gbar)
    np.testing.assert_allclose(first, _explicit(s["A"], s["G"], gbar, 0.05, "tikhonov_factored"), rtol=1e-9)
    opt.damping = 0.5
    np.testing.assert_allclose(opt.precondition(0, gbar), _explicit(s["A"], s["G"], gbar, 0.5, "tikhonov_factored"),
                               rtol=1e-9)
    opt.load_state_dict({**opt.state_dict(), "state": [dict(t) for t in opt.state_dict()["state"]]})
    np.testing.assert_allclose(opt.precondition(0, gbar), _explicit(s["A"], s["G"], gbar, 0.5, "tikhonov_factored"),
                               rtol=1e-9)


@pytest.mark.parametrize("form", ["eigen", "tikhonov_factored"])
def test_conv_step_is_the_explicit_kronecker_solve(rng, form):
    n, lam, lr = 3, 0.1, 0.3
    x, y = rng.normal(size=(n, 2, 7, 6)), rng.integers(0, 4, n)
    model = _conv_model()
    opt = optim.KFAC(**{**EXACT, "lr": lr}, damping=lam, damping_form=form)
    grads, before = _one_step(model, SoftmaxCrossEntropy(), x, y, opt)
    s = _state(opt, 0)

    def as_matrix(w, b):  # OIHW kernel → W_mat (kh·kw·C, O), bias as the last row
        return np.vstack([w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]), b[None]])

    gbar = as_matrix(grads["0.weight"], grads["0.bias"])
    expect = _explicit(s["A"], s["G"], gbar, lam, form)
    got = (as_matrix(before["0.weight"], before["0.bias"])
           - as_matrix(model[0].params["weight"], model[0].params["bias"])) / lr
    np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-12)


def test_non_kfac_parameters_take_the_plain_gradient_step(rng):
    x, y = rng.normal(size=(10, 3)), rng.integers(0, 2, 10)
    model = bpnn.Sequential([bpnn.Dense(4), bpnn.BatchNorm(), bpnn.Dense(2)], input_shape=(3,), seed=0,
                            dtype="float64")
    opt = optim.KFAC(**{**EXACT, "lr": 0.1})
    grads, before = _one_step(model, SoftmaxCrossEntropy(), x, y, opt)
    bn = [k for k in grads if k.startswith("1.")]
    assert bn
    for k in bn:
        np.testing.assert_allclose(model.state_dict()[k], before[k] - 0.1 * grads[k], rtol=1e-13)


# ============================================================ the true Fisher
def test_true_fisher_sampling_has_the_analytic_softmax_fisher_in_expectation():
    """E_y[(N g_n)(N g_n)ᵀ] = diag(p_n) − p_n p_nᵀ for y ~ softmax(z_n): over 40 000 draws
    of 3 samples, within 4 standard errors (each entry's error ≤ 0.25/√draws·4 ≈ 0.005)."""
    z = np.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0], [3.0, 1.0, -2.0]])
    n, draws = len(z), 40_000
    rng = np.random.default_rng(7)
    loss = SoftmaxCrossEntropy()
    acc = np.zeros((n, 3, 3))
    for _ in range(draws):
        g = n * sampled_output_grad(loss, z, rng)
        acc += g[:, :, None] * g[:, None, :]
    p = _softmax(z)
    analytic = np.stack([np.diag(q) - np.outer(q, q) for q in p])
    np.testing.assert_allclose(acc / draws, analytic, atol=4 * 0.25 / np.sqrt(draws) * 2)


@pytest.mark.parametrize("reduction, expected", [("mean", lambda n, k: 2.0 / k), ("sum", lambda n, k: 2.0 * n),
                                                 ("half_sum", lambda n, k: 1.0 * n)])
def test_true_fisher_sampling_for_mse_has_the_loss_hessian_in_expectation(reduction, expected):
    """E[G] = E[s Σ_n g_n g_nᵀ] is the Hessian of the loss w.r.t. one sample's outputs,
    averaged over samples for the mean (2/K · I) and summed for sums (N · 2 I, N · I), so
    that A ⊗ G is the curvature of the loss as it reduces; s = N for the mean, 1 for sums."""
    z = np.zeros((4, 2))
    rng = np.random.default_rng(3)
    loss = MSE(reduction)
    n, k, draws = 4, 2, 20_000
    s = n if reduction == "mean" else 1
    acc = np.zeros((k, k))
    for _ in range(draws):
        g = sampled_output_grad(loss, z, rng)
        acc += s * g.T @ g
    np.testing.assert_allclose(acc / draws, expected(n, k) * np.eye(k), atol=0.05 * expected(n, k))


def test_bernoulli_sampling_has_the_loss_hessian_in_expectation():
    """Binary CE averages over N·K entries: ∂²L/∂z_n² = diag(σ(1 − σ))/(N K), so
    E[G] = N Σ_n E[g_n g_nᵀ] must be diag(σ(1 − σ))/K averaged over samples (3 % over 40 000 draws)."""
    z = np.array([[0.3, -2.0], [1.0, 0.0]])
    n, k = z.shape
    rng = np.random.default_rng(5)
    draws = 40_000
    acc = np.zeros((k, k))
    for _ in range(draws):
        g = sampled_output_grad(BinaryCrossEntropyWithLogits(), z, rng)
        acc += n * g.T @ g
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(np.diag(acc / draws), (sig * (1 - sig)).mean(axis=0) / k, rtol=0.03)
    assert abs((acc / draws)[0, 1]) < 0.01 * acc[0, 0] / draws


def test_true_fisher_G_of_the_last_layer_is_that_of_the_sampled_gradients(rng):
    n, k = 5, 3
    x, y = rng.normal(size=(n, 4)), rng.integers(0, k, n)
    model = bpnn.Sequential([bpnn.Dense(k)], input_shape=(4,), seed=0, dtype="float64")
    opt = optim.KFAC(**{**EXACT, "fisher": "true"})
    out = model.forward(x, training=True)
    g = sampled_output_grad(SoftmaxCrossEntropy(), out.copy(), np.random.default_rng(0))
    _one_step(model, SoftmaxCrossEntropy(), x, y, opt)
    np.testing.assert_allclose(_state(opt, 0)["G"], n * g.T @ g, rtol=1e-12)


def test_the_true_fisher_pass_leaves_the_gradient_unchanged(rng):
    x, y = rng.normal(size=(12, 3)), rng.integers(0, 2, 12)
    grads = []
    for opt in (optim.SGD(lr=0.1), optim.KFAC(lr=0.1, fisher="true")):
        model = bpnn.Sequential([bpnn.Conv2D(2, 1), bpnn.Flatten(), bpnn.Dense(5), bpnn.BatchNorm(), bpnn.ReLU(),
                                 bpnn.Dropout(0.2), bpnn.Dense(2)], input_shape=(3, 1, 1), seed=0,
                                dtype="float64")
        g, _ = _one_step(model, SoftmaxCrossEntropy(), x.reshape(12, 3, 1, 1), y, opt)
        grads.append(g)
    for k in grads[0]:
        np.testing.assert_array_equal(grads[0][k], grads[1][k], err_msg=k)


# ============================================================ curvlinops
@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse_sum"])
def test_factors_equal_curvlinops_kfac(rng, loss_name):
    """bpnn's A and G equal curvlinops' ``KFACLinearOperator`` input and gradient
    covariances (rtol 1e-6; float64) with ``fisher_type=FisherType.EMPIRICAL`` (our
    ``fisher="empirical"``), bias folded into A (``separate_weight_and_bias=False``),
    KFAC-expand, one batch holding the whole data set. Reductions matched:
    ``CrossEntropyLoss(reduction="mean")`` ↔ softmax_cross_entropy (both G = N Σ g gᵀ,
    A = (1/N) Σ ā āᵀ), and ``MSELoss(reduction="sum")`` ↔ MSE("sum") (G = Σ g gᵀ). (For
    a mean MSE curvlinops scales G by the number of outputs K more than we do: it counts
    the K outputs as loss terms.)"""
    torch = pytest.importorskip("torch")
    curvlinops = pytest.importorskip("curvlinops", reason="curvlinops-for-pytorch is not installed")
    n, d = 7, 4
    sizes = [5, 6, 3]
    x = rng.normal(size=(n, d))
    ours = bpnn.Sequential([bpnn.Dense(sizes[0]), bpnn.Tanh(), bpnn.Dense(sizes[1]), bpnn.ReLU(),
                            bpnn.Dense(sizes[2])], input_shape=(d,), seed=4, dtype="float64")
    if loss_name == "cross_entropy":
        y = rng.integers(0, sizes[2], n)
        loss, tloss, ty = SoftmaxCrossEntropy(), torch.nn.CrossEntropyLoss(), torch.tensor(y)
    else:
        y = rng.normal(size=(n, sizes[2]))
        loss, tloss, ty = MSE("sum"), torch.nn.MSELoss(reduction="sum"), torch.tensor(y)
    linears = []
    for layer in (ours[0], ours[2], ours[4]):
        lin = torch.nn.Linear(*layer.params["weight"].shape).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(layer.params["weight"].T))  # bpnn (in, out) → torch (out, in)
            lin.bias.copy_(torch.tensor(layer.params["bias"]))
        linears.append(lin)
    tmodel = torch.nn.Sequential(linears[0], torch.nn.Tanh(), linears[1], torch.nn.ReLU(), linears[2])
    op = curvlinops.KFACLinearOperator(tmodel, tloss, list(tmodel.parameters()), [(torch.tensor(x), ty)],
                                       fisher_type=curvlinops.FisherType.EMPIRICAL,
                                       separate_weight_and_bias=False, check_deterministic=False)
    op.compute_kronecker_factors()
    opt = optim.KFAC(**EXACT)
    _one_step(ours, loss, x, y, opt)
    for i, name in enumerate(["0", "2", "4"]):
        s = _state(opt, i)
        np.testing.assert_allclose(s["A"], op._input_covariances[name].numpy(), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(s["G"], op._gradient_covariances[name].numpy(), rtol=1e-6, atol=1e-12)


def test_conv_factors_equal_curvlinops_kfac_expand(rng):
    """Conv2D (stride 2, padding 1, dilation 2) then Dense, cross-entropy: curvlinops'
    ``KFACLinearOperator`` (``FisherType.EMPIRICAL``, KFAC-expand, bias folded in) splits
    the same product A ⊗ G otherwise — A' = A/|T|, G' = |T| G (KFAC-Pytorch's split; ours
    is KFC's) — and orders the patch columns (c, p, q) where im2col gives (p, q, c)."""
    torch = pytest.importorskip("torch")
    curvlinops = pytest.importorskip("curvlinops", reason="curvlinops-for-pytorch is not installed")
    n = 3
    x, y = rng.normal(size=(n, 2, 7, 6)), rng.integers(0, 4, n)
    ours = _conv_model()
    conv, dense = ours[0], ours[2]
    tconv = torch.nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=2).double()
    tlin = torch.nn.Linear(*dense.params["weight"].shape).double()
    with torch.no_grad():
        tconv.weight.copy_(torch.tensor(conv.params["weight"]))  # OIHW in both
        tconv.bias.copy_(torch.tensor(conv.params["bias"]))
        tlin.weight.copy_(torch.tensor(dense.params["weight"].T))
        tlin.bias.copy_(torch.tensor(dense.params["bias"]))
    tmodel = torch.nn.Sequential(tconv, torch.nn.Flatten(), tlin)
    op = curvlinops.KFACLinearOperator(tmodel, torch.nn.CrossEntropyLoss(), list(tmodel.parameters()),
                                       [(torch.tensor(x), torch.tensor(y))],
                                       fisher_type=curvlinops.FisherType.EMPIRICAL,
                                       separate_weight_and_bias=False, check_deterministic=False)
    op.compute_kronecker_factors()
    opt = optim.KFAC(**EXACT)
    _one_step(ours, SoftmaxCrossEntropy(), x, y, opt)
    T = conv.window.Ho * conv.window.Wo
    # our column (p, q, c) → theirs (c, p, q); the bias stays last
    perm = np.array([c * 9 + p * 3 + q for p in range(3) for q in range(3) for c in range(2)] + [18])
    theirs_a = op._input_covariances["0"].numpy()[np.ix_(perm, perm)]
    s = _state(opt, 0)
    np.testing.assert_allclose(s["A"] / T, theirs_a, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(s["G"] * T, op._gradient_covariances["0"].numpy(), rtol=1e-6, atol=1e-12)
    s = _state(opt, 1)
    np.testing.assert_allclose(s["A"], op._input_covariances["2"].numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(s["G"], op._gradient_covariances["2"].numpy(), rtol=1e-6, atol=1e-12)


# ============================================================ convergence
def test_linear_least_squares_takes_newton_steps(rng):
    """One Dense layer under MSE is a quadratic whose Hessian is A ⊗ (2/K) I exactly; with
    damping → 0, inverses every step and lr 1, K-FAC is Newton's method up to the sampling
    noise of G (true Fisher, N = 4000: about 2 %), so one step removes > 95 % of the
    distance to the least-squares solution and five reach it to 1e-5."""
    n, d = 4000, 3
    x = rng.normal(size=(n, d)) @ np.diag([1.0, 5.0, 0.2]) + 1.0
    y = x @ np.array([1.0, -2.0, 3.0]) + 0.5 + 0.1 * rng.normal(size=n)
    xbar = np.hstack([x, np.ones((n, 1))])
    star = np.linalg.lstsq(xbar, y, rcond=None)[0]
    model = bpnn.Sequential([bpnn.Dense(1, init="zeros")], input_shape=(d,), seed=0, dtype="float64")
    opt = optim.KFAC(lr=1.0, damping=1e-12, damping_form="eigen", momentum=0.0, kl_clip=None, factor_decay=0.0,
                     inv_update_steps=1).attach(model)
    loss = MSE()

    def dist():
        return np.linalg.norm(np.append(model[0].params["weight"][:, 0], model[0].params["bias"]) - star)

    start = dist()
    distances = []
    gen = np.random.default_rng(0)
    for _ in range(5):
        out = model.forward(x, training=True)
        loss.forward(out, y)
        opt.before_backward(model, loss, out, gen)
        model.backward(loss.backward(), input_grad=False)
        opt.step()
        distances.append(dist())
    assert distances[0] < 0.05 * start
    assert distances[-1] < 1e-5 * start


def _least_squares(rng, n=4000, d=3):
    x = rng.normal(size=(n, d)) @ np.diag([1.0, 5.0, 0.2]) + 1.0
    y = x @ np.array([1.0, -2.0, 3.0]) + 0.5 + 0.1 * rng.normal(size=n)
    return x, y


def _steps(model, opt, loss, x, y, steps, gen):
    for _ in range(steps):
        out = model.forward(x, training=True)
        loss.forward(out, y)
        opt.before_backward(model, loss, out, gen, batch=(x, y))
        model.backward(loss.backward(), input_grad=False)
        opt.step()


@pytest.mark.parametrize("lr, change", [(1.0, "down"), (3.0, "up")])
def test_adaptive_damping_follows_the_reduction_ratio(rng, lr, change):
    """On least squares the K-FAC quadratic model is the loss (up to the sampling of G), so
    a Newton step (lr 1) has ρ ≈ 1 and λ shrinks by ω = (19/20)^T₁ at every adaptation; a
    step three times too long (lr 3) raises the loss, as the model also predicts (M(δ) >
    M(0)): a failed step, ρ = −∞, and λ grows by 1/ω."""
    x, y = _least_squares(rng)
    model = bpnn.Sequential([bpnn.Dense(1, init="zeros")], input_shape=(3,), seed=0, dtype="float64")
    opt = optim.KFAC(lr=lr, damping=1e-3, damping_form="eigen", momentum=0.0, kl_clip=None, factor_decay=0.0,
                     inv_update_steps=1, adapt_damping=True, adapt_interval=2).attach(model)
    _steps(model, opt, MSE(), x, y, 1, np.random.default_rng(0))
    omega = (19 / 20) ** 2
    if change == "down":
        assert opt.last_reduction_ratio == pytest.approx(1.0, abs=0.1)
        assert opt.damping == pytest.approx(1e-3 * omega, rel=1e-12)
    else:
        assert opt.last_reduction_ratio < 0.25
        assert opt.damping == pytest.approx(1e-3 / omega, rel=1e-12)
    _steps(model, opt, MSE(), x, y, 2, np.random.default_rng(1))  # steps 1 (no adaptation) and 2
    assert opt.damping == pytest.approx(1e-3 * (omega ** 2 if change == "down" else omega ** -2), rel=1e-12)


def test_adaptive_damping_needs_the_batch(rng):
    model = bpnn.Sequential([bpnn.Dense(2)], input_shape=(3,), seed=0)
    opt = optim.KFAC(adapt_damping=True).attach(model)
    out = model.forward(rng.normal(size=(4, 3)), training=True)
    with pytest.raises(ValueError, match=r"batch: adapt_damping=True needs this step's \(x, y\)"):
        opt.before_backward(model, SoftmaxCrossEntropy(), out)


def test_kfac_reaches_a_loss_sgd_does_not_in_the_same_steps(rng):
    from bpnn.data import load_digits

    X, y = load_digits()
    X, y = X[:300], y[:300]

    def run(opt):
        model = bpnn.Sequential([bpnn.Dense(32), bpnn.Tanh(), bpnn.Dense(10)], seed=0)
        h = bpnn.Trainer(model, optimizer=opt).fit(X, y, epochs=30, batch_size="full", verbose=False)
        return h.history["loss"][-1]

    kfac = run(optim.KFAC(lr=0.3, damping=1e-2, inv_update_steps=1))
    sgd = run(optim.SGD(lr=0.3, momentum=0.9))
    assert kfac < 0.5 * sgd, (kfac, sgd)


# ============================================================ Trainer, resume
def test_trainer_with_callbacks_and_schedule(rng):
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    model = bpnn.Sequential([bpnn.Dense(8), bpnn.ReLU(), bpnn.Dense(3)], seed=0)
    opt = optim.KFAC(lr=optim.StepDecay(0.1, 2, gamma=0.5), factor_update_steps=2, inv_update_steps=3)
    h = bpnn.Trainer(model, optimizer=opt).fit(
        X, y, epochs=4, batch_size=16, validation_split=0.2, verbose=False,
        callbacks=[bpnn.EarlyStopping("val_loss", patience=10)])
    assert len(h.history["loss"]) == 4 and all(np.isfinite(h.history["loss"]))
    assert h.history["lr"][0] > h.history["lr"][-1]
    assert opt.state_dict()["state"][-1]["counters"].tolist() == [6, 4]  # 12 steps: factors 0,2,..; inverses 0,3,..


def test_history_records_the_damping_and_the_update_norms(rng):
    """One step per epoch: ``update_norm`` is the norm of that epoch's parameter change;
    with the adaptation on, ``damping`` moves over the epochs as the optimizer's λ does."""
    X, y = rng.normal(size=(32, 4)), rng.integers(0, 3, 32)
    model = bpnn.Sequential([bpnn.Dense(8), bpnn.ReLU(), bpnn.Dense(3)], seed=0, dtype="float64")
    opt = optim.KFAC(lr=0.5, damping=1e-2, adapt_damping=True, adapt_interval=1, kl_clip=1e-4)

    class Changes(bpnn.Callback):
        def __init__(self):
            self.norms, self.lams = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.before = model.flat_parameters().params.copy()

        def on_epoch_end(self, epoch, logs=None):
            self.norms.append(float(np.linalg.norm(model.flat_parameters().params - self.before)))
            self.lams.append(opt.damping)

    seen = Changes()
    h = bpnn.Trainer(model, optimizer=opt).fit(X, y, epochs=6, batch_size=32, verbose=False, callbacks=[seen])
    np.testing.assert_allclose(h.history["update_norm"], seen.norms, rtol=1e-10)
    assert h.history["damping"] == seen.lams and len(set(seen.lams)) > 1
    assert all(0 < k <= 1 for k in h.history["kl_scale"]) and min(h.history["kl_scale"]) < 1  # clipped
    assert all(n > 0 for n in h.history["natural_grad_norm"])
    assert opt.epoch_logs() == {}  # read at each epoch's end: nothing since


def test_gradient_optimizers_add_nothing_to_history(rng):
    X, y = rng.normal(size=(32, 4)), rng.integers(0, 3, 32)
    model = bpnn.Sequential([bpnn.Dense(3)], seed=0)
    h = bpnn.Trainer(model, optimizer=optim.Adam()).fit(X, y, epochs=2, verbose=False)
    assert set(h.history) == {"loss", "accuracy", "lr"}


RESUME = textwrap.dedent("""
    import json, sys
    import numpy as np
    import bpnn
    from bpnn.data import load_digits

    mode, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    X, y = load_digits()
    X, y = X[:400], y[:400]
    model = bpnn.Sequential([bpnn.Dense(16), bpnn.ReLU(), bpnn.BatchNorm(), bpnn.Dense(10)], seed=3)
    opt = bpnn.optim.KFAC(lr=bpnn.optim.CosineAnnealing(0.05, T_max=4, unit="epoch"), damping=1e-2,
                          factor_update_steps=2, inv_update_steps=3, weight_decay=1e-3, adapt_damping=True,
                          adapt_interval=2)
    trainer = bpnn.Trainer(model, optimizer=opt)
    kw = dict(batch_size=64, verbose=False)
    if mode == "straight":
        h = trainer.fit(X, y, epochs=4, **kw)
    elif mode == "first":
        h = trainer.fit(X, y, epochs=2, callbacks=[bpnn.ModelCheckpoint(path)], **kw)
    else:
        h = trainer.fit(X, y, epochs=4, resume_from=path, **kw)
    np.savez(out, **model.state_dict())
    with open(out + ".json", "w") as f:
        json.dump(h.history, f)
""")


def test_two_plus_two_epochs_in_a_new_process_equal_four_straight(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME)
    ckpt = str(tmp_path / "ckpt.safetensors")
    for mode in ("straight", "first", "resume"):
        subprocess.run([sys.executable, str(script), mode, ckpt, str(tmp_path / f"{mode}.npz")], check=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"})
    straight, resumed = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resume.npz")
    for k in straight.files:
        np.testing.assert_array_equal(straight[k], resumed[k], err_msg=k)
    assert (json.loads((tmp_path / "straight.npz.json").read_text())
            == json.loads((tmp_path / "resume.npz.json").read_text()))


def test_config_round_trip_and_state_dict(rng):
    opt = optim.KFAC(lr=0.05, damping=0.01, momentum=0.5, factor_decay=0.9, factor_update_steps=2,
                     inv_update_steps=4, kl_clip=None, weight_decay=1e-4, fisher="empirical", damping_form="eigen",
                     adapt_damping=True, adapt_interval=3, min_damping=1e-6)
    cfg = optim.optimizers.serialize(opt)
    assert optim.optimizers.serialize(optim.get(cfg)) == cfg
    assert isinstance(optim.get("kfac"), optim.KFAC)
    assert repr(optim.get(cfg)) == repr(opt)


def test_model_file_round_trip_with_the_optimizer(tmp_path, rng):
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    model = bpnn.Sequential([bpnn.Dense(5), bpnn.Tanh(), bpnn.Dense(3)], seed=0)
    opt = optim.KFAC(lr=0.05)
    bpnn.Trainer(model, optimizer=opt).fit(X, y, epochs=2, batch_size=10, verbose=False)
    path = tmp_path / "m.bpnn"
    bpnn.io.save(model, path, optimizer=opt)
    loaded, opt2 = bpnn.io.load(path, with_optimizer=True)
    assert isinstance(opt2, optim.KFAC) and opt2.get_config() == opt.get_config()
    saved, restored = opt.state_dict(), opt2.state_dict()
    assert restored["step_count"] == saved["step_count"] == 6
    for mine, theirs in zip(saved["state"], restored["state"]):
        assert mine.keys() == theirs.keys()
        for k in mine:
            np.testing.assert_array_equal(mine[k], theirs[k], err_msg=k)


@pytest.mark.parametrize("which", ["classifier", "regressor"])
def test_sklearn_solver_kfac(rng, which):
    pytest.importorskip("sklearn")
    from bpnn.sklearn import BPNNClassifier, BPNNRegressor

    X = rng.normal(size=(120, 4))
    if which == "classifier":
        y = (X[:, 0] + X[:, 1] > 0).astype(int)
        est = BPNNClassifier(hidden_layer_sizes=(8,), solver="kfac", learning_rate_init=0.05, momentum=0.5,
                             max_iter=30, random_state=0)
    else:
        y = X @ np.array([1.0, -1.0, 0.5, 0.0])
        est = BPNNRegressor(hidden_layer_sizes=(8,), solver="kfac", learning_rate_init=0.05, momentum=0.5,
                            max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter reached
        est.fit(X, y)
    assert est.score(X, y) > 0.8


def test_compare_runs_kfac(tmp_path):
    pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")
    from bpnn.experiment import StudySpec, run_study

    spec = StudySpec(inits=["he_normal"], optimizers=["sgd", "kfac"], lrs=[0.05], seeds=[0], epochs=2,
                     hidden=[16], n_jobs=1, histogram_bins=8, max_samples=300)
    result = run_study(spec, progress=False)
    by_optimizer = {r["run"]["optimizer"]: r for r in result.runs}
    assert set(by_optimizer) == {"sgd", "kfac"}
    assert not any(r["error"] for r in result.runs), [r["error"] for r in result.runs]
    kfac, sgd = by_optimizer["kfac"]["history"]["loss"][-1], by_optimizer["sgd"]["history"]["loss"][-1]
    assert np.isfinite(kfac) and kfac < sgd


def test_cli_compare_optimizers_kfac(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")
    pytest.importorskip("matplotlib", reason="the report needs matplotlib (bpnn[report])")
    from bpnn import cli

    out = tmp_path / "run"
    code = cli.main(["compare", "--inits", "he_normal", "--optimizers", "kfac", "--seeds", "0", "--epochs", "1",
                     "--hidden", "8", "--n-jobs", "1", "--out", str(out), "--quiet"])
    assert code == 0
    assert "kfac" in (out / "results.csv").read_text()
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert {"damping", "update_norm", "kl_scale"} <= set(run["history"])
    report = (out / "report.html").read_text()
    assert '<section id="curvature">' in report and 'href="#curvature"' in report


def test_a_report_without_kfac_has_no_curvature_section(tmp_path):
    pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")
    pytest.importorskip("matplotlib", reason="the report needs matplotlib (bpnn[report])")
    from bpnn import cli

    out = tmp_path / "run"
    assert cli.main(["compare", "--inits", "he_normal", "--optimizers", "sgd", "--seeds", "0", "--epochs", "1",
                     "--hidden", "8", "--n-jobs", "1", "--out", str(out), "--quiet"]) == 0
    assert "curvature" not in (out / "report.html").read_text()


# ============================================================ errors
@pytest.mark.parametrize("kw, match", [
    (dict(damping=0.0), "damping: got 0.0"),
    (dict(damping=-1.0), "damping"),
    (dict(factor_update_steps=0), "factor_update_steps: got 0"),
    (dict(inv_update_steps=0), "inv_update_steps: got 0"),
    (dict(fisher="exact"), "fisher: got 'exact'; valid values are 'true', 'empirical'"),
    (dict(damping_form="x"), "damping_form"),
    (dict(kl_clip=0), "kl_clip"),
    (dict(factor_decay=1.0), "factor_decay"),
    (dict(adapt_damping=1), "adapt_damping: got 1; expected True or False"),
    (dict(adapt_interval=0), "adapt_interval: got 0"),
])
def test_bad_arguments_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        optim.KFAC(**kw)


def test_a_model_without_dense_or_conv_is_refused():
    model = bpnn.Sequential([bpnn.Flatten(), bpnn.BatchNorm()], input_shape=(3,), seed=0)
    with pytest.raises(ValueError, match="needs at least one trainable Dense or Conv2D layer; Sequential has none"):
        optim.KFAC().attach(model)


def test_a_model_with_a_shared_module_is_refused():
    shared = bpnn.Dense(4)
    model = bpnn.Sequential([bpnn.Dense(4), shared, bpnn.Tanh(), shared], input_shape=(3,), seed=0)
    with pytest.raises(ValueError, match="weight sharing.*Dense occurs 2 times"):
        optim.KFAC().attach(model)


def test_a_loss_without_a_predictive_distribution_is_named(rng):
    class Hinge(Loss):
        def forward(self, pred, target):
            self._g = np.ones_like(pred) / pred.size
            return float(np.maximum(0, 1 - pred).mean())

        def backward(self):
            return self._g

    model = bpnn.Sequential([bpnn.Dense(2)], input_shape=(3,), seed=0)
    opt = optim.KFAC().attach(model)
    out = model.forward(rng.normal(size=(4, 3)), training=True)
    with pytest.raises(ValueError, match="cannot sample targets .* for Hinge; .*use fisher='empirical'"):
        opt.before_backward(model, Hinge(), out)
    opt = optim.KFAC(fisher="empirical").attach(model)
    opt.before_backward(model, Hinge(), out)  # the empirical Fisher needs no sampling


def test_step_without_statistics_says_what_to_call():
    model = bpnn.Sequential([bpnn.Dense(2)], input_shape=(3,), seed=0)
    opt = optim.KFAC().attach(model)
    with pytest.raises(RuntimeError, match="before_backward"):
        opt.step()


def test_a_non_finite_factor_stops_training_and_keeps_the_best_weights():
    """In float32, inputs of 1e20 give finite outputs but an infinite A = E[x xᵀ]."""
    X = np.full((8, 2), 1.0, dtype=np.float32)
    y = np.array([0, 1] * 4)
    model = bpnn.Sequential([bpnn.Dense(2, init="zeros")], seed=0)
    trainer = bpnn.Trainer(model, optimizer=optim.KFAC(lr=0.1))
    trainer.fit(X, y, epochs=1, batch_size=8, verbose=False)
    before = model.state_dict()
    X[:] = 1e20
    with pytest.warns(bpnn.train.trainer.NonFiniteLossWarning, match="factor A of layer '0' is non-finite at step"):
        trainer.fit(X, y, epochs=2, batch_size=8, verbose=False)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert "non-finite" in trainer.history.stopped_reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(optim.NonFiniteCurvatureError, match="layer '0'"):
            opt = optim.KFAC().attach(model)
            out = model.forward(X, training=True)
            opt.before_backward(model, SoftmaxCrossEntropy(), out)


def test_a_damping_that_keeps_rising_is_a_health_verdict():
    from bpnn.diagnostics import diagnose

    rising = {"loss": [1.0, 0.9, 0.85, 0.8], "damping": [1e-3, 1e-2, 0.5, 2.0]}
    [verdict] = [v for v in diagnose(history=rising) if v.kind == "rising_damping"]
    assert verdict.epoch == 3 and verdict.value == 2.0
    assert "0.001 to 2" in verdict.message
    steady = {"loss": [1.0, 0.9, 0.85, 0.8], "damping": [1e-3, 2e-3, 5e-2, 9e-2]}
    assert not [v for v in diagnose(history=steady) if v.kind == "rising_damping"]
