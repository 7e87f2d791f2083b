"""A study of 32 short runs three ways: serially, on 2 local processes, on a 2-worker Dask LocalCluster.

    PYTHONPATH=src python benchmarks/bench_study.py                    # 3 repeats
    PYTHONPATH=src python benchmarks/bench_study.py --repeats 5 --json results/bench_study.json
    PYTHONPATH=src python benchmarks/bench_study.py --epochs 40     # runs 5x as long

The study: digits (all 1347 training samples), 4 initializations × 8 seeds, one hidden
layer of 128 ReLU units, 8 epochs (``--epochs``) of mini-batches of 32, per-layer statistics every epoch:
32 runs of about 40 ms each on an idle core of the machine in `benchmarks/README.md`. Every process computes with one BLAS and one numba
thread (this process through the environment set below; loky's workers through joblib;
the Dask workers through bpnn's pinning), so that the three ways differ only in how runs
are spread.

- serial: ``backend="sequential"`` in a process of its own (spawned once, warm; not
  this process, which hosts the Dask scheduler and nannies);
- 2 local processes: ``backend="loky", n_jobs=2`` (joblib's reusable executor, warm);
- Dask: the LocalCluster of 2 single-threaded worker processes on 127.0.0.1 that
  ``backend="dask"`` starts without an address (``local_dask_cluster``), started once
  before the timings; each timed study connects a Client and scatters the data.

Each repeat times the three in a rotating order, after a warm-up of each, and waits for
the machine to be quiet first (at most ``--max-wait`` s). Printed: median seconds per
way, scaling efficiency = serial ÷ (2 × parallel) for both parallel ways, and Dask's
overhead per run relative to local processes = (dask − local) ÷ 32, as medians and
per-repeat values, with the load other processes put on the machine during each timing.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy loads: one thread in this process, as in each worker

import argparse  # noqa: E402
import functools  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

from _harness import cpu_ticks, foreign_cores, machine_header, rotation, wait_quiet, write_json  # noqa: E402


def study(epochs: int = 8):
    from bpnn.experiment import StudySpec

    return StudySpec(inits=["he_normal", "xavier_uniform", "lecun_normal", "orthogonal"], seeds=list(range(8)),
                     hidden=[128], epochs=epochs, batch_size=32, n_jobs=1)


def own_cpu() -> dict:
    """CPU seconds of this process and each of its descendants (the workers), by pid."""
    import psutil  # comes with dask.distributed

    me = psutil.Process()
    out = {}
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def timed(fn):
    """Wall seconds of fn(), and the cores other processes used meanwhile (the machine's
    busy time less this process and its workers, over the wall time)."""
    c0, cpu0, t0 = cpu_ticks(), own_cpu(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    cpu1 = own_cpu()
    own = sum(v - cpu0.get(pid, 0.0) for pid, v in cpu1.items())
    return wall, foreign_cores(c0, cpu_ticks(), own, wall), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-wait", type=float, default=20.0, help="wait this long for a quiet machine")
    parser.add_argument("--json", help="write the timings to this file")
    parser.add_argument("--epochs", type=int, default=8,
                        help="epochs per run (8: runs of ~40 ms; more: longer runs, the same 32 of them)")
    args = parser.parse_args(argv)

    from bpnn.experiment import load_study_data, run_study
    from bpnn.experiment.backends import local_dask_cluster

    header = machine_header(threads=1)
    spec = study(args.epochs)
    data = load_study_data(spec)
    n_runs = len(spec.runs())
    spawn = multiprocessing.get_context("spawn")
    with local_dask_cluster(2) as cluster, ProcessPoolExecutor(1, mp_context=spawn) as alone:
        # the local cluster is started once here, as `--backend dask` starts it; the serial
        # study runs in a process of its own, not in this one, which hosts the scheduler
        ways = {
            "serial": lambda: alone.submit(functools.partial(run_study, progress=False, backend="sequential"),
                                           spec, data).result(),
            "local_2": lambda: run_study(spec, data, progress=False, backend="loky", n_jobs=2),
            "dask_2": lambda: run_study(spec, data, progress=False, backend="dask", address=cluster.scheduler_address,
                                        n_jobs=-1),
        }
        for fn in ways.values():  # warm-up: imports, numba's cache, loky's executor, the workers' imports
            fn()
        times = {k: [] for k in ways}
        loads = {k: [] for k in ways}
        for rep in range(args.repeats):
            for name in rotation(list(ways), rep):
                wait_quiet(0.3, args.max_wait)
                wall, load, result = timed(ways[name])
                assert len(result.runs) == n_runs and not any(r["error"] for r in result.runs)
                times[name].append(wall)
                loads[name].append(load)
                print(f"repeat {rep}: {name:<8} {wall:6.2f} s  (others' load {load if load is None else round(load, 2)}"
                      f" cores; backend {result.meta['backend']}, {result.meta['n_workers']} workers)", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    eff = {k: [s / (2 * p) for s, p in zip(times["serial"], times[k])] for k in ("local_2", "dask_2")}
    overhead = [(d - p) / n_runs * 1000 for d, p in zip(times["dask_2"], times["local_2"])]
    print(f"\n{n_runs} runs; medians: serial {med['serial']:.2f} s, 2 local processes {med['local_2']:.2f} s, "
          f"2-worker dask {med['dask_2']:.2f} s")
    for k in ("local_2", "dask_2"):
        print(f"scaling efficiency {k}: median {statistics.median(eff[k]):.3f} (per repeat "
              f"{', '.join(f'{e:.3f}' for e in eff[k])}); of medians {med['serial'] / (2 * med[k]):.3f}")
    print(f"dask overhead per run vs local processes: median {statistics.median(overhead):.1f} ms (per repeat "
          f"{', '.join(f'{o:.1f}' for o in overhead)})")
    write_json(args.json, {"machine": header, "n_runs": n_runs, "epochs": args.epochs, "seconds": times, "others_load_cores": loads,
                           "median_seconds": med, "efficiency": eff, "dask_overhead_ms_per_run": overhead})
    return 0


if __name__ == "__main__":
    sys.exit(main())
