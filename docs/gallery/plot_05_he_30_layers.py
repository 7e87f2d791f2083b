"""
He et al.: a 30-layer ReLU network
==================================

He, Zhang, Ren and Sun (2015, "Delving deep into rectifiers") derived the
initialization for ReLU networks, :math:`\\operatorname{Var}W = 2/n_\\text{in}`, and showed
its effect on a 30-layer ReLU net: with it the net trains, with the Xavier scale
:math:`1/n_\\text{in}` it does not move at all. We build the same 30-layer ReLU
stack on the 8×8 digits, look at the activations' scale through the layers at
initialization, and train it from both initializations over several seeds.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
from bpnn.data import load_digits
from bpnn.diagnostics import LayerStats, diagnose, layer_statistics

# %%
# Why 2/n
# -------
# A ReLU passes the positive half of a symmetric pre-activation :math:`s` and zeroes
# the rest, so the second moment of its output is half the variance of its input:
# :math:`E[h^2] = \tfrac12 \operatorname{Var}s`. The next pre-activation then has
#
# .. math::
#
#    \operatorname{Var}s^{(l+1)} = n_\text{in}\operatorname{Var}W\; E[h^2]
#    = \tfrac12\, n_\text{in}\operatorname{Var}W\; \operatorname{Var}s^{(l)} .
#
# With :math:`\operatorname{Var}W = 2/n_\text{in}` (:class:`bpnn.init.HeNormal`,
# ``"he_normal"``) the factor is 1 and the signal keeps its scale through any depth.
# With :math:`1/n_\text{in}` it is 1/2: the std shrinks by :math:`1/\sqrt2` per layer,
# :math:`(1/\sqrt2)^{29} \approx 4\cdot10^{-5}` from layer 1 to layer 30, and the
# gradients shrink the same way on their way back. He et al. call this scale
# "Xavier" (it is also what the from-scratch book calls Xavier; strictly it is
# LeCun's). Our hidden layers are all 64 → 64, where Glorot's
# :math:`2/(n_\text{in}+n_\text{out})` is exactly :math:`1/n_\text{in}`, so we use
# ``"xavier_normal"`` itself.

WIDTH, DEPTH = 64, 30
INITS = {"Xavier (1/n)": "xavier_normal", "He (2/n)": "he_normal"}


def make_net(init, seed):
    """64 inputs → 30 ReLU layers of 64 units → 10 outputs."""
    layers = []
    for _ in range(DEPTH):
        layers += [bpnn.Dense(WIDTH, init=init), bpnn.ReLU()]
    layers.append(bpnn.Dense(10, init=init))
    return bpnn.Sequential(layers, input_shape=(64,), seed=seed)


# %%
# The experiment
# --------------
# For each seed and initialization we take the std of every ReLU layer's output on a
# batch of 256 digits at initialization (:func:`bpnn.diagnostics.layer_statistics`),
# then train with SGD + momentum (:class:`bpnn.optim.SGD`, lr 0.002, momentum 0.9,
# mini-batches of 32) while :class:`bpnn.diagnostics.LayerStats` watches, and ask
# :func:`bpnn.diagnostics.diagnose` for its verdicts. The fast mode trains on 768
# digits for 6 epochs; the full mode on all 1797 for 12.


def run(fast: bool = True) -> dict:
    X, y = load_digits()
    seeds = [0, 1, 2] if fast else list(range(6))
    n_train, epochs = (768, 6) if fast else (len(X), 12)
    out = {"seeds": seeds, "epochs": epochs, "n_train": n_train, "inits": list(INITS), "act_std": {},
           "loss": {}, "accuracy": {}, "verdicts": {}}
    for label, init in INITS.items():
        stds, losses, accs, verdicts = [], [], [], []
        for seed in seeds:
            order = np.random.default_rng(seed).permutation(len(X))
            train = order[:n_train]
            model = make_net(init, seed)
            at_init = layer_statistics(model, X[order[:256]], y[order[:256]])
            stds.append([at_init["record"]["layers"][d["name"]]["out_std"]
                         for d in at_init["layers"] if d["kind"] == "relu"])
            stats = LayerStats(every=2, bins=0)
            trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.002, momentum=0.9))
            history = trainer.fit(X[train], y[train], epochs=epochs, batch_size=32, callbacks=[stats],
                                  verbose=False)
            losses.append([at_init["record"]["loss"], *history["loss"]])
            accs.append(history["accuracy"][-1])
            verdicts.append(sorted({v.kind for v in diagnose(stats, history)}))
        out["act_std"][label] = np.array(stds)
        out["loss"][label] = np.array(losses)
        out["accuracy"][label] = np.array(accs)
        out["verdicts"][label] = verdicts
    return out


# %%
# Scale through the layers, and training
# --------------------------------------
# Left: the std of each ReLU layer's output at initialization, with the
# :math:`(1/\sqrt2)^{l-1}` line the argument above predicts for the Xavier scale.
# Right: the training loss, epoch 0 being the loss at initialization; the dotted line
# is :math:`\ln 10`, the loss of a uniform guess over the ten digits. Lines are means
# over seeds, bands min–max.


def plot(result):
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    layers = np.arange(1, DEPTH + 1)
    for k, label in enumerate(result["inits"]):
        s = result["act_std"][label]
        left.plot(layers, s.mean(0), color=f"C{k}", label=label)
        left.fill_between(layers, s.min(0), s.max(0), color=f"C{k}", alpha=0.25)
        loss = result["loss"][label]
        epochs = np.arange(loss.shape[1])
        right.plot(epochs, loss.mean(0), "o-", color=f"C{k}", label=label)
        right.fill_between(epochs, loss.min(0), loss.max(0), color=f"C{k}", alpha=0.25)
    first = result["act_std"][result["inits"][0]][:, 0].mean()
    left.plot(layers, first * 2.0 ** (-(layers - 1) / 2), "k:", lw=1, label="(1/√2)^(l−1), predicted")
    left.set_yscale("log")
    left.set_xlabel("ReLU layer")
    left.set_ylabel("std of the layer's output")
    left.set_title(f"Activation scale at initialization ({len(result['seeds'])} seeds)")
    left.legend(fontsize=8)
    right.axhline(np.log(10), color="k", ls=":", lw=1, label="ln 10 (uniform guess)")
    right.set_xlabel("epoch")
    right.set_ylabel("training loss (cross-entropy)")
    right.set_title(f"Training a {DEPTH}-layer ReLU net ({result['n_train']} digits)")
    right.legend(fontsize=8)
    return fig


# %%
# What it shows
# -------------


def summary(result):
    xav, he = result["inits"]

    def ratio(label):
        s = result["act_std"][label]
        return float((s[:, -1] / s[:, 0]).mean())

    def drop(label):
        loss = result["loss"][label]
        return float((loss[:, 0] - loss[:, -1]).mean())

    stalled = sum("loss_plateau" in kinds or "vanishing_gradients" in kinds for kinds in result["verdicts"][xav])
    return (f"From layer 1 to layer {DEPTH} the activation std falls to {ratio(xav):.1e}× with the Xavier "
            f"scale and stays at {ratio(he):.2f}× with He's; in {result['epochs']} epochs the He net's loss "
            f"drops by {drop(he):.2f} (to {result['loss'][he][:, -1].mean():.2f}, training accuracy "
            f"{result['accuracy'][he].mean():.0%}) while the Xavier net's stays at ln 10 ≈ 2.30 (it changes by "
            f"{-drop(xav):+.3f}; bpnn's verdicts: vanishing gradients or plateau in {stalled}/"
            f"{len(result['seeds'])} seeds).")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
