#!/usr/bin/env python
"""What the optimizer pieces cost: plain Adam vs Adam with clipping, L2 and a schedule.

One training epoch of a ReLU MLP 784-256-128-10 on 60,000 synthetic MNIST-shaped
samples (float32 X uniform in [0, 1), labels 0..9, one seed), batch 128, softmax
cross-entropy, in two configurations:

    adam        bpnn.optim.Adam(lr=1e-3)
    adam+       bpnn.optim.Adam(lr=CosineAnnealing(1e-3, T_max=steps, unit="step"),
                                clip_norm=1.0)
                with L2(1e-4) on the weight of every Dense layer (Dense(..., regularizer=L2(1e-4)))

Both run in this one process, interleaved (the order alternates from repeat to
repeat) so they share the machine's noise; every timed epoch starts from a freshly
built model (built outside the timer) and the timer covers ``trainer.fit(X, y,
epochs=1, batch_size=128, verbose=False)``. One warm-up epoch per configuration comes
first (numba compilation of the fused kernels). Reported: median, min and max epoch
time per configuration, the ratio of medians (the target's figure), the median of the
per-repeat paired ratios and the ratio of minima. Target: adam+ / adam ≤ 1.10.

A second, finer measurement times the optimizer work alone on the same network: the
median time of one ``opt.step()`` (plain Adam) against one penalty + ``opt.step()``
(adam+), over a few hundred steps with fixed gradients; the difference times the steps
of an epoch, over the fastest plain-Adam epoch, is the overhead with the least noise
(on a shared machine the epoch times scatter far more than 10 %).

Usage::

    python benchmarks/bench_optim.py                 # full: 60,000 samples, 7 repeats
    python benchmarks/bench_optim.py --quick         # smoke test: 10,000 samples, 3 repeats (< 1 min)
    python benchmarks/bench_optim.py --repeats 11 --json bench-results/optim.json
    python benchmarks/bench_optim.py --threads 1     # one BLAS thread: least scatter on a busy machine
    BPNN_DISABLE_NUMBA=1 python benchmarks/bench_optim.py   # NumPy fallbacks instead of the fused kernels
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from _harness import limit_threads, machine_info, paired_ratios, rotation, write_json  # beside this script

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import bpnn  # noqa: E402
from bpnn import _kernels, optim  # noqa: E402
from bpnn.nn.regularizers import penalties  # noqa: E402

IN_DIM, HIDDEN, N_CLASSES, BATCH = 784, (256, 128), 10, 128
TARGET = 1.10
CONFIGS = ("adam", "adam+")


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, IN_DIM), dtype=np.float32), rng.integers(0, N_CLASSES, n)


def make_trainer(config, n_samples, seed):
    reg = optim.L2(1e-4) if config == "adam+" else None
    layers = []
    for h in HIDDEN:
        layers += [bpnn.Dense(h, init="he_uniform", regularizer=reg), bpnn.ReLU()]
    layers.append(bpnn.Dense(N_CLASSES, regularizer=reg))
    model = bpnn.Sequential(layers, input_shape=(IN_DIM,), seed=seed)
    if config == "adam":
        opt = optim.Adam(lr=1e-3)
    else:
        steps = -(-n_samples // BATCH)
        opt = optim.Adam(lr=optim.CosineAnnealing(1e-3, T_max=steps + 1, unit="step"), clip_norm=1.0)
    return bpnn.Trainer(model, loss="softmax_cross_entropy", optimizer=opt, seed=seed)


def time_epoch(config, X, y, seed):
    trainer = make_trainer(config, len(X), seed)
    t0 = time.perf_counter()
    hist = trainer.fit(X, y, epochs=1, batch_size=BATCH, verbose=False)
    elapsed = time.perf_counter() - t0
    return elapsed, hist.history


def time_steps(config, n_steps, seed=0):
    """Median seconds of the optimizer work of one step (gradients held fixed)."""
    trainer = make_trainer(config, n_steps * BATCH, seed)
    model, opt = trainer.model, trainer.optimizer
    opt.attach(model)
    rng = np.random.default_rng(seed)
    flat = model.flat_parameters()
    flat.grads[...] = rng.standard_normal(flat.grads.shape).astype(flat.grads.dtype) * 1e-2
    saved = flat.grads.copy()
    pen = penalties(model)
    times = []
    for _ in range(n_steps):
        flat.grads[...] = saved
        t0 = time.perf_counter()
        if pen is not None:
            pen.apply()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[n_steps // 10:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 samples, 3 repeats")
    ap.add_argument("--samples", type=int, default=None, help="training samples (default 60000)")
    ap.add_argument("--repeats", type=int, default=None, help="timed epochs per configuration (default 7)")
    ap.add_argument("--step-samples", type=int, default=300, help="optimizer steps timed alone")
    ap.add_argument("--threads", type=int, default=None,
                    help="cap BLAS threads (threadpoolctl); on a busy machine 1 scatters least")
    ap.add_argument("--json", metavar="PATH", help="write all timings and the machine description")
    args = ap.parse_args(argv)
    _limiter = limit_threads(args.threads) if args.threads else None  # noqa: F841 - keep the limits
    n = args.samples or (10_000 if args.quick else 60_000)
    repeats = args.repeats or (3 if args.quick else 7)

    X, y = make_data(n)
    print(f"bench_optim: 784-256-128-10, batch {BATCH}, {n} samples, {repeats} repeats, "
          f"numba kernels {'on' if _kernels.enabled() else 'off'}, {os.cpu_count()} CPUs, "
          f"BLAS threads {args.threads or 'default'}")
    for config in CONFIGS:  # warm-up (not timed into the results)
        time_epoch(config, X[: min(n, 4096)], y[: min(n, 4096)], seed=0)
    samples = {c: [] for c in CONFIGS}
    final_loss = {}
    for r in range(repeats):
        for config in rotation(CONFIGS, r):
            elapsed, hist = time_epoch(config, X, y, seed=r)
            samples[config].append(elapsed)
            final_loss[config] = {k: v[-1] for k, v in hist.items()}
        print(f"  repeat {r + 1}/{repeats}: " + ", ".join(f"{c} {samples[c][-1]:.3f} s" for c in CONFIGS))

    med = {c: statistics.median(v) for c, v in samples.items()}
    ratios = paired_ratios(samples["adam+"], samples["adam"])
    ratio, paired = ratios["ratio_of_medians"], ratios["median_paired_ratio"]
    ratio_min = min(samples["adam+"]) / min(samples["adam"])
    step_time = {c: time_steps(c, args.step_samples) for c in CONFIGS}
    steps = -(-n // BATCH)
    # the noise-robust estimate: the extra optimizer work per step, over the least disturbed epoch
    overhead = (step_time["adam+"] - step_time["adam"]) * steps / min(samples["adam"])

    print()
    print(f"{'config':8} {'median s':>9} {'min s':>8} {'max s':>8}   last-epoch logs")
    for c in CONFIGS:
        logs = ", ".join(f"{k} {v:.4g}" for k, v in final_loss[c].items())
        print(f"{c:8} {med[c]:9.3f} {min(samples[c]):8.3f} {max(samples[c]):8.3f}   {logs}")
    print(f"\nepoch time adam+ / adam: {ratio:.3f} (ratio of medians), {paired:.3f} (median of paired "
          f"ratios), {ratio_min:.3f} (ratio of minima); target <= {TARGET:.2f}: "
          f"{'PASS' if ratio <= TARGET else 'FAIL'}")
    print(f"optimizer work per step: adam {step_time['adam'] * 1e3:.3f} ms, "
          f"adam+ (penalty + clip + schedule + step) {step_time['adam+'] * 1e3:.3f} ms "
          f"({(step_time['adam+'] - step_time['adam']) * 1e3:+.3f} ms/step = "
          f"{(step_time['adam+'] - step_time['adam']) * steps:+.3f} s/epoch = {overhead:+.1%} of the "
          f"fastest plain-Adam epoch)")

    if args.json:
        out = {
            "benchmark": "bench_optim", "layers": [IN_DIM, *HIDDEN, N_CLASSES], "batch_size": BATCH,
            "samples": n, "repeats": repeats, "numba": _kernels.enabled(), "threads": args.threads,
            "epoch_seconds": samples, "median_seconds": med, "ratio_of_medians": ratio,
            "median_paired_ratio": paired, "ratio_of_minima": ratio_min, "target": TARGET,
            "pass": ratio <= TARGET, "optimizer_step_seconds": step_time,
            "step_overhead_fraction_of_epoch": overhead, "last_epoch_logs": final_loss,
            "machine": machine_info(), "numpy": np.__version__,
        }
        write_json(args.json, out)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
