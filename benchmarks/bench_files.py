"""What verifying checksums costs when a model file is loaded.

A 784-800-10 MLP (float32, 636,010 parameters, 2.5 MB of weights) is saved twice with
identical arrays and document: once as bpnn writes it (with the ``bpnn_sha256`` table)
and once without the table (as files written before checksums), which ``bpnn.load``
reads unverified. The two are loaded in alternation, the order rotating, and the paired
ratio of the load times is the cost of verification. ``--optimizer`` saves Adam's state
too (three times the arrays). The SHA-256 of the weights alone is timed beside it.

With ``--base TREE`` (a checkout of an earlier commit), the checked file is also loaded
by this checkout's bpnn and by TREE's, each in a process of its own started anew for
every repeat (the order rotating), and the paired ratio compares the two versions.

    PYTHONPATH=src python benchmarks/bench_files.py [--repeats 41] [--optimizer] [--json out.json]
    PYTHONPATH=src python benchmarks/bench_files.py --base /tmp/bpnn-base [--base-repeats 11]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--loads", type=int, default=5, help="loads per timed sample (default: 5)")
    parser.add_argument("--optimizer", action="store_true", help="save Adam's state as well")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--base", metavar="TREE", help="also compare with the bpnn of this source tree")
    parser.add_argument("--base-repeats", type=int, default=11)
    parser.add_argument("--_load", nargs=2, metavar=("PATH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _harness.set_thread_env(args.threads)
    if args._load:  # a worker: the median of N timed loads of PATH, after a warm-up
        print(json.dumps(_median_load(args._load[0], int(args._load[1]), args.optimizer)))
        return

    import numpy as np
    import safetensors.numpy

    import bpnn
    from bpnn._tensorfile import CHECKSUMS, TensorFile

    model = bpnn.Sequential([bpnn.Dense(800), bpnn.ReLU(), bpnn.Dense(10)], input_shape=(784,), seed=0)
    optimizer = bpnn.optim.Adam().attach(model) if args.optimizer else None
    with tempfile.TemporaryDirectory() as tmp:
        checked = os.path.join(tmp, "checked.safetensors")
        bpnn.save(model, checked, optimizer=optimizer)
        with TensorFile(checked) as tf:
            arrays = {name: tf.read(spec) for name, spec in tf.arrays.items()}
            metadata = {k: v for k, v in tf.metadata.items() if k != CHECKSUMS}
        plain = os.path.join(tmp, "plain.safetensors")
        with open(plain, "wb") as f:
            f.write(safetensors.numpy.save(arrays, metadata=metadata))
        paths = {"checked": checked, "plain": plain}
        for path in paths.values():  # warm the page cache and every lazy import
            bpnn.load(path, with_optimizer=args.optimizer)

        def timed(path):
            t0 = time.perf_counter()
            for _ in range(args.loads):
                bpnn.load(path, with_optimizer=args.optimizer)
            return (time.perf_counter() - t0) / args.loads

        times = {"checked": [], "plain": []}
        for rep in range(args.repeats):
            for name in _harness.rotation(["checked", "plain"], rep):
                times[name].append(timed(paths[name]))
        blob = np.concatenate([np.ascontiguousarray(a).ravel().view(np.uint8) for a in arrays.values()])
        sha = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            hashlib.sha256(blob).digest()
            sha.append(time.perf_counter() - t0)
        size = os.path.getsize(checked)
        versions = _versions(args, checked) if args.base else None
    ratios = _harness.paired_ratios(times["checked"], times["plain"])
    result = {
        "file_bytes": size, "array_bytes": int(blob.size), "optimizer": args.optimizer,
        "median_load_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
        "median_paired_ratio": ratios["median_paired_ratio"], "ratio_of_medians": ratios["ratio_of_medians"],
        "median_sha256_ms": 1e3 * statistics.median(sha),
        "sha256_MB_per_s": blob.size / statistics.median(sha) / 1e6,
    }
    if versions:
        result["versions"] = versions
    print(json.dumps(result, indent=1))
    if args.json:
        _harness.write_json(args.json, {"machine": _harness.machine_info(), "results": result})


def _median_load(path: str, n: int, with_optimizer: bool) -> float:
    import bpnn

    for _ in range(3):
        bpnn.load(path, with_optimizer=with_optimizer)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        bpnn.load(path, with_optimizer=with_optimizer)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _versions(args, path) -> dict:
    """This checkout's load against ``args.base``'s, of the same (checked) file."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    trees = {"this": here, "base": os.path.join(os.path.abspath(args.base), "src")}
    times = {"this": [], "base": []}
    for rep in range(args.base_repeats):
        for name in _harness.rotation(["this", "base"], rep):
            cmd = [sys.executable, os.path.abspath(__file__), "--_load", path, "200"]
            if args.optimizer:
                cmd.append("--optimizer")
            out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                 env=_harness.thread_env(args.threads, {"PYTHONPATH": trees[name]}))
            times[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    ratios = _harness.paired_ratios(times["this"], times["base"])
    return {"base": os.path.abspath(args.base),
            "median_load_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
            "median_paired_ratio": ratios["median_paired_ratio"]}


if __name__ == "__main__":
    main()
