"""
Glorot & Bengio: the variance of the back-propagated gradients
==============================================================

Glorot and Bengio (2010, "Understanding the difficulty of training deep feedforward
neural networks") asked how the variance of the back-propagated gradient changes from
layer to layer of a tanh network. With the then "standard" initialization
:math:`W \\sim U[-1/\\sqrt{n}, 1/\\sqrt{n}]` it shrinks toward the input; with their
*normalized* initialization — now called Xavier or Glorot — it stays about the same in
every layer. We repeat their measurement on a network with 5 hidden tanh layers, at
initialization, over several seeds.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
from bpnn.data import load_digits
from bpnn.diagnostics import layer_statistics

# %%
# The argument
# ------------
# Near zero, :math:`\tanh'(s) \approx 1`, so the network is almost linear and the
# back-propagated gradient :math:`\delta^{(l-1)} = \delta^{(l)} W^{(l)\top} \odot f'`
# has variance
#
# .. math::
#
#    \operatorname{Var}\delta^{(l-1)} \approx n_{\text{out}}\,\operatorname{Var}W^{(l)}\;
#    \operatorname{Var}\delta^{(l)} .
#
# The standard init has :math:`\operatorname{Var}W = \frac{1}{3n}` (the variance of
# :math:`U[-a, a]` is :math:`a^2/3`), so every layer multiplies the gradient variance by
# about 1/3. Keeping it constant needs :math:`n_\text{out}\operatorname{Var}W = 1`,
# and keeping the forward activations constant needs
# :math:`n_\text{in}\operatorname{Var}W = 1`; Glorot and Bengio take the compromise
#
# .. math::
#
#    \operatorname{Var}W = \frac{2}{n_\text{in} + n_\text{out}}, \qquad
#    W \sim U\Bigl[-\sqrt{\tfrac{6}{n_\text{in}+n_\text{out}}},\;
#    \sqrt{\tfrac{6}{n_\text{in}+n_\text{out}}}\Bigr],
#
# which is :class:`bpnn.init.XavierUniform` (``"xavier_uniform"``). The standard
# init is the variance-scaling initializer with scale 1/3 over fan-in, uniform
# (:class:`bpnn.init.VarianceScaling`).

STANDARD = {"class_name": "variance_scaling", "config": {"scale": 1 / 3, "mode": "fan_in", "distribution": "uniform"}}
INITS = {"standard U[−1/√n, 1/√n]": STANDARD, "normalized (Xavier)": "xavier_uniform"}
DEPTH = 5


def make_net(init, width, seed):
    """64 inputs → 5 tanh layers of ``width`` units → 10 outputs, all weights from ``init``."""
    layers = []
    for _ in range(DEPTH):
        layers += [bpnn.Dense(width, init=init), bpnn.Tanh()]
    layers.append(bpnn.Dense(10, init=init))
    return bpnn.Sequential(layers, input_shape=(64,), seed=seed)


# %%
# Measuring
# ---------
# :func:`bpnn.diagnostics.layer_statistics` runs one forward and backward pass on 400
# digits and records, for every Dense layer, the std of the back-propagated gradient
# :math:`\delta = \partial L/\partial s` (``delta_std``) and the std of the weight
# gradient :math:`\partial L/\partial W` (``grad_std``); we square them. The paper used
# 1000 units per layer; the fast mode uses 256 (the factor 1/3 per layer does not
# depend on the width), the full mode 1000.


def run(fast: bool = True) -> dict:
    X, y = load_digits()
    width = 256 if fast else 1000
    seeds = [0, 1, 2] if fast else list(range(10))
    out = {"width": width, "seeds": seeds, "inits": list(INITS), "delta_var": {}, "weight_grad_var": {},
           "spread": {}}
    for label, init in INITS.items():
        deltas, grads = [], []
        for seed in seeds:
            batch = np.random.default_rng(seed).choice(len(X), 400, replace=False)
            stats = layer_statistics(make_net(init, width, seed), X[batch], y[batch])
            hidden = [d["name"] for d in stats["layers"] if d["kind"] == "dense"][:-1]
            record = stats["record"]["layers"]
            deltas.append([record[name]["delta_std"] ** 2 for name in hidden])
            grads.append([record[name]["grad_std"] ** 2 for name in hidden])
        out["delta_var"][label] = np.array(deltas)
        out["weight_grad_var"][label] = np.array(grads)
        # the paper's question in one number per seed: largest over smallest layer variance
        out["spread"][label] = out["delta_var"][label].max(1) / out["delta_var"][label].min(1)
    return out


# %%
# Layer by layer
# --------------
# Left, the variance of the back-propagated gradient in each hidden layer (layer 1
# next to the input): it falls by about 3× per layer toward the input with the
# standard init and stays flat with Xavier's. Right, the variance of the weight
# gradients :math:`\partial L/\partial W^{(l)} = h^{(l-1)\top}\delta^{(l)}`: with the
# standard init it is about the same in every layer even though :math:`\delta`
# shrinks, because the activations :math:`h` shrink by the same 1/3 per layer in the
# other direction — as the paper points out, so the trouble is not visible in the
# weight gradients at initialization. Lines are means over seeds, bands min–max.


def plot(result):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    layers = np.arange(1, DEPTH + 1)
    for key, ax, what in (("delta_var", axes[0], "Var(∂L/∂s), back-propagated gradient"),
                          ("weight_grad_var", axes[1], "Var(∂L/∂W), weight gradient")):
        for k, label in enumerate(result["inits"]):
            v = result[key][label]
            ax.plot(layers, v.mean(0), "o-", color=f"C{k}", label=label)
            ax.fill_between(layers, v.min(0), v.max(0), color=f"C{k}", alpha=0.25)
        ax.set_yscale("log")
        ax.set_xticks(layers)
        ax.set_xlabel("hidden layer (1 = next to the input)")
        ax.set_ylabel(what)
        ax.set_title(f"{what.split(', ')[1].capitalize()} variance, tanh 5×{result['width']}, "
                     f"{len(result['seeds'])} seeds", fontsize=10)
        ax.legend(fontsize=8)
    return fig


# %%
# What it shows
# -------------


def summary(result):
    std, xav = (result["spread"][label] for label in result["inits"])
    return (f"Across the 5 tanh layers the back-propagated gradient variance varies by a factor "
            f"{std.mean():.0f} (min–max over seeds {std.min():.0f}–{std.max():.0f}) with the standard "
            f"U[−1/√n, 1/√n] init and only {xav.mean():.2f} ({xav.min():.2f}–{xav.max():.2f}) with "
            f"Xavier's normalized init, as Glorot & Bengio found.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
