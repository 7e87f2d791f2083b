#!/usr/bin/env python
"""Levenberg–Marquardt on the classic 1-10-1 sin(x) problem: bpnn vs pyrenn vs first-order.

Problem: y = sin(x) on 100 evenly spaced points in [−π, π]; a 1-10-1 network, tanh
hidden layer, linear output, float64; inputs mapped to [−1, 1] (``mapminmax``, which
pyrenn does internally too). Goal: training MSE < 1e-5 (in the targets' units).

Rows, each over the same seeds:

- ``bpnn LM``: :class:`bpnn.train.LMTrainer` (MATLAB ``trainlm`` defaults, μ = 1e-3),
  Nguyen–Widrow initialization (MATLAB's ``initnw``), ``goal=1e-5``, at most 100 epochs.
- ``bpnn LM, pyrenn's init``: the same with pyrenn's initialization, U(−0.5, 0.5) for
  every weight and bias, to separate the solver from the initialization.
- ``pyrenn LM`` (if installed: ``pip install pyrenn``, a dormant package): ``train_LM``
  with ``E_stop`` = 1e-5 · 100 (it stops on the sum of squared errors), ``k_max=100``,
  seeded through ``np.random.seed``.
- ``Adam`` and ``GD`` (full batch, one step per epoch) with the same Nguyen–Widrow
  start, for a few learning rates each, up to ``--first-order-epochs`` epochs (default
  20,000): epochs to reach the goal, or "never".

Per-iteration time is the wall time of the training call divided by the iterations it
made (each library's own stopping test included); bpnn and pyrenn alternate seed by
seed in one process, after a warm-up run of each, so they share the machine's noise.

Targets: bpnn reaches the goal within 100 epochs, needs no more iterations than pyrenn
(median over seeds) and is ≥ 10× faster per iteration; Adam and GD need ≥ 10× more
epochs than bpnn's LM, or never get there.

Usage::

    python benchmarks/bench_lm.py               # 20 seeds, first-order up to 20,000 epochs
    python benchmarks/bench_lm.py --quick       # 5 seeds, first-order up to 5,000 epochs
    python benchmarks/bench_lm.py --json bench-results/lm.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import sys
import time

import numpy as np

from _harness import machine_info, write_json  # beside this script

GOAL = 1e-5
N_POINTS = 100


def problem():
    x = np.linspace(-np.pi, np.pi, N_POINTS).reshape(-1, 1)
    return x, np.sin(x)


def build(seed, init):
    import bpnn
    from bpnn.init.nguyen_widrow import nguyen_widrow

    model = bpnn.Sequential([bpnn.Dense(10), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(1,), seed=seed,
                            dtype="float64")
    if init == "nguyen_widrow":
        nguyen_widrow(model)
    else:  # pyrenn's: every weight and bias U(-0.5, 0.5)
        rng = np.random.default_rng(seed)
        for _, p, _ in model.named_parameters():
            p[...] = rng.uniform(-0.5, 0.5, p.shape)
    return model


def run_bpnn(seed, init, xs, t):
    from bpnn.train import LMTrainer

    model = build(seed, init)
    trainer = LMTrainer(model, "lm", epochs=100, goal=GOAL)
    start = time.perf_counter()
    rec = trainer.fit(xs, t)
    elapsed = time.perf_counter() - start
    mse = float(np.mean((model.predict(xs) - t) ** 2))
    return {"iterations": rec.num_epochs, "seconds": elapsed, "mse": mse, "reached": mse < GOAL,
            "ms_per_iteration": 1e3 * elapsed / max(rec.num_epochs, 1)}


def run_pyrenn(seed, x, t):
    import pyrenn

    np.random.seed(seed)
    net = pyrenn.CreateNN([1, 10, 1])
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        net = pyrenn.train_LM(x.T, t.T, net, k_max=100, E_stop=GOAL * N_POINTS)
    elapsed = time.perf_counter() - start
    k = len(net["ErrorHistory"])
    mse = float(np.mean((pyrenn.NNOut(x.T, net) - t.ravel()) ** 2))
    return {"iterations": k, "seconds": elapsed, "mse": mse, "reached": mse < GOAL,
            "ms_per_iteration": 1e3 * elapsed / max(k, 1)}


def run_first_order(seed, kind, lr, xs, t, max_epochs):
    """Full-batch training, one step per epoch; epochs until the training MSE < GOAL."""
    import bpnn

    model = build(seed, "nguyen_widrow")
    opt = bpnn.optim.Adam(lr=lr) if kind == "adam" else bpnn.optim.SGD(lr=lr)
    opt.attach(model)
    loss = bpnn.losses.MSE()
    start = time.perf_counter()
    reached = None
    for epoch in range(1, max_epochs + 1):
        out = model.forward(xs, training=True)
        value = float(loss.forward(out, t))
        if value < GOAL:
            reached = epoch - 1  # the weights after epoch − 1 steps already meet the goal
            break
        if not math.isfinite(value):
            break
        model.backward(loss.backward(), input_grad=False)
        opt.step()
    elapsed = time.perf_counter() - start
    return {"epochs": reached, "seconds": elapsed, "final_mse": value}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 seeds, first-order up to 5,000 epochs")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--first-order-epochs", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    n_seeds = args.seeds or (5 if args.quick else 20)
    fo_epochs = args.first_order_epochs or (5000 if args.quick else 20000)
    x, t = problem()
    from bpnn.data import MinMaxScaler

    xs = MinMaxScaler().fit_transform(x)
    try:
        import pyrenn  # noqa: F401
        have_pyrenn = True
    except ImportError:
        have_pyrenn = False
        print("pyrenn is not installed (pip install pyrenn): its row is skipped")

    # warm-up (imports, BLAS thread pools, threadpoolctl's library scan)
    run_bpnn(10_000, "nguyen_widrow", xs, t)
    if have_pyrenn:
        run_pyrenn(10_000, x, t)

    rows = {"bpnn LM": [], "bpnn LM, pyrenn's init": [], "pyrenn LM": []}
    for seed in range(n_seeds):
        rows["bpnn LM"].append(run_bpnn(seed, "nguyen_widrow", xs, t))
        if have_pyrenn:
            rows["pyrenn LM"].append(run_pyrenn(seed, x, t))
        rows["bpnn LM, pyrenn's init"].append(run_bpnn(seed, "uniform", xs, t))
    if not have_pyrenn:
        del rows["pyrenn LM"]

    result = {"machine": machine_info(), "numpy": np.__version__, "seeds": n_seeds, "goal": GOAL, "lm": {}, "first_order": {}}
    print(f"1-10-1 tanh/linear on sin(x), {N_POINTS} points, goal MSE < {GOAL:g}, {n_seeds} seeds")
    print(f"  {'solver':<24} {'reached':>8} {'iterations: median':>19} {'[min, max]':>11} "
          f"{'ms/iteration (median)':>22}")
    for name, runs in rows.items():
        its = [r["iterations"] for r in runs]
        ms = [r["ms_per_iteration"] for r in runs]
        reached = sum(r["reached"] for r in runs)
        result["lm"][name] = {"runs": runs,
                              "median_iterations": statistics.median(its),
                              "median_ms_per_iteration": statistics.median(ms), "reached": reached}
        print(f"  {name:<24} {reached:>4}/{len(runs):<3} {statistics.median(its):>19g} "
              f"{f'[{min(its)}, {max(its)}]':>11} {statistics.median(ms):>22.3f}")
    lm = result["lm"]["bpnn LM"]
    if have_pyrenn:
        py = result["lm"]["pyrenn LM"]
        speed = py["median_ms_per_iteration"] / lm["median_ms_per_iteration"]
        result["speedup_per_iteration_vs_pyrenn"] = speed
        result["no_more_iterations_than_pyrenn"] = lm["median_iterations"] <= py["median_iterations"]
        print(f"  per-iteration speed-up over pyrenn: {speed:.1f}x; median iterations bpnn "
              f"{lm['median_iterations']:g} vs pyrenn {py['median_iterations']:g}")

    print(f"\nfirst-order, full batch, same Nguyen–Widrow start, up to {fo_epochs} epochs")
    configs = [("adam", 1e-3), ("adam", 1e-2), ("adam", 3e-2), ("gd", 0.1), ("gd", 0.5), ("gd", 1.0)]
    fo_seeds = min(n_seeds, 3)
    best_fo = math.inf
    for kind, lr in configs:
        with np.errstate(over="ignore", invalid="ignore"):  # large GD steps diverge: reported as "never"
            runs = [run_first_order(seed, kind, lr, xs, t, fo_epochs) for seed in range(fo_seeds)]
        eps = [r["epochs"] for r in runs]
        done = [e for e in eps if e is not None]
        label = f"{'Adam' if kind == 'adam' else 'GD'} lr={lr:g}"
        med = statistics.median(done) if len(done) == len(eps) else None
        if med is not None:
            best_fo = min(best_fo, med)
        result["first_order"][label] = {"epochs": eps, "final_mse": [r["final_mse"] for r in runs],
                                        "seconds": [r["seconds"] for r in runs]}
        shown = ", ".join("never" if e is None else str(e) for e in eps)
        print(f"  {label:<16} epochs to goal per seed: {shown}   (final MSE "
              f"{statistics.median(r['final_mse'] for r in runs):.2e}, {statistics.fmean(r['seconds'] for r in runs):.2f} s)")
    ratio = best_fo / lm["median_iterations"] if lm["median_iterations"] else math.inf
    result["first_order_epochs_over_lm"] = ratio
    print(f"  best first-order median / LM median epochs: "
          f"{'inf (never reached)' if math.isinf(ratio) else f'{ratio:.0f}x'}")
    ok = lm["reached"] == n_seeds and max(r["iterations"] for r in rows["bpnn LM"]) <= 100 and ratio >= 10
    if have_pyrenn:
        ok = ok and result["no_more_iterations_than_pyrenn"] and result["speedup_per_iteration_vs_pyrenn"] >= 10
    result["targets_met"] = ok
    print(f"\ntargets {'met' if ok else 'NOT met'}")
    write_json(args.json, result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
