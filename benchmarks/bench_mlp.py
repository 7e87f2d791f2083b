#!/usr/bin/env python
"""One-epoch MLP training benchmark: bpnn vs PyTorch (CPU) vs scikit-learn.

Trains a ReLU MLP for ONE epoch on synthetic MNIST-shaped data (float32 X of shape
(N, 784), labels 0..9, seeded) with Adam (lr 1e-3), softmax cross-entropy and a fresh
shuffle, in three configurations:

    small-b128   784-256-128-10, batch 128
    small-b32    784-256-128-10, batch 32
    wide-b256    784-2048-2048-10, batch 256

Every framework runs in its own worker subprocess (same thread count everywhere), so
its peak memory can be measured in isolation; the workers of one configuration stay
alive and the parent asks them for one epoch at a time, interleaving the frameworks
within every repeat (rotating their order) so they share the machine's noise. The
first epoch of every worker is a warm-up, excluded from the timings (its memory
high-water mark, taken in a fresh process, is the reported memory figure).

Usage::

    python benchmarks/bench_mlp.py                      # full run (a few minutes on 2 cores)
    python benchmarks/bench_mlp.py --quick              # smoke test (< 1 min)
    python benchmarks/bench_mlp.py --configs small-b32 --repeats 9 --json out.json

See benchmarks/README.md for what is measured and how.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from _harness import (  # beside this script
    WORKER_FLAG, Usage, Worker, commands, kernel_info, kernel_line, least_disturbed, limit_threads, machine_info,
    paired_ratios, proc_status_kib, rotation, send, thread_info, wait_quiet, write_json,
)

IN_DIM, N_CLASSES = 784, 10
FRAMEWORKS = ("bpnn", "torch", "sklearn")
CONFIGS = {
    "small-b128": {"hidden": (256, 128), "batch": 128, "repeats": 5},
    "small-b32": {"hidden": (256, 128), "batch": 32, "repeats": 5},
    "wide-b256": {"hidden": (2048, 2048), "batch": 256, "repeats": 3},
}
# Targets: ratio = t_bpnn / t_other (time ratio, < 1 means bpnn is faster).
TARGETS = {
    "small-b128": {"torch": 0.75, "sklearn": 0.6},
    "small-b32": {"torch": 0.6, "sklearn": 0.6},
    "wide-b256": {"torch": 0.9, "sklearn": 0.6, "frac_peak": 0.80},
}


# =============================================================================== helpers
def layer_dims(hidden):
    sizes = (IN_DIM, *hidden, N_CLASSES)
    return list(zip(sizes[:-1], sizes[1:]))


def train_flops(n_samples, hidden):
    """Matmul FLOPs of one training epoch (bias, activations, loss, optimizer not counted).

    forward 2·N·Σ in·out; weight gradients 2·N·Σ in·out; input gradients 2·N·Σ in·out over
    every layer but the first (nobody needs ∂L/∂X).
    """
    dims = layer_dims(hidden)
    macs = sum(i * o for i, o in dims)
    macs_no_first = sum(i * o for i, o in dims[1:])
    return {
        "forward": 2 * n_samples * macs,
        "backward_weight": 2 * n_samples * macs,
        "backward_input": 2 * n_samples * macs_no_first,
        "total": 2 * n_samples * (2 * macs + macs_no_first),
    }


# =============================================================================== worker side
def _make_data(n, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.random((n, IN_DIM), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, size=n, dtype=np.int64)
    return X, y


class _BpnnRunner:
    def __init__(self, X, y, hidden, batch, seed):
        import bpnn

        self.bpnn, self.X, self.y, self.hidden, self.batch, self.seed = bpnn, X, y, hidden, batch, seed

    def versions(self):
        import numpy as np

        v = {"bpnn": self.bpnn.__version__, "numpy": np.__version__,
             "bpnn_path": os.path.dirname(self.bpnn.__file__), "kernels": kernel_info()}
        try:
            from bpnn import _kernels

            v["bpnn_numba_kernels"] = bool(_kernels.enabled())
            if _kernels.enabled():
                import importlib.metadata

                v["numba"] = importlib.metadata.version("numba")
        except ImportError:
            pass
        return v

    def epoch(self, rep):
        bpnn = self.bpnn
        layers = []
        for h in self.hidden:
            layers += [bpnn.Dense(h), bpnn.ReLU()]
        layers.append(bpnn.Dense(N_CLASSES))
        model = bpnn.Sequential(layers, input_shape=(IN_DIM,), seed=self.seed + rep)
        trainer = bpnn.Trainer(model, loss="softmax_cross_entropy", optimizer=bpnn.optim.Adam(lr=1e-3))
        t0 = time.perf_counter()
        hist = trainer.fit(self.X, self.y, epochs=1, batch_size=self.batch, verbose=False)
        elapsed = time.perf_counter() - t0
        return elapsed, {"loss": float(hist.history["loss"][-1]), "dtype": str(model.dtype)}


class _TorchRunner:
    def __init__(self, X, y, hidden, batch, seed, threads):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.hidden, self.batch, self.seed = hidden, batch, seed

    def versions(self):
        import numpy as np

        t = self.torch
        return {"torch": t.__version__, "numpy": np.__version__, "torch_num_threads": t.get_num_threads(),
                "torch_num_interop_threads": t.get_num_interop_threads(),
                "torch_parallel_info": t.__config__.parallel_info()}

    def epoch(self, rep):
        torch, nn = self.torch, self.torch.nn
        torch.manual_seed(self.seed + rep)
        mods, d = [], IN_DIM
        for h in self.hidden:
            mods += [nn.Linear(d, h), nn.ReLU()]
            d = h
        mods.append(nn.Linear(d, N_CLASSES))
        model = nn.Sequential(*mods)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        X, y, bs = self.X, self.y, self.batch
        n = X.shape[0]
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n)
        running = 0.0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb, yb = X[idx], y[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item() * len(idx)
        elapsed = time.perf_counter() - t0
        return elapsed, {"loss": running / n, "dtype": str(next(model.parameters()).dtype)}


class _SklearnRunner:
    def __init__(self, X, y, hidden, batch, seed):
        self.X, self.y, self.hidden, self.batch, self.seed = X, y, hidden, batch, seed

    def versions(self):
        import numpy as np
        import sklearn

        return {"sklearn": sklearn.__version__, "numpy": np.__version__}

    def epoch(self, rep):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier(hidden_layer_sizes=self.hidden, activation="relu", solver="adam",
                            batch_size=self.batch, max_iter=1, shuffle=True, learning_rate_init=1e-3,
                            alpha=0.0, tol=0.0, n_iter_no_change=10**9, early_stopping=False,
                            random_state=self.seed + rep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            clf.fit(self.X, self.y)  # includes sklearn's input checks, label binarizing and init
            elapsed = time.perf_counter() - t0
        return elapsed, {"loss": float(clf.loss_), "dtype": str(clf.coefs_[0].dtype), "n_iter": int(clf.n_iter_)}


def _prewarm_blas(fw, hidden, batch):
    """Run the epoch's GEMM shapes once so the BLAS library's one-time thread start-up and
    work buffers are not charged to the framework's training memory."""
    import numpy as np

    mm = np.matmul
    conv = np.asarray
    if fw == "torch":
        import torch

        mm, conv = torch.mm, torch.from_numpy
    for _ in range(2):
        for i, o in layer_dims(hidden):
            x = conv(np.ones((batch, i), np.float32))
            w = conv(np.ones((i, o), np.float32))
            g = conv(np.ones((batch, o), np.float32))
            mm(x, w)
            mm(x.T, g)
            mm(g, w.T)


def _timed(fn, reps):
    """Seconds of ``reps`` calls of ``fn`` after one warm-up call."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def _matmul_peak(sizes, reps, threads):
    """Median GFLOP/s of float32 square matmuls (numpy; torch as a reference if installed)."""
    import numpy as np

    out = {"numpy": {}, "torch": {}}
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        ts = _timed(lambda: np.matmul(a, b, out=c), reps)
        out["numpy"][str(n)] = {"samples_s": ts, "gflops": 2 * n**3 / statistics.median(ts) / 1e9}
        try:
            import torch
        except ImportError:
            continue
        torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        tc = torch.empty((n, n), dtype=torch.float32)
        ts = _timed(lambda: torch.mm(ta, tb, out=tc), reps)
        out["torch"][str(n)] = {"samples_s": ts, "gflops": 2 * n**3 / statistics.median(ts) / 1e9}
    out["numpy_peak_gflops"] = max(v["gflops"] for v in out["numpy"].values())
    if out["torch"]:
        out["torch_peak_gflops"] = max(v["gflops"] for v in out["torch"].values())
    return out


def worker_main(spec):
    threads = spec["threads"]
    fw = spec["framework"]
    if fw == "peak":
        _limiter = limit_threads(threads)  # noqa: F841
        if not spec.get("serve"):
            res = _matmul_peak(spec["sizes"], spec["reps"], threads)
            res["threads"] = thread_info(threads)
            send({"ok": True, "result": res})
            return
        send({"ok": True, "ready": True})
        for _ in commands():  # one measurement per request, next to the epoch it is paired with
            res = _matmul_peak(spec["sizes"], spec["reps"], threads)
            send({"ok": True, "gflops": res["numpy_peak_gflops"],
                   "per_size": {k: v["gflops"] for k, v in res["numpy"].items()}})
        return
    t0 = time.perf_counter()
    X, y = _make_data(spec["n"], spec["data_seed"])
    hidden, batch, seed = tuple(spec["hidden"]), spec["batch"], spec["seed"]
    if fw == "bpnn":
        runner = _BpnnRunner(X, y, hidden, batch, seed)
    elif fw == "torch":
        runner = _TorchRunner(X, y, hidden, batch, seed, threads)
    elif fw == "sklearn":
        runner = _SklearnRunner(X, y, hidden, batch, seed)
    else:
        raise SystemExit(f"unknown framework {fw!r}")
    _limiter = limit_threads(threads)  # noqa: F841 - after the imports, so it sees every library
    _prewarm_blas(fw, hidden, batch)
    import gc

    gc.collect()
    send({"ok": True, "ready": True, "setup_s": time.perf_counter() - t0, "versions": runner.versions(),
           "threads": thread_info(threads), "data_rss_kib": proc_status_kib("VmRSS")})
    for cmd in commands():
        gc.collect()
        with Usage() as u:
            elapsed, extra = runner.epoch(cmd["rep"])
        send({"ok": True, "time_s": elapsed, "cpu_s": u.cpu_s, "foreign_cores": u.foreign_cores,
              "rss_base_kib": u.rss_before_kib, "hwm_kib": u.hwm_kib, "hwm_before_kib": u.hwm_before_kib,
              "hwm_reset": u.hwm_reset,
              "peak_increase_mib": None if u.peak_increase_kib is None else u.peak_increase_kib / 1024, **extra})


# =============================================================================== parent side
def _fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def _worker(spec):
    return Worker(__file__, spec, name=spec["framework"], threads=spec["threads"])


def measure_peak(threads, quick, max_wait):
    wait_quiet(0.25, max_wait)
    spec = {"framework": "peak", "threads": threads,
            "sizes": [2048] if quick else [2048, 4096], "reps": 3 if quick else 5}
    w = _worker(spec)
    try:
        return w.recv()["result"]
    finally:
        w.close()


def _paused(worker, cmd, pause=0.5):
    time.sleep(pause)
    return worker.ask(cmd)


def run_config(name, cfg, args):
    hidden, batch = cfg["hidden"], cfg["batch"]
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else cfg["repeats"])
    n = args.samples
    if args.quick and cfg["hidden"][0] > 1024 and not args.samples_given:
        n = max(cfg["batch"], n // 4)  # keep --quick well under a minute
    base = {"n": n, "hidden": list(hidden), "batch": batch, "threads": args.threads,
            "seed": args.seed, "data_seed": args.seed}
    workers = {fw: _worker({**base, "framework": fw}) for fw in args.frameworks}
    # A matmul peak measured right before and right after every timed bpnn epoch: the
    # host's matmul speed drifts during a run (benchmarks/README.md, "Matmul peak"), so
    # each epoch is compared with the peak of its own moment (the mean of the two).
    paired_peak = None
    if "frac_peak" in TARGETS[name] and "bpnn" in workers and not args.no_peak:
        paired_peak = _worker({"framework": "peak", "serve": True, "threads": args.threads,
                               "sizes": [2048] if args.quick else [2048, 4096], "reps": 3})
        paired_peak.recv()
    res = {"hidden": list(hidden), "batch": batch, "n_samples": n, "repeats": repeats,
           "steps_per_epoch": -(-n // batch), "flops": train_flops(n, hidden),
           "frameworks": {}}
    try:
        for fw, w in workers.items():
            ready = w.recv()
            res["frameworks"][fw] = {"versions": ready["versions"], "threads": ready["threads"],
                                     "setup_s": ready["setup_s"], "warmup": None, "samples": []}
        order = list(workers)
        for rep in range(repeats + 1):  # rep 0 is the warm-up
            for fw in rotation(order, rep):
                bracket = paired_peak is not None and fw == "bpnn" and rep > 0

                def epoch(fw=fw, rep=rep, bracket=bracket):
                    # (each peak after a pause: an idle worker's BLAS threads spin for a while after its last call)
                    before = _paused(paired_peak, "peak") if bracket else None
                    r = workers[fw].ask("epoch", rep=rep)
                    if bracket:  # the epoch's peak: the mean of the ones measured just before and after
                        after = _paused(paired_peak, "peak")
                        r["paired_peak_gflops"] = (before["gflops"] + after["gflops"]) / 2
                        r["paired_peak_before_after"] = [before["per_size"], after["per_size"]]
                    return r

                def show(r, retrying, fw=fw, rep=rep):
                    tag = "warm-up" if rep == 0 else f"rep {rep}"
                    print(f"  {name:11s} {tag:7s} {fw:8s} {r['time_s']:8.3f} s  cpu {r['cpu_s']:7.2f} s  "
                          f"foreign load {_fmt(r['foreign_cores'], '.2f')} cores  "
                          f"+{_fmt(r['peak_increase_mib'], '.0f')} MiB  loss {r['loss']:.4f}"
                          + ("  [noisy, retrying]" if retrying else "  [noisy]" if r["noisy"] else ""), flush=True)

                # the warm-up neither waits nor retries; a timed epoch keeps its least disturbed
                # attempt, and every attempt stays in the JSON
                k, attempts = least_disturbed(epoch, threshold=args.noise_threshold,
                                              max_retries=args.max_retries if rep > 0 else 0,
                                              max_wait=args.max_wait if rep > 0 else 0.0, report=show)
                best = {**attempts[k], "attempts": len(attempts)}
                if len(attempts) > 1:
                    best["discarded_attempts"] = attempts[:k] + attempts[k + 1:]
                entry = res["frameworks"][fw]
                if rep == 0:
                    entry["warmup"] = best
                else:
                    entry["samples"].append(best)
    finally:
        for w in [*workers.values(), *([paired_peak] if paired_peak else [])]:
            w.close()
    for fw, e in res["frameworks"].items():
        times = [s["time_s"] for s in e["samples"]]
        e["times_s"] = times
        e["median_s"] = statistics.median(times)
        e["min_s"], e["max_s"] = min(times), max(times)
        e["dtype"] = e["warmup"]["dtype"]
        e["final_loss"] = e["samples"][-1]["loss"]
        # memory: peak RSS increase of the first (warm-up) epoch in a fresh process
        e["peak_mem_mib"] = e["warmup"]["peak_increase_mib"]
        e["steady_mem_mib"] = max((s["peak_increase_mib"] or 0) for s in e["samples"])
        e["peak_rss_mib"] = max(s["hwm_kib"] for s in [e["warmup"], *e["samples"]]) / 1024
        e["gflops"] = res["flops"]["total"] / e["median_s"] / 1e9
        fc = [s["foreign_cores"] for s in e["samples"] if s["foreign_cores"] is not None]
        e["foreign_cores_median"] = statistics.median(fc) if fc else None
        e["noisy_samples"] = sum(bool(s["noisy"]) for s in e["samples"])
    return res


def summarize(results, peak_gflops):
    for name, res in results["configs"].items():
        fws = res["frameworks"]
        for fw, e in fws.items():
            e["frac_peak"] = e["gflops"] / peak_gflops
            paired = [res["flops"]["total"] / s["time_s"] / 1e9 / s["paired_peak_gflops"]
                      for s in e["samples"] if s.get("paired_peak_gflops")]
            if paired:  # each epoch against the peak measured just before it
                e["frac_peak_paired"] = statistics.median(paired)
                e["frac_peak_paired_samples"] = paired
        ratios = {}
        if "bpnn" in fws:
            for other in ("torch", "sklearn"):
                if other in fws:
                    ratios[other] = {**paired_ratios(fws["bpnn"]["times_s"], fws[other]["times_s"]),
                                     "target": TARGETS[name].get(other)}
        res["ratios"] = ratios
        checks = {}
        for other, r in ratios.items():
            if r["target"] is not None:
                checks[f"bpnn/{other} <= {r['target']}"] = r["ratio_of_medians"] <= r["target"]
        if "frac_peak" in TARGETS[name] and "bpnn" in fws:
            frac = fws["bpnn"].get("frac_peak_paired", fws["bpnn"]["frac_peak"])
            checks[f"bpnn >= {TARGETS[name]['frac_peak']:.0%} of matmul peak"] = frac >= TARGETS[name]["frac_peak"]
        res["targets_met"] = checks


def print_report(results):
    peak = results["matmul_peak"]
    print()
    print("=" * 96)
    m = results["machine"]
    print(f"machine: {m.get('cpu_model', '?')}, {m['cpu_count']} CPUs; threads used: {results['threads']} "
          f"(BLAS/OpenMP env + threadpoolctl; torch.set_num_threads)")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()))
    kernels = next((r["frameworks"]["bpnn"]["versions"].get("kernels") for r in results["configs"].values()
                    if "bpnn" in r.get("frameworks", {})), None)
    if kernels:
        print(f"bpnn: {kernel_line(kernels)}")
        print(f"bpnn kernel path per layer: Dense: BLAS products (x @ W, xᵀ G, G Wᵀ); ReLU, softmax loss, Adam: "
              f"{'numba kernels' if kernels.get('numba_kernels') else 'NumPy'}")
    line = "float32 matmul peak: not measured (--no-peak)"
    if peak.get("start"):
        sizes = ", ".join(f"{n}: {v['gflops']:.1f}" for n, v in peak["start"]["numpy"].items())
        line = f"float32 matmul peak (numpy, GFLOP/s, median per size) start [{sizes}]"
    if peak.get("end"):
        sizes = ", ".join(f"{n}: {v['gflops']:.1f}" for n, v in peak["end"]["numpy"].items())
        line += f" end [{sizes}]"
    print(line)
    print(f"  -> peak used for %peak: {peak['peak_gflops']:.1f} GFLOP/s"
          + (f"   (torch.mm reference: {peak['torch_peak_gflops']:.1f})" if peak.get("torch_peak_gflops") else ""))
    print("=" * 96)
    hdr = f"{'config':11s} {'framework':9s} {'median s':>9s} {'min s':>8s} {'max s':>8s} {'GFLOP/s':>8s} " \
          f"{'%peak':>6s} {'mem MiB':>8s} {'steady':>6s} {'RSS':>6s} {'dtype':>8s} {'loss':>7s} {'foreign':>7s} {'noisy':>5s}"
    print(hdr)
    print("-" * len(hdr))
    for name, res in results["configs"].items():
        for fw, e in res["frameworks"].items():
            mem = e["peak_mem_mib"]
            print(f"{name:11s} {fw:9s} {e['median_s']:9.3f} {e['min_s']:8.3f} {e['max_s']:8.3f} "
                  f"{e['gflops']:8.1f} {e['frac_peak']:6.1%} {mem if mem is not None else float('nan'):8.1f} "
                  f"{e['steady_mem_mib']:6.1f} {e['peak_rss_mib']:6.0f} "
                  f"{e['dtype'].replace('torch.', ''):>8s} {e['final_loss']:7.4f} "
                  f"{_fmt(e['foreign_cores_median'], '.2f'):>7s} {e['noisy_samples']:>2d}/{len(e['samples'])}")
        print("-" * len(hdr))
    print()
    print(f"{'config':11s} {'ratio':15s} {'of medians':>10s} {'paired med':>10s} {'target':>8s}  result")
    for name, res in results["configs"].items():
        for other, r in res["ratios"].items():
            tgt = r["target"]
            ok = "" if tgt is None else ("PASS" if r["ratio_of_medians"] <= tgt else "FAIL")
            if ok and (res["frameworks"]["bpnn"]["noisy_samples"] or res["frameworks"][other]["noisy_samples"]):
                ok += " (unreliable: noisy epochs)"
            print(f"{name:11s} {'bpnn/' + other:15s} {r['ratio_of_medians']:10.3f} {r['median_paired_ratio']:10.3f} "
                  f"{'<= ' + format(tgt, '.2f') if tgt is not None else '':>8s}  {ok}")
        if "frac_peak" in TARGETS[name] and "bpnn" in res["frameworks"]:
            e = res["frameworks"]["bpnn"]
            tgt = TARGETS[name]["frac_peak"]
            fp = e.get("frac_peak_paired", e["frac_peak"])
            paired = e.get("frac_peak_paired_samples")
            print(f"{name:11s} {'bpnn %peak':15s} {e['frac_peak']:10.1%} "
                  f"{(format(fp, '.1%') if paired else ''):>10s} {'>= ' + format(tgt, '.0%'):>8s}  "
                  f"{'PASS' if fp >= tgt else 'FAIL'}")
            if paired:
                print(f"{'':11s} (%peak of medians: median epoch against the best peak of the run; paired: "
                      f"each epoch against the mean of peaks measured just before and after it, {', '.join(f'{v:.1%}' for v in paired)};"
                      f" the target is judged on the paired median)")
    noisy = sum(e["noisy_samples"] for res in results["configs"].values() for e in res["frameworks"].values())
    if noisy:
        print(f"WARNING: {noisy} timed epoch(s) ran while other processes used more than --noise-threshold "
              f"cores; re-run on a quiet machine before trusting the ratios.")
    print("(ratio = bpnn time / other time: < 1 means bpnn is faster; GFLOP/s counts matmul FLOPs only;\n"
          " mem = peak RSS increase of the first epoch in a fresh process (after imports, data, BLAS warm-up;\n"
          " includes lazy imports/JIT of the training path); steady = max peak RSS increase of the timed\n"
          " epochs (what an epoch needs beyond what the process already holds); RSS = absolute peak RSS of\n"
          " the worker incl. interpreter, libraries and the data set; foreign = median cores used by\n"
          " other processes during the timed epochs; noisy = timed epochs still above --noise-threshold)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated subset of {', '.join(CONFIGS)} (default: all)")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                   help=f"comma-separated subset of {', '.join(FRAMEWORKS)} (default: all)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed epochs per framework and config, after one warm-up epoch "
                        "(default: 5 for the small nets, 3 for the wide one; 1 with --quick)")
    p.add_argument("--samples", type=int, default=None, help="training samples (default 60000; 10000 with --quick)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="BLAS/OpenMP/torch threads for every framework (default: os.cpu_count())")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 10000 samples (2500 for the wide net), no retries, smaller peak test")
    p.add_argument("--noise-threshold", type=float, default=0.25, metavar="CORES",
                   help="a timed epoch during which other processes used more than CORES cores on "
                        "average is 'noisy' and retried (default 0.25)")
    p.add_argument("--max-retries", type=int, default=None,
                   help="retries of a noisy epoch (default 2; 0 with --quick)")
    p.add_argument("--max-wait", type=float, default=None, metavar="S",
                   help="before each timed epoch wait up to S seconds for the machine to be quiet "
                        "(default 15; 0 with --quick)")
    p.add_argument("--no-peak", action="store_true", help="skip the matmul peak measurement")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON to PATH")
    p.add_argument(WORKER_FLAG, dest="worker_spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_spec:
        worker_main(json.loads(args.worker_spec))
        return 0
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    for c in args.configs:
        if c not in CONFIGS:
            p.error(f"--configs: unknown config {c!r}; choose from {', '.join(CONFIGS)}")
    for f in args.frameworks:
        if f not in FRAMEWORKS:
            p.error(f"--frameworks: unknown framework {f!r}; choose from {', '.join(FRAMEWORKS)}")
    args.samples_given = args.samples is not None
    if args.samples is None:
        args.samples = 10_000 if args.quick else 60_000
    if args.max_retries is None:
        args.max_retries = 0 if args.quick else 2
    if args.max_wait is None:
        args.max_wait = 0.0 if args.quick else 15.0
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")

    t_start = time.perf_counter()
    results = {"machine": machine_info(), "threads": args.threads, "quick": args.quick,
               "n_samples": args.samples, "seed": args.seed, "argv": sys.argv[1:],
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "configs": {}}
    print(f"bench_mlp: {args.samples} samples, threads={args.threads}, configs={args.configs}, "
          f"frameworks={args.frameworks}", flush=True)
    peak = {}
    if not args.no_peak:
        print("measuring float32 matmul peak ...", flush=True)
        peak["start"] = measure_peak(args.threads, args.quick, args.max_wait)
    for name in args.configs:
        print(f"config {name}: hidden={CONFIGS[name]['hidden']}, batch={CONFIGS[name]['batch']}", flush=True)
        t_cfg = time.perf_counter()
        results["configs"][name] = run_config(name, CONFIGS[name], args)
        print(f"  ({time.perf_counter() - t_cfg:.1f} s)", flush=True)
    if not args.no_peak and not args.quick:
        print("measuring float32 matmul peak again ...", flush=True)
        peak["end"] = measure_peak(args.threads, args.quick, args.max_wait)
    if peak:
        runs = list(peak.values())
        peak["peak_gflops"] = max(v["numpy_peak_gflops"] for v in runs)
        tp = [v["torch_peak_gflops"] for v in runs if "torch_peak_gflops" in v]
        if tp:
            peak["torch_peak_gflops"] = max(tp)
    else:
        peak["peak_gflops"] = float("nan")
    results["matmul_peak"] = peak
    versions = {}
    for res in results["configs"].values():
        for e in res["frameworks"].values():
            versions.update({k: v for k, v in e["versions"].items() if isinstance(v, (str, bool)) and "\n" not in str(v)})
    results["versions"] = versions
    summarize(results, peak["peak_gflops"])
    results["wall_s"] = time.perf_counter() - t_start
    print_report(results)
    print(f"total wall time {results['wall_s']:.1f} s")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
