"""
Reading weight histograms and loss curves
=========================================

When a network does not learn, the loss curve says *that* something is wrong; the
per-layer statistics say *what*. The BP texts teach to look at three things: the loss
step by step (falling, jumping, flat at the loss of a uniform guess, or exploding), the
histograms of each layer's weights and gradients (moving, frozen, or blown up), and the
activations (ReLUs that never fire, sigmoids pinned at 0 or 1).

bpnn records these during training with the :class:`bpnn.diagnostics.LayerStats`
callback -- the statistics the HTML report of ``bpnn compare`` draws -- and
:func:`bpnn.diagnostics.diagnose` turns them into verdicts in plain words that name the
layer and the epoch. Here four runs of the same 4-hidden-layer network are read side by
side, each from several seeds:

* **healthy**: ReLU, He initialization, plain SGD at :math:`\\eta = 0.1`;
* **learning rate far too high** (:math:`\\eta = 30`): the loss explodes within a few steps;
* **learning rate a little too high** (:math:`\\eta = 1`): one huge early step pushes
  the inputs of most of a layer's ReLUs below 0 for every sample -- those ReLUs *die* and
  pass no gradient, and the loss sits near :math:`\\ln 10`, the loss of a uniform guess over
  10 classes;
* **saturated sigmoid**: sigmoid units with weights drawn with std 4, so that most
  pre-activations are far from 0 where :math:`\\sigma'(s) = \\sigma(s)(1 - \\sigma(s))` is
  nearly 0, the gradient is damped at every layer and learning crawls.

What it shows: the healthy run gets no warning in any seed; each of the others is flagged
in every seed, by the verdict that names its problem -- the diverged loss with the layer
where the values broke, the dead ReLU layers, the saturated sigmoid layers. (A rate too
high is a gamble: now and then the huge step kills the ReLUs instead of overflowing, or
overflows instead of killing them. Over 8 seeds each verdict named its run in 7 or 8.)

Fast mode (the default, a few seconds): 1,000 MNIST images pooled to 14x14, 10 epochs,
3 seeds. Full mode (``BPNN_GALLERY_FULL=1``): 5,000 images at 28x28, 20 epochs, 5 seeds.
"""

# %%
# Recording
# ---------
# :class:`~bpnn.diagnostics.LayerStats` observes the first batch (the network at
# initialization) and the last batch of every epoch: each layer's output mean and
# spread, the fraction of dead ReLUs and of saturated sigmoid outputs, the
# back-propagated gradient :math:`\delta = \partial L / \partial s` and each weight
# matrix's histogram. A four-line :class:`bpnn.train.Callback` keeps the loss of every step. At
# the end, :func:`~bpnn.diagnostics.layer_statistics` runs one more forward and backward
# pass so that the gradients of the final weights can be binned with the same histogram
# helper (``bpnn.diagnostics.stats.histogram``).
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
import bpnn.data
from bpnn.diagnostics import LayerStats, diagnose, layer_statistics
from bpnn.diagnostics.stats import histogram, histogram_edges

RUNS = {
    "healthy": {"activation": bpnn.ReLU, "init": "he_normal", "lr": 0.1},
    "learning rate far too high": {"activation": bpnn.ReLU, "init": "he_normal", "lr": 30.0},
    "learning rate a little too high": {"activation": bpnn.ReLU, "init": "he_normal", "lr": 1.0},
    "saturated sigmoid": {"activation": bpnn.Sigmoid, "init": bpnn.init.Normal(std=4.0), "lr": 0.1},
}
#: the verdict that names each run's problem (None: no verdict at all)
EXPECTED = {"healthy": None, "learning rate far too high": "non_finite_loss",
            "learning rate a little too high": "dead_layer", "saturated sigmoid": "saturated_layer"}


class StepLoss(bpnn.Callback):
    """The loss of every training step (the trainer's History keeps one value per epoch)."""

    def __init__(self):
        self.losses = []

    def on_batch_end(self, batch, logs=None):
        self.losses.append(logs["loss"])


def load_data(n_train, pool):
    """MNIST (``$BPNN_MNIST_DIR`` or the cache, never downloaded) or, without it, the 8x8
    digits; a fixed random subset; ``pool``: MNIST averaged over 2x2 blocks (14x14)."""
    try:
        X, y, _, _ = bpnn.data.load_mnist(download=False)
        name = "MNIST"
    except bpnn.data.DatasetError:
        X, y = bpnn.data.load_digits()
        name, pool = "digits", False
    idx = np.random.default_rng(0).permutation(len(X))[:n_train]
    X, y = X[idx], y[idx]
    if pool:
        X = X.reshape(len(X), 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(X), -1)
        name += " 14x14"
    return name, X, y


def make_model(n_in, activation, init, seed):
    layers = []
    for _ in range(4):
        layers += [bpnn.Dense(64, init=init), activation()]
    return bpnn.Sequential([*layers, bpnn.Dense(10)], input_shape=(n_in,), seed=seed)


def train_one(X, y, cfg, epochs, seed):
    """One run: its verdicts, step losses, LayerStats records and final gradient histograms."""
    model = make_model(X.shape[1], cfg["activation"], cfg["init"], seed)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=cfg["lr"]))
    stats, steps = LayerStats(), StepLoss()
    with np.errstate(all="ignore"):  # the diverging run overflows; bpnn stops it and warns
        history = trainer.fit(X, y, epochs=epochs, batch_size=50, callbacks=[stats, steps], verbose=False)
    verdicts = diagnose(stats, history)
    end = layer_statistics(model, X[:500], y[:500])  # one pass on the final weights: their gradients
    grads = {name[:-len(".weight")]: histogram(g, 30) for name, _, g in model.named_parameters()
             if name.endswith("weight")}
    last = stats.records[-1]["layers"]
    return {"verdicts": [v.to_dict() for v in verdicts], "step_loss": np.array(steps.losses),
            "stats": stats.to_dict(), "grad_hist": grads, "stopped": history.stopped_reason,
            "dead_fraction": max((e.get("dead_fraction", 0.0) for e in last.values()), default=0.0),
            "saturation": max((e.get("saturation", 0.0) for e in last.values()), default=0.0),
            "final_loss": end["record"]["loss"]}


def run(fast: bool = True) -> dict:
    n_train, epochs, seeds = (1000, 10, 3) if fast else (5000, 20, 5)
    data, X, y = load_data(n_train, pool=fast)
    runs = {name: [train_one(X, y, cfg, epochs, s) for s in range(seeds)] for name, cfg in RUNS.items()}
    return {"data": data, "epochs": epochs, "seeds": seeds, "steps_per_epoch": -(-len(X) // 50),
            "runs": runs, "expected": EXPECTED}


# %%
# Reading the figure
# ------------------
# One row per run. Left: the loss of every step, one line per seed (log scale; the dotted
# line is :math:`\ln 10`). Middle: the weight histogram of the second hidden layer at
# initialization and at the end of each recorded stretch (light to dark: later), from
# seed 0. Right: the histogram of each hidden layer's weight gradient for the final
# weights -- a spike at 0 means the layer no longer learns. Each row's title gives the
# verdicts bpnn gave (kinds, over all seeds).
def _density(ax, h, **kw):
    counts = np.asarray(h["counts"], dtype=float)
    edges = histogram_edges(h)
    ax.stairs(counts / max(counts.sum(), 1) / np.diff(edges), edges, **kw)


def plot(result):
    names = list(result["runs"])
    fig, axes = plt.subplots(len(names), 3, figsize=(12, 2.6 * len(names)), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for row, name in zip(axes, names):
        runs = result["runs"][name]
        ax, hx, gx = row
        for r in runs:
            if len(r["step_loss"]):
                ax.plot(np.arange(1, len(r["step_loss"]) + 1), r["step_loss"], lw=0.8)
        ax.axhline(np.log(10), color="grey", ls=":", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        kinds = sorted({v["kind"] for r in runs for v in r["verdicts"]})
        ax.set_title(f"{name}: " + (", ".join(k.replace("_", " ") for k in kinds) or "no warning"),
                     fontsize=9, loc="left")
        records = runs[0]["stats"]["records"]
        layer = runs[0]["stats"]["layers"][2]["name"]  # the second hidden Dense
        with_hist = [rec for rec in records if rec["layers"].get(layer, {}).get("hist")]
        for k, rec in enumerate(with_hist):
            _density(hx, rec["layers"][layer]["hist"], color=cmap(k / max(len(with_hist) - 1, 1)), lw=1)
        hx.set_title(f"weights of layer {layer}, epoch 0 to {with_hist[-1]['epoch'] if with_hist else 0}",
                     fontsize=9)
        hx.set_xlabel("weight value")
        hx.set_ylabel("density")
        hidden = list(runs[0]["grad_hist"].items())[:-1]
        for k, (lname, h) in enumerate(hidden):
            if h is not None:
                _density(gx, h, color=plt.cm.plasma(0.85 * k / max(len(hidden) - 1, 1)), lw=1,
                         label=f"layer {lname}")
        gx.set_yscale("log")
        gx.set_title("weight gradients at the end (dark: input side)", fontsize=9)
        gx.set_xlabel("∂L/∂W")
        gx.legend(fontsize=7)
    fig.suptitle(f"{result['data']}: {result['seeds']} seeds per run", fontsize=10)
    fig.tight_layout()
    return fig


def summary(result) -> str:
    parts = []
    for name, runs in result["runs"].items():
        hits = sum(any(v["kind"] == result["expected"][name] for v in r["verdicts"]) for r in runs)
        if result["expected"][name] is None:
            clean = sum(not r["verdicts"] for r in runs)
            parts.append(f"the {name} run gets no warning in {clean} of {len(runs)} seeds")
        else:
            parts.append(f"the verdict '{result['expected'][name].replace('_', ' ')}' flags the {name} run "
                         f"in {hits} of {len(runs)} seeds")
    dead = np.mean([r["dead_fraction"] for r in result["runs"]["learning rate a little too high"]])
    sat = np.mean([r["saturation"] for r in result["runs"]["saturated sigmoid"]])
    return (f"On {result['data']}, " + "; ".join(parts) + f". At the end {dead:.0%} of the ReLUs of the worst layer are dead "
            f"when the rate is a little too high, and {sat:.0%} of the worst sigmoid layer's outputs are saturated "
            f"(means over seeds).")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
    for name, runs in result["runs"].items():
        print(f"{name}, seed 0:", *(v["message"] for v in runs[0]["verdicts"]) or ["no warning"], sep="\n  ")
