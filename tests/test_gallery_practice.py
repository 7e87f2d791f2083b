"""The gallery's practice lessons (14-20) run in their fast mode and assert what they teach."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _gallery import SHARED_MNIST, check_figure_and_summary, load_example, use_local_mnist  # noqa: E402

import bpnn  # noqa: E402
import bpnn.data  # noqa: E402

pytest.importorskip("sklearn", reason="the gallery's digits data needs scikit-learn (bpnn[datasets])")


@pytest.fixture
def mnist_dir(monkeypatch):
    use_local_mnist(monkeypatch)


# --------------------------------------------------------------------------- 16
def test_16_restarts_escape_local_minima():
    example = load_example(16)
    result = example.run(fast=True)
    assert len(result["studies"]) >= 3
    for study in result["studies"]:
        scores = study["scores"]
        assert len(scores) == result["n_restarts"] and len(set(study["seeds"])) == len(scores)
        stuck = scores > result["stuck_threshold"]
        assert stuck.any(), "at least one seed gets stuck"
        assert not stuck.all()
        # the restarts helper keeps the lowest final loss, which is a solved run
        assert study["best"] == int(np.argmin(scores))
        assert not stuck[study["best"]]
        assert study["kept_loss"] == pytest.approx(scores.min(), rel=1e-9)
        np.testing.assert_array_equal(study["kept_outputs"].round(), [0, 1, 1, 0])
        # stuck runs are stuck: flat over the last half of training, not merely slow
        half = study["curves"].shape[1] // 2
        flat = study["curves"][stuck][:, half:]
        assert np.all(flat.max(axis=1) - flat.min(axis=1) < 0.01)
    check_figure_and_summary(example, result, f"{100 * result['stuck_mean']:.0f}")


# --------------------------------------------------------------------------- 18
def test_18_gradcheck_passes_the_correct_layer_and_catches_the_planted_bug():
    example = load_example(18)
    result = example.run(fast=True)
    tol = result["tol"]
    assert len(result["seeds"]) >= 3
    good, bad = result["correct"], result["buggy"]
    assert max(good["layer_max"] + good["net_max"]) < 1e-3 * tol, "the correct layer passes with a margin"
    for layer, net in zip(bad["layer"], bad["net"]):
        assert layer["input"] > 1e3 * tol, "the missing factor is caught"
        assert layer["beta"] < tol, "the parameter gradient, whose formula is right, still passes"
        assert net["input"] > tol and net["0.weight"] > tol, "the wrong gradient reaches the layers below"
        assert net["2.weight"] < tol, "the layer above the bug is untouched"
    # the custom layer is a real Module: it trains inside a network like bpnn's own layers
    model = bpnn.Sequential([bpnn.Dense(8), example.Swish(), bpnn.Dense(1)], input_shape=(2,), seed=0,
                            dtype="float64")
    beta0 = model[1].params["beta"].copy()
    X = np.random.default_rng(0).uniform(-1, 1, (64, 2))
    y = (X[:, :1] * X[:, 1:])
    trainer = bpnn.Trainer(model, loss="mse", optimizer=bpnn.optim.Adam(lr=0.02), metrics=[])
    history = trainer.fit(X, y, epochs=30, batch_size=16, verbose=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert not np.array_equal(model[1].params["beta"], beta0)
    check_figure_and_summary(example, result, f"{max(good['layer_max'] + good['net_max']):.1e}")


# --------------------------------------------------------------------------- 14
def test_14_weight_sharing_counts_toeplitz_and_shift():
    example = load_example(14)
    result = example.run(fast=True)
    for row in result["counts"]:
        C, H, W, O, k = row["geometry"]
        n_out = O * (H - k + 1) * (W - k + 1)
        assert row["conv"] == O * C * k * k + O                      # independent of the image size
        assert row["dense"] == C * H * W * n_out + n_out
        assert row["conv"] * 100 < row["dense"]
    assert len(result["seeds"]) >= 3
    assert max(result["output_diff"]) < 1e-5, "Dense with the shared (Toeplitz) weights = the convolution"
    assert max(result["grad_diff"]) < 1e-5, "the shared weight's gradient = the sum over its copies"
    assert max(result["conv_shift_error"]) < 1e-6, "shift the input, the output shifts"
    assert min(result["dense_shift_error"]) > 0.1, "an unshared Dense layer is not equivariant"
    # each kernel entry appears once per output position of its filter
    tap = result["tap"]
    C, H, W, O, k = result["counts"][0]["geometry"]
    np.testing.assert_array_equal(np.bincount(tap[tap >= 0]), np.full(O * C * k * k, (H - k + 1) * (W - k + 1)))
    check_figure_and_summary(example, result, "156", "2,712,960")


# --------------------------------------------------------------------------- 17
def test_17_lm_beats_gradient_descent_and_br_generalizes():
    example = load_example(17)
    result = example.run(fast=True)
    fit, br = result["fit"], result["br"]
    n = len(result["seeds"])
    assert n >= 3 and fit["lm"].shape == (n, fit["epochs"])
    # in the same epochs LM reaches an error orders of magnitude below the best GD: more than 10× on
    # every seed, more than 100× on average
    best_gd = np.minimum(fit["sgd"]["loss"][:, -1], fit["adam"]["loss"][:, -1])
    assert np.all(fit["lm"][:, -1] < 0.1 * best_gd), (fit["lm"][:, -1], best_gd)
    gd_means = [np.mean(fit[kind]["loss"][:, -1]) for kind in ("sgd", "adam")]
    assert np.mean(fit["lm"][:, -1]) < 0.01 * min(gd_means)
    assert np.all(fit["lm"][:, -1] < 1e-5)                        # near the noise floor σ² = 4e-6
    # BR: fewer effective parameters than weights, and a better fit to the true function, every seed
    assert all(0 < g < br["n_weights"] for g in br["gamma"]), br["gamma"]
    assert np.all(np.array(br["br_error"]) <= np.array(br["lm_error"])), (br["br_error"], br["lm_error"])
    assert np.mean(br["br_error"]) < 0.2 * np.mean(br["lm_error"])
    check_figure_and_summary(example, result, f"{np.mean(fit['lm'][:, -1]):.1e}", f"{np.mean(br['gamma']):.1f}")


# --------------------------------------------------------------------------- 20
def test_20_random_search_draws_log_uniformly_and_finds_a_narrow_good_band():
    example = load_example(20)
    result = example.run(fast=True)
    trials, seeds = result["trials"], result["seeds"]
    (lr_low, lr_high), (wd_low, wd_high) = result["lr_range"], result["weight_decay_range"]
    assert len(trials) == result["n_trials"] and [t["trial"] for t in trials] == list(range(len(trials)))
    assert result["n_runs"] == len(trials) * len(seeds) and len(seeds) >= 3
    assert all(len(t["values"]) == len(seeds) for t in trials)
    assert all(lr_low <= t["lr"] < lr_high and wd_low <= t["weight_decay"] < wd_high for t in trials)
    # the lesson's spec draws log-uniformly: each decade of the lr range holds its share of many draws,
    # and the trials that ran are the first draws of that same seeded sequence
    many = example.search_spec(fast=True).replace(n_trials=4000, seeds=[0]).runs()
    lrs = np.log10([r["lr"] for r in many])
    share = np.histogram(lrs, bins=np.arange(np.log10(lr_low), np.log10(lr_high) + 1))[0] / len(lrs)
    np.testing.assert_allclose(share, 1 / len(share), atol=0.03)
    assert [r["lr"] for r in many[:len(trials)]] == [t["lr"] for t in trials]
    # the best trial is the one with the highest mean accuracy, clearly above chance
    best = trials[result["best"]]
    assert best["accuracy"] == max(t["accuracy"] for t in trials) and best["accuracy"] > 0.75
    assert best["accuracy"] == pytest.approx(np.mean(best["values"]))
    # the good region is narrower than the search: the five best lrs span under a quarter of the decades
    assert result["search_lr_span"] == pytest.approx(np.log10(lr_high / lr_low))
    assert result["top5_lr_span"] < 0.25 * result["search_lr_span"]
    check_figure_and_summary(example, result, f"{100 * best['accuracy']:.1f}", f"{result['top5_lr_span']:.2f}")


# --------------------------------------------------------------------------- 15
def test_15_transfer_beats_scratch_with_few_samples_and_frozen_layers_stay_bit_exact():
    example = load_example(15)
    result = example.run(fast=True)
    assert len(result["seeds"]) >= 3
    acc = result["parity"]["accuracy"]
    few = {name: a[:, 0] for name, a in acc.items()}                 # one labelled image per digit
    assert result["sizes"][0] == 1
    assert np.mean(few["frozen"]) > np.mean(few["scratch"]) + 0.03, few
    assert np.mean(few["finetuned"]) > np.mean(few["scratch"]) + 0.03, few
    assert np.all(few["frozen"] >= few["scratch"]), "transfer wins on every seed"
    assert all(result["parity"]["frozen_unchanged"]) and all(result["classes"]["frozen_unchanged"])
    assert len(result["parity"]["frozen_unchanged"]) == len(result["seeds"]) * len(result["sizes"])
    # the counter-example the lesson shows: features of 0-4 do not help with 5-9 on these images
    counter = result["classes"]["accuracy"]
    assert np.mean(counter["frozen"]) < np.mean(counter["scratch"]), counter
    check_figure_and_summary(example, result, f"{100 * np.mean(few['frozen']):.1f}",
                              f"{100 * np.mean(few['scratch']):.1f}")


# --------------------------------------------------------------------------- 19
def test_19_lenet5_beats_the_baselines_and_its_confusion_matrix_counts_the_test_set(mnist_dir):
    example = load_example(19)
    result = example.run(fast=True)
    assert result["data"] in ("mnist", "digits")
    assert len(result["seeds"]) >= 3 and len(result["test_accuracy"]) == len(result["seeds"])
    acc, logistic = result["test_accuracy"], result["logistic_accuracy"]
    assert acc.min() > 8 * result["chance"], "far above chance on every seed"
    # above logistic regression on the same pixels: clearly on MNIST; on the 8×8 digits, where
    # logistic regression already reaches about 97 %, above it
    assert acc.mean() > logistic.mean() + (0.02 if result["data"] == "mnist" else 0.0), (acc, logistic)
    confusion = result["confusion"]
    assert confusion.shape == (10, 10) and confusion.sum() == result["n_test"]
    assert np.trace(confusion) == round(acc[0] * result["n_test"])
    assert result["misclassified"]["count"] == result["n_test"] - np.trace(confusion)
    wrong = result["misclassified"]
    assert np.all(wrong["true"] != wrong["predicted"])
    for curve in result["curves"]:
        assert len(curve["loss"]) == result["epochs"] and curve["loss"][-1] < curve["loss"][0]
    text = check_figure_and_summary(example, result, f"{100 * acc.mean():.1f}", f"{100 * logistic.mean():.1f}")
    assert text.startswith("On MNIST" if result["data"] == "mnist" else "On the 8×8 digits (MNIST not found")


def test_examples_lenet5_mnist_runs(tmp_path, capsys):
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"no local MNIST at {SHARED_MNIST} (the example would download it)")
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "lenet5_mnist.py"
    spec = importlib.util.spec_from_file_location("lenet5_mnist_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "lenet5.bpnn"
    error = module.main(["--data-dir", str(SHARED_MNIST), "--samples", "300", "--test-samples", "200",
                         "--epochs", "1", "--batch-size", "16", "--out", str(out)])
    printed = capsys.readouterr().out
    assert f"test error {error:.2f} %" in printed and "after 1 epochs" in printed
    assert 0 <= error < 60, "one epoch on 300 images is already far better than chance (90 % error)"
    model = bpnn.load(out)
    X, y, X_test, y_test = bpnn.data.load_mnist(data_dir=SHARED_MNIST, download=False, flatten=False)
    assert 100 * np.mean(model.predict(X_test[:200]).argmax(axis=1) != y_test[:200]) == pytest.approx(error)
