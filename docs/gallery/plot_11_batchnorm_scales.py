"""
Batch normalization over 16 weight scales
=========================================

How large should the initial weights be? Without normalization the answer matters a
great deal: too large and the activations (and the loss) blow up layer after layer, too
small and they shrink toward 0, so the gradient that reaches the first layers vanishes.
Batch normalization (Ioffe & Szegedy 2015) standardizes each unit's pre-activation over
the mini-batch, :math:`\\hat s = (s - \\mu_B) / \\sqrt{\\sigma_B^2 + \\epsilon}`, then rescales
it with learned :math:`\\gamma, \\beta`: the scale of the weights before it no longer
reaches the next layer.

The from-scratch book shows it by training the same ReLU MLP on a small MNIST subset
from 16 weight scales, standard deviations from 1 down to :math:`10^{-4}` on a log scale,
with and without :class:`bpnn.nn.BatchNorm` after each hidden :class:`bpnn.nn.Dense`. Here the
same experiment runs over several seeds.

What it shows: with batch norm the network learns from almost every scale; without it,
only from a narrow band of scales near He's :math:`\\sqrt{2/n_{in}}` (0.05 to 0.2 for
these widths); from every smaller scale it stays at chance, and from the largest it
diverges.

Fast mode (the default, a few seconds): 500 MNIST images pooled to 14x14, four hidden
layers of 50 units, 10 epochs, 3 seeds. Full mode (``BPNN_GALLERY_FULL=1``): the book's
1,000 images, 15 epochs, 5 seeds.
"""

# %%
# The experiment
# --------------
# Every weight matrix, the output layer's included, is drawn from
# :math:`\mathcal N(0, w^2)` (:class:`bpnn.init.Normal`) for each of 16 scales
# :math:`w = 10^0, \dots, 10^{-4}`; biases start at 0. Both networks train with plain SGD
# (:math:`\eta = 0.2`, mini-batches of 100) from the same seeds; the score is the accuracy on
# the training images at the end (the book's measure: can the network learn at all?).
# "Learns" below means more than 50 % -- chance is about 10 %.
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
import bpnn.data

SCALES = np.logspace(0, -4, 16)
LEARNS = 0.5


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


def make_model(n_in, scale, batch_norm, depth, width, seed):
    """``depth`` hidden ReLU layers of ``width`` units, every weight ~ N(0, scale²);
    with ``batch_norm``, Dense → BatchNorm → ReLU."""
    init = bpnn.init.Normal(std=float(scale))
    layers = []
    for _ in range(depth):
        layers.append(bpnn.Dense(width, init=init))
        if batch_norm:
            layers.append(bpnn.BatchNorm())
        layers.append(bpnn.ReLU())
    layers.append(bpnn.Dense(10, init=init))
    return bpnn.Sequential(layers, input_shape=(n_in,), seed=seed)


def run(fast: bool = True) -> dict:
    n_train, depth, width, epochs, seeds = (500, 4, 50, 10, 3) if fast else (1000, 4, 50, 15, 5)
    data, X, y = load_data(n_train)
    acc = np.zeros((2, len(SCALES), seeds))  # [without, with batch norm]
    diverged = np.zeros((2, len(SCALES), seeds), dtype=bool)
    for b, batch_norm in enumerate((False, True)):
        for k, scale in enumerate(SCALES):
            for s in range(seeds):
                trainer = bpnn.Trainer(make_model(X.shape[1], scale, batch_norm, depth, width, s),
                                       optimizer=bpnn.optim.SGD(lr=0.2))
                # from the largest scales the plain network's loss overflows: bpnn stops such
                # a run with a NonFiniteLossWarning (recorded in history.stopped_reason)
                with np.errstate(all="ignore"):
                    history = trainer.fit(X, y, epochs=epochs, batch_size=100, verbose=False)
                    acc[b, k, s] = trainer.evaluate(X, y)["accuracy"]
                diverged[b, k, s] = history.stopped_reason is not None
    learns = (acc.mean(2) > LEARNS).sum(1)
    return {"data": data, "scales": SCALES, "seeds": seeds, "epochs": epochs, "accuracy": acc,
            "diverged": diverged, "learns_without_bn": int(learns[0]), "learns_with_bn": int(learns[1]),
            "threshold": LEARNS}


def plot(result):
    """Training accuracy against the weight scale, with and without batch norm (min-max band)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    w = result["scales"]
    for b, (label, color) in enumerate((("without batch norm", "tab:blue"), ("with batch norm", "tab:red"))):
        a = result["accuracy"][b]
        ax.plot(w, a.mean(1), "o-", color=color, label=label)
        ax.fill_between(w, a.min(1), a.max(1), color=color, alpha=0.2)
    ax.axhline(result["threshold"], color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("std of the initial weights")
    ax.set_ylabel(f"training accuracy after {result['epochs']} epochs")
    ax.set_title(f"{result['data']}: mean and min-max over {result['seeds']} seeds")
    ax.legend()
    fig.tight_layout()
    return fig


def summary(result) -> str:
    a = result["accuracy"].mean(2)
    return (f"On {result['data']}, with batch norm the network learns (training accuracy above "
            f"{result['threshold']:.0%}) from {result['learns_with_bn']} of the 16 weight scales, without it "
            f"from {result['learns_without_bn']}; at the smallest scale, 1e-4, it reaches {a[1, -1]:.1%} with "
            f"batch norm and {a[0, -1]:.1%} without (means over {result['seeds']} seeds); without batch norm "
            f"{result['diverged'][0].sum()} runs from the largest scales diverged, with it "
            f"{result['diverged'][1].sum()}.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
