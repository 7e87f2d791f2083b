#!/usr/bin/env python
"""K-FAC against SGD with momentum and Adam on the MNIST deep autoencoder.

The network is Hinton & Salakhutdinov's (2006) MNIST autoencoder as Martens & Grosse
(2015, "Optimizing Neural Networks with Kronecker-factored Approximate Curvature",
section 13) train it: 784-1000-500-250-30-250-500-1000-784, logistic (sigmoid) hidden
units, a linear 30-unit code layer, and logistic output units trained with binary
cross-entropy against the input pixels (targets in [0, 1]): bpnn's
``binary_cross_entropy_with_logits`` on the last Dense layer's logits. That loss is the
mean over the batch *and the 784 pixels*; the paper's objective sums over the pixels,
so its values are 784 × ours (both are printed) and a learning rate of plain SGD here
corresponds to 1/784 of it on the paper's objective (Adam does not see the scale;
K-FAC's damping does). Weights: Martens' (2010) sparse initialization (``--init
sparse``: 15 nonzero N(0, 1) inputs a unit), the start of this benchmark in its
literature; biases zero. From Glorot-uniform (``--init xavier_uniform``, the runs before)
every optimizer first sits for hundreds of updates on the plateau where the network
outputs about the mean image. Every setting starts from the same weights (``--seed``)
and sees the same batches.

Data and budget (defaults): the first 20,480 MNIST training images, batch 256 for every
optimizer (80 updates an epoch; the same batch so that one update means the same data
and the update counts compare), 16 epochs = 1,280 updates per setting. The grid:

    sgd    SGD, Nesterov momentum 0.9 (torch form), lr in {1, 3, 10}
           (= {0.0013, 0.0038, 0.013} on the paper's summed objective; from the
           sparse start 3 leaves the plateau within the budget, 10 and 30 do not)
    adam   Adam, betas (0.9, 0.999), lr in {1e-4, 3e-4, 1e-3}
    kfac   bpnn.optim.KFAC, lr in {0.3, 1, 3}, damping 0.01, momentum 0.8,
           factor_decay 0.95, factors every 10 steps, inverses every 40,
           kl_clip 3e-2, Fisher from sampled targets ("true")

K-FAC's damping, momentum, KL clip and update intervals come from 160- and 240-update
probes of one seed (``benchmarks/README.md``): damping 0.003 was no better than 0.01,
0.03 worse; with momentum 0.9 a clip of 1e-2 reached the target in fewer updates than
1e-3, 3e-3, 3e-2 and 1e-1, but momentum 0.8 with a clip of 3e-2 in fewer still (0.5,
0.7 and 0.95: more updates, or not within the probe); factors every 10 steps reached
it after as many updates as every 5 (and every step) at less time each; inverses every
20 after as many as every 40, at more time each. SGD's momentum and Adam's betas were
not tuned; Adam's grid has its best at 1e-3, 3e-3 being slower.

Martens & Grosse start their adaptive damping at λ = 150 on the summed objective,
≈ 0.19 on this mean one if the Fisher scales with the loss, and it falls from there;
``--kfac-damping 0.01,0.1`` widens the grid. Without ``bpnn.optim.KFAC`` the K-FAC rows
are skipped (and said so).

Before each setting the script waits (up to ``--max-wait`` s) for the machine to be
quiet, and reports the cores other processes used during it (``foreign``): a setting
run beside another job is slower by up to 3–4 × here, so re-run a noisy one (e.g.
``--optimizers sgd --sgd-lr 10``) before quoting its time.

The training loss is evaluated on a fixed subset of the training images (the first
2,048, ``--eval-samples``) before the first update, every 10 updates (``--eval-every``)
and after the last, by a callback whose time is excluded from the wall time (the wall
time is the training alone). Reported per setting: final training loss (on that subset
and the last epoch's running mean), wall time and updates. The headline: the loss the
best SGD setting (lowest final loss) reaches at the end of its budget is the target; per
optimizer, the setting that first reaches it (least wall time; for SGD this may be
another learning rate than the one that set the target, which only favours SGD) gives
the wall time and updates to reach it (at the resolution of ``--eval-every``); the ratios SGD / K-FAC
(goals: ≥ 3 × less wall time, ≥ 10 × fewer updates) and Adam / K-FAC wall time
(goal > 1).

Run time on the 2-core development machine, measured with ``--threads 1`` beside a
colleague's job on the other core: 46 ms an SGD update, 51 ms an Adam update, 0.15 s an
evaluation (not timed, but run: 129 a setting), so ~80 s a setting and ~8 min for the
six SGD and Adam settings; a K-FAC update costs ~2.4 × an SGD one here (0.11 s), so
the three K-FAC settings add ~8 min: ~18 min in all. With two BLAS
threads beside such a job an update took 160–230 ms (threads waiting at barriers for
a descheduled sibling), so on a shared machine run it with ``--threads 1``; on a quiet
one the default (all cores) is faster. ``--quick`` (a smoke test: 1,024 images,
8 updates a setting) takes well under a minute.

Usage::

    python benchmarks/kfac_autoencoder.py --threads 1 --json bench-results/kfac_autoencoder.json
    python benchmarks/kfac_autoencoder.py --quick
    python benchmarks/kfac_autoencoder.py --optimizers kfac --kfac-lr 0.3 --kfac-damping 0.01,0.1
"""
from __future__ import annotations

import argparse
import math
import sys
import time

from _harness import (  # beside this script
    MNIST_DIR, Usage, limit_threads, machine_header, threads_from_argv, wait_quiet, write_json,
)

if __name__ == "__main__":
    threads_from_argv(sys.argv[1:])  # --threads reaches numba too: before NumPy and bpnn load

import numpy as np  # noqa: E402

import bpnn  # noqa: E402
from bpnn.data import load_mnist  # noqa: E402

ENCODER = (1000, 500, 250)
CODE = 30
PIXELS = 784
OPTIMIZERS = ("sgd", "adam", "kfac")
GRIDS = {"sgd": (1.0, 3.0, 10.0), "adam": (1e-4, 3e-4, 1e-3), "kfac": (0.3, 1.0, 3.0)}
GOALS = {"sgd_over_kfac_wall": 3.0, "sgd_over_kfac_updates": 10.0, "adam_over_kfac_wall": 1.0}


# =============================================================================== pieces
def autoencoder(seed: int = 0, init: str = "sparse"):
    """784-1000-500-250-30-250-500-1000-784: sigmoid hidden units, a linear code layer,
    the output layer's logits (the loss applies the sigmoid); weights from ``init``."""
    nn = bpnn.nn
    layers = []
    for units in ENCODER:
        layers += [nn.Dense(units, init=init), nn.Sigmoid()]
    layers.append(nn.Dense(CODE, init=init))  # linear code units, as in Hinton & Salakhutdinov
    for units in reversed(ENCODER):
        layers += [nn.Dense(units, init=init), nn.Sigmoid()]
    layers.append(nn.Dense(PIXELS, init=init))
    return bpnn.Sequential(layers, input_shape=(PIXELS,), seed=seed)


def kfac_class():
    """``bpnn.optim.KFAC`` when this tree has it, else None."""
    return getattr(bpnn.optim, "KFAC", None)


def make_optimizer(name: str, lr: float, damping, args):
    if name == "sgd":
        return bpnn.optim.SGD(lr=lr, momentum=args.momentum, nesterov=True)
    if name == "adam":
        return bpnn.optim.Adam(lr=lr)
    return kfac_class()(lr=lr, damping=damping, momentum=args.kfac_momentum, factor_decay=args.factor_decay,
                        factor_update_steps=args.factor_update_steps, inv_update_steps=args.inv_update_steps,
                        kl_clip=args.kl_clip, weight_decay=0.0, fisher="true", adapt_damping=args.adapt_damping)


def first_reaching(curve, target: float):
    """The first point of ``curve`` (a sequence of dicts with ``"loss"``, in update
    order) whose loss is at most ``target``, or None; a NaN never reaches."""
    for point in curve:
        if point["loss"] <= target:  # False for NaN
            return point
    return None


class LossCurve(bpnn.Callback):
    """The loss on a fixed set (X, X) before the first update, every ``every`` updates
    and after the last one, as points ``{"update", "wall_s", "loss"}``; ``wall_s`` is the
    training time so far, this callback's own evaluations excluded."""

    def __init__(self, X, every: int):
        self.X, self.every = X, every
        self.curve, self.updates, self.eval_s = [], 0, 0.0
        self._t0 = None

    def _record(self):
        t = time.perf_counter()
        loss = self.trainer.evaluate(self.X, self.X, batch_size=1024)["loss"]
        self.curve.append({"update": self.updates, "wall_s": t - self._t0 - self.eval_s, "loss": float(loss)})
        self.eval_s += time.perf_counter() - t

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter()
        self._record()

    def on_batch_end(self, batch, logs=None):
        self.updates += 1
        if self.updates % self.every == 0:
            self._record()

    def on_train_end(self, logs=None):
        if self.curve[-1]["update"] != self.updates:
            self._record()

    def training_seconds(self) -> float:
        return time.perf_counter() - self._t0 - self.eval_s


def run_setting(name, lr, damping, X, Xeval, args):
    """Train one setting for the budget; its final losses, wall time, updates and curve."""
    model = autoencoder(args.seed, args.init)
    trainer = bpnn.Trainer(model, loss="binary_cross_entropy_with_logits",
                           optimizer=make_optimizer(name, lr, damping, args), metrics=())
    curve = LossCurve(Xeval, args.eval_every)
    hist = trainer.fit(X, X, epochs=args.epochs, batch_size=args.batch_size, callbacks=[curve], verbose=False)
    wall = curve.training_seconds()
    final = curve.curve[-1]["loss"]
    epoch_losses = list(hist.history.get("loss", []))
    return {"optimizer": name, "lr": lr, "damping": damping, "final_loss": final,
            "last_epoch_loss": epoch_losses[-1] if epoch_losses else None, "epoch_losses": epoch_losses,
            "wall_s": wall, "updates": curve.updates, "eval_s": curve.eval_s,
            "stopped_reason": hist.stopped_reason, "curve": curve.curve}


def warm_up(settings, X, args) -> None:
    """A few updates of every optimizer before anything is timed: the first step of each
    compiles its kernels (numba), which would otherwise land in the first setting's time."""
    first = {}
    for setting in settings:
        first.setdefault(setting[0], setting)  # one setting per optimizer
    for name, lr, damping in first.values():
        trainer = bpnn.Trainer(autoencoder(args.seed, args.init), loss="binary_cross_entropy_with_logits",
                               optimizer=make_optimizer(name, lr, damping, args), metrics=())
        trainer.fit(X[:2 * args.batch_size], X[:2 * args.batch_size], epochs=1, batch_size=args.batch_size,
                    verbose=False)
        trainer.evaluate(X[:args.batch_size], X[:args.batch_size])


def headline(results):
    """The target (best SGD setting's final loss) and, per optimizer, the setting that
    first reaches it (least wall time), with the ratios of the goals."""
    sgd = [r for r in results if r["optimizer"] == "sgd" and math.isfinite(r["final_loss"])]
    if not sgd:
        return None
    best_sgd = min(sgd, key=lambda r: r["final_loss"])
    target = best_sgd["final_loss"]
    out = {"target_loss": target, "target_from": {"optimizer": "sgd", "lr": best_sgd["lr"]}, "best": {}}
    for name in OPTIMIZERS:
        rows = [r for r in results if r["optimizer"] == name]
        reached = [(first_reaching(r["curve"], target), r) for r in rows]
        reached = [(p, r) for p, r in reached if p is not None]
        if reached:
            p, r = min(reached, key=lambda pr: pr[0]["wall_s"])
            out["best"][name] = {"lr": r["lr"], "damping": r["damping"], "reached": True,
                                 "wall_s": p["wall_s"], "updates": p["update"], "loss": p["loss"]}
        elif rows:
            finite = [r for r in rows if math.isfinite(r["final_loss"])] or rows
            r = min(finite, key=lambda r: r["final_loss"])
            out["best"][name] = {"lr": r["lr"], "damping": r["damping"], "reached": False,
                                 "final_loss": r["final_loss"]}
    b = out["best"]
    if b.get("kfac", {}).get("reached"):
        k = b["kfac"]
        out["sgd_over_kfac_wall"] = b["sgd"]["wall_s"] / k["wall_s"] if k["wall_s"] > 0 else math.inf
        out["sgd_over_kfac_updates"] = b["sgd"]["updates"] / max(k["updates"], 1)
        if b.get("adam", {}).get("reached"):
            out["adam_over_kfac_wall"] = b["adam"]["wall_s"] / k["wall_s"] if k["wall_s"] > 0 else math.inf
    return out


def _cores(value):
    return "-" if value is None else f"{value:.2f}"


def _floats(text):
    return tuple(float(v) for v in text.split(",") if v.strip())


# =============================================================================== main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__[
                                     __doc__.index("Data and budget"):])
    ap.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="subset of sgd,adam,kfac")
    ap.add_argument("--sgd-lr", type=_floats, default=GRIDS["sgd"], help="comma-separated (default 1,3,10)")
    ap.add_argument("--adam-lr", type=_floats, default=GRIDS["adam"], help="default 1e-4,3e-4,1e-3")
    ap.add_argument("--kfac-lr", type=_floats, default=GRIDS["kfac"], help="default 0.3,1,3")
    ap.add_argument("--kfac-damping", type=_floats, default=(0.01,), help="comma-separated (default 0.01)")
    ap.add_argument("--momentum", type=float, default=0.9, help="SGD's Nesterov momentum (default 0.9)")
    ap.add_argument("--kfac-momentum", type=float, default=0.8)
    ap.add_argument("--factor-decay", type=float, default=0.95)
    ap.add_argument("--factor-update-steps", type=int, default=10)
    ap.add_argument("--inv-update-steps", type=int, default=40)
    ap.add_argument("--kl-clip", type=float, default=3e-2)
    ap.add_argument("--adapt-damping", action="store_true",
                    help="K-FAC adapts its damping from the reduction ratio (Martens & Grosse §6.5)")
    ap.add_argument("--samples", type=int, default=20_480, help="training images (default 20480)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=16,
                    help="budget in epochs over --samples (default 16 = 1280 updates)")
    ap.add_argument("--eval-samples", type=int, default=2048, help="fixed subset the loss curve is evaluated on")
    ap.add_argument("--eval-every", type=int, default=10, help="updates between evaluations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default="sparse",
                    help="weight initializer of every layer (default sparse, Martens 2010; xavier_uniform: the runs before)")
    ap.add_argument("--threads", type=int, default=None, help="cap BLAS threads (default: all cores)")
    ap.add_argument("--data-dir", default=MNIST_DIR)
    ap.add_argument("--noise-threshold", type=float, default=0.3,
                    help="wait before each setting until other processes use at most this many cores")
    ap.add_argument("--max-wait", type=float, default=30.0, help="seconds to wait for that (quick: 0)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1,024 images, 2 epochs of 4 updates")
    ap.add_argument("--json", default=None, help="write every setting, its loss curve and the headline")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.epochs, args.eval_samples, args.eval_every, args.max_wait = 1024, 2, 256, 2, 0.0
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown:
        ap.error(f"--optimizers: unknown {unknown}; valid: {', '.join(OPTIMIZERS)}")
    _limiter = limit_threads(args.threads) if args.threads else None  # noqa: F841 - keep the limits
    info = machine_header(args.threads)

    X, _, _, _ = load_mnist(data_dir=args.data_dir, download=False)
    X = np.ascontiguousarray(X[:args.samples])
    Xeval = X[:args.eval_samples]
    steps = -(-len(X) // args.batch_size)
    print(f"# MNIST autoencoder 784-{'-'.join(map(str, ENCODER))}-{CODE}-{'-'.join(map(str, ENCODER[::-1]))}-784, "
          f"sigmoid, linear code, BCE with logits (mean over pixels; x{PIXELS} = the paper's sum)")
    print(f"# {len(X)} images, batch {args.batch_size}, {args.epochs} epochs = {args.epochs * steps} updates a "
          f"setting; loss on the first {len(Xeval)} images every {args.eval_every} updates (not timed)", flush=True)
    if "kfac" in names and kfac_class() is None:
        print("# bpnn.optim.KFAC is not in this tree: the K-FAC rows are skipped", flush=True)
        names.remove("kfac")
    settings = []
    for name in names:
        grid = {"sgd": args.sgd_lr, "adam": args.adam_lr, "kfac": args.kfac_lr}[name]
        dampings = args.kfac_damping if name == "kfac" else (None,)
        settings += [(name, lr, d) for lr in grid for d in dampings]

    warm_up(settings, X, args)
    results = []
    print(f"\n{'optimizer':9} {'lr':>8} {'damping':>8} {'final loss':>11} {'(x784)':>8} {'last epoch':>11} "
          f"{'wall s':>8} {'updates':>8} {'eval s':>7} {'foreign':>7}")
    for name, lr, damping in settings:
        waited = wait_quiet(args.noise_threshold, args.max_wait)
        with Usage() as usage:
            r = run_setting(name, lr, damping, X, Xeval, args)
        r.update(foreign_cores=usage.foreign_cores, waited_s=waited)
        results.append(r)
        note = f"  stopped: {r['stopped_reason']}" if r["stopped_reason"] else ""
        last = r["last_epoch_loss"]
        print(f"{name:9} {lr:8.3g} {damping if damping is not None else '-':>8} {r['final_loss']:11.5f} "
              f"{r['final_loss'] * PIXELS:8.2f} {last if last is None else f'{last:.5f}':>11} {r['wall_s']:8.1f} "
              f"{r['updates']:8d} {r['eval_s']:7.1f} {_cores(r['foreign_cores']):>7}{note}", flush=True)

    head = headline(results)
    if head is not None:
        print(f"\ntarget: {head['target_loss']:.5f} (x784: {head['target_loss'] * PIXELS:.2f}), the final loss of "
              f"SGD lr {head['target_from']['lr']:g}")
        for name, b in head["best"].items():
            cfg = f"lr {b['lr']:g}" + (f", damping {b['damping']:g}" if b["damping"] is not None else "")
            if b["reached"]:
                print(f"  {name:5} ({cfg}): reached after {b['updates']} updates, {b['wall_s']:.1f} s")
            else:
                print(f"  {name:5} ({cfg}): not reached (best final loss {b['final_loss']:.5f})")
        if "sgd_over_kfac_wall" in head:
            for key, label in (("sgd_over_kfac_wall", "SGD / K-FAC wall time"),
                               ("sgd_over_kfac_updates", "SGD / K-FAC updates"),
                               ("adam_over_kfac_wall", "Adam / K-FAC wall time")):
                if key in head:
                    ok = head[key] > GOALS[key] if key == "adam_over_kfac_wall" else head[key] >= GOALS[key]
                    print(f"  {label}: {head[key]:.2f} (goal {'>' if key.startswith('adam') else '>='} "
                          f"{GOALS[key]:g}: {'met' if ok else 'not met'})")
            if "adam_over_kfac_wall" not in head and "adam" in head["best"]:
                print("  Adam / K-FAC wall time: n/a (Adam did not reach the target)")
        elif "kfac" in names:
            print("  K-FAC did not reach the target: no ratios")
    write_json(args.json, {"benchmark": "kfac_autoencoder", "args": vars(args), "machine": info,
                           "kfac_available": kfac_class() is not None, "results": results, "headline": head,
                           "goals": GOALS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
