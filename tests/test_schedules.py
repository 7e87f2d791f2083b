"""Learning-rate schedules: each equals its torch.optim.lr_scheduler twin (≥ 20 steps,
rtol 1e-6), per epoch or per step, through the optimizer and the Trainer."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bpnn  # noqa: E402
from bpnn import optim  # noqa: E402
from test_optim import make_pair, run_parity  # noqa: E402

torch.set_num_threads(1)
S = torch.optim.lr_scheduler
N = 40
BASE = 0.1


def torch_lrs(factory, n=N, base=BASE):
    """The learning rate torch uses at each of n steps (``scheduler.step()`` after each)."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's deprecation notice about step(epoch)
        sched = factory(opt)
        out = []
        for _ in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return np.array(out)


CASES = {
    "constant": (lambda: optim.Constant(BASE), lambda o: S.LambdaLR(o, lambda t: 1.0)),
    "step": (lambda: optim.StepDecay(BASE, step_size=7, gamma=0.5), lambda o: S.StepLR(o, 7, 0.5)),
    "step_default_gamma": (lambda: optim.StepDecay(BASE, 4), lambda o: S.StepLR(o, 4)),
    "multi_step": (lambda: optim.MultiStepDecay(BASE, [3, 10, 25], gamma=0.3),
                   lambda o: S.MultiStepLR(o, [3, 10, 25], 0.3)),
    "exponential": (lambda: optim.ExponentialDecay(BASE, 0.93), lambda o: S.ExponentialLR(o, 0.93)),
    "inverse_time": (lambda: optim.InverseTimeDecay(BASE, 0.25),
                     lambda o: S.LambdaLR(o, lambda t: 1 / (1 + 0.25 * t))),
    "inverse_time_staircase": (lambda: optim.InverseTimeDecay(BASE, 0.5, decay_steps=4, staircase=True),
                               lambda o: S.LambdaLR(o, lambda t: 1 / (1 + 0.5 * (t // 4)))),
    "polynomial": (lambda: optim.PolynomialDecay(BASE, total_iters=50, power=2.0),
                   lambda o: S.PolynomialLR(o, 50, 2.0)),
    "polynomial_default": (lambda: optim.PolynomialDecay(BASE, total_iters=45),
                           lambda o: S.PolynomialLR(o, 45)),
    "cosine": (lambda: optim.CosineAnnealing(BASE, T_max=15, eta_min=0.01),  # two half-periods
               lambda o: S.CosineAnnealingLR(o, 15, 0.01)),
    "sgdr_T_mult_2": (lambda: optim.CosineWarmRestarts(BASE, T_0=5, T_mult=2, eta_min=1e-3),  # restarts 5, 15, 35
                      lambda o: S.CosineAnnealingWarmRestarts(o, 5, 2, 1e-3)),
    "sgdr_T_mult_3": (lambda: optim.CosineWarmRestarts(BASE, T_0=3, T_mult=3),  # restarts 3, 12, 39
                      lambda o: S.CosineAnnealingWarmRestarts(o, 3, 3)),
    "sgdr_T_mult_1": (lambda: optim.CosineWarmRestarts(BASE, T_0=7, eta_min=0.01),
                      lambda o: S.CosineAnnealingWarmRestarts(o, 7, 1, 0.01)),
    "warmup_constant": (lambda: optim.LinearWarmup(BASE, warmup_iters=5),
                        lambda o: S.LinearLR(o, 1 / 3, 1.0, 5)),
    "warmup_cosine": (lambda: optim.LinearWarmup(optim.CosineAnnealing(BASE, 40, 1e-3), 5, start_factor=0.1),
                      lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.1, 1.0, 5), S.CosineAnnealingLR(o, 40, 1e-3)],
                                               [5])),
    "warmup_step": (lambda: optim.LinearWarmup(optim.StepDecay(BASE, 4, 0.5), 6, start_factor=0.2),
                    lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.2, 1.0, 6), S.StepLR(o, 4, 0.5)], [6])),
    "warmup_sgdr": (lambda: optim.LinearWarmup(optim.CosineWarmRestarts(BASE, 4, 2), 3, start_factor=0.5),
                    lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.5, 1.0, 3),
                                                 S.CosineAnnealingWarmRestarts(o, 4, 2)], [3])),
}


@pytest.mark.parametrize("name", list(CASES))
def test_schedule_equals_torch(name):
    ours, theirs = CASES[name]
    schedule = ours()
    got = np.array([schedule(t) for t in range(N)])
    want = torch_lrs(theirs)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert len(set(np.round(got, 12))) > 1 or name == "constant", "the schedule should change the rate"


def test_sgdr_restarts_twice_within_the_checked_range():
    s = optim.CosineWarmRestarts(BASE, T_0=5, T_mult=2, eta_min=1e-3)
    lrs = [s(t) for t in range(N)]
    restarts = [t for t in range(1, N) if lrs[t] > lrs[t - 1]]
    assert restarts == [5, 15, 35]
    assert all(lrs[t] == BASE for t in (0, 5, 15, 35))
    assert s.cycle(14) == (9, 10) and s.cycle(15) == (0, 20)


def test_every_registered_schedule_has_a_torch_twin_case():
    covered = {type(make()).registry_name for make, _ in CASES.values()} | {"reduce_on_plateau"}
    assert set(optim.schedules.names()) <= covered


@pytest.mark.parametrize("mode, threshold_mode, cooldown, min_lr", [
    ("min", "rel", 0, 0.0), ("min", "abs", 2, 0.004), ("max", "rel", 1, 0.0), ("max", "abs", 0, 1e-3)])
def test_reduce_on_plateau_equals_torch(mode, threshold_mode, cooldown, min_lr):
    rng = np.random.default_rng(0)
    # a metric that improves, stalls with noise, improves a little, stalls again
    metric = np.concatenate([np.linspace(1.0, 0.5, 8), 0.5 + 0.01 * rng.random(12),
                             np.linspace(0.49, 0.45, 5), 0.45 + 0.01 * rng.random(15)])
    if mode == "max":
        metric = -metric
    kw = dict(mode=mode, factor=0.5, patience=2, threshold=1e-3, threshold_mode=threshold_mode,
              cooldown=cooldown, min_lr=min_lr)
    ours = optim.ReduceOnPlateau(BASE, **kw)
    p = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([p], lr=BASE)
    theirs = S.ReduceLROnPlateau(topt, **kw)
    got, want = [], []
    for value in metric:
        got.append(ours(0))
        want.append(topt.param_groups[0]["lr"])
        ours.step(value)
        theirs.step(value)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert len(set(got)) >= 3, "the rate should have been reduced at least twice"


def test_reduce_on_plateau_state_round_trip():
    a = optim.ReduceOnPlateau(BASE, factor=0.5, patience=1, cooldown=1)
    for v in (1.0, 0.9, 0.95, 0.97, 0.99):
        a.step(v)
    b = optim.ReduceOnPlateau(BASE, factor=0.5, patience=1, cooldown=1)
    b.load_state_dict(a.state_dict())
    for v in (0.98, 0.99, 0.97, 1.0, 0.5, 0.6, 0.7):
        assert a.step(v) == b.step(v)
    assert a(0) < BASE


def test_optimizer_uses_step_and_epoch_units():
    """unit="step" advances with optimizer steps, unit="epoch" with start_epoch()."""
    model, _ = make_pair()
    per_step = optim.SGD(lr=optim.ExponentialDecay(0.1, 0.5, unit="step")).attach(model)
    per_epoch = optim.SGD(lr=optim.ExponentialDecay(0.1, 0.5, unit="epoch")).attach(model)
    for opt in (per_step, per_epoch):
        opt.zero_grad()
        for _ in range(3):
            opt.step()
    assert per_step.current_lr == pytest.approx(0.1 * 0.5**3)
    assert per_epoch.current_lr == pytest.approx(0.1)
    per_epoch.start_epoch(2)
    assert per_epoch.current_lr == pytest.approx(0.025)
    assert per_epoch.state_dict()["epoch"] == 2


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_schedule_through_optimizer_equals_torch_scheduler(kind, kernels):
    """Per-step SGDR and warm-up driving real updates, against torch's optimizer + scheduler."""
    if kind == "sgd":
        ours = optim.SGD(lr=optim.CosineWarmRestarts(0.1, T_0=4, T_mult=2, unit="step"), momentum=0.9)
        theirs = lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)  # noqa: E731
        sched = lambda o: S.CosineAnnealingWarmRestarts(o, 4, 2)  # noqa: E731
    else:
        ours = optim.Adam(lr=optim.LinearWarmup(optim.ExponentialDecay(0.02, 0.9, unit="step"), 4))
        theirs = lambda p: torch.optim.Adam(p, lr=0.02)  # noqa: E731
        sched = lambda o: S.SequentialLR(o, [S.LinearLR(o, 1 / 3, 1.0, 4), S.ExponentialLR(o, 0.9)], [4])  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_parity(ours, theirs, "mse", steps=22, scheduler_factory=sched)


def test_trainer_steps_epoch_schedules_and_records_the_lr():
    """Per-epoch schedules change at epoch starts; History's lr is each epoch's first-step rate."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    for unit, batch in (("epoch", 10), ("step", 10)):
        model, _ = make_pair()
        schedule = optim.StepDecay(0.1, step_size=2, gamma=0.5, unit=unit)
        trainer = bpnn.Trainer(model, optimizer=optim.SGD(lr=schedule))
        hist = trainer.fit(X, y, epochs=5, batch_size=batch, verbose=False)
        steps_per_epoch = 4
        if unit == "epoch":
            want = [schedule(e) for e in range(5)]
        else:
            want = [schedule(e * steps_per_epoch) for e in range(5)]
        np.testing.assert_allclose(hist.history["lr"], want, rtol=1e-15)
        assert trainer.optimizer.step_count == 5 * steps_per_epoch


@pytest.mark.parametrize("make", [
    lambda: optim.Constant(0.1, unit="step"),
    lambda: optim.StepDecay(0.1, 3, 0.5),
    lambda: optim.MultiStepDecay(0.1, [2, 5]),
    lambda: optim.ExponentialDecay(0.1, 0.9, unit="step"),
    lambda: optim.InverseTimeDecay(0.1, 0.5, decay_steps=2, staircase=True),
    lambda: optim.PolynomialDecay(0.1, 10, 0.5, end_lr=0.01),
    lambda: optim.CosineAnnealing(0.1, 10, 0.001),
    lambda: optim.CosineWarmRestarts(0.1, 3, 2, 0.001, unit="step"),
    lambda: optim.LinearWarmup(optim.CosineWarmRestarts(0.1, 3, 2), 4, 0.25),
    lambda: optim.ReduceOnPlateau(0.1, factor=0.2, patience=3),
], ids=lambda f: type(f()).__name__)
def test_schedule_config_round_trip(make):
    a = make()
    cfg = optim.schedules.serialize(a)
    b = optim.schedules.get(cfg)
    assert optim.schedules.serialize(b) == cfg and repr(a) == repr(b)
    assert [a(t) for t in range(12)] == [b(t) for t in range(12)]
    assert all(v > 0 and math.isfinite(v) for v in (a(t) for t in range(12)))


@pytest.mark.parametrize("build, match", [
    (lambda: optim.StepDecay(0.1, 0), "step_size"),
    (lambda: optim.StepDecay(-0.1, 3), "lr"),
    (lambda: optim.MultiStepDecay(0.1, [5, 3]), "milestones"),
    (lambda: optim.CosineAnnealing(0.1, 10, eta_min=0.2), "eta_min"),
    (lambda: optim.CosineWarmRestarts(0.1, 5, T_mult=1.5), "T_mult"),
    (lambda: optim.LinearWarmup(optim.StepDecay(0.1, 3, unit="step"), 5, unit="epoch"), "unit"),
    (lambda: optim.LinearWarmup(0.1, 5, start_factor=0.0), "start_factor"),
    (lambda: optim.ExponentialDecay(0.1, 0.9, unit="batch"), "unit"),
    (lambda: optim.ReduceOnPlateau(0.1, mode="lower"), "mode"),
    (lambda: optim.StepDecay(0.1, 3)(-1), "t"),
])
def test_bad_schedule_arguments_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()
