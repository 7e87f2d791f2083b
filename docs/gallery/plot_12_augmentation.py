"""
Data augmentation on MNIST
==========================

More training data is the first remedy for over-fitting, and for images there is a
cheap way to get it: distort the images you have in ways that do not change their label.
A digit moved by two pixels or turned by ten degrees is still the same digit, but to a
fully connected network, whose first layer has one weight per pixel position, it is a
new input. LeCun et al. (1998) trained LeNet-5 on randomly distorted MNIST images;
Simard, Steinkraus & Platt (2003) added elastic distortions.

:class:`bpnn.data.ImageAugment` draws a fresh random shift, rotation, scaling (and, if
asked, elastic distortion) for every image of every training batch; give it to
:meth:`bpnn.train.Trainer.fit` as ``augment=`` and the test images are left as they are. Here a
small MLP is trained on a few hundred MNIST images with and without it, from the same
seeds, and tested on the plain test images and on the same images moved by a few pixels.

What it shows: without augmentation the network is lost as soon as the digits move --
its accuracy on translated images falls far below its accuracy on centred ones. Trained
on shifted and rotated copies it keeps most of its accuracy on the translated images
and gives up at most a few points on the centred ones.

Fast mode (the default, a few seconds): 500 training images, a 784-128-10 network,
20 epochs, 3 seeds, 600 test images. Full mode (``BPNN_GALLERY_FULL=1``, under a minute):
2,000 training and 2,000 test images, 40 epochs, 5 seeds.
"""

# %%
# The experiment
# --------------
# The augmentation moves each training image by up to ``shift`` pixels along each axis and
# turns it by up to 10 degrees, a new draw at every step. The translated test set moves
# every test image by exactly ``shift`` pixels in one of the eight directions (up, down,
# left, right and the diagonals), with :meth:`bpnn.data.ImageAugment.apply` and fixed
# parameters. On the 8x8 digits (the fallback without MNIST) shifts are 1 pixel.
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
import bpnn.data


def load_data(n_train, n_test):
    """MNIST images (``$BPNN_MNIST_DIR`` or the cache, never downloaded) as flat rows with
    their image shape, or, without MNIST, the 8x8 digits; a fixed random subset."""
    try:
        X, y, X_test, y_test = bpnn.data.load_mnist(download=False)
        name, side, shift = "MNIST", 28, 3
    except bpnn.data.DatasetError:
        X, y = bpnn.data.load_digits()
        X, X_test, y, y_test = bpnn.data.train_test_split(X, y, test_size=0.5, seed=0)
        name, side, shift = "digits", 8, 1
    rng = np.random.default_rng(0)
    tr, te = rng.permutation(len(X))[:n_train], rng.permutation(len(X_test))[:n_test]
    return name, side, shift, X[tr], y[tr], X_test[te], y_test[te]


def translate(X, side, shift):
    """Every image moved by exactly ``shift`` pixels in one of the 8 directions (in turn)."""
    directions = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx], dtype=float)
    n = len(X)
    params = {"theta": np.zeros(n), "scale": np.ones(n), "shear": np.zeros(n),
              "shift": shift * directions[np.arange(n) % len(directions)]}
    return bpnn.data.ImageAugment(image_shape=(side, side)).apply(X, params, np.random.default_rng(0))


def run(fast: bool = True) -> dict:
    n_train, n_test, epochs, seeds = (500, 600, 20, 3) if fast else (2000, 2000, 40, 5)
    data, side, shift, X, y, X_test, y_test = load_data(n_train, n_test)
    X_moved = translate(X_test, side, shift)
    augment = bpnn.data.ImageAugment(shift=shift, rotation=10, image_shape=(side, side))
    names = ["plain", "augmented"]
    plain_acc, moved_acc = np.zeros((2, seeds)), np.zeros((2, seeds))
    curves = np.zeros((2, seeds, epochs))
    for a, aug in enumerate((None, augment)):
        for s in range(seeds):
            model = bpnn.Sequential([bpnn.Dense(128, init="he_normal"), bpnn.ReLU(), bpnn.Dense(10)],
                                    input_shape=(X.shape[1],), seed=s)
            trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=2e-3))
            history = trainer.fit(X, y, epochs=epochs, batch_size=50, augment=aug,
                                  validation_data=(X_moved, y_test), verbose=False)
            curves[a, s] = history["val_accuracy"]
            plain_acc[a, s] = trainer.evaluate(X_test, y_test)["accuracy"]
            moved_acc[a, s] = trainer.evaluate(X_moved, y_test)["accuracy"]
    examples = {"original": X_test[:8].reshape(-1, side, side), "translated": X_moved[:8].reshape(-1, side, side),
                "augmented": augment(X_test[:8], np.random.default_rng(1)).reshape(-1, side, side)}
    return {"data": data, "shift": shift, "variants": names, "seeds": seeds, "epochs": epochs,
            "n_train": n_train, "test_accuracy": plain_acc, "translated_accuracy": moved_acc,
            "translated_curves": curves, "examples": examples}


def plot(result):
    """Example images, accuracy on translated test images over epochs, and final accuracies."""
    fig = plt.figure(figsize=(11, 5.6))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 2.2])
    strip = fig.add_subplot(grid[0, :])
    rows = [np.hstack(list(result["examples"][k])) for k in ("original", "translated", "augmented")]
    strip.imshow(np.vstack(rows), cmap="gray_r")
    strip.set_xticks([])
    side = result["examples"]["original"].shape[1]
    strip.set_yticks([side * (i + 0.5) for i in range(3)],
                     ["test image", f"translated by {result['shift']} px", "one augmentation"], fontsize=8)
    strip.set_title(f"{result['data']}: the test set, moved, and what training sees with augmentation")
    ax, bx = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    epochs = np.arange(1, result["epochs"] + 1)
    for a, (name, color) in enumerate(zip(result["variants"], ("tab:blue", "tab:orange"))):
        c = result["translated_curves"][a]
        ax.plot(epochs, c.mean(0), color=color, label=name)
        ax.fill_between(epochs, c.min(0), c.max(0), color=color, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy on translated test images")
    ax.set_title(f"{result['n_train']} training images, min-max over {result['seeds']} seeds")
    ax.legend()
    x = np.arange(2)
    for a, (name, color) in enumerate(zip(result["variants"], ("tab:blue", "tab:orange"))):
        vals = [result["test_accuracy"][a], result["translated_accuracy"][a]]
        bx.bar(x + (a - 0.5) * 0.38, [v.mean() for v in vals], 0.38, yerr=[v.std() for v in vals],
               color=color, label=name)
    bx.set_xticks(x, ["test images", "translated test images"])
    bx.set_ylim(0, 1)
    bx.set_ylabel("accuracy (mean ± std)")
    bx.set_title("after training")
    bx.legend()
    fig.tight_layout()
    return fig


def summary(result) -> str:
    t, m = result["test_accuracy"].mean(1), result["translated_accuracy"].mean(1)
    return (f"On {result['data']} ({result['n_train']} training images, means over {result['seeds']} seeds) the "
            f"plain network scores {t[0]:.1%} on the test images but {m[0]:.1%} once they are moved by "
            f"{result['shift']} pixel{'s' if result['shift'] != 1 else ''}; trained with augmentation it scores {t[1]:.1%} and {m[1]:.1%}.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
