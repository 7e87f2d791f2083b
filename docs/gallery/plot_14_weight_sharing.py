"""
Weight sharing in convolution
=============================

A convolutional layer is a fully connected layer with most weights forced to zero and
the rest tied together: every output position uses the same small kernel. The BP texts
teach the consequences — far fewer parameters, a gradient that sums over the positions
sharing a weight, and outputs that move with the input (translation equivariance). We
check each one on :class:`bpnn.nn.Conv2D`: count its parameters against a
:class:`bpnn.nn.Dense` layer with the same input and output sizes, build that Dense
layer's weight matrix from the kernel (a Toeplitz-structured matrix) and get the same
outputs and the summed gradients, then shift an image and watch the output shift.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
import bpnn.data

# %%
# Counting parameters
# -------------------
# A Conv2D with *O* filters of size :math:`k_h \times k_w` over *C* input channels has
# :math:`O\,C\,k_h k_w + O` parameters, whatever the image size. A Dense layer that maps
# the same :math:`C H W` inputs to the same :math:`O H_{out} W_{out}` outputs has
# :math:`C H W \cdot O H_{out} W_{out} + O H_{out} W_{out}`. (A "valid" convolution:
# :math:`H_{out} = H - k_h + 1`.)

#: (C, H, W, O, k): the digits' 8×8 images, LeNet-5's first and second layers on MNIST.
GEOMETRIES = [(1, 8, 8, 4, 3), (1, 28, 28, 6, 5), (6, 14, 14, 16, 5)]


def conv_count(C, H, W, O, k):
    return O * C * k * k + O


def dense_count(C, H, W, O, k):
    n_out = O * (H - k + 1) * (W - k + 1)
    return C * H * W * n_out + n_out


def counts():
    rows = []
    for C, H, W, O, k in GEOMETRIES:
        conv = bpnn.nn.Conv2D(O, k)
        conv.build((C, H, W), 0)
        dense = bpnn.nn.Dense(O * (H - k + 1) * (W - k + 1))
        dense.build((C * H * W,), 0)
        rows.append({"geometry": (C, H, W, O, k), "conv": conv.num_parameters(), "dense": dense.num_parameters(),
                     "conv_formula": conv_count(C, H, W, O, k), "dense_formula": dense_count(C, H, W, O, k)})
    return rows


# %%
# The shared weight matrix
# ------------------------
# Write the convolution (a cross-correlation, as ``torch.nn.Conv2d``) as a matrix
# product. Input pixel :math:`(c, i+p, j+q)` feeds output :math:`(o, i, j)` through
# kernel entry :math:`K[o, c, p, q]`, so the Dense weight is
#
# .. math::
#
#    W[(c, i+p, j+q),\ (o, i, j)] = K[o, c, p, q], \qquad 0 \text{ elsewhere},
#
# a block-Toeplitz matrix in which each kernel entry appears once per output position.
# ``tap`` below records, for every entry of W, which kernel entry it copies (−1: none).
# Backpropagation through the Dense layer gives a gradient for each copy; the gradient
# of the shared kernel entry is their sum, :math:`\partial L/\partial K_t =
# \sum_{\text{copies of } t} \partial L/\partial W`, which is what Conv2D computes.


def toeplitz_taps(C, H, W, O, k):
    """(C·H·W, O·H_out·W_out) int array: the flat kernel index each Dense weight copies, or −1."""
    Ho, Wo = H - k + 1, W - k + 1
    tap = -np.ones((C * H * W, O * Ho * Wo), dtype=np.int64)
    for o in range(O):
        for c in range(C):
            for p in range(k):
                for q in range(k):
                    t = ((o * C + c) * k + p) * k + q             # flat index into K (O, C, k, k)
                    for i in range(Ho):
                        for j in range(Wo):
                            tap[(c * H + i + p) * W + j + q, (o * Ho + i) * Wo + j] = t
    return tap


def conv_as_dense(conv, tap):
    """A Dense layer whose weights are the conv's kernel copied along ``tap``."""
    kernel = conv.params["weight"].ravel()
    dense = bpnn.nn.Dense(tap.shape[1])
    dense.build((tap.shape[0],), 0, conv.dtype)
    dense.params["weight"][...] = np.where(tap >= 0, kernel[np.maximum(tap, 0)], 0.0)
    n_positions = tap.shape[1] // conv.out_channels
    dense.params["bias"][...] = np.repeat(conv.params["bias"], n_positions)
    return dense


def shift(images, di, dj):
    """Move images down by di and right by dj pixels, zeros coming in."""
    out = np.zeros_like(images)
    out[..., di:, dj:] = images[..., :images.shape[-2] - di, :images.shape[-1] - dj]
    return out


# %%
# Run it
# ------
# On digit images (8×8) with 4 filters of 3×3, from several seeds: the largest
# difference between the Conv2D output and the Dense-with-shared-weights output, the
# same for the gradients (each kernel entry against the sum over its copies), both
# relative to the largest value (float32 rounding is about 1e-7), and the
# translation error: shifting the input by (1, 2) pixels should shift the output by
# the same amount, exactly, wherever the shifted window sees no zero padding. An
# ordinary Dense layer of the same size, with unshared random weights, has no such
# property; we measure it too.


def run(fast: bool = True) -> dict:
    X, _ = bpnn.data.load_digits()
    C, H, W, O, k = GEOMETRIES[0]
    images = X[:16 if fast else 256].reshape(-1, C, H, W)
    tap = toeplitz_taps(C, H, W, O, k)
    Ho, Wo = H - k + 1, W - k + 1
    di, dj = 1, 2
    seeds = range(3) if fast else range(10)
    out_diff, grad_diff, conv_shift, dense_shift = [], [], [], []
    for seed in seeds:
        conv = bpnn.nn.Conv2D(O, k, init="he_normal", bias_init="normal")
        conv.build((C, H, W), seed)
        dense = conv_as_dense(conv, tap)
        y_conv = np.array(conv.forward(images, training=True))
        y_dense = dense.forward(images.reshape(len(images), -1), training=True)
        scale = np.abs(y_conv).max()
        out_diff.append(float(np.abs(y_conv.reshape(len(images), -1) - y_dense).max() / scale))
        g = np.random.default_rng(seed).standard_normal(y_conv.shape).astype(np.float32)
        conv.backward(g)
        dense.backward(g.reshape(len(images), -1))
        summed = np.bincount(tap[tap >= 0], weights=dense.grads["weight"][tap >= 0], minlength=tap.max() + 1)
        bias_summed = dense.grads["bias"].reshape(O, -1).sum(axis=1)
        grad_diff.append(float(max(np.abs(conv.grads["weight"].ravel() - summed).max() / np.abs(summed).max(),
                                   np.abs(conv.grads["bias"] - bias_summed).max() / np.abs(bias_summed).max())))
        moved = np.array(conv.forward(shift(images, di, dj)))
        conv_shift.append(float(np.abs(moved[..., di:, dj:] - y_conv[..., :Ho - di, :Wo - dj]).max() / scale))
        free = bpnn.nn.Dense(O * Ho * Wo, init="he_normal")
        free.build((C * H * W,), seed)
        a = free.forward(images.reshape(len(images), -1)).reshape(-1, O, Ho, Wo)
        b = free.forward(shift(images, di, dj).reshape(len(images), -1)).reshape(-1, O, Ho, Wo)
        dense_shift.append(float(np.abs(b[..., di:, dj:] - a[..., :Ho - di, :Wo - dj]).max() / np.abs(a).max()))
    return {"counts": counts(), "seeds": list(seeds), "n_images": len(images), "shift": (di, dj),
            "output_diff": out_diff, "grad_diff": grad_diff, "conv_shift_error": conv_shift,
            "dense_shift_error": dense_shift, "tap": tap, "kernel": conv.params["weight"].copy(),
            "image": images[0, 0], "shifted_image": shift(images, di, dj)[0, 0],
            "output": y_conv[0, 0], "shifted_output": moved[0, 0]}


# %%
# What it shows
# -------------
# Left: the parameter counts, on a log scale — for LeNet-5's first layer on MNIST,
# 156 against 2.7 million. Middle: the Dense weight matrix equivalent to the 8×8
# convolution; every diagonal band is one kernel entry repeated, the white is the
# zeros where an input pixel is outside an output's window. Right: a digit's first
# feature map, and the map of the shifted digit, which is the same map shifted.


def plot(result):
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.8), gridspec_kw={"width_ratios": [1.3, 1.3, 1, 1]})
    rows = result["counts"]
    labels = [f"{C}×{H}×{W} → {O}@{k}×{k}" for C, H, W, O, k in (r["geometry"] for r in rows)]
    pos = np.arange(len(rows))
    axes[0].bar(pos - 0.2, [r["conv"] for r in rows], 0.4, label="Conv2D")
    axes[0].bar(pos + 0.2, [r["dense"] for r in rows], 0.4, label="Dense, same sizes")
    axes[0].set_xticks(pos, labels, rotation=15, fontsize=8)
    axes[0].set(yscale="log", ylabel="parameters", title="parameter count")
    axes[0].legend(fontsize=8)
    tap, kernel = result["tap"], result["kernel"].ravel()
    matrix = np.where(tap >= 0, kernel[np.maximum(tap, 0)], np.nan)
    axes[1].imshow(matrix, aspect="auto", cmap="coolwarm", interpolation="nearest")
    axes[1].set(xlabel="output (o, i, j)", ylabel="input pixel (c, h, w)",
                title="Dense weight built from the kernel")
    vmax = np.abs(result["output"]).max()
    moved = "digit shifted down {}, right {}".format(*result["shift"])
    for ax, img, title in ((axes[2], result["output"], "feature map of a digit"),
                           (axes[3], result["shifted_output"], moved)):
        ax.imshow(img, cmap="coolwarm", vmin=-vmax, vmax=vmax)
        ax.set(title=title, xticks=[], yticks=[])
    fig.tight_layout()
    return fig


def summary(result) -> str:
    lenet = result["counts"][1]
    return (f"LeNet-5's first convolution has {lenet['conv']} parameters where a Dense layer of the same sizes "
            f"has {lenet['dense']:,}; the Dense layer built from the shared kernel gives the Conv2D's outputs "
            f"(largest relative difference {max(result['output_diff']):.1e}) and, summed over the copies, its "
            f"gradients ({max(result['grad_diff']):.1e}); shifting the input shifts the conv's output exactly "
            f"(relative error {max(result['conv_shift_error']):.1e}) but not an unshared Dense layer's "
            f"({min(result['dense_shift_error']):.2f}), over {len(result['seeds'])} seeds.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
