"""The gallery's initialization lessons (1-7) run in their fast mode and assert what they teach."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _gallery import check_figure_and_summary, load_example, use_local_mnist  # noqa: E402

pytest.importorskip("sklearn", reason="the gallery's digits data needs scikit-learn (bpnn[datasets])")


@pytest.fixture(autouse=True)
def mnist_dir(monkeypatch):
    use_local_mnist(monkeypatch)


# --------------------------------------------------------------------------- 1
def test_01_zero_and_constant_init_leave_units_identical():
    example = load_example(1)
    result = example.run(fast=True)
    assert len(result["seeds"]) >= 3
    for label in ("zeros", "constant 0.1"):
        # every hidden unit's weight column is the same, to float64 precision (0 here; a
        # BLAS that sums some output columns in another order could leave ~1e-15)
        assert result["spread"][label].max() <= 1e-9, (label, result["spread"][label])
        assert all("unbroken_symmetry" in kinds for kinds in result["verdicts"][label])
        W = result["first_weights"][label]
        np.testing.assert_allclose(W, W[:, :1].repeat(W.shape[1], axis=1), rtol=0, atol=1e-9 * np.abs(W).max())
    for label in ("Xavier (uniform)", "He (normal)"):
        assert result["spread"][label].min() > 0.5, (label, result["spread"][label])
        assert not any("unbroken_symmetry" in kinds for kinds in result["verdicts"][label])
    # the symmetric nets stall, the random ones learn: every random run ends far below any symmetric one
    stalled = min(result["loss"][label][:, -1].min() for label in ("zeros", "constant 0.1"))
    learned = max(result["loss"][label][:, -1].max() for label in ("Xavier (uniform)", "He (normal)"))
    assert learned < 0.25 * stalled, (learned, stalled)
    assert result["accuracy"]["He (normal)"].min() > 0.9 > 0.5 > result["accuracy"]["zeros"].max()
    check_figure_and_summary(example, result, f"{result['loss']['zeros'][:, -1].mean():.2f}",
                              f"{result['loss']['He (normal)'][:, -1].mean():.3f}")


# --------------------------------------------------------------------------- 2
def test_02_activation_histograms_over_depth():
    example = load_example(2)
    result = example.run(fast=True)
    assert len(result["seeds"]) >= 3
    sat, std = result["saturation"], result["std"]
    # sigmoid, std 1: saturated at 0 and 1 in every layer
    assert sat["sigmoid, std 1"].min() > 0.35
    hist = result["hist"]["sigmoid, std 1"].mean(0)            # layers × bins
    assert np.all(hist[:, 0] + hist[:, -1] > 0.5)               # most mass in the two end bins
    # sigmoid, std 0.01: collapsed to 0.5 — a tiny spread from layer 2 on, nothing saturated
    assert std["sigmoid, std 0.01"][:, 1:].max() < 0.03
    assert sat["sigmoid, std 0.01"].max() == 0
    # sigmoid, Xavier: spread kept at layer 5, ten times the std-0.01 spread, not saturated
    assert std["sigmoid, Xavier"][:, -1].min() > 0.08
    assert std["sigmoid, Xavier"][:, -1].min() > 5 * std["sigmoid, std 0.01"][:, -1].max()
    assert sat["sigmoid, Xavier"].max() < 0.01
    # ReLU: He keeps the scale (layer 5 within 2x of layer 1); Xavier's 1/n halves the
    # variance per layer, std × 1/√2 per layer: (1/√2)^4 = 0.25 from layer 1 to 5
    he = std["ReLU, He"][:, -1] / std["ReLU, He"][:, 0]
    xav = std["ReLU, Xavier"][:, -1] / std["ReLU, Xavier"][:, 0]
    assert np.all((he > 0.5) & (he < 2)), he
    assert np.all((xav > 0.15) & (xav < 0.4)), xav
    per_layer = (std["ReLU, Xavier"][:, 1:] / std["ReLU, Xavier"][:, :-1]).mean()
    assert 0.55 < per_layer < 0.85, per_layer
    check_figure_and_summary(example, result, f"{xav.mean():.2f}", f"{he.mean():.2f}")


# --------------------------------------------------------------------------- 3
def test_03_vanishing_gradients_over_depth():
    example = load_example(3)
    result = example.run(fast=True)
    assert len(result["seeds"]) >= 3
    deepest = max(result["depths"])
    assert deepest >= 20
    ratio, verdicts = result["ratio"], result["verdicts"]
    # deep sigmoid: the first layer's error is a vanishing fraction of the last's, worse with depth
    assert ratio["sigmoid", deepest].max() < 1e-8
    sig = [np.exp(np.log(ratio["sigmoid", d]).mean()) for d in result["depths"]]
    assert all(a > 100 * b for a, b in zip(sig, sig[1:])), sig
    assert all("vanishing_gradients" in kinds for kinds in verdicts["sigmoid", deepest])
    # batch norm, residual connections (and He-initialized ReLU) keep it within an order of magnitude
    for arch in ("sigmoid + BatchNorm", "ReLU + residual", "ReLU (He)"):
        for d in result["depths"]:
            assert np.all((ratio[arch, d] > 0.1) & (ratio[arch, d] < 10)), (arch, d, ratio[arch, d])
            assert not any("vanishing_gradients" in kinds or "exploding_gradients" in kinds
                           for kinds in verdicts[arch, d]), (arch, d, verdicts[arch, d])
    # the per-layer weight-gradient norms say the same: sigmoid's first layer gets ~nothing
    norms = result["grad_norms"]["sigmoid", deepest]
    assert np.all(norms[:, 0] < 1e-8 * norms[:, -1])
    bn = result["grad_norms"]["sigmoid + BatchNorm", deepest]
    assert np.all(bn[:, 0] > 0.1 * bn[:, -1])
    check_figure_and_summary(example, result, f"{np.exp(np.log(ratio['sigmoid', deepest]).mean()):.1e}")


# --------------------------------------------------------------------------- 4
def test_04_glorot_bengio_gradient_variance():
    example = load_example(4)
    result = example.run(fast=True)
    assert len(result["seeds"]) >= 3
    standard, xavier = (result["delta_var"][label] for label in result["inits"])
    assert standard.shape[1] == 5
    # standard init: the back-propagated variance grows from the input side to the output
    # side at every layer, by ~3x per layer (Var W = 1/(3n))
    assert np.all(np.diff(standard, axis=1) > 0)
    per_layer = np.exp(np.diff(np.log(standard), axis=1).mean())
    assert 2 < per_layer < 4.5, per_layer
    # the spread over layers: much larger for the standard init than for Xavier's
    s_std, s_xav = (result["spread"][label] for label in result["inits"])
    assert np.all(s_xav < 2.5), s_xav
    assert s_std.min() > 20 * s_xav.max(), (s_std, s_xav)
    # the weight gradients vary far less across layers than δ under the standard init
    w = result["weight_grad_var"][result["inits"][0]]
    assert np.all(w.max(1) / w.min(1) < 3)
    check_figure_and_summary(example, result, f"{s_std.mean():.0f}", f"{s_xav.mean():.2f}")


# --------------------------------------------------------------------------- 5
def test_05_he_thirty_layers():
    example = load_example(5)
    result = example.run(fast=True)
    assert len(result["seeds"]) >= 3
    xav, he = result["inits"]
    s_xav, s_he = result["act_std"][xav], result["act_std"][he]
    assert s_xav.shape[1] == 30
    # Xavier's 1/n: the activation std shrinks geometrically, ≈ (1/√2)^29 ≈ 4e-5
    ratio_xav = s_xav[:, -1] / s_xav[:, 0]
    assert np.all(ratio_xav < 1e-2), ratio_xav
    per_layer = np.exp(np.diff(np.log(s_xav), axis=1).mean())
    assert abs(per_layer - 1 / math.sqrt(2)) < 0.08, per_layer
    # He's 2/n keeps it within a small factor
    ratio_he = s_he[:, -1] / s_he[:, 0]
    assert np.all((ratio_he > 0.25) & (ratio_he < 4)), ratio_he
    # and He's loss falls while Xavier's stays at ln 10
    drop_he = result["loss"][he][:, 0] - result["loss"][he][:, -1]
    drop_xav = result["loss"][xav][:, 0] - result["loss"][xav][:, -1]
    assert drop_he.min() > 0.3 and drop_xav.max() < 0.05, (drop_he, drop_xav)
    assert np.all(np.abs(result["loss"][xav][:, -1] - math.log(10)) < 0.01)
    assert all({"vanishing_gradients", "loss_plateau"} & set(kinds) for kinds in result["verdicts"][xav])
    check_figure_and_summary(example, result, f"{ratio_xav.mean():.1e}", f"{ratio_he.mean():.2f}")


# --------------------------------------------------------------------------- 6
def test_06_saxe_orthogonal_learning_time_is_flat_over_depth():
    example = load_example(6)
    result = example.run(fast=True)
    assert len(result["seeds"]) >= 3
    assert min(result["depths"]) == 8 and max(result["depths"]) == 64
    orth = np.array([result["epochs"]["orthogonal", d] for d in result["depths"]])
    assert np.isfinite(orth).all(), orth          # every orthogonal net learned within the cap
    mean = orth.mean(1)
    # the lesson: with orthogonal init the learning time stays within 2x from depth 8 to 64
    assert mean.max() / mean.min() < 2, mean
    assert orth.max() / orth.min() < 2.5, orth
    # the scaled Gaussian nets are slower, more so with depth: at depth 64 none has
    # learned by the cap, well past every orthogonal net's time
    gauss = "scaled Gaussian N(0, 1/n)"
    assert result["caps"][gauss] > 2 * orth.max()
    assert not np.isfinite(result["epochs"][gauss, 64]).any()
    final = [np.mean([c[-1] for c in result["curves"][gauss, d]]) for d in result["depths"]]
    assert all(a < b for a, b in zip(final, final[1:])), final
    check_figure_and_summary(example, result, f"{mean.max() / mean.min():.2f}")


# --------------------------------------------------------------------------- 7
def test_07_batch_stochastic_and_minibatch_descent():
    example = load_example(7)
    result = example.run(fast=True)
    assert len(result["seeds"]) >= 3
    batch, mini, sgd = result["modes"]
    assert result["updates_per_epoch"][batch] == 1 and result["updates_per_epoch"][sgd] == result["n_train"]
    end = {label: result["per_epoch"][label][:, -1] for label in result["modes"]}
    # per epoch, stochastic and mini-batch descent are ahead of full-batch descent on every seed
    assert np.all(end[mini] < end[batch]) and np.all(end[sgd] < end[batch]), end
    assert np.all(end[sgd] < 0.5 * end[batch])
    # full batch: the exact gradient with a small step never increases the loss; SGD's curve is noisy
    assert np.all(np.diff(result["loss"][batch], axis=1) < 0)
    assert result["up_steps"][batch].max() == 0
    assert result["up_steps"][sgd].min() > 0.1
    assert result["up_steps"][sgd].min() > result["up_steps"][mini].max()
    # the same seeds start from the same weights in every mode
    starts = np.array([result["loss"][label][:, 0] for label in result["modes"]])
    np.testing.assert_allclose(starts, starts[:1].repeat(3, axis=0), rtol=1e-6)
    check_figure_and_summary(example, result, f"{end[batch].mean():.3g}", f"{end[sgd].mean():.3g}")
