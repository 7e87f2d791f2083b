"""
Optimizers on MNIST: SGD, momentum, Nesterov, AdaGrad, RMSprop, Adam and K-FAC
===============================================================================

The from-scratch book's chapter 6 trains one network on MNIST with SGD, Momentum,
AdaGrad and Adam and plots one loss curve each, from one seed. Here the same ReLU
network is trained by every update rule the BP texts teach -- plain SGD, momentum in
both of its written forms, Nesterov momentum, AdaGrad, RMSprop, Adam -- and by K-FAC, a
second-order method, from the same seeds, with the same batches and the same number of
epochs. The bands show the spread over seeds.

What it shows: every method that remembers past gradients (momentum) or scales each
weight's step by its own gradient history (AdaGrad, RMSprop, Adam) is far ahead of plain
SGD after the same number of epochs; K-FAC, which preconditions with an approximation of
the curvature, is further ahead still per epoch. The two forms of momentum give the same
curve.

Fast mode (the default, a few seconds): 2,000 training images pooled to 14x14, a
196-64-64-64-10 network, 8 epochs, 3 seeds. Full mode (``BPNN_GALLERY_FULL=1``): the
same network on 5,000 images, 15 epochs, 5 seeds.
"""

# %%
# The update rules
# ----------------
# With :math:`g` the gradient of the mini-batch loss, :math:`\eta` the learning rate and
# :math:`\mu` the momentum:
#
# * SGD (:class:`bpnn.optim.SGD`): :math:`\theta \leftarrow \theta - \eta g`.
# * Momentum, as PyTorch writes it (``SGD(momentum=0.9)``, bpnn's default form):
#   :math:`v \leftarrow \mu v + g,\ \theta \leftarrow \theta - \eta v`.
# * Momentum, as the BP articles write it (``SGD(momentum=0.9, momentum_form="classic")``):
#   :math:`v \leftarrow \mu v + \eta g,\ \theta \leftarrow \theta - v` (the book writes
#   :math:`v \leftarrow \alpha v - \eta g,\ \theta \leftarrow \theta + v`: the same with
#   :math:`v` negated). With a constant :math:`\eta` the classic velocity is exactly
#   :math:`\eta` times PyTorch's, so both forms take the same steps; they differ only when
#   a schedule changes :math:`\eta` (then the PyTorch form rescales the whole step at once).
# * Nesterov (``SGD(momentum=0.9, nesterov=True)``): the step looks ahead,
#   :math:`v \leftarrow \mu v + g,\ \theta \leftarrow \theta - \eta (g + \mu v)`.
# * AdaGrad (:class:`bpnn.optim.AdaGrad`):
#   :math:`s \leftarrow s + g^2,\ \theta \leftarrow \theta - \eta g / (\sqrt{s} + \epsilon)`:
#   each weight gets its own step size, shrinking as its squared gradients add up.
# * RMSprop (:class:`bpnn.optim.RMSprop`): the same with a moving average,
#   :math:`s \leftarrow \alpha s + (1 - \alpha) g^2`, so the step size does not decay to 0.
# * Adam (:class:`bpnn.optim.Adam`): momentum of :math:`g` and RMSprop's scaling together,
#   with bias correction: :math:`m \leftarrow \beta_1 m + (1-\beta_1) g,\ s \leftarrow
#   \beta_2 s + (1-\beta_2) g^2,\ \theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat s} + \epsilon)`.
# * K-FAC (:class:`bpnn.optim.KFAC`): :math:`\theta \leftarrow \theta - \eta F^{-1} g` with the
#   Fisher matrix :math:`F` approximated per layer by a Kronecker product :math:`A \otimes G`
#   of the layer's input and output-gradient covariances (Martens & Grosse 2015).
#
# The learning rates: 0.01 for SGD, momentum and Nesterov and 0.001 for Adam, as in the
# book; 0.001 for RMSprop, 0.05 for AdaGrad and 0.01 for K-FAC -- a fair setting for each
# method, not a tuned one. K-FAC runs without momentum: its step is already scaled by the
# curvature, and with its default momentum of 0.9 (kfac-pytorch's) the steps were too
# long for this network and it ended behind Adam.
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
import bpnn.data

METHODS = {
    "SGD": lambda: bpnn.optim.SGD(lr=0.01),
    "momentum (torch form)": lambda: bpnn.optim.SGD(lr=0.01, momentum=0.9),
    "momentum (classic form)": lambda: bpnn.optim.SGD(lr=0.01, momentum=0.9, momentum_form="classic"),
    "Nesterov": lambda: bpnn.optim.SGD(lr=0.01, momentum=0.9, nesterov=True),
    "AdaGrad": lambda: bpnn.optim.AdaGrad(lr=0.05),
    "RMSprop": lambda: bpnn.optim.RMSprop(lr=1e-3),
    "Adam": lambda: bpnn.optim.Adam(lr=1e-3),
    "K-FAC": lambda: bpnn.optim.KFAC(lr=0.01, momentum=0.0),
}


def load_data(n_train, n_test):
    """MNIST (``$BPNN_MNIST_DIR`` or the cache, never downloaded) or, without it, the 8x8
    digits; a fixed random subset. MNIST is averaged over 2x2 blocks (14x14): a quarter of
    the inputs, and the lesson is the same."""
    try:
        X, y, X_test, y_test = bpnn.data.load_mnist(download=False)
        name = "MNIST"
    except bpnn.data.DatasetError:
        X, y = bpnn.data.load_digits()
        X, X_test, y, y_test = bpnn.data.train_test_split(X, y, test_size=0.3, seed=0)
        name = "digits"
    rng = np.random.default_rng(0)
    tr = rng.permutation(len(X))[:n_train]
    te = rng.permutation(len(X_test))[:n_test]
    X, y, X_test, y_test = X[tr], y[tr], X_test[te], y_test[te]
    if name == "MNIST":
        X, X_test = (a.reshape(len(a), 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(a), -1) for a in (X, X_test))
        name += " 14x14"
    return name, X, y, X_test, y_test


def make_model(n_in, seed):
    """Three hidden ReLU layers of 64 units, He-initialized; the same weights for every method."""
    layers = []
    for _ in range(3):
        layers += [bpnn.Dense(64, init="he_normal"), bpnn.ReLU()]
    return bpnn.Sequential([*layers, bpnn.Dense(10)], input_shape=(n_in,), seed=seed)


# %%
# The experiment
# --------------
# Each (method, seed) pair starts from the same weights as every other method with that
# seed and sees the same mini-batches in the same order: the model's seed drives both the
# initialization and the shuffling.
def run(fast: bool = True) -> dict:
    n_train, n_test, epochs, seeds = (2000, 1000, 8, 3) if fast else (5000, 5000, 15, 5)
    data, X, y, X_test, y_test = load_data(n_train, n_test)
    loss = np.zeros((len(METHODS), seeds, epochs))
    acc = np.zeros((len(METHODS), seeds))
    for i, make_opt in enumerate(METHODS.values()):
        for s in range(seeds):
            trainer = bpnn.Trainer(make_model(X.shape[1], s), optimizer=make_opt())
            history = trainer.fit(X, y, epochs=epochs, batch_size=64, verbose=False)
            loss[i, s] = history["loss"]
            acc[i, s] = trainer.evaluate(X_test, y_test)["accuracy"]
    return {"data": data, "methods": list(METHODS), "epochs": epochs, "seeds": seeds,
            "loss": loss, "test_accuracy": acc}


def plot(result):
    """Training loss over epochs (mean and min-max over seeds) and test accuracy per method."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    epochs = np.arange(1, result["epochs"] + 1)
    colors = plt.cm.tab10(np.arange(len(result["methods"])))
    for i, name in enumerate(result["methods"]):
        curves = result["loss"][i]
        style = "--" if "classic" in name else "-"
        ax.plot(epochs, curves.mean(0), style, color=colors[i], label=name)
        ax.fill_between(epochs, curves.min(0), curves.max(0), color=colors[i], alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title(f"{result['data']}: mean and min-max over {result['seeds']} seeds")
    ax.legend(fontsize=8)
    acc = result["test_accuracy"]
    bx.barh(np.arange(len(acc)), acc.mean(1), xerr=acc.std(1), color=colors)
    bx.set_yticks(np.arange(len(acc)), result["methods"], fontsize=8)
    bx.invert_yaxis()
    bx.set_xlim(0, 1)
    bx.set_xlabel("test accuracy (mean ± std)")
    bx.set_title("after the same number of epochs")
    fig.tight_layout()
    return fig


def summary(result) -> str:
    final = result["loss"][:, :, -1].mean(1)
    names = result["methods"]
    sgd = final[0]
    worst = int(np.argmax(final[1:])) + 1
    best = int(np.argmin(final))
    forms = np.abs(result["loss"][1] - result["loss"][2]).max()
    return (f"On {result['data']} after {result['epochs']} epochs, plain SGD is at training loss {sgd:.3f} "
            f"while the slowest of the others ({names[worst]}) reaches {final[worst]:.3f} and {names[best]} "
            f"{final[best]:.4f} (means over {result['seeds']} seeds); the two momentum forms differ by at most "
            f"{forms:.1e} in loss, and test accuracy goes from {result['test_accuracy'][0].mean():.1%} (SGD) "
            f"to {result['test_accuracy'].mean(1).max():.1%}.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
