"""
Activation histograms over depth
================================

How the scale of the initial weights shapes what each layer outputs, in the manner of
the from-scratch book's chapter 6: 1000 random inputs pass through 5 layers of 100
units (no training), and we look at the histogram of each layer's activations.
Sigmoid units with weights of std 1 saturate at 0 and 1, with std 0.01 they all
output about 0.5, with Xavier's scale they stay spread over all five layers; ReLU
units shrink layer after layer with Xavier's scale and keep their scale with He's.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
from bpnn.diagnostics import Probe

# %%
# The five set-ups
# ----------------
# Each layer is :math:`h^{(l)} = f(h^{(l-1)} W^{(l)})` (no bias, as in the book) with
# :math:`W^{(l)}` drawn from:
#
# * a normal with std 1 (``{"class_name": "normal", "config": {"std": 1.0}}``): the
#   pre-activation :math:`s = \sum_{i=1}^{100} h_i W_i` has a std of several units,
#   so sigmoid outputs pile up at 0 and 1, where :math:`\sigma'(s) \approx 0`: the
#   gradient cannot pass (saturation);
# * a normal with std 0.01 (``"small_normal"``, the BP texts' "small random
#   numbers"): :math:`s \approx 0`, every sigmoid outputs about
#   :math:`\sigma(0) = 0.5`: no saturation, but the units hardly differ — the network
#   has little to express, and the backpropagated error, scaled by about
#   :math:`\sqrt{n}\cdot 0.01\cdot\sigma'(0) = 0.025` per layer, fades away;
# * Xavier (``"xavier_normal"``, :class:`bpnn.init.XavierNormal`):
#   :math:`\operatorname{Var} W = 2/(n_\text{in} + n_\text{out})`. Here every layer is
#   100 → 100, so this is also :math:`1/n_\text{in}`, the std
#   :math:`\sqrt{1/n}` that the from-scratch book calls "Xavier" — which is in fact
#   LeCun's initialization (``"lecun_normal"``); the two differ when the fans differ;
# * ReLU with the same Xavier scale: a ReLU zeroes half its inputs, so it halves the
#   second moment, :math:`E[h^2] = \tfrac12 \operatorname{Var} s`, and with
#   :math:`\operatorname{Var} W = 1/n` the activations shrink by about
#   :math:`1/\sqrt2` per layer;
# * ReLU with He's scale (``"he_normal"``, :math:`\operatorname{Var} W = 2/n_\text{in}`),
#   which doubles the variance to make up for that half: the scale is kept.

N_SAMPLES, WIDTH, DEPTH = 1000, 100, 5

CASES = {
    "sigmoid, std 1": ("sigmoid", {"class_name": "normal", "config": {"std": 1.0}}),
    "sigmoid, std 0.01": ("sigmoid", "small_normal"),
    "sigmoid, Xavier": ("sigmoid", "xavier_normal"),
    "ReLU, Xavier": ("relu", "xavier_normal"),
    "ReLU, He": ("relu", "he_normal"),
}


def make_net(activation, init, seed):
    """5 layers of 100 units, no bias, every weight from ``init``."""
    layers = []
    for _ in range(DEPTH):
        layers += [bpnn.Dense(WIDTH, init=init, use_bias=False), bpnn.nn.layers.get(activation)]
    return bpnn.Sequential(layers, input_shape=(WIDTH,), seed=seed)


# %%
# Measuring
# ---------
# A :class:`bpnn.diagnostics.Probe` reports, during one forward pass, each layer's
# output mean and std and, for sigmoid layers, the fraction of *saturated* outputs
# (derivative below 5 % of its peak: :math:`h < 0.013` or :math:`h > 0.987`). The
# histograms themselves come from running the layers one by one. Each set-up is drawn
# from several seeds (new weights and new inputs each time).

BINS = {"sigmoid": np.linspace(0, 1, 31), "relu": np.linspace(0, 3, 31)}


def run(fast: bool = True) -> dict:
    seeds = [0, 1, 2] if fast else list(range(10))
    out = {"seeds": seeds, "cases": list(CASES), "std": {}, "saturation": {}, "hist": {}}
    for label, (activation, init) in CASES.items():
        stds, sats, hists = [], [], []
        for seed in seeds:
            x = np.random.default_rng(seed).standard_normal((N_SAMPLES, WIDTH)).astype(np.float32)
            model = make_net(activation, init, seed)
            with Probe(model) as probe:
                model.forward(x)
            act_names = [str(2 * k + 1) for k in range(DEPTH)]  # the activation layers
            stds.append([probe.entries[n]["out_std"] for n in act_names])
            sats.append([probe.entries[n].get("saturation", 0.0) for n in act_names])
            h, counts = x, []
            for layer in model.layers:
                h = layer.forward(h)
                if not isinstance(layer, bpnn.Dense):
                    counts.append(np.histogram(np.clip(h, 0, BINS[activation][-1]), BINS[activation])[0])
            hists.append(counts)
        out["std"][label] = np.array(stds)
        out["saturation"][label] = np.array(sats)
        out["hist"][label] = np.array(hists, dtype=float) / (N_SAMPLES * WIDTH)
    return out


# %%
# The histograms
# --------------
# One row per set-up, one column per layer: the fraction of the 100 000 activations
# in each bin (mean over seeds; the black ticks are min–max over seeds). ReLU's bar at
# 0 holds the half of the outputs that the ReLU cuts off; ReLU values above 3 are
# counted in the last bin.


def plot(result):
    cases = result["cases"]
    fig = plt.figure(figsize=(12, 2.0 * (len(cases) + 1.5)), layout="constrained")
    grid = fig.add_gridspec(len(cases) + 1, DEPTH, height_ratios=[1] * len(cases) + [1.5])
    for r, label in enumerate(cases):
        activation = CASES[label][0]
        edges = BINS[activation]
        centers, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        hist = result["hist"][label]
        row = None
        for layer in range(DEPTH):
            ax = fig.add_subplot(grid[r, layer], sharey=row)
            row = row or ax
            h = hist[:, layer]
            ax.bar(centers, h.mean(0), width=width, color=f"C{r}")
            ax.vlines(centers, h.min(0), h.max(0), color="k", lw=0.6)
            ax.set_title(f"{label}: layer {layer + 1}", fontsize=8)
            ax.set_xlabel("activation", fontsize=8)
            if layer == 0:
                ax.set_ylabel("fraction", fontsize=8)
    # the bottom row: the std of each layer's activations, mean ± std over seeds
    ax = fig.add_subplot(grid[-1, :])
    layers = np.arange(1, DEPTH + 1)
    for r, label in enumerate(cases):
        s = result["std"][label]
        ax.plot(layers, s.mean(0), "o-", color=f"C{r}", label=label)
        ax.fill_between(layers, s.mean(0) - s.std(0), s.mean(0) + s.std(0), color=f"C{r}", alpha=0.25)
    ax.set_yscale("log")
    ax.set_xticks(layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("std of the activations")
    ax.set_title(f"Activation std per layer (mean ± std over {len(result['seeds'])} seeds)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# %%
# What it shows
# -------------


def summary(result):
    def sat(label, layer=-1):
        return float(result["saturation"][label][:, layer].mean())

    def std(label, layer):
        return float(result["std"][label][:, layer].mean())

    shrink = std("ReLU, Xavier", -1) / std("ReLU, Xavier", 0)
    keep = std("ReLU, He", -1) / std("ReLU, He", 0)
    return (f"Sigmoid with std 1: {sat('sigmoid, std 1', 0):.0%} of layer 1's and "
            f"{sat('sigmoid, std 1'):.0%} of layer 5's outputs are saturated; with std 0.01 the outputs "
            f"collapse to 0.5 (std {std('sigmoid, std 0.01', -1):.3f} at layer 5), with Xavier they stay "
            f"spread (std {std('sigmoid, Xavier', -1):.3f}, none saturated). ReLU's activation std from "
            f"layer 1 to layer 5 falls to {shrink:.2f}× with Xavier (≈ (1/√2)⁴ = 0.25) and stays at "
            f"{keep:.2f}× with He.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
