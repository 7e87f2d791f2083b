"""
The LeNet-5 case study
======================

LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998) is the network every BP text ends with:
two convolution + subsampling stages that learn their own features from the pixels,
then three fully connected layers, trained end to end by backpropagation on
handwritten digits. We build it from :class:`bpnn.nn.Conv2D`, :class:`bpnn.nn.MaxPool2D`
and :class:`bpnn.nn.Dense`, train it on a slice of MNIST from several seeds, and read
the result the way the case study does: learning curves, test error, the confusion
matrix and the digits it gets wrong.

The full run — all 60,000 training images, 10 epochs, about 1 % test error — is
``examples/lenet5_mnist.py``, and ``benchmarks/lenet5_accuracy.py`` compares its test
error with the 0.95 % of LeCun et al. (1998).
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
import bpnn.data
from bpnn.plotting import confusion_matrix

# %%
# The data
# --------
# :func:`bpnn.data.load_mnist` reads the MNIST files from ``$BPNN_MNIST_DIR`` or the
# cache (``download=False``: nothing is fetched here). Without them the lesson falls
# back to scikit-learn's 8×8 digits, which are too small for LeNet-5's 5×5 kernels and
# two poolings, so it then trains a smaller LeNet-style network (3×3 kernels, "same"
# padding, 16 and 32 maps); the result says which ran. The fast mode uses a slice of
# MNIST (800 training and 500 test images, 3 epochs, 3 seeds); the full mode
# (``BPNN_GALLERY_FULL=1``) 10,000 of each, 10 epochs and 5 seeds, which takes several
# minutes on two cores.


def load(fast):
    try:
        X, y, X_test, y_test = bpnn.data.load_mnist(download=False, flatten=False)
        n_train, n_test = (800, 500) if fast else (10000, 10000)
        return "mnist", X[:n_train], y[:n_train], X_test[:n_test], y_test[:n_test]
    except bpnn.data.DatasetError:
        X, y = bpnn.data.load_digits()
        X_train, X_test, y_train, y_test = bpnn.data.train_test_split(X.reshape(-1, 1, 8, 8), y, seed=0)
        return "digits", X_train, y_train, X_test, y_test


# %%
# The network
# -----------
# LeNet-5 in its common modern form (ReLU units and max pooling in place of the
# paper's scaled tanh and trainable subsampling): 6 feature maps of 5×5 kernels over
# the 28×28 image (padded by 2, as the paper's 32×32 input), 2×2 pooling, 16 maps of
# 5×5, pooling, then 120, 84 and 10 units. Every output unit of a feature map shares
# one kernel (lesson 14), which is why the first layer has 156 parameters.

nn = bpnn.nn


def lenet5(seed):
    return bpnn.Sequential([
        nn.Conv2D(6, 5, padding=2, init="he_uniform"), nn.ReLU(), nn.MaxPool2D(2),   # 6@28×28 → 6@14×14
        nn.Conv2D(16, 5, init="he_uniform"), nn.ReLU(), nn.MaxPool2D(2),             # 16@10×10 → 16@5×5
        nn.Flatten(), nn.Dense(120, init="he_uniform"), nn.ReLU(),
        nn.Dense(84, init="he_uniform"), nn.ReLU(), nn.Dense(10)], input_shape=(1, 28, 28), seed=seed)


def lenet_small(seed):
    """LeNet-style for 8×8 images: 3×3 kernels with "same" padding, two 2×2 poolings."""
    return bpnn.Sequential([
        nn.Conv2D(16, 3, padding="same", init="he_uniform"), nn.ReLU(), nn.MaxPool2D(2),  # 16@8×8 → 16@4×4
        nn.Conv2D(32, 3, padding="same", init="he_uniform"), nn.ReLU(), nn.MaxPool2D(2),  # 32@4×4 → 32@2×2
        nn.Flatten(), nn.Dense(120, init="he_uniform"), nn.ReLU(),
        nn.Dense(84, init="he_uniform"), nn.ReLU(), nn.Dense(10)], input_shape=(1, 8, 8), seed=seed)


# %%
# Training and a baseline
# -----------------------
# Adam on mini-batches (MNIST: lr 3·10⁻³, batches of 32; the 8×8 digits: 2·10⁻³, 16),
# from several seeds, then the test images. For scale we also train the simplest
# classifier on the same pixels,
# multinomial logistic regression (one Dense layer into the softmax): what the
# convolutions add is the gap between the two.


def run(fast: bool = True) -> dict:
    data, X, y, X_test, y_test = load(fast)
    seeds = [0, 1, 2] if fast else [0, 1, 2, 3, 4]
    epochs = (3 if data == "mnist" else 12) if fast else (10 if data == "mnist" else 30)
    build, lr, batch_size = (lenet5, 3e-3, 32) if data == "mnist" else (lenet_small, 2e-3, 16)
    curves, test_acc, logistic_acc = [], [], []
    for seed in seeds:
        model = build(seed)
        trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=lr))
        history = trainer.fit(X, y, epochs=epochs, batch_size=batch_size, verbose=False)
        curves.append({k: np.array(history[k]) for k in ("loss", "accuracy")})
        predicted = model.predict(X_test).argmax(axis=1)
        test_acc.append(float(np.mean(predicted == y_test)))
        if seed == seeds[0]:
            first_predicted = predicted
        logistic = bpnn.Sequential([nn.Flatten(), nn.Dense(10)], input_shape=X.shape[1:], seed=seed)
        bpnn.Trainer(logistic, optimizer=bpnn.optim.Adam(lr=1e-2)).fit(X, y, epochs=30, batch_size=32,
                                                                        verbose=False)
        logistic_acc.append(float(np.mean(logistic.predict(X_test).argmax(axis=1) == y_test)))
    confusion, _ = confusion_matrix(y_test, first_predicted, labels=np.arange(10))
    wrong = np.flatnonzero(first_predicted != y_test)
    return {"data": data, "n_train": len(X), "n_test": len(X_test), "epochs": epochs, "seeds": seeds,
            "n_parameters": build(0).num_parameters(), "curves": curves, "test_accuracy": np.array(test_acc),
            "logistic_accuracy": np.array(logistic_acc), "chance": 0.1, "confusion": confusion,
            "misclassified": {"images": X_test[wrong[:10], 0], "true": y_test[wrong[:10]],
                              "predicted": first_predicted[wrong[:10]], "count": len(wrong)}}


# %%
# What it shows
# -------------
# Top left: training loss and training accuracy per epoch, mean over seeds with min–max
# bands, and the test accuracies the runs end with. Top right: the confusion matrix of the first seed's network (rows: true digit,
# columns: predicted); the off-diagonal cells name the confusions the network makes
# (a 4 read as a 9 is the classic one). Bottom: misclassified test digits, true →
# predicted. Even on a small slice of the data the learned features beat logistic
# regression on raw pixels; the full run of ``examples/lenet5_mnist.py`` goes on to
# about 1 % error.


def plot(result):
    fig = plt.figure(figsize=(12, 8.5))
    grid = fig.add_gridspec(3, 10, height_ratios=[3, 3, 2])
    ax1 = fig.add_subplot(grid[:2, :5])
    epochs = np.arange(1, result["epochs"] + 1)
    loss = np.array([c["loss"] for c in result["curves"]])
    ax1.plot(epochs, loss.mean(axis=0), "o-", color="tab:red", label="training loss")
    ax1.fill_between(epochs, loss.min(axis=0), loss.max(axis=0), color="tab:red", alpha=0.2)
    ax1.set(xlabel="epoch", ylabel="training loss (cross-entropy)",
            title=f"LeNet on {'MNIST' if result['data'] == 'mnist' else '8×8 digits'}: {result['n_train']} "
                  f"training images, {len(result['seeds'])} seeds")
    ax1.set_xticks(epochs)
    twin = ax1.twinx()
    acc = 100 * np.array([c["accuracy"] for c in result["curves"]])
    twin.plot(epochs, acc.mean(axis=0), "o-", color="tab:blue", label="training accuracy")
    twin.fill_between(epochs, acc.min(axis=0), acc.max(axis=0), color="tab:blue", alpha=0.2)
    test = 100 * result["test_accuracy"]
    spread = [[test.mean() - test.min()], [test.max() - test.mean()]]
    twin.errorbar([epochs[-1] + 0.15], [test.mean()], yerr=spread, fmt="s", color="tab:green", capsize=3,
                  label="test accuracy (min–max)")
    twin.axhline(100 * result["logistic_accuracy"].mean(), color="tab:gray", ls="--",
                 label="logistic regression, test")
    twin.set_ylabel("accuracy (%)")
    lines = ax1.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    twin.legend(lines[0] + more[0], lines[1] + more[1], loc="center right")
    ax2 = fig.add_subplot(grid[:2, 5:])
    c = result["confusion"]
    ax2.imshow(np.log1p(c), cmap="Blues")
    for i in range(10):
        for j in range(10):
            if c[i, j]:
                ax2.text(j, i, str(c[i, j]), ha="center", va="center", fontsize=7,
                         color="white" if i == j else "black")
    ax2.set(xticks=range(10), yticks=range(10), xlabel="predicted digit", ylabel="true digit",
            title=f"confusion matrix, seed {result['seeds'][0]} ({result['n_test']} test images)")
    wrong = result["misclassified"]
    for k in range(10):
        ax = fig.add_subplot(grid[2, k])
        ax.axis("off")
        if k < len(wrong["true"]):
            ax.imshow(wrong["images"][k], cmap="gray_r")
            ax.set_title(f"{wrong['true'][k]} → {wrong['predicted'][k]}", fontsize=9)
    fig.tight_layout()
    return fig


def summary(result) -> str:
    acc, logistic = 100 * result["test_accuracy"], 100 * result["logistic_accuracy"]
    data = "MNIST" if result["data"] == "mnist" else "the 8×8 digits (MNIST not found; a smaller LeNet-style net)"
    return (f"On {data}, {result['n_train']} training images and {result['epochs']} epochs, LeNet reaches "
            f"{acc.mean():.1f} ± {acc.std():.1f} % test accuracy ({100 - acc.mean():.1f} % error, "
            f"{len(result['seeds'])} seeds) against {logistic.mean():.1f} ± {logistic.std():.1f} % for logistic "
            f"regression and 10 % for chance; {result['misclassified']['count']} of {result['n_test']} test "
            f"images are misclassified by the first seed's network.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
