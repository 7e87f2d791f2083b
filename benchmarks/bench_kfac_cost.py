#!/usr/bin/env python
"""What a K-FAC step costs next to an SGD step, paired: the 784-800-10 MLP at batch 128.

The network is ``mnist_lecun.py``'s 784-800-10 (He-normal ReLU hidden layer, Glorot
output layer), softmax cross-entropy, on MNIST training images (synthetic ones when the
files are absent, said in the output). Three optimizers, each with its own model (same
seed) and trainer, all in this one process:

    sgd    SGD, momentum 0.9 (torch form), lr 0.01: the reference
    kfac   bpnn.optim.KFAC, lr 0.01, damping 1e-3, momentum 0.9, factor_decay 0.95,
           Kronecker factors updated every step, inverses every 10 steps, kl_clip 1e-3,
           Fisher from sampled targets ("true")
    adam   Adam, lr 1e-3 (for scale: a first-order step with more arithmetic)

A block is ``--block-steps`` (20, a multiple of the inverse interval, so every block
holds the same number of inverse updates) steps of one optimizer: one
``trainer.fit(X_block, y_block, epochs=1, batch_size=128, shuffle=False)`` over the next
20 × 128 images (the same images for every optimizer in a repeat). A step is timed from
the trainer's ``on_batch_begin`` to its ``on_batch_end`` (forward, loss, backward,
``optimizer.step()``, the batch's accuracy), summed over the block; the block's whole
``fit`` call (which adds the call's fixed costs) is recorded too. One warm-up block per
optimizer (compilation), then ``--blocks`` (25) repeats; within a repeat the optimizers
take turns, the order rotating from repeat to repeat (the harness's ``rotation``), each
block after a wait for a quiet machine and re-run while other processes used more than
``--noise-threshold`` cores (the least disturbed attempt kept). The optimizers keep
their state from block to block (``attach`` to the same model is a no-op).

Reported: the median step time of each optimizer (ms), and K-FAC / SGD as the ratio of
the medians and the median of the per-repeat ratios (the paired median, least moved by
a machine whose speed drifts). Goal: K-FAC / SGD ≤ 1.6. Without ``bpnn.optim.KFAC``
the K-FAC row is skipped (and said so) and only Adam / SGD is printed.

Run time: an SGD step takes ~7 ms with ``--threads 1`` (14–48 ms with two threads beside
a colleague's job: use ``--threads 1`` on a shared machine), a block ~0.15 s, so a run
is well under a minute plus the waits for a quiet machine (``--max-wait`` s a block at
most, up to three attempts); ``--quick`` (5 repeats, no waiting) a few seconds.

Usage::

    python benchmarks/bench_kfac_cost.py --threads 1 --json bench-results/kfac_cost.json
    python benchmarks/bench_kfac_cost.py --quick
    python benchmarks/bench_kfac_cost.py --blocks 41 --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from _harness import (  # beside this script
    MNIST_DIR, Usage, least_disturbed, limit_threads, machine_header, paired_ratios, rotation, threads_from_argv,
    write_json,
)

if __name__ == "__main__":
    threads_from_argv(sys.argv[1:])  # --threads reaches numba too: before NumPy and bpnn load

from mnist_lecun import build  # noqa: E402 - the one 784-800-10 of the benchmarks

import numpy as np  # noqa: E402

import bpnn  # noqa: E402

BATCH = 128
GOAL = 1.6
OPTIMIZERS = ("sgd", "kfac", "adam")


def kfac_class():
    """``bpnn.optim.KFAC`` when this tree has it, else None."""
    return getattr(bpnn.optim, "KFAC", None)


def make_optimizer(name: str, args):
    if name == "sgd":
        return bpnn.optim.SGD(lr=0.01, momentum=0.9)
    if name == "adam":
        return bpnn.optim.Adam(lr=1e-3)
    return kfac_class()(lr=0.01, damping=args.kfac_damping, momentum=0.9, factor_decay=0.95,
                        factor_update_steps=1, inv_update_steps=args.inv_update_steps, kl_clip=1e-3,
                        weight_decay=0.0, fisher="true")


class StepTimer(bpnn.Callback):
    """Seconds from each ``on_batch_begin`` to its ``on_batch_end``, in ``steps``."""

    def __init__(self):
        self.steps, self._t = [], None

    def on_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_batch_end(self, batch, logs=None):
        self.steps.append(time.perf_counter() - self._t)


def load_data(n, data_dir, seed=0):
    try:
        from bpnn.data import load_mnist

        X, y, _, _ = load_mnist(data_dir=data_dir, download=False)
        return X[:n], y[:n], "mnist"
    except Exception as exc:  # noqa: BLE001 - any failure means: no local MNIST
        print(f"note: MNIST not available ({exc}); using synthetic images", file=sys.stderr)
        rng = np.random.default_rng(seed)
        return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n), "synthetic"


def block(trainer, X, y):
    """One block: a ``fit`` over (X, y) in order; its step times and the call's wall time."""
    timer = StepTimer()
    with Usage() as usage:
        trainer.fit(X, y, epochs=1, batch_size=BATCH, shuffle=False, callbacks=[timer], verbose=False)
    return {"step_s": sum(timer.steps) / len(timer.steps), "steps": len(timer.steps), "fit_s": usage.wall_s,
            "foreign_cores": usage.foreign_cores}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__[__doc__.index("The network is"):])
    ap.add_argument("--blocks", type=int, default=25, help="timed repeats (blocks per optimizer; default 25)")
    ap.add_argument("--block-steps", type=int, default=20, help="steps a block (default 20)")
    ap.add_argument("--inv-update-steps", type=int, default=10, help="K-FAC's inverse interval (default 10)")
    ap.add_argument("--kfac-damping", type=float, default=1e-3)
    ap.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="subset of sgd,kfac,adam (sgd always runs)")
    ap.add_argument("--threads", type=int, default=None, help="cap BLAS threads (default: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=MNIST_DIR)
    ap.add_argument("--noise-threshold", type=float, default=0.3, help="foreign cores above which a block is re-run")
    ap.add_argument("--max-retries", type=int, default=2)
    ap.add_argument("--max-wait", type=float, default=10.0, help="seconds to wait for a quiet machine a block")
    ap.add_argument("--quick", action="store_true", help="smoke test: 5 repeats, no waiting or re-runs")
    ap.add_argument("--json", default=None, help="write every block, the medians and the ratios")
    args = ap.parse_args(argv)
    if args.quick:
        args.blocks, args.max_wait, args.max_retries = min(args.blocks, 5), 0.0, 0
    if args.block_steps % args.inv_update_steps:
        ap.error(f"--block-steps: got {args.block_steps}; it must be a multiple of --inv-update-steps "
                 f"({args.inv_update_steps}) so that every block holds as many inverse updates")
    names = ["sgd"] + [n.strip() for n in args.optimizers.split(",") if n.strip() and n.strip() != "sgd"]
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown:
        ap.error(f"--optimizers: unknown {unknown}; valid: {', '.join(OPTIMIZERS)}")
    _limiter = limit_threads(args.threads) if args.threads else None  # noqa: F841 - keep the limits
    info = machine_header(args.threads)
    if "kfac" in names and kfac_class() is None:
        print("# bpnn.optim.KFAC is not in this tree: the K-FAC row is skipped", flush=True)
        names.remove("kfac")

    per_block = args.block_steps * BATCH
    n_slices = 20
    X, y, source = load_data(per_block * n_slices, args.data_dir, args.seed)
    trainers = {n: bpnn.Trainer(build("800", args.seed), loss="softmax_cross_entropy",
                                optimizer=make_optimizer(n, args)) for n in names}
    print(f"# 784-800-10, batch {BATCH}, {source} images; blocks of {args.block_steps} steps, 1 warm-up + "
          f"{args.blocks} timed per optimizer, alternating: {', '.join(names)}", flush=True)
    for n in names:  # warm-up: compilation, first allocations
        block(trainers[n], X[:per_block], y[:per_block])

    blocks = {n: [] for n in names}
    for rep in range(args.blocks):
        k = rep % n_slices
        Xb, yb = X[k * per_block:(k + 1) * per_block], y[k * per_block:(k + 1) * per_block]
        for n in rotation(names, rep):
            best, attempts = least_disturbed(lambda n=n: block(trainers[n], Xb, yb), threshold=args.noise_threshold,
                                             max_retries=args.max_retries, max_wait=args.max_wait)
            blocks[n].append({**attempts[best], "attempts": len(attempts)})
        print(f"  repeat {rep + 1:3d}: " + ", ".join(f"{n} {blocks[n][-1]['step_s'] * 1e3:7.3f} ms" for n in names),
              flush=True)

    step = {n: [b["step_s"] for b in blocks[n]] for n in names}
    print(f"\n{'optimizer':9} {'median ms/step':>14} {'min':>8} {'max':>8} {'fit ms/step':>11} {'noisy':>5}")
    for n in names:
        fit = statistics.median(b["fit_s"] / b["steps"] for b in blocks[n])
        noisy = sum(b["noisy"] for b in blocks[n])
        print(f"{n:9} {statistics.median(step[n]) * 1e3:14.3f} {min(step[n]) * 1e3:8.3f} {max(step[n]) * 1e3:8.3f} "
              f"{fit * 1e3:11.3f} {noisy:5d}")
    ratios = {}
    for n in names[1:]:
        ratios[n] = paired_ratios(step[n], step["sgd"])
        r = ratios[n]
        goal = f"; goal <= {GOAL}: {'met' if r['median_paired_ratio'] <= GOAL else 'not met'}" if n == "kfac" else ""
        label = {"kfac": "K-FAC", "adam": "Adam"}[n]
        print(f"{label} / SGD step: {r['ratio_of_medians']:.3f} (ratio of medians), "
              f"{r['median_paired_ratio']:.3f} (paired median){goal}")
    write_json(args.json, {"benchmark": "bench_kfac_cost", "args": vars(args), "machine": info, "data": source,
                           "kfac_available": kfac_class() is not None, "blocks": blocks,
                           "median_step_s": {n: statistics.median(v) for n, v in step.items()},
                           "ratios_over_sgd": ratios, "goal_kfac_over_sgd": GOAL})
    return 0


if __name__ == "__main__":
    sys.exit(main())
