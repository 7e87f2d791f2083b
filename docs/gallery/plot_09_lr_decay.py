"""
Learning-rate decay: step, exponential, inverse time and warm restarts
======================================================================

With a constant learning rate, stochastic gradient descent never settles: each
mini-batch gradient is a noisy estimate, so near a minimum the weights keep jumping
around it by steps of size about :math:`\\eta\\,\\|g\\|`. The BP texts therefore start
with a large :math:`\\eta_0`, to move fast while far from a minimum, and shrink it as
training goes on. Here four schedules of :mod:`bpnn.optim` are drawn from their own
objects and used to train the same network from the same seeds as a constant rate.

What it shows: at this starting rate the constant run never settles, while every decayed
run ends with a training loss several times lower. The cosine schedule with warm restarts
jumps back to :math:`\\eta_0` at each restart (the loss rises for an epoch or two) and
still ends far below the constant rate, since each cycle finishes at a small rate.

Fast mode (the default, a few seconds): 1,500 MNIST images pooled to 14x14, 15 epochs,
3 seeds. Full mode (``BPNN_GALLERY_FULL=1``): 3,000 images, 21 epochs, 5 seeds.
"""

# %%
# The schedules
# -------------
# :math:`t` counts epochs from 0 and :math:`\eta_0` is the starting rate. Each schedule is
# an object mapping :math:`t` to :math:`\eta_t` (call it: ``schedule(t)``), given to the
# optimizer as its ``lr``; the trainer reads it at the start of every epoch.
#
# * step decay, :class:`bpnn.optim.StepDecay`:
#   :math:`\eta_t = \eta_0\, \gamma^{\lfloor t / s \rfloor}` (divide by :math:`1/\gamma` every
#   :math:`s` epochs);
# * exponential decay, :class:`bpnn.optim.ExponentialDecay`: :math:`\eta_t = \eta_0\, \gamma^t`;
# * inverse time decay, :class:`bpnn.optim.InverseTimeDecay`:
#   :math:`\eta_t = \eta_0 / (1 + k\, t)`, the BP articles' :math:`\eta_0/(1 + k\cdot\mathrm{epoch})`;
# * cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017),
#   :class:`bpnn.optim.CosineWarmRestarts`: within a cycle of :math:`T_0` epochs,
#   :math:`\eta_t = \eta_{min} + (\eta_0 - \eta_{min})\,(1 + \cos(\pi\, T_{cur} / T_0))/2`,
#   and :math:`T_{cur}` goes back to 0 (so :math:`\eta` back to :math:`\eta_0`) every
#   :math:`T_0` epochs.
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
import bpnn.data

LR0 = 0.2
MOMENTUM = 0.9


def schedules(epochs):
    """The schedules compared, each starting from LR0; ``epochs`` a multiple of 3, so that the
    step decay divides η twice and SGDR's third cycle ends with the run."""
    return {
        "constant": bpnn.optim.Constant(LR0),
        "step": bpnn.optim.StepDecay(LR0, step_size=max(1, epochs // 3), gamma=0.3),
        "exponential": bpnn.optim.ExponentialDecay(LR0, gamma=0.05 ** (1 / epochs)),
        "inverse time": bpnn.optim.InverseTimeDecay(LR0, decay_rate=0.5),
        "warm restarts": bpnn.optim.CosineWarmRestarts(LR0, T_0=max(1, epochs // 3), eta_min=1e-4),
    }


def load_data(n_train):
    """MNIST (``$BPNN_MNIST_DIR`` or the cache, never downloaded) or, without it, the 8x8
    digits; a fixed random subset. MNIST is averaged over 2x2 blocks (14x14): a quarter of
    the inputs, and the lesson is the same."""
    try:
        X, y, _, _ = bpnn.data.load_mnist(download=False)
        name = "MNIST"
    except bpnn.data.DatasetError:
        X, y = bpnn.data.load_digits()
        name = "digits"
    idx = np.random.default_rng(0).permutation(len(X))[:n_train]
    X, y = X[idx], y[idx]
    if name == "MNIST":
        X = X.reshape(len(X), 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(X), -1)
        name += " 14x14"
    return name, X, y


# %%
# The experiment
# --------------
# SGD with momentum 0.9 and :math:`\eta_0 = 0.2` -- a rate at which mini-batches of 32 make
# the loss jump around -- on a 32-32 ReLU network; every schedule starts from the same weights
# and sees the same batches for a given seed. The loss reported at the end is measured on
# the whole training set with the final weights (the per-epoch curve is the mean over the
# epoch's batches, as the trainer logs it).
def run(fast: bool = True) -> dict:
    n_train, epochs, seeds = (1500, 15, 3) if fast else (3000, 21, 5)
    data, X, y = load_data(n_train)
    names = list(schedules(epochs))
    lr = np.array([[s(t) for t in range(epochs)] for s in schedules(epochs).values()])
    curves = np.zeros((len(names), seeds, epochs))
    used_lr = np.zeros((len(names), epochs))
    final = np.zeros((len(names), seeds))
    for i, name in enumerate(names):
        for seed in range(seeds):
            model = bpnn.Sequential([bpnn.Dense(32, init="he_normal"), bpnn.ReLU(),
                                     bpnn.Dense(32, init="he_normal"), bpnn.ReLU(), bpnn.Dense(10)],
                                    input_shape=(X.shape[1],), seed=seed)
            opt = bpnn.optim.SGD(lr=schedules(epochs)[name], momentum=MOMENTUM)
            trainer = bpnn.Trainer(model, optimizer=opt)
            history = trainer.fit(X, y, epochs=epochs, batch_size=32, verbose=False)
            curves[i, seed] = history["loss"]
            used_lr[i] = history["lr"]
            final[i, seed] = trainer.evaluate(X, y)["loss"]
    sgdr = schedules(epochs)["warm restarts"]
    restarts = [t for t in range(1, epochs) if sgdr.cycle(t)[0] == 0]
    return {"data": data, "schedules": names, "epochs": epochs, "seeds": seeds, "lr0": LR0,
            "config": {n: s.get_config() for n, s in schedules(epochs).items()},
            "lr": lr, "history_lr": used_lr, "loss": curves, "final_loss": final, "restarts": restarts}


def plot(result):
    """The schedules' η over epochs, and the training loss of each (mean, min-max over seeds)."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    epochs = np.arange(result["epochs"])
    colors = plt.cm.tab10(np.arange(len(result["schedules"])))
    for i, name in enumerate(result["schedules"]):
        ax.plot(epochs, result["lr"][i], "o-", ms=3, color=colors[i], label=name)
        c = result["loss"][i]
        bx.plot(epochs + 1, c.mean(0), color=colors[i], label=name)
        bx.fill_between(epochs + 1, c.min(0), c.max(0), color=colors[i], alpha=0.2)
    for t in result["restarts"]:
        ax.axvline(t, color="grey", lw=0.5, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("epoch t")
    ax.set_ylabel("learning rate η_t")
    ax.set_title("the schedules (dotted: SGDR restarts)")
    ax.legend(fontsize=8)
    bx.set_yscale("log")
    bx.set_xlabel("epoch")
    bx.set_ylabel("training loss (mean over the epoch's batches)")
    bx.set_title(f"{result['data']}: SGD + momentum, {result['seeds']} seeds (min-max)")
    bx.legend(fontsize=8)
    fig.tight_layout()
    return fig


def summary(result) -> str:
    final = result["final_loss"].mean(1)
    names = result["schedules"]
    parts = ", ".join(f"{n} {final[i]:.3f}" for i, n in enumerate(names) if n != "constant")
    return (f"On {result['data']} after {result['epochs']} epochs the constant rate {result['lr0']} ends at "
            f"training loss {final[0]:.3f} while the decayed runs end at {parts} (means over "
            f"{result['seeds']} seeds); the warm restarts reset η to {result['lr0']} at epochs "
            f"{', '.join(map(str, result['restarts']))}.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
