"""Bayesian regularization (MacKay 1992; MATLAB trainbr): the step, the α/β/γ
re-estimation, and generalization on a noisy problem against LM with validation stopping."""
from __future__ import annotations

import numpy as np
import pytest

import bpnn
from bpnn.data import dividerand
from bpnn.init.nguyen_widrow import nguyen_widrow
from bpnn.nn import jacobian
from bpnn.optim import BayesianRegularization
from bpnn.train import LMTrainer


def _net(seed, hidden=20):
    model = bpnn.Sequential([bpnn.Dense(hidden), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(1,), seed=seed,
                            dtype="float64")
    nguyen_widrow(model)
    return model


def _noisy(seed, n=100, noise=0.2):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1))
    return x, np.sin(3 * x) + noise * rng.standard_normal(x.shape)


def test_defaults_are_matlab_trainbr():
    br = BayesianRegularization()
    assert (br.mu, br.mu_dec, br.mu_inc, br.mu_max) == (5e-3, 0.1, 10.0, 1e10)
    assert LMTrainer(_net(0), "br").max_fail is None, "trainbr does not stop on validation by default"
    assert LMTrainer(_net(0), "trainbr").solver.registry_name == "br"


def test_initial_hyperparameters_and_gamma_formula():
    x, t = _noisy(0)
    model = _net(0)
    br = BayesianRegularization().attach(model)
    sse, jj, je = br.linearize(x, t)
    w = model.flat_parameters().params
    p, n = len(w), t.size
    assert br.gamma == p
    assert br.beta == pytest.approx((n - p) / (2 * sse))
    assert br.alpha == pytest.approx(p / (2 * float(w @ w)))
    explicit = p - br.alpha * np.trace(np.linalg.inv(br.beta * jj + br.alpha * np.eye(p)))
    assert br.effective_parameters(jj) == pytest.approx(explicit, rel=1e-9)


def test_step_and_reestimation_follow_the_formulas():
    x, t = _noisy(1)
    model = _net(1)
    br = BayesianRegularization().attach(model)
    sse, jj, je = br.linearize(x, t)
    alpha, beta = br.alpha, br.beta
    w0 = model.flat_parameters().params.copy()
    p = len(w0)
    info = br.update(x, t, sse, jj, je)
    assert info["accepted"]
    mu = info["mu_trials"][-1]
    delta = -np.linalg.solve(beta * jj + (alpha + mu) * np.eye(p), beta * je + alpha * w0)
    w1 = model.flat_parameters().params
    np.testing.assert_allclose(w1, w0 + delta, rtol=1e-9, atol=1e-12)
    # F = β·E_D + α·E_W decreased
    assert beta * info["sse"] + alpha * float(w1 @ w1) < beta * sse + alpha * float(w0 @ w0)
    # re-estimation at the new weights, with the old α, β in γ
    sse1, jj1, _ = br.linearize(x, t)
    y, J = jacobian(model, x)
    np.testing.assert_allclose(jj1, J.T @ J, rtol=1e-12)
    gamma = p - alpha * np.trace(np.linalg.inv(beta * jj1 + alpha * np.eye(p)))
    assert br.gamma == pytest.approx(gamma, rel=1e-9)
    assert br.alpha == pytest.approx(gamma / (2 * float(w1 @ w1)), rel=1e-12)
    assert br.beta == pytest.approx((t.size - gamma) / (2 * sse1), rel=1e-12)


def test_br_generalizes_at_least_as_well_as_lm_with_validation_stopping_and_reports_gamma():
    # 1-20-1 network (61 weights) on 100 noisy samples of sin(3x), three fixed data sets.
    # LM: MATLAB's default workflow — dividerand 70/15/15, validation stop (max_fail 6).
    # BR: the training + validation samples LM saw, no validation set (trainbr).
    # Error against the noise-free function on a dense grid.
    grid = np.linspace(-1, 1, 400).reshape(-1, 1)
    truth = np.sin(3 * grid)
    lm_err, br_err, gammas = [], [], []
    for seed in range(3):
        x, t = _noisy(seed)
        div = dividerand(len(x), rng=seed)
        (xtr, xva, xte), (ttr, tva, tte) = div.take(x, t)
        lm_model = _net(seed)
        LMTrainer(lm_model, "lm").fit(xtr, ttr, validation_data=(xva, tva), test_data=(xte, tte))
        lm_err.append(float(np.mean((lm_model.predict(grid) - truth) ** 2)))
        br_model = _net(seed)
        rec = LMTrainer(br_model, "br", epochs=300).fit(np.r_[xtr, xva], np.r_[ttr, tva], test_data=(xte, tte))
        br_err.append(float(np.mean((br_model.predict(grid) - truth) ** 2)))
        gammas.append(rec.gamk[-1])
        assert len(rec.gamk) == len(rec.perf) and all(g is not None for g in rec.gamk)
    assert all(0 < g < 61 for g in gammas), gammas
    # "at least as well", with a margin: BR's mean error is at most 80 % of LM's
    assert np.mean(br_err) <= 0.8 * np.mean(lm_err), (br_err, lm_err)


def test_br_keeps_its_last_weights_even_with_validation_data():
    x, t = _noisy(3)
    xv, tv = _noisy(4, n=50)
    model = _net(3, hidden=8)
    rec = LMTrainer(model, "br", epochs=40).fit(x, t, validation_data=(xv, tv))
    assert rec.best_epoch == rec.epoch[-1]
    assert all(v is not None for v in rec.vperf)
    np.testing.assert_allclose(np.mean((model.predict(x) - t) ** 2), rec.perf[-1], rtol=1e-10)
