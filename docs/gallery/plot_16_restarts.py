"""
Multiple restarts against local minima
======================================

The BP texts warn that gradient descent only finds *a* minimum, not the best one: from
an unlucky start the error surface leads the weights into a local minimum (or a flat
region) and training stalls for good. Their remedy is simple: train the same network
from several random starts and keep the best run. We show it on the smallest net that
gets stuck: XOR with two hidden sigmoid units, trained from many seeds with
``Trainer.fit(n_restarts=...)``, bpnn's one restarts loop.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn

# %%
# The problem and the net
# -----------------------
# XOR's four points are not linearly separable, so the net needs its hidden layer:
# 2 inputs → 2 sigmoid units → 1 sigmoid output, trained on the mean squared error
# :math:`L = \frac{1}{4}\sum_n (y_n - t_n)^2` by full-batch gradient descent with
# momentum. Two hidden units are just enough; with so few, some starts end where the
# net gets two points right and answers 0.5 on the other two,
# :math:`L = \frac{1}{4}(0.5^2 + 0.5^2) = 0.125` (or one right and 2/3 on the other
# three, :math:`L = 1/6`): a local minimum, or a plateau so flat that no later step
# leaves it.

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
T = np.array([[0], [1], [1], [0]], dtype=np.float64)

#: A run is stuck when its final loss is above this: solved runs end near 1e-4,
#: stuck ones on the plateaus at 0.125 or 0.167.
STUCK = 0.05


def xor_net(seed):
    """2-2-1 sigmoid net, weights N(0, 1) (the classic small-net start)."""
    return bpnn.Sequential([bpnn.Dense(2, init="normal"), bpnn.Sigmoid(),
                            bpnn.Dense(1, init="normal"), bpnn.Sigmoid()],
                           input_shape=(2,), seed=seed, dtype="float64")


# %%
# Restarts
# --------
# ``fit(..., n_restarts=k)`` trains *k* fresh copies of the architecture, each from a
# seed drawn from the trainer's generator, and keeps the one whose final weights have
# the lowest loss (on validation data when given; here, on the training data). Every
# run's history and score stay on the trainer (``restart_histories``,
# ``restart_scores``, ``restart_seeds``, ``best_restart``). We repeat the whole study
# from a few master seeds to see how often a single run gets stuck.


def run(fast: bool = True) -> dict:
    n_restarts, epochs = (16, 600) if fast else (50, 1000)
    master_seeds = [0, 1, 2] if fast else [0, 1, 2, 3, 4]
    studies = []
    for master in master_seeds:
        trainer = bpnn.Trainer(xor_net(master), loss="mse",
                               optimizer=bpnn.optim.SGD(lr=2.0, momentum=0.9), metrics=[])
        trainer.fit(X, T, epochs=epochs, batch_size="full", n_restarts=n_restarts, verbose=False)
        curves = np.array([h["loss"] for h in trainer.restart_histories])
        scores = np.array(trainer.restart_scores)
        studies.append({
            "master_seed": master,
            "seeds": list(trainer.restart_seeds),
            "scores": scores,
            "curves": curves,
            "best": int(trainer.best_restart),
            "kept_loss": float(trainer.evaluate(X, T)["loss"]),
            "kept_outputs": trainer.predict(X).ravel(),
        })
    stuck = np.array([np.mean(s["scores"] > STUCK) for s in studies])
    return {"studies": studies, "n_restarts": n_restarts, "epochs": epochs, "stuck_threshold": STUCK,
            "stuck_fraction": stuck, "stuck_mean": float(stuck.mean()), "stuck_std": float(stuck.std())}


# %%
# What it shows
# -------------
# Left: every run's loss curve; the stuck ones flatten on a plateau far above the
# solved ones and stay there. Right: the final losses of all runs (log scale): two
# clusters, nothing in between. If one run is stuck with probability *p*, all *k*
# independent restarts are stuck with probability :math:`p^k`, which is why a handful
# of restarts is enough.


def plot(result):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    first = result["studies"][0]
    epochs = np.arange(1, first["curves"].shape[1] + 1)
    for i, curve in enumerate(first["curves"]):
        stuck = first["scores"][i] > result["stuck_threshold"]
        ax1.plot(epochs, curve, color="tab:red" if stuck else "tab:blue", alpha=0.5, lw=1)
    ax1.plot(epochs, first["curves"][first["best"]], color="black", lw=2, label="kept run (best)")
    ax1.plot([], [], color="tab:red", label="stuck runs")
    ax1.plot([], [], color="tab:blue", label="solved runs")
    ax1.set(yscale="log", xlabel="epoch", ylabel="training MSE",
            title=f"XOR 2-2-1 sigmoid: {len(first['curves'])} restarts (master seed {first['master_seed']})")
    ax1.legend()
    scores = np.concatenate([s["scores"] for s in result["studies"]])
    bins = np.logspace(np.log10(scores.min()) - 0.2, np.log10(scores.max()) + 0.2, 30)
    ax2.hist(scores, bins=bins, color="tab:gray")
    ax2.axvline(result["stuck_threshold"], color="tab:red", ls="--", label="stuck above this")
    ax2.set(xscale="log", xlabel="final training MSE", ylabel="runs",
            title=f"stuck: {100 * result['stuck_mean']:.0f} ± {100 * result['stuck_std']:.0f} % of runs "
                  f"({len(result['studies'])} studies)")
    ax2.legend()
    fig.tight_layout()
    return fig


def summary(result) -> str:
    n_stuck = [int(np.sum(s["scores"] > result["stuck_threshold"])) for s in result["studies"]]
    kept = [s["kept_loss"] for s in result["studies"]]
    k = result["n_restarts"]
    return (f"Of {k} restarts of XOR with 2 hidden sigmoid units, {', '.join(map(str, n_stuck))} got stuck "
            f"(final MSE > {result['stuck_threshold']}; {100 * result['stuck_mean']:.0f} ± "
            f"{100 * result['stuck_std']:.0f} % over {len(n_stuck)} studies), yet the kept run always solves "
            f"it (MSE {max(kept):.1e} at worst): one run fails with probability p ≈ {result['stuck_mean']:.2f}, "
            f"{k} restarts with p^{k} ≈ {result['stuck_mean'] ** k:.0e}.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
