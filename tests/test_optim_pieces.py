"""The composable pieces of the optimizers: gradient clipping (global norm, value),
the max-norm constraint, custom chains, and argument checks — each against torch."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bpnn  # noqa: E402
from bpnn import optim  # noqa: E402
from test_optim import LOSSES, assert_same_params, batches, first_weight_after, make_pair  # noqa: E402

torch.set_num_threads(1)


def torch_step_clipped(tmodel, topt, tloss, x, y, clip_norm=None, clip_value=None, max_norm=None):
    topt.zero_grad()
    value = tloss(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
    value.backward()
    if clip_value is not None:
        torch.nn.utils.clip_grad_value_(tmodel.parameters(), clip_value)
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), clip_norm)
    topt.step()
    if max_norm is not None:
        with torch.no_grad():
            for i in (0, 2):  # each row of torch's (out, in) weight is one unit's incoming vector
                w = tmodel[i].weight
                w.copy_(torch.renorm(w, p=2, dim=0, maxnorm=max_norm))
    return float(value.detach())


PIECES = [
    ("sgd", dict(lr=0.1, momentum=0.9), dict(clip_norm=0.5)),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), dict(clip_value=0.05)),
    ("adam", dict(lr=0.02), dict(clip_norm=0.3)),
    ("adam", dict(lr=0.02, amsgrad=True), dict(clip_value=0.02, clip_norm=0.2)),
    ("rmsprop", dict(lr=0.01, centered=True), dict(clip_norm=0.5)),
    ("sgd", dict(lr=0.5, momentum=0.9), dict(max_norm=1.2)),
    ("adamw", dict(lr=0.05, weight_decay=0.1), dict(max_norm=1.0, clip_norm=0.5)),
]
TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop,
         "adamw": torch.optim.AdamW}


@pytest.mark.parametrize("name, cfg, pieces", PIECES,
                         ids=[f"{n}-{'-'.join(p)}" for n, _, p in PIECES])
def test_clipping_and_max_norm_match_torch(name, cfg, pieces, kernels):
    model, tmodel = make_pair()
    opt = optim.get(name).__class__(**cfg, **pieces).attach(model)
    topt = TORCH[name](tmodel.parameters(), **cfg)
    loss, tloss = LOSSES["ce"][0](), LOSSES["ce"][1]()
    clipped = constrained = 0
    for step, (x, y) in enumerate(batches("ce", 20)):
        # the clip must act for the test to mean something: count the steps where it does
        loss.forward(model.forward(x, training=True), y)
        model.backward(loss.backward())
        g = opt._flat.grads
        if "clip_norm" in pieces and np.linalg.norm(g) > pieces["clip_norm"]:
            clipped += 1
        if "clip_value" in pieces and np.abs(g).max() > pieces["clip_value"]:
            clipped += 1
        opt.step()
        torch_step_clipped(tmodel, topt, tloss, x, y, **pieces)
        assert_same_params(model, tmodel, step=step)
        if "max_norm" in pieces:
            norms = np.linalg.norm(model[0].params["weight"], axis=0)
            assert norms.max() <= pieces["max_norm"] * (1 + 1e-9)
            constrained += bool(np.isclose(norms, pieces["max_norm"], rtol=1e-6).any())
    if "max_norm" in pieces:
        assert constrained >= 5, "the constraint should be active"
    else:
        assert 0 < clipped, "clipping should have acted"


def test_clip_by_global_norm_arithmetic():
    # u = (3, 4): ‖u‖ = 5; max_norm 1 → u · 1/(5 + 1e-6);  max_norm 10 → unchanged
    u = np.array([3.0, 4.0])
    optim.ClipByGlobalNorm(1.0).update(u, {}, None, 1, 0.1)
    np.testing.assert_allclose(u, np.array([3.0, 4.0]) / (5 + 1e-6), rtol=1e-15)
    v = np.array([3.0, 4.0])
    clip = optim.ClipByGlobalNorm(10.0)
    clip.update(v, {}, None, 1, 0.1)
    np.testing.assert_array_equal(v, [3.0, 4.0])
    assert clip.last_norm == pytest.approx(5.0)
    w = np.array([-3.0, 0.5, 2.0])
    optim.ClipByValue(1.0).update(w, {}, None, 1, 0.1)
    np.testing.assert_array_equal(w, [-1.0, 0.5, 1.0])


def test_max_norm_rescales_units_not_layers():
    # Dense W (n_in=2, n_out=3): columns are units. ‖(3, 4)‖ = 5 > 2 → ×2/(5 + 1e-7);
    # ‖(0.6, 0.8)‖ = 1 ≤ 2 → unchanged; ‖(0, 3)‖ = 3 → (0, 2/(3 + 1e-7)·3)
    model = bpnn.Sequential([bpnn.Dense(3, use_bias=False, init="zeros")], input_shape=(2,), dtype="float64")
    w = model[0].params["weight"]
    w[...] = [[3.0, 0.6, 0.0], [4.0, 0.8, 3.0]]
    constraint = optim.MaxNorm(2.0)
    constraint.apply(constraint.bind(model))
    np.testing.assert_allclose(w, [[6 / (5 + 1e-7), 0.6, 0.0], [8 / (5 + 1e-7), 0.8, 6 / (3 + 1e-7)]],
                               rtol=1e-15)
    from bpnn.optim.constraints import incoming_axes

    assert incoming_axes(4) == (1, 2, 3)  # convolution kernels (out, in, kh, kw)


def test_frozen_layers_are_not_constrained():
    model = bpnn.Sequential([bpnn.Dense(3, init=bpnn.init.Constant(5.0)), bpnn.Dense(2, init=bpnn.init.Constant(5.0))],
                            input_shape=(4,), dtype="float64")
    model[0].trainable = False
    opt = optim.SGD(lr=0.1, max_norm=1.0).attach(model)
    opt.zero_grad()
    opt.step()
    assert np.all(model[0].params["weight"] == 5.0)
    np.testing.assert_allclose(np.linalg.norm(model[1].params["weight"], axis=0), 1.0, rtol=1e-6)


def test_a_custom_chain_equals_the_named_optimizer(kernels):
    """AdamW with clipping is Optimizer([ClipByGlobalNorm, ScaleByAdam, AddDecoupledWeightDecay])."""
    named = optim.AdamW(lr=0.02, weight_decay=0.1, clip_norm=0.5)
    chain = optim.Optimizer([optim.ClipByGlobalNorm(0.5), optim.ScaleByAdam(),
                             optim.AddDecoupledWeightDecay(0.1)], lr=0.02)
    np.testing.assert_array_equal(first_weight_after(named, 10), first_weight_after(chain, 10))
    # transforms may also be named by registry key or config
    by_name = optim.Optimizer(["scale_by_adam", {"class_name": "add_decoupled_weight_decay",
                                                 "config": {"weight_decay": 0.1}}], lr=0.02)
    assert [type(t) for t in by_name.transforms] == [optim.ScaleByAdam, optim.AddDecoupledWeightDecay]


@pytest.mark.parametrize("build, match", [
    (lambda: optim.SGD(lr=0.1, clip_norm=0.0), "clip_norm"),
    (lambda: optim.Adam(clip_value=-1.0), "clip_value"),
    (lambda: optim.SGD(lr=0.1, max_norm=float("inf")), "max_norm"),
    (lambda: optim.SGD(lr=0.1, momentum=0.9, momentum_form="heavy"), "momentum_form"),
    (lambda: optim.SGD(lr=0.1, nesterov=True), "nesterov"),
    (lambda: optim.AdaGrad(lr_decay=-0.1), "lr_decay"),
    (lambda: optim.RMSprop(alpha=1.5), "alpha"),
    (lambda: optim.NAdam(betas=(0.9,)), "betas"),
    (lambda: optim.AdamW(betas=(0.9, 1.0)), "betas"),
    (lambda: optim.Rprop(etas=(1.2, 0.5)), "etas"),
    (lambda: optim.Rprop(step_sizes=(1.0, 0.1)), "step_sizes"),
    (lambda: optim.Optimizer([optim.ScaleByRprop(), optim.Momentum(0.9, form="classic")], lr=0.1), "at most one"),
    (lambda: optim.Optimizer([object()], lr=0.1), "transforms"),
    (lambda: optim.Optimizer(["scale_by_adams"], lr=0.1), "scale_by_adam"),
])
def test_bad_arguments_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()
