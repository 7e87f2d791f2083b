"""The training lessons of the gallery (docs/gallery/plot_08 ... plot_13) run in their fast
mode and assert the lesson each one teaches, on MNIST when the shared copy is there and on
the bundled digits otherwise."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _gallery import load_example, use_local_mnist
from _gallery import check_figure_and_summary as gallery_check  # noqa: E402

import bpnn  # noqa: E402


@pytest.fixture(autouse=True)
def mnist_dir(monkeypatch):
    use_local_mnist(monkeypatch)


@pytest.fixture(autouse=True)
def one_blas_thread():
    """BLAS on one thread while a lesson runs, where threadpoolctl is installed (it comes with
    scikit-learn). The lessons' matrix products are small (batches of 50 to 100, layers of
    64 to 128): on a 2-core machine shared with other jobs, OpenBLAS's two threads wait on
    each other and lesson 10 took 15 s of CPU instead of 3; K-FAC (lesson 8) also loads
    SciPy's OpenBLAS, a second pool that fights NumPy's (3.5 to 8 times longer;
    benchmarks/README.md, bench_gallery_training.py)."""
    try:
        import scipy.linalg  # noqa: F401 - loads SciPy's OpenBLAS now, so that the limit reaches it
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn (and SciPy) are test dependencies
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def check_figure_and_summary(module, result, *numbers):
    """The gallery's shared check, and this group's own: the summary says which data set ran."""
    text = gallery_check(module, result, *numbers, titled_plots=False)
    assert len(text) > 40 and result["data"].split()[0] in text
    return text


def test_08_optimizers_beat_plain_sgd():
    ex = load_example(8)
    r = ex.run(fast=True)
    names, final = r["methods"], r["loss"][:, :, -1]
    assert r["loss"].shape == (len(names), r["seeds"], r["epochs"]) and r["seeds"] >= 3
    assert np.isfinite(r["loss"]).all()
    sgd = names.index("SGD")
    # every momentum or adaptive method, in every seed, ends far below plain SGD's best seed
    for i, name in enumerate(names):
        if i != sgd:
            assert final[i].max() < 0.5 * final[sgd].min(), (name, final[i], final[sgd])
    # the two momentum forms take the same steps while the learning rate is constant
    torch_form, classic = names.index("momentum (torch form)"), names.index("momentum (classic form)")
    assert np.abs(r["loss"][torch_form] - r["loss"][classic]).max() < 1e-4
    # K-FAC's curvature-scaled steps reach the lowest training loss
    assert final.mean(1).argmin() == names.index("K-FAC")
    acc = r["test_accuracy"]
    assert acc[sgd].mean() > 0.3  # plain SGD learns, slowly
    assert all(acc[i].mean() > 0.8 for i in range(len(names)) if i != sgd)
    check_figure_and_summary(ex, r, f"{final[sgd].mean():.3f}", f"{acc[sgd].mean():.1%}")


def test_09_lr_decay_schedules_and_their_loss():
    ex = load_example(9)
    r = ex.run(fast=True)
    names, lr0, lr = r["schedules"], r["lr0"], r["lr"]
    cfg = r["config"]
    t = np.arange(r["epochs"])
    step, expo, inv, sgdr = (names.index(n) for n in ("step", "exponential", "inverse time", "warm restarts"))
    # the schedule objects give their formulas ...
    assert np.allclose(lr[names.index("constant")], lr0)
    s, g = cfg["step"]["step_size"], cfg["step"]["gamma"]
    assert np.allclose(lr[step], lr0 * g ** (t // s))
    assert np.allclose(lr[expo], lr0 * cfg["exponential"]["gamma"] ** t)
    assert np.allclose(lr[inv], lr0 / (1 + cfg["inverse time"]["decay_rate"] * t))
    t0, eta_min = cfg["warm restarts"]["T_0"], cfg["warm restarts"]["eta_min"]
    assert np.allclose(lr[sgdr], eta_min + (lr0 - eta_min) * (1 + np.cos(np.pi * (t % t0) / t0)) / 2)
    # ... warm restarts go back to η₀ at each restart, after η fell within the cycle ...
    assert r["restarts"] and all(r["restarts"][k] == (k + 1) * t0 for k in range(len(r["restarts"])))
    for e in r["restarts"]:
        assert lr[sgdr, e] == pytest.approx(lr0) and lr[sgdr, e - 1] < 0.2 * lr0
    assert lr[sgdr, -1] < 0.2 * lr0  # the run ends at the end of a cycle
    # ... and the trainer trained with exactly those rates
    assert np.allclose(r["history_lr"], lr)
    # every decayed run ends with a lower training loss than the constant rate
    final = r["final_loss"].mean(1)
    const = final[names.index("constant")]
    for i in (step, expo, inv, sgdr):
        assert final[i] < 0.5 * const, (names[i], final[i], const)
    check_figure_and_summary(ex, r, f"{const:.3f}", f"{final[sgdr]:.3f}")


def test_10_overfitting_and_its_remedies():
    ex = load_example(10)
    r = ex.run(fast=True)
    names, gap, loss_gap = r["variants"], r["gap"], r["loss_gap"]
    none, l2, stop = names.index("none"), names.index("L2"), names.index("early stopping")
    assert r["seeds"] >= 3
    # without regularization 300 images are learned by heart and the test accuracy lags
    assert r["train_accuracy"][none].min() >= 0.99
    assert gap[none].min() > 0.04
    # L1, L2 and dropout each narrow the cross-entropy gap clearly, in every seed
    for name in ("L1", "L2", "dropout"):
        i = names.index(name)
        assert loss_gap[i].mean() < 0.85 * loss_gap[none].mean(), (name, loss_gap[i], loss_gap[none])
        assert (loss_gap[i] < loss_gap[none]).all(), name
    # and L2 narrows the accuracy gap too
    assert gap[l2].mean() < gap[none].mean() - 0.005, (gap[l2], gap[none])
    # early stopping stops before the last epoch, every seed (and its 50 held-out images cost
    # it test accuracy: the summary says how much)
    assert (r["stopped_epoch"] > 0).all() and (r["stopped_epoch"] < r["epochs"]).all()
    check_figure_and_summary(ex, r, f"{gap[none].mean():.1%}", f"{loss_gap[none].mean():.2f}",
                             f"{r['test_accuracy'][stop].mean():.1%}")


def test_11_batchnorm_learns_from_almost_every_weight_scale():
    ex = load_example(11)
    with pytest.warns(bpnn.NonFiniteLossWarning):  # bpnn stops the diverging runs, and says so
        r = ex.run(fast=True)
    acc = r["accuracy"]
    assert acc.shape == (2, 16, r["seeds"]) and r["seeds"] >= 3
    assert np.isclose(r["scales"][0], 1.0) and np.isclose(r["scales"][-1], 1e-4)
    mean = acc.mean(2)
    with_bn, without = (mean[1] > r["threshold"]).sum(), (mean[0] > r["threshold"]).sum()
    assert (with_bn, without) == (r["learns_with_bn"], r["learns_without_bn"])
    assert with_bn >= 12 and without <= 6, (with_bn, without)
    # without batch norm every scale below 0.01 stays near chance (10 classes); with it none does
    small = r["scales"] < 0.01
    assert mean[0, small].max() < 0.25 and mean[1, small].min() > 0.3
    # at the largest scales the plain network's loss overflows (bpnn stops the run); never with batch norm
    assert r["diverged"][0, :2].any() and not r["diverged"][0, small].any() and not r["diverged"][1].any()
    check_figure_and_summary(ex, r, f"from {with_bn} of the 16", f"from {without};")


def test_12_augmentation_helps_on_translated_images():
    ex = load_example(12)
    r = ex.run(fast=True)
    plain, moved = r["test_accuracy"], r["translated_accuracy"]
    assert plain.shape == moved.shape == (2, r["seeds"]) and r["seeds"] >= 3
    # the plain network is lost once the digits move ...
    assert (plain[0] - moved[0]).min() > 0.3
    # ... the augmented one, seed for seed, keeps far more of its accuracy ...
    assert (moved[1] - moved[0]).min() > 0.15, moved
    # ... at a cost of at most a few points on the centred images
    assert plain[1].mean() > plain[0].mean() - 0.06
    # the augmentation changed the images it showed; the translation moved them
    ex_imgs = r["examples"]
    assert not np.allclose(ex_imgs["augmented"], ex_imgs["original"])
    assert not np.allclose(ex_imgs["translated"], ex_imgs["original"])
    check_figure_and_summary(ex, r, f"{moved[0].mean():.1%}", f"{moved[1].mean():.1%}")


def test_13_health_verdicts_name_each_runs_problem():
    ex = load_example(13)
    with pytest.warns(bpnn.NonFiniteLossWarning):
        r = ex.run(fast=True)
    runs, expected = r["runs"], r["expected"]
    assert r["seeds"] >= 3 and set(runs) == set(expected)
    kinds = {name: [{v["kind"] for v in run["verdicts"]} for run in rs] for name, rs in runs.items()}
    # the healthy run gets no warning, in any seed, and its ReLUs are alive
    assert all(not k for k in kinds["healthy"])
    assert max(run["dead_fraction"] for run in runs["healthy"]) < 0.3
    # every other run is flagged in every seed, by the verdict naming its problem in most seeds
    for name, kind in expected.items():
        if kind is None:
            continue
        assert all(kinds[name]), name
        assert sum(kind in k for k in kinds[name]) >= len(kinds[name]) - 1, (name, kinds[name])
    far, little, sigmoid = (runs[n] for n in ("learning rate far too high", "learning rate a little too high",
                                               "saturated sigmoid"))
    # the overflow stopped training within the first epochs, and the verdict says where
    assert all(run["stopped"] and len(run["step_loss"]) < 2 * r["steps_per_epoch"] for run in far)
    assert all("at fault: layer" in v["message"] for run in far for v in run["verdicts"]
               if v["kind"] == "non_finite_loss")
    # dead ReLUs: most of a layer's units in the seeds flagged so; saturated sigmoids: most outputs
    assert all(run["dead_fraction"] >= 0.5 for run in little if "dead_layer" in {v["kind"] for v in run["verdicts"]})
    assert min(run["saturation"] for run in sigmoid) > 0.5
    # the recorded histograms are there to read: weights at init and later, gradients per layer
    rec = runs["healthy"][0]["stats"]["records"]
    assert sum("hist" in e for rec_ in rec for e in rec_["layers"].values()) >= 2
    assert all(h is not None for h in runs["healthy"][0]["grad_hist"].values())
    check_figure_and_summary(ex, r, f"no warning in {r['seeds']} of {r['seeds']} seeds")
