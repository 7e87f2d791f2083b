#!/usr/bin/env python
"""Paired A/B of two bpnn source trees: the training epochs of bench_mlp and bench_cnn.

Each (benchmark, config) gets one worker process per source tree, both started from this
checkout's benchmark script (so the model, data and timing code are the same and only
the imported ``bpnn`` differs: ``PYTHONPATH=TREE``). After a warm-up epoch each, the
parent asks for timed epochs in alternation, the order rotating from repeat to repeat,
and keeps each epoch's least disturbed attempt (benchmarks/README.md, "The harness").
It prints, per config, the median epoch of each tree, the ratio of the medians and the
median of the per-repeat paired ratios new/base (< 1: the new tree is faster).

Usage (from the repository root; the base tree checked out beside it)::

    git worktree add --detach /tmp/bpnn-base COMMIT
    python benchmarks/ab.py --base /tmp/bpnn-base/src --repeats 11
    python benchmarks/ab.py --base /tmp/bpnn-base/src --configs cnn:resnet --json ab.json
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

from _harness import (  # beside this script
    MNIST_DIR, Worker, kernel_line, least_disturbed, machine_info, paired_ratios, rotation, write_json,
)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
sys.path.insert(0, HERE)

import bench_cnn  # noqa: E402
import bench_mlp  # noqa: E402

CONFIGS = [f"mlp:{c}" for c in bench_mlp.CONFIGS] + [f"cnn:{c}" for c in bench_cnn.CONFIGS]


def _spec(bench: str, config: str, args) -> tuple[str, dict, str]:
    """The script a worker runs, its spec, and the reply key holding the epoch's time."""
    if bench == "mlp":
        cfg = bench_mlp.CONFIGS[config]
        n = args.mlp_samples if cfg["hidden"][0] <= 1024 else args.mlp_samples // 4
        spec = {"framework": "bpnn", "n": n, "hidden": list(cfg["hidden"]), "batch": cfg["batch"],
                "threads": args.threads, "seed": args.seed, "data_seed": args.seed}
        return bench_mlp.__file__, spec, "time_s"
    cfg = bench_cnn.CONFIGS[config]
    spec = {"framework": "bpnn", "config": config, "samples": args.cnn_samples or cfg["samples"], "threads": args.threads,
            "data_dir": args.data_dir, "seed": args.seed}
    return bench_cnn.__file__, spec, "time"


def run_pair(name: str, args) -> dict:
    bench, config = name.split(":")
    script, spec, key = _spec(bench, config, args)
    trees = {"new": os.path.abspath(args.new), "base": os.path.abspath(args.base)}
    workers = {tree: Worker(script, spec, name=f"{tree}", threads=args.threads, env={"PYTHONPATH": src})
               for tree, src in trees.items()}
    times = {tree: [] for tree in workers}
    try:
        versions = {tree: w.recv().get("versions") for tree, w in workers.items()}
        for tree, v in versions.items():
            if (v or {}).get("kernels"):
                print(f"  {name:16s} {tree}: {kernel_line(v['kernels'])}", flush=True)
        for w in workers.values():
            w.ask("epoch", rep=0)  # warm-up: compilation, lazy imports, allocator
        for rep in range(1, args.repeats + 1):
            for tree in rotation(list(workers), rep):
                k, attempts = least_disturbed(lambda tree=tree, rep=rep: workers[tree].ask("epoch", rep=rep),
                                              threshold=args.noise_threshold, max_retries=args.max_retries,
                                              max_wait=args.max_wait)
                times[tree].append(attempts[k][key])
            print(f"  {name:16s} rep {rep:2d}  new {times['new'][-1]:7.3f} s  base {times['base'][-1]:7.3f} s",
                  flush=True)
    finally:
        for w in workers.values():
            w.close()
    ratios = paired_ratios(times["new"], times["base"])
    return {"config": name, "times": times, "versions": versions, **ratios,
            "median_new": statistics.median(times["new"]), "median_base": statistics.median(times["base"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the base tree's src/ folder (the commit before the change)")
    ap.add_argument("--new", default=SRC, help="the new tree's src/ folder (default: this checkout's)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    ap.add_argument("--repeats", type=int, default=7, help="timed epochs per tree (default 7)")
    ap.add_argument("--mlp-samples", type=int, default=20_000,
                    help="MLP training samples (default 20000; a quarter for the wide net)")
    ap.add_argument("--cnn-samples", type=int, default=None,
                    help="CNN training images (default bench_cnn's per config: 10000 LeNet-5, 2560 residual CNN)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--data-dir", default=MNIST_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise-threshold", type=float, default=0.3, help="foreign cores above which an epoch is re-run")
    ap.add_argument("--max-retries", type=int, default=2)
    ap.add_argument("--max-wait", type=float, default=20.0, help="seconds to wait for a quiet machine per epoch")
    ap.add_argument("--json", default=None, help="write all results to this file")
    args = ap.parse_args(argv)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        ap.error(f"--configs: unknown {unknown}; valid: {', '.join(CONFIGS)}")
    info = machine_info()
    print(f"# A/B new={args.new} base={args.base}\n# cpu: {info.get('cpu_model')}, {info['vector_isa']}; "
          f"threads {args.threads}", flush=True)
    results = [run_pair(name, args) for name in names]
    print("\n| config | new median (s) | base median (s) | new/base (medians) | paired median |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['config']} | {r['median_new']:.3f} | {r['median_base']:.3f} | "
              f"{r['ratio_of_medians']:.3f} | {r['median_paired_ratio']:.3f} |")
    if args.json:
        write_json(args.json, {"machine": info, "args": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
