"""
Transfer learning and fine-tuning
=================================

A network trained on one task has learned features — edges, strokes, loops — that
help on a related one. The BP texts' recipe for a new task with few labelled samples:
take the trained network, keep its hidden layers, put a new output layer on top, and
either train only that head (the hidden layers frozen) or train everything gently
(fine-tuning). We pretrain a digit reader, transfer it to a new question with a handful
of labelled images, and compare with the same network trained from scratch, over
several seeds; and we show a transfer that does not pay.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import bpnn
import bpnn.data

# %%
# Source and target tasks
# -----------------------
# The 8×8 digits, split once into training and test parts. **Source task**: read the
# digit (10 classes) on the first half of the training images. **Target task**, on the
# other half: a new question, *is the digit odd or even?*, of which each run sees only
# *k* labelled images of each digit (drawn by the run's seed); it is tested on all the
# test images. The network is 64 → 64 → 32 → head, ReLU units; its body (the two hidden
# layers, parameters ``0.*`` and ``2.*``) is what transfers, the head is new.
#
# A second transfer, from the digits 0–4 to the digits 5–9 (new classes), runs beside
# it as a counter-example.

BODY = ("0.", "2.")


def network(seed, n_out):
    return bpnn.Sequential([bpnn.Dense(64, init="he_normal"), bpnn.ReLU(), bpnn.Dense(32, init="he_normal"),
                            bpnn.ReLU(), bpnn.Dense(n_out)], input_shape=(64,), seed=seed)


def tasks():
    """{name: (source (X, y), target pool (X, y, digit), target test (X, y), classes)}."""
    X, y = bpnn.data.load_digits()
    Xtr, Xte, ytr, yte = bpnn.data.train_test_split(X, y, seed=0)
    half = len(Xtr) // 2
    parity = ((Xtr[:half], ytr[:half]), (Xtr[half:], ytr[half:] % 2, ytr[half:]), (Xte, yte % 2), 2)
    low, high = ytr < 5, ytr >= 5
    split = ((Xtr[low], ytr[low]), (Xtr[high], ytr[high] - 5, ytr[high]), (Xte[yte >= 5], yte[yte >= 5] - 5), 5)
    return {"parity": parity, "0-4 → 5-9": split}


def few(digits, per_digit, seed):
    """Indices of ``per_digit`` images of each digit, drawn by ``seed``."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(digits == d), per_digit, replace=False)
                           for d in np.unique(digits)])


# %%
# Three ways to learn the target
# ------------------------------
# * **from scratch**: a fresh network trained on the few target samples;
# * **frozen features + new head**: the pretrained body loaded with
#   :meth:`~bpnn.nn.Module.load_state_dict` (``strict=False``: the new head is not in
#   it), its layers set ``trainable = False`` so the optimizer leaves them alone, and
#   only the new output layer trained;
# * **full fine-tuning**: the network of the frozen run, its layers set trainable again,
#   all of it trained further with a learning rate ten times smaller, so the pretrained
#   features are adjusted rather than overwritten. (Training a random head and the body
#   together from the start sends the head's large early gradients into the body and
#   spoils it; the head first, then everything, is the usual recipe.)
#
# All see the same samples; full-batch Adam, 100 epochs (fine-tuning: 30 more).


def _fit(model, X, y, lr, epochs):
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=lr))
    trainer.fit(X, y, epochs=epochs, batch_size="full", verbose=False)


def _transfer(task, sizes, seeds):
    (Xs, ys), (Xt, yt, digits), (Xte, yte), n_out = task
    acc = {name: np.zeros((len(seeds), len(sizes))) for name in ("scratch", "frozen", "finetuned")}
    unchanged = []
    for i, seed in enumerate(seeds):
        source = network(seed, int(ys.max()) + 1)
        bpnn.Trainer(source, optimizer=bpnn.optim.Adam(lr=3e-3)).fit(Xs, ys, epochs=10, batch_size=32,
                                                                       verbose=False)
        body = {k: v.copy() for k, v in source.state_dict().items() if k.startswith(BODY)}
        for j, k in enumerate(sizes):
            keep = few(digits, k, seed)
            X, y = Xt[keep], yt[keep]
            scratch = network(100 + seed, n_out)
            _fit(scratch, X, y, lr=1e-2, epochs=100)
            model = network(100 + seed, n_out)
            model.load_state_dict(body, strict=False)
            model[0].trainable = model[2].trainable = False
            _fit(model, X, y, lr=1e-2, epochs=100)
            after = model.state_dict()
            unchanged.append(all(np.array_equal(after[key], value) for key, value in body.items()))
            acc["scratch"][i, j] = np.mean(scratch.predict(Xte).argmax(1) == yte)
            acc["frozen"][i, j] = np.mean(model.predict(Xte).argmax(1) == yte)
            model[0].trainable = model[2].trainable = True
            _fit(model, X, y, lr=1e-3, epochs=30)
            acc["finetuned"][i, j] = np.mean(model.predict(Xte).argmax(1) == yte)
    return {"accuracy": acc, "frozen_unchanged": unchanged, "n_test": len(yte)}


def run(fast: bool = True) -> dict:
    seeds = [0, 1, 2] if fast else list(range(10))
    tasks_ = tasks()
    sizes = [1, 2, 5] if fast else [1, 2, 3, 5, 10, 20]
    counter_sizes = [1, 5] if fast else [1, 2, 3, 5, 10, 20]
    return {"seeds": seeds, "sizes": sizes, "counter_sizes": counter_sizes,
            "parity": _transfer(tasks_["parity"], sizes, seeds),
            "classes": _transfer(tasks_["0-4 → 5-9"], counter_sizes, seeds)}


# %%
# What it shows
# -------------
# Left: test accuracy on odd/even against the labelled images per digit (mean over
# seeds, min–max band). With one or two images per digit the transferred networks are
# ahead: the body already tells the digits apart, so the head only has to learn which
# digits are odd, and two classes that are each a union of five digits are hard to learn
# from a handful of raw pixels. As the target data grows, training from scratch catches
# up. Freezing keeps the body's weights bit for bit.
#
# Right, the counter-example: features learned on 0–4 do not help with 5–9 here. A
# body trained to tell five digits apart keeps what separates *those* digits and drops
# the rest, and on 8×8 digits the raw pixels are already good features, so a new
# network learns 5–9 from a few images as well or better. Transfer pays when the source
# task has learned what the target needs.


def plot(result):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {"scratch": ("from scratch", "tab:gray"), "frozen": ("frozen features + new head", "tab:blue"),
              "finetuned": ("then full fine-tuning (lr / 10)", "tab:orange")}
    panels = ((axes[0], result["parity"], result["sizes"], "odd or even? (body from the 10-digit reader)"),
              (axes[1], result["classes"], result["counter_sizes"], "digits 5–9 (body from 0–4)"))
    for ax, part, sizes, title in panels:
        sizes = np.array(sizes)
        for name, (label, color) in styles.items():
            a = 100 * part["accuracy"][name]
            ax.plot(sizes, a.mean(axis=0), "o-", color=color, label=label)
            ax.fill_between(sizes, a.min(axis=0), a.max(axis=0), color=color, alpha=0.2)
        ax.set(xscale="log", xlabel="labelled target images per digit", ylabel="test accuracy (%)",
               title=f"{title}, {len(result['seeds'])} seeds")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.legend()
    fig.tight_layout()
    return fig


def summary(result) -> str:
    a = {name: 100 * v[:, 0] for name, v in result["parity"]["accuracy"].items()}
    c = {name: 100 * v[:, 0] for name, v in result["classes"]["accuracy"].items()}
    n_runs = len(result["parity"]["frozen_unchanged"]) + len(result["classes"]["frozen_unchanged"])
    return (f"With one labelled image per digit, a body pretrained to read digits answers odd-or-even at "
            f"{a['frozen'].mean():.1f} ± {a['frozen'].std():.1f} % (frozen, new head) and {a['finetuned'].mean():.1f}"
            f" ± {a['finetuned'].std():.1f} % (fine-tuned) against {a['scratch'].mean():.1f} ± "
            f"{a['scratch'].std():.1f} % from scratch ({len(result['seeds'])} seeds), while a body from the "
            f"digits 0–4 gives {c['frozen'].mean():.1f} % on 5–9 against {c['scratch'].mean():.1f} % from scratch; "
            f"frozen layers kept their weights bit for bit in all {n_runs} runs.")


if __name__ == "__main__":
    result = run(fast=os.environ.get("BPNN_GALLERY_FULL") != "1")
    plot(result)
    print(summary(result))
