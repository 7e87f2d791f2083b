#!/usr/bin/env python
"""Time the gallery's training lessons (docs/gallery/plot_08 ... plot_13) in their fast mode.

The docs build runs every lesson once and the test suite once more, so each fast mode
has a budget of 8 s (aim: 2-5 s) on the development machine. For each lesson this runs
``run(fast=True)`` once to warm up (imports, numba's cache, the MNIST files), then
``--repeats`` times, and reports the median wall time and process CPU time. On a shared
machine the CPU time (with ``--threads 1``) is the better estimate of what a quiet
machine takes.

``--kfac-pools`` adds a paired A/B of lesson 8 (whose K-FAC inverts its factors with
SciPy's LAPACK): BLAS as the process starts (NumPy's and SciPy's OpenBLAS, each with a
thread pool of its own) against both pools limited to one thread by threadpoolctl,
alternating, rotated each repeat. Do not pass ``--threads`` with it (that would limit
both parties).

Usage::

    python benchmarks/bench_gallery_training.py --mnist ../shared/data/mnist --threads 1
    python benchmarks/bench_gallery_training.py --lessons 8 13 --repeats 5 --json out.json
    python benchmarks/bench_gallery_training.py --mnist ../shared/data/mnist --kfac-pools
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

from _harness import machine_info, paired_ratios, rotation, set_thread_env, write_json  # beside this script

GALLERY = Path(__file__).resolve().parents[1] / "docs" / "gallery"


def load(number: int):
    """Lesson ``number``'s script as a module (its main block does not run)."""
    (path,) = GALLERY.glob(f"plot_{number:02d}_*.py")
    spec = importlib.util.spec_from_file_location(f"lesson_{number:02d}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn) -> tuple[float, float]:
    """(wall s, process CPU s) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", type=int, nargs="+", default=[8, 9, 10, 11, 12, 13])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="BLAS/OpenMP/numba threads (default: as the process starts)")
    parser.add_argument("--mnist", metavar="DIR", help="folder of the MNIST IDX files (else the lessons use digits)")
    parser.add_argument("--kfac-pools", action="store_true", help="paired A/B of lesson 8's BLAS thread pools")
    parser.add_argument("--json", metavar="PATH", help="write all timings as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        set_thread_env(args.threads)  # before NumPy and numba are imported
    if args.mnist:
        os.environ["BPNN_MNIST_DIR"] = args.mnist
    os.environ.setdefault("MPLBACKEND", "Agg")
    report = {"machine": machine_info(), "threads": args.threads, "repeats": args.repeats, "lessons": {}}
    print(f"gallery fast modes; threads {args.threads or 'as started'}, {args.repeats} repeats, medians")
    print(f"{'lesson':<32} {'data':<14} {'wall s':>7} {'cpu s':>7}")
    for n in args.lessons:
        lesson = load(n)
        data = lesson.run(fast=True)["data"]  # warm-up
        times = [timed(lambda: lesson.run(fast=True)) for _ in range(args.repeats)]
        wall, cpu = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
        report["lessons"][n] = {"data": data, "times": times}
        print(f"{Path(lesson.__file__).stem:<32} {data:<14} {wall:>7.2f} {cpu:>7.2f}")
    if args.kfac_pools:
        import scipy.linalg  # noqa: F401 - loads SciPy's OpenBLAS, so that threadpoolctl sees it
        from threadpoolctl import threadpool_limits

        lesson = load(8)
        lesson.run(fast=True)

        def one_thread():
            with threadpool_limits(limits=1, user_api="blas"):
                lesson.run(fast=True)

        parties = {"as started": lambda: lesson.run(fast=True), "one BLAS thread": one_thread}
        times = {k: [] for k in parties}
        for r in range(args.repeats):
            for k in rotation(list(parties), r):
                times[k].append(timed(parties[k]))
        walls = {k: [t[0] for t in v] for k, v in times.items()}
        ratio = paired_ratios(walls["as started"], walls["one BLAS thread"])
        report["kfac_pools"] = {"times": times, "wall_ratio": ratio}
        print("\nlesson 8, BLAS pools as started / one thread:")
        for k, v in times.items():
            print(f"  {k:<16} wall {statistics.median(t[0] for t in v):7.2f} s  cpu "
                  f"{statistics.median(t[1] for t in v):7.2f} s")
        print(f"  median paired wall ratio {ratio['median_paired_ratio']:.2f}")
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
