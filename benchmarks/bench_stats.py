#!/usr/bin/env python
"""Cost of per-layer statistics (bpnn.diagnostics.LayerStats) during training.

For each configuration, trains the same seeded model for a few epochs

    off       Trainer.fit with no callback (statistics switched off)
    off-again the same, a second time: the noise floor of an A/A comparison
    every-1   LayerStats(every=1): statistics at initialization and every epoch
    every-5   LayerStats(every=5)

interleaved within every repeat (rotating the order), and reports the median time of
each and the ratios to ``off`` (median of the per-repeat paired ratios). The target:
collecting every epoch costs <= 5 % of training time; switched off, nothing measurable
(the Trainer then skips the batch hooks entirely, and no layer is wrapped).

Configurations:

    digits-deep   `bpnn compare`'s default network: digits (1,347 training samples),
                  10 hidden ReLU layers of 64, batch 32, SGD momentum 0.9 — many tiny
                  steps, the worst case for a fixed per-record cost
    mnist-mlp     784-256-128-10 ReLU on 20,000 synthetic MNIST-shaped samples, batch 128

Usage::

    python benchmarks/bench_stats.py            # full: 7 repeats
    python benchmarks/bench_stats.py --quick    # smoke test: 2 repeats, fewer epochs
    python benchmarks/bench_stats.py --threads 2 --json out.json
    python benchmarks/bench_stats.py --cpu-time   # on a shared machine: CPU time of this process
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from _harness import machine_info, paired_ratios, rotation, set_thread_env, write_json  # beside this script

CLOCK = time.perf_counter


def _configs(quick: bool):
    return {
        "digits-deep": {"hidden": [64] * 10, "batch": 32, "epochs": 4 if quick else 10, "data": "digits"},
        "mnist-mlp": {"hidden": [256, 128], "batch": 128, "epochs": 2 if quick else 4, "data": "synthetic",
                      "samples": 5000 if quick else 20000},
    }


def _data(cfg):
    import numpy as np

    if cfg["data"] == "digits":
        from bpnn.data import load_digits, train_test_split

        X, y = load_digits()
        return train_test_split(X, y, test_size=0.25)[0::2]
    rng = np.random.default_rng(0)
    n = cfg["samples"]
    return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)


def _run(cfg, X, y, variant) -> float:
    import bpnn
    from bpnn.diagnostics import LayerStats

    layers = []
    for w in cfg["hidden"]:
        layers += [bpnn.Dense(w, init="he_normal"), bpnn.ReLU()]
    layers.append(bpnn.Dense(10))
    model = bpnn.Sequential(layers, input_shape=(X.shape[1],), seed=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.01, momentum=0.9))
    callbacks = {"off": [], "off-again": [], "every-1": [LayerStats(every=1)],
                 "every-5": [LayerStats(every=5)]}[variant]
    start = CLOCK()
    trainer.fit(X, y, epochs=cfg["epochs"], batch_size=cfg["batch"], callbacks=callbacks, verbose=False)
    return CLOCK() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 repeats, fewer epochs")
    parser.add_argument("--repeats", type=int, help="timed repeats per variant (default 7, quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (default 1)")
    parser.add_argument("--configs", default="digits-deep,mnist-mlp", help="comma-separated subset")
    parser.add_argument("--json", metavar="PATH", help="write all timings as JSON")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process CPU clock instead of the wall clock (less sensitive to "
                             "other processes on a shared machine; use with --threads 1)")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.cpu_time else time.perf_counter
    set_thread_env(args.threads)  # before NumPy and numba are imported
    repeats = args.repeats or (2 if args.quick else 7)
    configs = _configs(args.quick)
    variants = ["off", "off-again", "every-1", "every-5"]
    clock = "process CPU time" if args.cpu_time else "wall time"
    report = {"machine": machine_info(), "threads": args.threads, "repeats": repeats, "clock": clock, "configs": {}}
    print(f"LayerStats overhead; {args.threads} thread(s), {repeats} repeats, {clock}, "
          f"median of paired ratios to 'off'")
    print(f"{'config':<12} {'variant':<10} {'median s':>9} {'ratio':>7} {'overhead':>9}")
    worst = 0.0
    for name in args.configs.split(","):
        cfg = configs[name]
        X, y = _data(cfg)
        _run(cfg, X, y, "every-1")  # warm-up: imports, caches, kernels
        times = {v: [] for v in variants}
        for r in range(repeats):
            for v in rotation(variants, r):
                times[v].append(_run(cfg, X, y, v))
        ratios = {v: paired_ratios(times[v], times["off"])["median_paired_ratio"] for v in variants}
        report["configs"][name] = {"config": cfg, "times": times, "ratios": ratios}
        for v in variants:
            print(f"{name:<12} {v:<10} {statistics.median(times[v]):>9.3f} {ratios[v]:>7.3f} "
                  f"{100 * (ratios[v] - 1):>8.1f}%")
        worst = max(worst, ratios["every-1"])
    note = " — quick mode is a smoke test, not a measurement" if args.quick else ""
    print(f"\nworst overhead of statistics every epoch: {100 * (worst - 1):.1f}% (target <= 5 %){note}")
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
