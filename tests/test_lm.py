"""Levenberg–Marquardt: the step, the μ schedule, the loop (LMTrainer) and its record."""
from __future__ import annotations

import numpy as np
import pytest

import bpnn
from bpnn.init.nguyen_widrow import nguyen_widrow
from bpnn.nn import jacobian
from bpnn.optim import LevenbergMarquardt
from bpnn.train import Callback, LMTrainer


def _sin_problem():
    x = np.linspace(-np.pi, np.pi, 100).reshape(-1, 1)
    return x / np.pi, np.sin(x)  # inputs mapped to [−1, 1] as mapminmax does


def _net(seed, hidden=10, n_in=1, n_out=1, dtype="float64"):
    model = bpnn.Sequential([bpnn.Dense(hidden), bpnn.Tanh(), bpnn.Dense(n_out)], input_shape=(n_in,), seed=seed,
                            dtype=dtype)
    nguyen_widrow(model)
    return model


def test_defaults_are_matlab_trainlm():
    lm = LevenbergMarquardt()
    assert (lm.mu, lm.mu_dec, lm.mu_inc, lm.mu_max) == (1e-3, 0.1, 10.0, 1e10)
    tr = LMTrainer(_net(0))
    assert (tr.epochs, tr.min_grad, tr.max_fail, tr.goal) == (1000, 1e-7, 6, 0.0)


def test_one_step_solves_the_damped_normal_equations(rng):
    model = _net(1, hidden=4, n_in=2, n_out=2)
    x, t = rng.standard_normal((12, 2)), rng.standard_normal((12, 2))
    y, J = jacobian(model, x)
    r = (y - t).ravel()
    w0 = model.flat_parameters().params.copy()
    lm = LevenbergMarquardt(mu=0.3).attach(model)
    sse, jj, je = lm.linearize(x, t)
    assert sse == pytest.approx(float(r @ r))
    np.testing.assert_allclose(jj, J.T @ J, rtol=1e-12)
    np.testing.assert_allclose(je, J.T @ r, rtol=1e-12)
    info = lm.update(x, t, sse, jj, je)
    assert info["accepted"]
    mu = info["mu_trials"][-1]  # the μ of the accepted trial
    expected = w0 - np.linalg.inv(J.T @ J + mu * np.eye(len(w0))) @ (J.T @ r)
    np.testing.assert_allclose(model.flat_parameters().params, expected, rtol=1e-9, atol=1e-12)
    assert info["sse"] < sse


def test_mu_rises_tenfold_on_rejection_and_falls_tenfold_on_acceptance():
    x, t = _sin_problem()
    model = _net(0)
    lm = LevenbergMarquardt(mu=1e-12).attach(model)  # a tiny μ overshoots: rejections follow
    rejected = accepted = 0
    for _ in range(30):
        mu_before = lm.current_mu
        info = lm.step(x, t)
        trials = info["mu_trials"]
        assert trials[0] == mu_before
        for a, b in zip(trials, trials[1:]):
            assert b == pytest.approx(10 * a), "each rejected trial multiplies μ by mu_inc = 10"
        rejected += len(trials) - 1
        if info["accepted"]:
            accepted += 1
            assert lm.current_mu == pytest.approx(max(trials[-1] * 0.1, 1e-20)), "acceptance: μ × mu_dec = 0.1"
            assert info["sse"] < info["sse_before"]
    assert rejected > 0 and accepted > 0, "the run must exercise both branches"


def test_rejected_steps_leave_the_weights_unchanged(rng):
    x = rng.uniform(-1, 1, (40, 1))
    t = rng.standard_normal((40, 1))  # noise: a 10-unit net soon stalls and steps get rejected
    model = _net(2)
    lm = LevenbergMarquardt(mu=1e-3, mu_max=5e-3).attach(model)  # one rejection ends the loop
    for _ in range(200):
        before = model.flat_parameters().params.copy()
        info = lm.step(x, t)
        if not info["accepted"]:
            np.testing.assert_array_equal(model.flat_parameters().params, before)
            assert lm.current_mu > lm.mu_max
            return
    pytest.fail("mu_max = 5e-3 should have been exceeded within 200 epochs")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lm_fits_sin_to_mse_1e_5_within_100_epochs(seed):
    x, t = _sin_problem()
    model = _net(seed)
    record = LMTrainer(model, "lm", epochs=100, goal=1e-5).fit(x, t)
    mse = float(np.mean((model.predict(x) - t) ** 2))
    assert mse < 1e-5 and record.stop == "Performance goal met."
    assert record.num_epochs <= 100
    assert record.epoch == list(range(record.num_epochs + 1))
    assert record.perf[-1] == pytest.approx(mse)
    assert all(b <= a for a, b in zip(record.perf, record.perf[1:])), "LM never accepts a worse step"


def test_gradient_descent_needs_far_more_epochs_on_the_same_problem():
    # The first-order half of the benchmark's claim, at test size: 10x LM's epochs of
    # full-batch Adam from the same start stay far from the goal.
    x, t = _sin_problem()
    lm_epochs = LMTrainer(_net(0), epochs=100, goal=1e-5).fit(x, t).num_epochs
    model = _net(0)
    trainer = bpnn.Trainer(model, loss="mse", optimizer=bpnn.optim.Adam(lr=0.01), metrics=[])
    hist = trainer.fit(x, t, epochs=10 * lm_epochs, batch_size="full", verbose=False)
    assert min(hist["loss"]) > 1e-4


def test_record_and_callbacks_follow_the_run():
    x, t = _sin_problem()
    seen = []

    class Spy(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, dict(logs)))

    trainer = LMTrainer(_net(0), epochs=5)
    record = trainer.fit(x, t, callbacks=[Spy()])
    assert record.stop == "Maximum epoch reached." and record.num_epochs == 5
    assert [e for e, _ in seen] == list(range(6))
    assert [logs["loss"] for _, logs in seen] == record.perf
    assert [logs["mu"] for _, logs in seen] == record.mu
    assert trainer.history["gradient"] == record.gradient
    d = record.to_dict()
    assert d["perf"] == record.perf and d["stop"] == record.stop and d["num_params"] == 31
    assert record.vperf == [None] * 6 and record.best_epoch == 5


def test_callback_can_stop_training():
    x, t = _sin_problem()

    class StopAt2(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.trainer.stop_training = True

    record = LMTrainer(_net(0)).fit(x, t, callbacks=[StopAt2()])
    assert record.stop == "Stopped by a callback." and record.num_epochs == 2


def test_validation_stop_after_max_fail_rises_restores_the_best_weights(rng):
    # A small noisy training set and a large validation set: the fit overtrains and the
    # validation error rises; training must stop after max_fail consecutive rises and
    # keep the weights of the best validation epoch.
    xtr = rng.uniform(-1, 1, (20, 1))
    ttr = np.sin(3 * xtr) + 0.3 * rng.standard_normal(xtr.shape)
    xva = np.linspace(-1, 1, 200).reshape(-1, 1)
    tva = np.sin(3 * xva)
    model = _net(0, hidden=15)
    record = LMTrainer(model, max_fail=4).fit(xtr, ttr, validation_data=(xva, tva))
    assert record.stop == "Validation stop."
    assert record.val_fail[-1] == 4
    best = record.best_epoch
    assert record.vperf[best] == min(record.vperf)
    assert all(v > record.vperf[best] for v in record.vperf[best + 1:])
    final = float(np.mean((model.predict(xva) - tva) ** 2))
    assert final == pytest.approx(record.best_vperf, rel=1e-10), "the best validation weights are restored"


def test_test_set_is_only_recorded(rng):
    x, t = _sin_problem()
    xt = rng.uniform(-1, 1, (30, 1))
    record = LMTrainer(_net(0), epochs=4).fit(x, t, test_data=(xt, np.sin(np.pi * xt)))
    assert all(v is not None for v in record.tperf) and record.stop == "Maximum epoch reached."


def test_min_grad_and_mu_max_stops():
    x, t = _sin_problem()
    assert LMTrainer(_net(0), min_grad=1e9).fit(x, t).stop == "Minimum gradient reached."
    rec = LMTrainer(_net(0), LevenbergMarquardt(mu=1e-3, mu_max=1e-4), epochs=50).fit(x, t)
    assert rec.stop == "Maximum MU reached."


def test_jacobian_in_blocks_when_it_does_not_fit_gives_the_same_run():
    x, t = _sin_problem()
    whole, blocked = _net(4), _net(4)
    rec1 = LMTrainer(whole, epochs=8).fit(x, t)
    # JᵀJ (31² float64 ×2) fits in 64 KiB; J (100 × 31 × 16 bytes) does not, in full.
    rec2 = LMTrainer(blocked, LevenbergMarquardt(memory_limit=32_000), epochs=8).fit(x, t)
    assert rec1.jacobian_blocks == 1 and rec2.jacobian_blocks > 1
    np.testing.assert_allclose(blocked.flat_parameters().params, whole.flat_parameters().params, rtol=1e-9,
                               atol=1e-10)
    np.testing.assert_allclose(rec2.perf, rec1.perf, rtol=1e-9)


def test_too_many_parameters_for_memory_is_a_clear_error():
    model = bpnn.Sequential([bpnn.Dense(300), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(50,), seed=0,
                            dtype="float64")
    with pytest.raises(ValueError, match=r"P = 15,601 .* over memory_limit = 1\.0 MiB .* P may be at most 256"):
        LevenbergMarquardt(memory_limit=1 << 20).attach(model)


def test_float32_models_train_with_float64_normal_equations():
    x, t = _sin_problem()
    model = _net(0, dtype="float32")
    record = LMTrainer(model, epochs=30, goal=1e-4).fit(x.astype(np.float32), t.astype(np.float32))
    assert record.stop == "Performance goal met."


def test_unknown_solver_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown least-squares solver 'lmm'"):
        LMTrainer(_net(0), solver="lmm")
    with pytest.raises(ValueError, match="mu_inc: got 0.5"):
        LevenbergMarquardt(mu_inc=0.5)
    with pytest.raises(ValueError, match="max_fail: got 0"):
        LMTrainer(_net(0), max_fail=0)
    with pytest.raises(ValueError, match=r"T: got targets of shape \(100, 2\)"):
        LMTrainer(_net(0)).fit(np.zeros((100, 1)), np.zeros((100, 2)))


def test_lm_trains_a_small_cnn(rng):
    """Conv2D and pooling give per-sample Jacobians too, so LM trains a small CNN: the mean
    intensity of the left vs right half of 6×6 images, learnt to a tiny error."""
    x = rng.random((40, 1, 6, 6))
    t = np.stack([x[:, 0, :, :3].mean(axis=(1, 2)), x[:, 0, :, 3:].mean(axis=(1, 2))], axis=1)
    model = bpnn.Sequential([bpnn.Conv2D(2, 3, padding=1), bpnn.Tanh(), bpnn.AvgPool2D(2), bpnn.Flatten(),
                             bpnn.Dense(2)], input_shape=(1, 6, 6), seed=0, dtype="float64")
    start = float(np.mean((model.predict(x) - t) ** 2))
    record = LMTrainer(model, "lm", epochs=60, goal=1e-8).fit(x, t)
    mse = float(np.mean((model.predict(x) - t) ** 2))
    assert mse < 1e-5 * start and record.perf[-1] == pytest.approx(mse)
