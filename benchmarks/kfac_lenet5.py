#!/usr/bin/env python
"""K-FAC (KFC for the convolutions) against SGD with Nesterov momentum and Adam on
LeNet-5: epochs and wall time to 99.0 % MNIST test accuracy, over seeds.

The model is ``lenet5()`` of ``lenet5_accuracy.py`` (the ReLU / max-pooling LeNet-5 that
``bench_cnn.py`` also times: conv 6@5×5 pad 2 → pool → conv 16@5×5 → pool → 120 → 84 →
10, He-uniform), softmax cross-entropy, the 60,000 training images, batch 64, the
learning rate × 0.85 per epoch for every optimizer (``--gamma``), L2 weight decay 5e-4
(coupled, in the gradient) for every optimizer:

    sgd    SGD, Nesterov momentum 0.9, lr 0.05 (lenet5_accuracy.py's defaults)
    adam   Adam, betas (0.9, 0.999), lr 1e-3
    kfac   bpnn.optim.KFAC, lr 0.2, damping 0.3, momentum 0.9, factor_decay 0.95,
           factors every 10 steps, inverses every 100, kl_clip 1e-3, Fisher from
           sampled targets ("true")

After every epoch the test accuracy on the 10,000 test images is measured (its time is
excluded from the wall time, which is training alone); a run stops at the first epoch
that reaches ``--target`` (99.0 %) or at ``--max-epochs`` (default 15). Each optimizer
runs on ``--seeds`` (default 0,1,2: the weights and the batch order), optimizers
alternating within a seed. Reported: per-seed rows (epochs to the target, wall time to
it, seconds an epoch, final accuracy) and, per optimizer, mean ± standard deviation
(n − 1) of the epochs and the wall time over the seeds that reached the target (a seed
that did not counts as not reached, and the summary says how many did). Without
``bpnn.optim.KFAC`` the K-FAC rows are skipped (and said so).

The test set picks the stopping epoch here: this measures speed to an accuracy, not a
test error to quote (``lenet5_accuracy.py`` does that).

Run time on the 2-core development machine with ``--threads 1`` (beside a colleague's
job): ~5.5 s an epoch of 60,000 images for SGD or Adam plus ~0.5 s of evaluation;
lenet5_accuracy.py's runs pass 99 % within a few epochs, so ~0.5 min a run, ~3 min for
SGD and Adam over three seeds, plus K-FAC's runs (at most 15 epochs a run: ~15 min in
the worst case for all nine). Two threads beside such a job ran an epoch 4–5 × slower
here, so use ``--threads 1`` on a shared machine. ``--quick`` (2,000 images, 1,000 test
images, one seed, at most 2 epochs) takes well under a minute.

Usage::

    python benchmarks/kfac_lenet5.py --threads 1 --json bench-results/kfac_lenet5.json
    python benchmarks/kfac_lenet5.py --quick
    python benchmarks/kfac_lenet5.py --optimizers kfac --seeds 0,1,2,3,4 --kfac-lr 0.1
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from _harness import (  # beside this script
    MNIST_DIR, Usage, limit_threads, machine_header, threads_from_argv, wait_quiet, write_json,
)

if __name__ == "__main__":
    threads_from_argv(sys.argv[1:])  # --threads reaches numba too: before NumPy and bpnn load

from lenet5_accuracy import lenet5  # noqa: E402 - the one LeNet-5 of the benchmarks

import numpy as np  # noqa: E402

import bpnn  # noqa: E402
from bpnn.data import load_mnist  # noqa: E402

OPTIMIZERS = ("sgd", "adam", "kfac")


def kfac_class():
    """``bpnn.optim.KFAC`` when this tree has it, else None."""
    return getattr(bpnn.optim, "KFAC", None)


def make_optimizer(name: str, args):
    lr = {"sgd": args.sgd_lr, "adam": args.adam_lr, "kfac": args.kfac_lr}[name]
    schedule = bpnn.optim.ExponentialDecay(lr, args.gamma)  # per epoch
    if name == "sgd":
        return bpnn.optim.SGD(lr=schedule, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    if name == "adam":
        return bpnn.optim.Adam(lr=schedule, weight_decay=args.weight_decay)
    return kfac_class()(lr=schedule, damping=args.kfac_damping, momentum=0.9, factor_decay=args.factor_decay,
                        factor_update_steps=args.factor_update_steps, inv_update_steps=args.inv_update_steps,
                        kl_clip=args.kl_clip, weight_decay=args.weight_decay, fisher="true")


class ToAccuracy(bpnn.Callback):
    """Test accuracy after every epoch (not timed: ``wall`` holds the training seconds at
    each epoch's end); stops training at the first epoch at or above ``target`` %."""

    def __init__(self, X, y, target: float):
        self.X, self.y, self.target = X, y, target
        self.accuracy, self.wall, self.eval_s = [], [], 0.0
        self._t0 = None

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        t = time.perf_counter()
        self.wall.append(t - self._t0 - self.eval_s)
        acc = 100.0 * float(np.mean(self.trainer.predict(self.X).argmax(1) == self.y))
        self.accuracy.append(acc)
        if acc >= self.target:
            self.trainer.stop_training = True
        self.eval_s += time.perf_counter() - t


def epochs_to(accuracy, target: float):
    """The 1-based epoch at which ``accuracy`` (% per epoch) first reaches ``target``, or None."""
    return next((i + 1 for i, a in enumerate(accuracy) if a >= target), None)


def run(name, seed, data, args):
    X, y, Xt, yt = data
    trainer = bpnn.Trainer(lenet5(seed=seed), optimizer=make_optimizer(name, args))
    cb = ToAccuracy(Xt, yt, args.target)
    hist = trainer.fit(X, y, epochs=args.max_epochs, batch_size=args.batch_size, callbacks=[cb], verbose=False)
    reached = epochs_to(cb.accuracy, args.target)
    return {"optimizer": name, "seed": seed, "reached": reached is not None, "epochs": reached,
            "wall_s": cb.wall[reached - 1] if reached else None, "epochs_run": len(cb.accuracy),
            "wall_run_s": cb.wall[-1] if cb.wall else 0.0, "accuracy": cb.accuracy, "wall_per_epoch": cb.wall,
            "final_accuracy": cb.accuracy[-1] if cb.accuracy else None, "eval_s": cb.eval_s,
            "stopped_reason": hist.stopped_reason}


def summarize(rows):
    """Per optimizer: seeds run and reached, mean ± std (n − 1) of epochs and wall time to the target."""
    out = {}
    for name in dict.fromkeys(r["optimizer"] for r in rows):
        mine = [r for r in rows if r["optimizer"] == name]
        hit = [r for r in mine if r["reached"]]
        s = {"seeds": len(mine), "reached": len(hit)}
        for key in ("epochs", "wall_s"):
            vals = [float(r[key]) for r in hit]
            s[key + "_mean"] = statistics.mean(vals) if vals else None
            s[key + "_std"] = statistics.stdev(vals) if len(vals) > 1 else None
        out[name] = s
    return out


def _pm(mean, std, fmt):
    if mean is None:
        return "-"
    return format(mean, fmt) + ("" if std is None else " ± " + format(std, fmt))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__[__doc__.index("The model is"):])
    ap.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="subset of sgd,adam,kfac")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; quick 0)")
    ap.add_argument("--target", type=float, default=99.0, help="test accuracy to reach, %% (default 99.0)")
    ap.add_argument("--max-epochs", type=int, default=15, help="cap per run (default 15)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--gamma", type=float, default=0.85, help="learning-rate decay per epoch, every optimizer")
    ap.add_argument("--weight-decay", type=float, default=5e-4, help="coupled L2, every optimizer")
    ap.add_argument("--sgd-lr", type=float, default=0.05)
    ap.add_argument("--adam-lr", type=float, default=1e-3)
    ap.add_argument("--kfac-lr", type=float, default=0.2, help="default 0.2 (best of a one-seed sweep: README)")
    ap.add_argument("--kfac-damping", type=float, default=0.3)
    ap.add_argument("--factor-decay", type=float, default=0.95)
    ap.add_argument("--factor-update-steps", type=int, default=10)
    ap.add_argument("--inv-update-steps", type=int, default=100)
    ap.add_argument("--kl-clip", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=None, help="training images (default all 60,000)")
    ap.add_argument("--test-samples", type=int, default=None, help="test images (default all 10,000)")
    ap.add_argument("--threads", type=int, default=None, help="cap BLAS threads (default: all cores)")
    ap.add_argument("--data-dir", default=MNIST_DIR)
    ap.add_argument("--noise-threshold", type=float, default=0.3,
                    help="wait before each run until other processes use at most this many cores")
    ap.add_argument("--max-wait", type=float, default=30.0, help="seconds to wait for that (quick: 0)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 2,000 images, 1,000 test images, seed 0, at most 2 epochs")
    ap.add_argument("--json", default=None, help="write the per-seed rows, accuracy curves and the summary")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.test_samples = args.samples or 2000, args.test_samples or 1000
        args.seeds, args.max_epochs, args.max_wait = args.seeds or "0", 2, 0.0
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown:
        ap.error(f"--optimizers: unknown {unknown}; valid: {', '.join(OPTIMIZERS)}")
    seeds = [int(s) for s in (args.seeds or "0,1,2").split(",") if s.strip()]
    _limiter = limit_threads(args.threads) if args.threads else None  # noqa: F841 - keep the limits
    info = machine_header(args.threads)

    X, y, Xt, yt = load_mnist(data_dir=args.data_dir, download=False, flatten=False)
    X, y, Xt, yt = X[:args.samples], y[:args.samples], Xt[:args.test_samples], yt[:args.test_samples]
    print(f"# LeNet-5, {len(X)} training images, {len(Xt)} test images, batch {args.batch_size}, lr x "
          f"{args.gamma}^epoch, weight decay {args.weight_decay}; target {args.target} % test accuracy, at most "
          f"{args.max_epochs} epochs; seeds {seeds}", flush=True)
    if "kfac" in names and kfac_class() is None:
        print("# bpnn.optim.KFAC is not in this tree: the K-FAC rows are skipped", flush=True)
        names.remove("kfac")
    for name in names:  # warm-up: the kernels' compilation stays out of the first run's time
        bpnn.Trainer(lenet5(seed=0), optimizer=make_optimizer(name, args)).fit(
            X[:2 * args.batch_size], y[:2 * args.batch_size], epochs=1, batch_size=args.batch_size, verbose=False)

    rows = []
    print(f"\n{'optimizer':9} {'seed':>4} {'epochs':>6} {'wall s':>8} {'s/epoch':>8} {'final acc %':>11} "
          f"{'foreign':>7}")
    for seed in seeds:
        for name in names:
            waited = wait_quiet(args.noise_threshold, args.max_wait)
            with Usage() as usage:
                r = run(name, seed, (X, y, Xt, yt), args)
            r.update(foreign_cores=usage.foreign_cores, waited_s=waited)
            rows.append(r)
            epochs = r["epochs"] if r["reached"] else f">{r['epochs_run']}"
            wall = f"{r['wall_s']:.1f}" if r["reached"] else f">{r['wall_run_s']:.1f}"
            per = r["wall_run_s"] / max(r["epochs_run"], 1)
            foreign = "-" if usage.foreign_cores is None else f"{usage.foreign_cores:.2f}"
            note = f"  stopped: {r['stopped_reason']}" if r["stopped_reason"] else ""
            print(f"{name:9} {seed:4d} {epochs:>6} {wall:>8} {per:8.2f} {r['final_accuracy'] or 0:11.2f} "
                  f"{foreign:>7}{note}", flush=True)

    summary = summarize(rows)
    print(f"\nto {args.target} % test accuracy (mean ± std over the seeds that reached it):")
    print(f"{'optimizer':9} {'reached':>8} {'epochs':>14} {'wall s':>16}")
    for name, s in summary.items():
        print(f"{name:9} {s['reached']:>4}/{s['seeds']:<3} {_pm(s['epochs_mean'], s['epochs_std'], '.2f'):>14} "
              f"{_pm(s['wall_s_mean'], s['wall_s_std'], '.1f'):>16}")
    write_json(args.json, {"benchmark": "kfac_lenet5", "args": vars(args), "machine": info,
                           "kfac_available": kfac_class() is not None, "rows": rows, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
