"""
Random hyperparameter search
============================

The from-scratch book ends its chapter on training with a hyperparameter search: draw
the learning rate and the weight decay at random on a log scale, train briefly, keep
the region where the validation accuracy is high, and narrow the ranges. Random draws
beat a grid because every trial tries a new value of each hyperparameter (Bergstra &
Bengio 2012). We run it with bpnn's study API — a :class:`bpnn.experiment.StudySpec`
with ``search="random"``, run by :func:`bpnn.experiment.run_study` — every trial over
three seeds, so each point is a mean with its spread rather than one lucky run.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

from bpnn.experiment import StudySpec, run_study

# %%
# The search
# ----------
# A 64-50-10 ReLU network on the 8×8 digits: a fifth of them (360) held out for
# validation, 300 of the rest to train on, SGD for a few epochs. Each trial draws
#
# .. math::
#
#    \log_{10}\eta \sim U[-4, 0), \qquad \log_{10}\lambda \sim U[-8, -1),
#
# log-uniformly as in the book (whose ranges, :math:`10^{[-6,-2)}` and
# :math:`10^{[-8,-4)}`, suit 50-epoch runs on MNIST; ours are wider and higher because
# our runs are short). The draws come from ``search_seed``, so the same spec gives the
# same trials on any machine; the study's runs are trial × seed.

LR_RANGE = (1e-4, 1.0)
WEIGHT_DECAY_RANGE = (1e-8, 1e-1)


def search_spec(fast: bool = True) -> StudySpec:
    return StudySpec(
        name="random search", data="digits", max_samples=300, test_size=0.2,
        hidden=[50], activations=["relu"], inits=["he_normal"], optimizers=["sgd"],
        search="random", n_trials=12 if fast else 60, lr_range=list(LR_RANGE),
        weight_decay_range=list(WEIGHT_DECAY_RANGE), search_seed=0, seeds=[0, 1, 2],
        epochs=5 if fast else 20, batch_size=32, stats_every=100, backend="sequential", n_jobs=1)


def run(fast: bool = True) -> dict:
    spec = search_spec(fast)
    study = run_study(spec, progress=False)
    trials = []
    for group in study.groups():
        first = group.runs[0]["run"]
        stat = group.stat("test_accuracy")
        trials.append({"trial": first["trial"], "lr": first["lr"], "weight_decay": first["weight_decay"],
                       "accuracy": stat["mean"] if stat["mean"] is not None else 0.0,
                       "std": stat["std"] or 0.0, "values": stat["values"]})
    trials.sort(key=lambda t: t["trial"])
    best = study.ranked()[0].runs[0]["run"]["trial"]
    top5 = sorted(trials, key=lambda t: -t["accuracy"])[:5]
    return {"n_trials": spec.n_trials, "seeds": spec.seeds, "lr_range": LR_RANGE,
            "weight_decay_range": WEIGHT_DECAY_RANGE, "n_runs": len(study.runs), "trials": trials,
            "best": best, "top5_lr_span": float(np.ptp(np.log10([t["lr"] for t in top5]))),
            "search_lr_span": float(np.log10(LR_RANGE[1] / LR_RANGE[0]))}


# %%
# What it shows
# -------------
# Left: every trial in the (η, λ) plane, coloured by its mean validation accuracy; the
# five best are circled. Right: the accuracy against the learning rate, with the spread
# over seeds. The learning rate decides almost everything: below about 10⁻² the net
# has not learned in so few steps, and the good trials sit in a band less than one
# decade wide, just below the rates where the steps overshoot. Weight decay, over this
# range and in such short training, hardly changes the result: the best trials have λ
# anywhere from 10⁻⁸ to 10⁻². The next round of the book's recipe would search η in
# that band only.


def plot(result):
    trials = result["trials"]
    lr = np.array([t["lr"] for t in trials])
    wd = np.array([t["weight_decay"] for t in trials])
    acc = np.array([t["accuracy"] for t in trials])
    std = np.array([t["std"] for t in trials])
    top = np.argsort(-acc)[:5]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    points = ax1.scatter(lr, wd, c=acc, cmap="viridis", vmin=0, vmax=1, s=40)
    ax1.scatter(lr[top], wd[top], s=160, facecolors="none", edgecolors="tab:red", label="5 best trials")
    fig.colorbar(points, ax=ax1, label="validation accuracy (mean over seeds)")
    ax1.set(xscale="log", yscale="log", xlim=result["lr_range"], ylim=result["weight_decay_range"],
            xlabel="learning rate η", ylabel="weight decay λ",
            title=f"{result['n_trials']} random trials × {len(result['seeds'])} seeds")
    ax1.legend(loc="lower left")
    ax2.errorbar(lr, acc, yerr=std, fmt="o", color="tab:blue", ecolor="gray", capsize=2)
    ax2.plot(lr[top], acc[top], "o", mfc="none", mec="tab:red", ms=12, label="5 best trials")
    ax2.set(xscale="log", xlim=result["lr_range"], ylim=(0, 1), xlabel="learning rate η",
            ylabel="validation accuracy (mean ± std)", title="accuracy against the learning rate")
    ax2.legend(loc="upper left")
    fig.tight_layout()
    return fig


def summary(result) -> str:
    best = result["trials"][result["best"]]
    top = sorted(result["trials"], key=lambda t: -t["accuracy"])[:5]
    lrs = [t["lr"] for t in top]
    return (f"Of {result['n_trials']} log-uniform trials (η in [1e-4, 1), λ in [1e-8, 0.1), {len(result['seeds'])} "
            f"seeds each) the best reaches {100 * best['accuracy']:.1f} ± {100 * best['std']:.1f} % validation "
            f"accuracy at η = {best['lr']:.3g}, λ = {best['weight_decay']:.2g}; the five best learning rates lie "
            f"in [{min(lrs):.2g}, {max(lrs):.2g}], {result['top5_lr_span']:.2f} of the "
            f"{result['search_lr_span']:.0f} decades searched.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
