"""
Batch, stochastic and mini-batch gradient descent
=================================================

The BP texts describe three ways to walk down the error surface. **Batch** (full-batch)
gradient descent computes the gradient over the whole training set and takes one step
per epoch: an exact gradient, but few steps. **Stochastic** (online) gradient descent
takes one step per sample: many cheap, noisy steps. **Mini-batch** descent steps on
small batches, between the two. We train the same network from the same seeds with
``batch_size="full"``, ``1`` and ``32`` and compare their loss per epoch, per update
and per second.
"""
import os
import time

import matplotlib.pyplot as plt
import numpy as np

import bpnn
from bpnn.data import load_digits

# %%
# One loop, three modes
# ---------------------
# :meth:`bpnn.Trainer.fit` runs all three: with the loss averaged over the *B* samples
# of a batch :math:`\mathcal{B}`, every update is
#
# .. math::
#
#    \theta \leftarrow \theta - \eta\, \frac{1}{B}\sum_{n\in\mathcal{B}} \nabla_\theta L_n ,
#
# and ``batch_size`` picks *B*: ``"full"`` (*B* = *N*, one update per epoch),
# ``1`` or ``"stochastic"`` (*N* updates per epoch, in a new random order each epoch)
# or an integer (⌈\ *N*/*B*\ ⌉ updates). The learning rate is the same for all three
# (plain :class:`bpnn.optim.SGD`, η = 0.1): because the loss is a mean, one step of
# each mode has the same expected size, and only the number of steps and their noise
# differ. The stochastic gradient is an unbiased but noisy estimate of the full one;
# its variance falls as 1/*B*.

N_TRAIN = 512
MODES = {"batch (B = N)": "full", "mini-batch (B = 32)": 32, "stochastic (B = 1)": 1}
LR = 0.1


def make_net(seed):
    """64 → 32 ReLU → 10, He init."""
    return bpnn.Sequential([bpnn.Dense(32, init="he_normal"), bpnn.ReLU(), bpnn.Dense(10)],
                           input_shape=(64,), seed=seed)


class TrainingLoss(bpnn.Callback):
    """Every ``every`` updates, the loss on the whole training set, the update count and
    the training time so far (the time spent here measuring is left out)."""

    def __init__(self, X, y, every):
        self.X, self.y, self.every = X, y, every
        self.loss, self.updates, self.seconds = [], [], []

    def on_train_begin(self, logs=None):
        self.count, self.clock = 0, 0.0
        self._record()

    def on_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_batch_end(self, batch, logs=None):
        self.clock += time.perf_counter() - self.start
        self.count += 1
        if self.count % self.every == 0:
            self._record()

    def _record(self):
        self.loss.append(self.trainer.evaluate(self.X, self.y)["loss"])
        self.updates.append(self.count)
        self.seconds.append(self.clock)


# %%
# The experiment
# --------------
# 512 digits, the same seeds for every mode (a seed fixes the initial weights and the
# shuffling). A :class:`bpnn.Callback` records the loss on the whole training set 16
# times per epoch (after every update for the two batch modes that make at most 16
# updates per epoch), so the three curves are measured alike; the clock counts the
# training steps only.


def run(fast: bool = True) -> dict:
    X, y = load_digits()
    seeds = [0, 1, 2] if fast else list(range(8))
    epochs = 5 if fast else 20
    out = {"seeds": seeds, "epochs": epochs, "n_train": N_TRAIN, "modes": list(MODES), "loss": {},
           "updates": {}, "seconds": {}, "per_epoch": {}, "up_steps": {}, "updates_per_epoch": {}}
    for label, batch_size in MODES.items():
        steps = 1 if batch_size == "full" else -(-N_TRAIN // batch_size)
        every = max(1, steps // 16)
        losses, seconds = [], []
        for seed in seeds:
            rows = np.random.default_rng(seed).permutation(len(X))[:N_TRAIN]
            Xs, ys = X[rows], y[rows]
            probe = TrainingLoss(Xs, ys, every)
            trainer = bpnn.Trainer(make_net(seed), optimizer=bpnn.optim.SGD(lr=LR))
            trainer.fit(Xs, ys, epochs=epochs, batch_size=batch_size, callbacks=[probe], verbose=False)
            losses.append(probe.loss)
            seconds.append(probe.seconds)
        losses = np.array(losses)
        out["loss"][label] = losses
        out["updates"][label] = np.array(probe.updates)
        out["seconds"][label] = np.array(seconds)
        out["updates_per_epoch"][label] = steps
        # the loss at the end of each epoch (index 0: before training)
        out["per_epoch"][label] = losses[:, ::steps // every]
        # noise: the fraction of recorded steps where the training loss went up
        out["up_steps"][label] = (np.diff(losses, axis=1) > 0).mean(1)
    return out


# %%
# Per epoch, per update, per second
# ---------------------------------
# Left: per epoch (one pass over the data), stochastic and mini-batch descent are far
# ahead — they made 512 and 16 updates for batch descent's one. Middle: per update,
# batch descent's steps are the best ones (the exact gradient; its curve never goes
# up), the stochastic steps the noisiest. Right: per second of training, what a step
# costs decides: a batch step costs the whole data set, a stochastic step pays
# Python's and NumPy's overhead per sample, and mini-batches use the vectorized
# matrix products best. All three ran the same epochs, so batch descent's curve
# ends first: its epochs are the cheapest, but it needs many more of them. Lines are
# means over seeds, bands min–max; the wall-clock times are this machine's and vary
# from run to run (every other number here is the same on every run).


def plot(result):
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), layout="constrained", sharey=True)
    for k, label in enumerate(result["modes"]):
        loss = result["loss"][label]
        per_epoch = result["per_epoch"][label]
        epochs = np.arange(per_epoch.shape[1])
        curves = ((axes[0], epochs, per_epoch),
                  (axes[1], np.maximum(result["updates"][label], 0.8), loss),
                  # per second: from the first record after the start (a log axis has no 0)
                  (axes[2], result["seconds"][label].mean(0)[1:], loss[:, 1:]))
        for ax, x, y in curves:
            ax.plot(x, y.mean(0), color=f"C{k}", label=label)
            ax.fill_between(x, y.min(0), y.max(0), color=f"C{k}", alpha=0.25)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss on the whole training set")
    axes[0].set_title("Per epoch")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("updates (log scale; the first point is before training)")
    axes[1].set_title("Per update")
    axes[2].set_xscale("log")
    axes[2].set_xlabel("training time [s] (this machine)")
    axes[2].set_title("Per second")
    for ax in axes:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.suptitle(f"Gradient-descent modes on {result['n_train']} digits, lr {LR}, "
                 f"{len(result['seeds'])} seeds")
    return fig


# %%
# What it shows
# -------------


def summary(result):
    batch, mini, sgd = result["modes"]

    def final(label):
        return float(result["per_epoch"][label][:, -1].mean())

    def up(label):
        return float(result["up_steps"][label].mean())

    e = result["epochs"]
    return (f"After {e} epochs the training loss is {final(batch):.3g} with batch descent "
            f"({result['updates_per_epoch'][batch]} update per epoch), {final(mini):.3g} with mini-batches "
            f"({result['updates_per_epoch'][mini]} per epoch) and {final(sgd):.3g} with stochastic descent "
            f"({result['updates_per_epoch'][sgd]} per epoch); the loss went up in {up(batch):.0%} of batch "
            f"descent's recorded steps, {up(mini):.0%} of mini-batch's and {up(sgd):.0%} of stochastic "
            f"descent's — the price of its noisy gradient.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
