"""
Vanishing gradients over depth
==============================

Backpropagation multiplies the error by one factor per layer on its way back to the
input. When those factors are below one — a sigmoid's derivative is at most 1/4 — the
gradient reaching the first layers shrinks geometrically with depth, and those layers
barely learn: the *vanishing gradient*. We measure the gradient of every layer of
plain sigmoid nets, ReLU nets with He initialization, sigmoid nets with batch
normalization and ReLU nets with residual connections, at depths 5, 10 and 20, and
read bpnn's health verdict on each.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
from bpnn.data import load_digits
from bpnn.diagnostics import diagnose, layer_statistics

# %%
# The factor per layer
# --------------------
# For a layer :math:`h^{(l)} = f(s^{(l)})`, :math:`s^{(l)} = h^{(l-1)} W^{(l)} + b^{(l)}`,
# the backpropagated error is
#
# .. math::
#
#    \delta^{(l-1)} = \bigl(\delta^{(l)} W^{(l)\top}\bigr) \odot f'(s^{(l-1)}),
#
# so each layer multiplies its size by about :math:`\sqrt{n\,\operatorname{Var}W}`
# times a typical :math:`f'`. The four networks answer it differently:
#
# * **sigmoid** (Xavier init, :math:`n \operatorname{Var} W \approx 1`):
#   :math:`\sigma' \le 1/4` (about 1/5 on average here), so the error shrinks by
#   4–5× per layer;
# * **ReLU, He init**: :math:`f' \in \{0, 1\}` passes half the units, and He's
#   :math:`\operatorname{Var} W = 2/n` doubles the variance back: factor ≈ 1;
# * **sigmoid + batch norm** (Dense → :class:`bpnn.BatchNorm` → Sigmoid): the
#   normalization divides :math:`s` by its batch std :math:`\sigma_B`, so backward the
#   error is multiplied by :math:`\gamma/\sigma_B`. Sigmoid outputs vary little (std
#   ≈ 0.2), so :math:`\sigma_B` is small and :math:`1/\sigma_B \approx 5` undoes the
#   sigmoid's factor ≈ 1/5 at every layer;
# * **ReLU + residual** (:class:`bpnn.Residual` blocks in the "pre-activation" form
#   of He et al. 2016, :math:`h^{(l)} = h^{(l-1)} + \mathrm{ReLU}(h^{(l-1)})\, W^{(l)} +
#   b^{(l)}`): the identity path adds the error unchanged,
#   :math:`\delta^{(l-1)} = \delta^{(l)} + \dots`, so it cannot vanish. The branch
#   weights get :math:`\operatorname{Var} W = 2/(n L)` for depth *L*: each branch adds
#   a zero-mean term with about :math:`1/L` of the signal's second moment, so the *L*
#   branches together grow it by a bounded factor, about :math:`(1 + 1/L)^L \approx e`,
#   and the forward signal does not blow up either.

WIDTH = 64
ARCHS = ("sigmoid", "ReLU (He)", "sigmoid + BatchNorm", "ReLU + residual")


def make_net(arch, depth, seed):
    """``depth`` hidden layers of 64 units of the given kind, then 10 outputs."""
    layers = []
    for i in range(depth):
        if arch == "sigmoid":
            layers += [bpnn.Dense(WIDTH, init="xavier_normal"), bpnn.Sigmoid()]
        elif arch == "ReLU (He)":
            layers += [bpnn.Dense(WIDTH, init="he_normal"), bpnn.ReLU()]
        elif arch == "sigmoid + BatchNorm":
            layers += [bpnn.Dense(WIDTH, init="xavier_normal"), bpnn.BatchNorm(), bpnn.Sigmoid()]
        elif i == 0:  # ReLU + residual: the first layer maps the 64 pixels to the width
            layers += [bpnn.Dense(WIDTH, init="he_normal"), bpnn.ReLU()]
        else:
            branch = {"class_name": "variance_scaling",
                      "config": {"scale": 2.0 / depth, "mode": "fan_in", "distribution": "normal"}}
            layers.append(bpnn.Residual([bpnn.ReLU(), bpnn.Dense(WIDTH, init=branch)]))
    layers.append(bpnn.Dense(10, init="xavier_normal"))
    return bpnn.Sequential(layers, input_shape=(64,), seed=seed)


# %%
# Measuring
# ---------
# :func:`bpnn.diagnostics.layer_statistics` runs one forward and backward pass on a
# batch of 256 digits and returns, per layer, the weight-gradient norm
# :math:`\lVert \partial L/\partial W^{(l)} \rVert` (``grad_norm``) and the rms of the
# error :math:`\delta` reaching each weighted layer (``delta_rms``);
# :func:`bpnn.diagnostics.diagnose` turns the same record into verdicts. Its
# *vanishing gradients* rule fires when
# :math:`\operatorname{rms}(\delta_\text{first}) / \operatorname{rms}(\delta_\text{last}) < 10^{-2}`.


def run(fast: bool = True) -> dict:
    X, y = load_digits()
    seeds = [0, 1, 2] if fast else list(range(8))
    # (at depth 40 the sigmoid net's first-layer gradient, ~0.2⁴⁰ of the last one's,
    # underflows float32 to exactly 0: 30 is as deep as the ratio can be printed)
    depths = [5, 10, 20] if fast else [5, 10, 20, 30]
    batch = np.random.default_rng(0).choice(len(X), 256, replace=False)
    out = {"seeds": seeds, "depths": depths, "archs": list(ARCHS), "ratio": {}, "grad_norms": {},
           "verdicts": {}}
    for arch in ARCHS:
        for depth in depths:
            ratios, norms, verdicts = [], [], []
            for seed in seeds:
                stats = layer_statistics(make_net(arch, depth, seed), X[batch], y[batch])
                record = stats["record"]["layers"]
                dense = [d["name"] for d in stats["layers"] if d["kind"] == "dense"]
                norms.append([record[name]["grad_norm"] for name in dense])
                ratios.append(record[dense[0]]["delta_rms"] / record[dense[-1]]["delta_rms"])
                verdicts.append(sorted(v.kind for v in diagnose(stats)))
            out["ratio"][arch, depth] = np.array(ratios)
            out["grad_norms"][arch, depth] = np.array(norms)
            out["verdicts"][arch, depth] = verdicts
    return out


# %%
# Gradients layer by layer
# ------------------------
# Left: the weight-gradient norm of every layer of the deepest nets (layer 1 is next
# to the input). Right: the verdict's ratio, first layer's error over last layer's,
# against depth; below the dotted line bpnn says "vanishing gradients". Lines are the
# geometric mean over seeds, bands min–max.


def plot(result):
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    deepest = result["depths"][-1]
    for k, arch in enumerate(result["archs"]):
        norms = result["grad_norms"][arch, deepest]
        layers = np.arange(1, norms.shape[1] + 1)
        left.plot(layers, np.exp(np.log(norms).mean(0)), color=f"C{k}", label=arch)
        left.fill_between(layers, norms.min(0), norms.max(0), color=f"C{k}", alpha=0.25)
        ratios = np.array([result["ratio"][arch, d] for d in result["depths"]])
        right.plot(result["depths"], np.exp(np.log(ratios).mean(1)), "o-", color=f"C{k}", label=arch)
        right.fill_between(result["depths"], ratios.min(1), ratios.max(1), color=f"C{k}", alpha=0.25)
    left.set_yscale("log")
    left.set_xlabel("weighted layer (1 = next to the input, last = output)")
    left.set_ylabel("‖∂L/∂W‖ at initialization")
    left.set_title(f"Weight-gradient norm per layer, depth {deepest}")
    left.legend(fontsize=8)
    right.axhline(1e-2, color="k", ls=":", lw=1, label="vanishing threshold")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xticks(result["depths"], [str(d) for d in result["depths"]])
    right.xaxis.set_minor_formatter(plt.NullFormatter())
    right.set_xlabel("depth (hidden layers)")
    right.set_ylabel("rms δ first layer / rms δ last layer")
    right.set_title(f"Gradient ratio over depth ({len(result['seeds'])} seeds)")
    right.legend(fontsize=8)
    return fig


# %%
# What it shows
# -------------


def summary(result):
    deepest = result["depths"][-1]

    def ratio(arch):
        return float(np.exp(np.log(result["ratio"][arch, deepest]).mean()))

    def said(arch):
        return sum("vanishing_gradients" in kinds for kinds in result["verdicts"][arch, deepest])

    n = len(result["seeds"])
    return (f"At depth {deepest} the error reaching the first layer of the sigmoid net is "
            f"{ratio('sigmoid'):.1e} times the one reaching the last (bpnn: vanishing gradients in "
            f"{said('sigmoid')}/{n} seeds); with ReLU + He it is {ratio('ReLU (He)'):.2f}, with batch norm "
            f"{ratio('sigmoid + BatchNorm'):.2f} and with residual connections "
            f"{ratio('ReLU + residual'):.2f} (vanishing in {said('sigmoid + BatchNorm')}/{n} and "
            f"{said('ReLU + residual')}/{n} seeds).")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
