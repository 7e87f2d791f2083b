"""
Saxe et al.: deep linear networks learn in depth-independent time
=================================================================

Saxe, McClelland and Ganguli (2014, "Exact solutions to the nonlinear dynamics of
learning in deep linear neural networks") showed that a deep *linear* network — a
product of weight matrices, no activation at all — already has the hard learning
dynamics of deep nets, and that the starting weights decide how its learning time
grows with depth. From random orthogonal matrices, the time to learn stays the same
from depth 8 to depth 64; from scaled Gaussian matrices it grows with depth. We
train both on the same linear regression task at depths 8, 16, 32 and 64.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn

# %%
# Why orthogonal
# --------------
# The network computes :math:`\hat y = x\,W_1 W_2 \cdots W_L`. Backpropagation gives
# layer *l* the gradient
#
# .. math::
#
#    \frac{\partial L}{\partial W_l} = (W_1\cdots W_{l-1})^\top\, x^\top e\,
#    (W_{l+1}\cdots W_L)^\top, \qquad e = \partial L/\partial \hat y ,
#
# so the error is carried through the products of the other layers. When every
# :math:`W_l` is orthogonal (:class:`bpnn.init.Orthogonal`, ``"orthogonal"``), all
# those products are orthogonal too: every singular value is 1, every direction of
# the error reaches every layer at full strength, at any depth ("dynamical
# isometry"). Gaussian matrices with :math:`\operatorname{Var}W = 1/n` keep the
# *average* scale, but the singular values of their product spread out more with
# every factor: a few directions are amplified, many are squashed toward zero, and
# the squashed ones learn very slowly.
#
# Each of the *L* layers moves the end-to-end map :math:`W_1\cdots W_L` by about
# the same amount per step, so a deeper net takes larger steps; Saxe et al. found
# that the best learning rate scales as :math:`1/L`. We give every depth the rate
# :math:`\eta = 0.5/L`, full-batch gradient descent (:class:`bpnn.optim.SGD`,
# ``batch_size="full"``) on the mean squared error.

WIDTH, N_SAMPLES = 16, 128
ETA = 0.5
#: learned = the loss is below this fraction of the targets' mean square (the loss of
#: predicting 0), i.e. 90 % of the targets' variance explained
THRESHOLD = 0.1
GAUSSIAN = {"class_name": "normal", "config": {"std": 1 / np.sqrt(WIDTH)}}
INITS = {"orthogonal": "orthogonal", "scaled Gaussian N(0, 1/n)": GAUSSIAN}


def make_task(seed):
    """x ~ N(0, I) in 16 dimensions, y = x A with A's singular values from 3 down to 0.3
    (strong and weak input–output modes, as in Saxe et al.'s analysis)."""
    rng = np.random.default_rng(1000 + seed)
    X = rng.standard_normal((N_SAMPLES, WIDTH))
    U, _ = np.linalg.qr(rng.standard_normal((WIDTH, WIDTH)))
    V, _ = np.linalg.qr(rng.standard_normal((WIDTH, WIDTH)))
    A = U @ np.diag(np.geomspace(3.0, 0.3, WIDTH)) @ V.T
    return X.astype(np.float32), (X @ A).astype(np.float32)


def make_net(init, depth, seed):
    """``depth`` square linear layers, no bias, no activation."""
    return bpnn.Sequential([bpnn.Dense(WIDTH, init=init, use_bias=False) for _ in range(depth)],
                           input_shape=(WIDTH,), seed=seed)


class StopWhenLearned(bpnn.Callback):
    """Records the first epoch whose training loss is at most ``goal`` and stops there."""

    def __init__(self, goal):
        self.goal, self.epoch = goal, None

    def on_epoch_end(self, epoch, logs=None):
        if logs["loss"] <= self.goal:
            self.epoch = epoch + 1
            self.trainer.stop_training = True


# %%
# The experiment
# --------------
# For every depth, initialization and seed we train until the loss falls below 10 % of
# the targets' mean square, or until a cap on the epochs (a run that hits the cap
# counts as "not learned within the cap": its time is at least the cap). The
# orthogonal nets all learn within the cap; the Gaussian ones get a smaller cap in the
# fast mode, as they would run for thousands of epochs.


def run(fast: bool = True) -> dict:
    seeds = [0, 1, 2] if fast else list(range(6))
    depths = [8, 16, 32, 64]
    caps = {"orthogonal": 400, "scaled Gaussian N(0, 1/n)": 300 if fast else 2000}
    out = {"seeds": seeds, "depths": depths, "inits": list(INITS), "caps": caps, "epochs": {},
           "curves": {}}
    for label, init in INITS.items():
        for depth in depths:
            times, curves = [], []
            for seed in seeds:
                X, Y = make_task(seed)
                stop = StopWhenLearned(THRESHOLD * float(np.mean(Y ** 2)))
                trainer = bpnn.Trainer(make_net(init, depth, seed), loss="mse", metrics=[],
                                       optimizer=bpnn.optim.SGD(lr=ETA / depth))
                history = trainer.fit(X, Y, epochs=caps[label], batch_size="full", callbacks=[stop],
                                      verbose=False)
                times.append(stop.epoch if stop.epoch is not None else np.inf)
                curves.append(np.array(history["loss"]) / float(np.mean(Y ** 2)))
            out["epochs"][label, depth] = np.array(times, dtype=float)
            out["curves"][label, depth] = curves
    return out


# %%
# Learning time against depth
# ---------------------------
# Left: the loss (relative to the targets' mean square) along training for the
# shallowest and the deepest nets; the dotted line is the "learned" threshold.
# Right: epochs to reach it, mean and min–max over seeds; a triangle marks runs that
# had not learned when they reached the cap.


def plot(result):
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    styles = {result["depths"][0]: "-", result["depths"][-1]: "--"}
    for k, label in enumerate(result["inits"]):
        for depth, style in styles.items():
            for i, curve in enumerate(result["curves"][label, depth]):
                left.plot(np.arange(1, len(curve) + 1), curve, style, color=f"C{k}", lw=1,
                          label=f"{label}, depth {depth}" if i == 0 else None)
        times = np.array([result["epochs"][label, d] for d in result["depths"]])
        learned = np.isfinite(times)
        shown = np.where(learned, times, result["caps"][label])
        right.plot(result["depths"], shown.mean(1), "o-", color=f"C{k}", label=label)
        right.fill_between(result["depths"], shown.min(1), shown.max(1), color=f"C{k}", alpha=0.25)
        capped = ~learned.all(1)
        right.plot(np.array(result["depths"])[capped], shown.mean(1)[capped], "^", color=f"C{k}",
                   ms=10, label=f"{label}: not learned by the cap" if capped.any() else None)
    left.axhline(THRESHOLD, color="k", ls=":", lw=1)
    left.set_yscale("log")
    left.set_xlabel("epoch")
    left.set_ylabel("loss / mean square of the targets")
    left.set_title(f"Learning curves ({len(result['seeds'])} seeds each)")
    left.legend(fontsize=8)
    right.set_xscale("log", base=2)
    right.set_xticks(result["depths"], [str(d) for d in result["depths"]])
    right.set_xlabel("depth (linear layers)")
    right.set_ylabel(f"epochs to loss ≤ {THRESHOLD:g} × mean square")
    right.set_title("Learning time against depth (lr = 0.5 / depth)")
    right.legend(fontsize=8)
    return fig


# %%
# What it shows
# -------------


def summary(result):
    d0, d1 = result["depths"][0], result["depths"][-1]
    orth = np.array([result["epochs"]["orthogonal", d].mean() for d in result["depths"]])
    gauss = "scaled Gaussian N(0, 1/n)"
    n = len(result["seeds"])
    counts = ", ".join(f"{int(np.isfinite(result['epochs'][gauss, d]).sum())} at depth {d}"
                       for d in result["depths"])
    gauss_text = f"learned within {result['caps'][gauss]} epochs in (runs out of {n}) {counts}"
    return (f"With orthogonal initialization the epochs to learn stay flat from depth {d0} to {d1} "
            f"({', '.join(f'{t:.0f}' for t in orth)}; largest / smallest = {orth.max() / orth.min():.2f}), "
            f"while the scaled Gaussian nets {gauss_text}; at depth {d1} their loss is still "
            f"{np.mean([c[-1] for c in result['curves'][gauss, d1]]):.2f} of the targets' mean square when "
            f"they stop.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
