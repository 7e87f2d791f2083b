"""
Over-fitting on 300 samples: L1, L2, dropout and early stopping
================================================================

A network with far more weights than training samples can learn the training set by
heart: its training accuracy reaches 100 % while its accuracy on new images stays much
lower. The from-scratch book shows it with 300 MNIST images and a deep 100-unit MLP
trained for 200 epochs, then shrinks the gap with weight decay and dropout. Here the
same setting is run from several seeds against four remedies of the BP literature:

* an L1 penalty :math:`\\lambda_1 \\sum |w|` (:class:`bpnn.optim.L1`), whose gradient
  :math:`\\lambda_1 \\operatorname{sign}(w)` pulls every weight toward 0 by the same amount, so
  the unneeded ones end near 0;
* an L2 penalty :math:`\\frac{\\lambda_2}{2} \\sum w^2` (:class:`bpnn.optim.L2`; its gradient
  :math:`\\lambda_2 w` is the "weight decay" of SGD), which keeps all weights small;
* dropout (:class:`bpnn.nn.Dropout`), which silences a random fraction of the hidden units
  at every step, so no unit can rely on a few others;
* early stopping (:class:`bpnn.train.EarlyStopping`), which holds out part of the 300 images,
  watches the loss on them, and keeps the weights of the epoch where it was lowest.

What it shows: without regularization the training accuracy reaches 100 % while the
test accuracy stays 7 to 15 points lower. The penalties and dropout narrow the gap
clearly on the cross-entropy (test minus training loss): the unregularized network grows
very confident on its 300 images and pays for it on new ones. On the accuracy the effect
is smaller, and over a few seeds only L2 narrows it every time. Early stopping stops
well before the last epoch, but on so little data the 50 images it holds out for
validation cost more than the over-fitting it prevents: its test accuracy ends a few
points below the unregularized network's. With 300 images, penalties and dropout are the
better remedies; early stopping pays off when held-out data is cheap.

Fast mode (the default, a few seconds): images pooled to 14x14, a 196-100-100-100-10
network, 50 epochs, 3 seeds. Full mode (``BPNN_GALLERY_FULL=1``): the same network,
100 epochs (the book trains 200 at a lower rate), 5 seeds.
"""

# %%
# The setting
# -----------
# 300 training images, a fixed test set of 1,000 others, mini-batches of 100, SGD with
# momentum. Each remedy is switched on alone, every other setting is the same, and each
# seed gives every variant the same initial weights and batches. Early stopping trains
# on 250 of the 300 images and uses the other 50 as its validation set (a remedy that
# needs held-out data pays for it with training data); it stops after 10 epochs
# without a lower validation loss and restores the best weights.
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
import bpnn.data

VARIANTS = {
    "none": {},
    "L1": {"regularizer": bpnn.optim.L1(3e-3)},
    "L2": {"regularizer": bpnn.optim.L2(3e-2)},
    "dropout": {"dropout": 0.3},
    "early stopping": {"early_stopping": 10},
}


def load_data(n_train, n_test):
    """300 MNIST training images (``$BPNN_MNIST_DIR`` or the cache, never downloaded) or,
    without MNIST, 300 of the 8x8 digits with the rest as test set. MNIST is averaged over
    2x2 blocks (14x14): a quarter of the inputs, and the lesson is the same."""
    try:
        X, y, X_test, y_test = bpnn.data.load_mnist(download=False)
        name = "MNIST"
    except bpnn.data.DatasetError:
        X, y = bpnn.data.load_digits()
        X, X_test, y, y_test = bpnn.data.train_test_split(X, y, test_size=1 - n_train / len(X), seed=0)
        name = "digits"
    rng = np.random.default_rng(0)
    tr, te = rng.permutation(len(X))[:n_train], rng.permutation(len(X_test))[:n_test]
    X, y, X_test, y_test = X[tr], y[tr], X_test[te], y_test[te]
    if name == "MNIST":
        X, X_test = (a.reshape(len(a), 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(a), -1) for a in (X, X_test))
        name += " 14x14"
    return name, X, y, X_test, y_test


def make_model(n_in, seed, depth, regularizer=None, dropout=0.0):
    """``depth`` hidden ReLU layers of 100 units (He init), optionally penalized or with dropout."""
    layers = []
    for _ in range(depth):
        layers += [bpnn.Dense(100, init="he_normal", regularizer=regularizer), bpnn.ReLU()]
        if dropout:
            layers.append(bpnn.Dropout(dropout))
    layers.append(bpnn.Dense(10, regularizer=regularizer))
    return bpnn.Sequential(layers, input_shape=(n_in,), seed=seed)


# %%
# The experiment
# --------------
# Accuracy and cross-entropy are measured at the end on the images the variant trained
# on and on the test set; the gap is training minus test accuracy (and test minus
# training loss).
def run(fast: bool = True) -> dict:
    epochs, seeds, depth = (50, 3, 3) if fast else (100, 5, 3)
    data, X, y, X_test, y_test = load_data(300, 1000)
    names = list(VARIANTS)
    shape = (len(names), seeds)
    train_acc, test_acc, train_loss, test_loss = (np.zeros(shape) for _ in range(4))
    curves = np.full((len(names), seeds, epochs), np.nan)
    test_curves = np.full((len(names), seeds, epochs), np.nan)
    stopped = np.full(seeds, -1)
    for i, name in enumerate(names):
        cfg = VARIANTS[name]
        for s in range(seeds):
            model = make_model(X.shape[1], s, depth, cfg.get("regularizer"), cfg.get("dropout", 0.0))
            trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.02, momentum=0.9))
            Xf, yf, callbacks, val = X, y, [], (X_test, y_test)
            if "early_stopping" in cfg:
                Xf, yf, val = X[:250], y[:250], (X[250:], y[250:])
                stop = bpnn.EarlyStopping("val_loss", patience=cfg["early_stopping"], restore_best_weights=True)
                callbacks = [stop]
            history = trainer.fit(Xf, yf, epochs=epochs, batch_size=100, validation_data=val,
                                  callbacks=callbacks, verbose=False)
            n = len(history["accuracy"])
            curves[i, s, :n] = history["accuracy"]
            if "early_stopping" in cfg:
                stopped[s] = n if stop.stopped_epoch is None else stop.stopped_epoch + 1
            else:
                test_curves[i, s, :n] = history["val_accuracy"]
            fit, test = trainer.evaluate(Xf, yf), trainer.evaluate(X_test, y_test)
            train_acc[i, s], test_acc[i, s] = fit["accuracy"], test["accuracy"]
            train_loss[i, s], test_loss[i, s] = fit["loss"], test["loss"]
    return {"data": data, "variants": names, "epochs": epochs, "seeds": seeds,
            "train_accuracy": train_acc, "test_accuracy": test_acc, "gap": train_acc - test_acc,
            "train_loss": train_loss, "test_loss": test_loss, "loss_gap": test_loss - train_loss,
            "accuracy_curves": curves, "test_accuracy_curves": test_curves, "stopped_epoch": stopped}


def plot(result):
    """Accuracy gaps per variant (mean ± std over seeds), and the unregularized run's curves."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    names, x = result["variants"], np.arange(len(result["variants"]))
    colors = plt.cm.tab10(x)
    for key, offset, label in (("train_accuracy", -0.2, "training"), ("test_accuracy", 0.2, "test")):
        v = result[key]
        ax.bar(x + offset, v.mean(1), 0.4, yerr=v.std(1), label=label,
               color=colors, alpha=1.0 if key == "test_accuracy" else 0.45)
    for i, g in enumerate(result["gap"].mean(1)):
        ax.annotate(f"gap {g:.1%}", (i, 1.01), ha="center", fontsize=8)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(0.5, 1.06)
    ax.set_ylabel("accuracy (light: training, dark: test)")
    ax.set_title(f"{result['data']}, 300 training images, {result['seeds']} seeds")
    epochs = np.arange(1, result["epochs"] + 1)
    for i in (names.index("none"), names.index("L2"), names.index("dropout")):
        for key, style in (("accuracy_curves", "-"), ("test_accuracy_curves", "--")):
            c = result[key][i]
            bx.plot(epochs, np.nanmean(c, 0), style, color=colors[i],
                          label=f"{names[i]} ({'training' if style == '-' else 'test'})")
            bx.fill_between(epochs, np.nanmin(c, 0), np.nanmax(c, 0), color=colors[i], alpha=0.15)
    bx.set_xlabel("epoch")
    bx.set_ylabel("accuracy")
    bx.set_title("training (solid) and test (dashed) accuracy, min-max band")
    bx.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def summary(result) -> str:
    gap, lgap = result["gap"].mean(1), result["loss_gap"].mean(1)
    names = result["variants"]
    parts = ", ".join(f"{n} {gap[i]:.1%}" for i, n in enumerate(names) if n != "none")
    penalized = [names.index(n) for n in ("L1", "L2", "dropout")]
    stop = names.index("early stopping")
    return (f"On {result['data']} with 300 training images the unregularized network reaches "
            f"{result['train_accuracy'][0].mean():.1%} training and {result['test_accuracy'][0].mean():.1%} test "
            f"accuracy, a gap of {gap[0]:.1%} (with {parts}; means over {result['seeds']} seeds). The loss "
            f"gap, test minus training cross-entropy, falls from {lgap[0]:.2f} to {lgap[penalized].max():.2f} or "
            f"less with L1, L2 or dropout; early stopping stopped at epochs "
            f"{', '.join(map(str, result['stopped_epoch']))} of {result['epochs']} with "
            f"{result['test_accuracy'][stop].mean():.1%} test accuracy.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
