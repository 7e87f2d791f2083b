#!/usr/bin/env python
"""What LiveLossPlot costs per epoch: drawing its figure, against training one epoch.

The figure LiveLossPlot draws after every epoch (``bpnn._figures.history_figure`` of a
History with ``loss``, ``accuracy`` and their ``val_`` twins, encoded as PNG by
``png_bytes``) is timed in two layouts:

    fixed        the margins set in inches (``subplots_adjust``), as bpnn draws it
    constrained  the same figure with matplotlib's constrained layout engine

and, for scale, one training epoch of the notebook's model (digits, Dense(32)-ReLU-Dense(10),
1,347 samples, batch 32, Adam, validation on 450 samples, ``verbose=False``). Times are
process CPU seconds (``time.process_time``), which a shared machine disturbs less than wall
time; the two layouts alternate, the first of each repeat rotating. Reported: median per
party, the median of the per-repeat paired ratios constrained / fixed, the drawing's share
of an epoch, and the other processes' load (cores) over the whole run.

Usage::

    PYTHONPATH=src python benchmarks/bench_live_plot.py                 # 15 repeats, 20 epochs drawn
    PYTHONPATH=src python benchmarks/bench_live_plot.py --repeats 31 --epochs 100
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import cpu_ticks, foreign_cores, machine_header, paired_ratios, rotation  # noqa: E402


def history(epochs: int) -> dict:
    """A History of ``epochs`` epochs shaped like the trainer's (falling losses, rising accuracies)."""
    import numpy as np

    e = np.arange(1, epochs + 1)
    return {"loss": list(2.3 / e), "accuracy": list(1 - 0.9 / e), "val_loss": list(2.4 / e + 0.01),
            "val_accuracy": list(1 - 0.92 / e), "lr": [1e-3] * epochs}


def frame(h: dict, layout: str) -> float:
    from bpnn import _figures

    t = time.process_time()
    fig = _figures.history_figure(h)
    if layout == "constrained":
        fig.set_layout_engine("constrained")
    _figures.png_bytes(fig)
    return time.process_time() - t


def epoch_time() -> float:
    import bpnn
    from bpnn.data import load_digits, train_test_split

    X, y = load_digits()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25)
    model = bpnn.Sequential([bpnn.Dense(32), bpnn.ReLU(), bpnn.Dense(10)], input_shape=(64,), seed=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=3e-3))
    trainer.fit(Xtr, ytr, epochs=1, batch_size=32, verbose=False)  # warm-up (kernels compiled or loaded)
    t = time.process_time()
    trainer.fit(Xtr, ytr, epochs=5, batch_size=32, validation_data=(Xte, yte), verbose=False)
    return (time.process_time() - t) / 5


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=20, help="epochs in the History drawn")
    args = ap.parse_args(argv)
    import matplotlib  # noqa: F401 - imported before the header and the timings

    machine_header()
    h = history(args.epochs)
    times = {"fixed": [], "constrained": []}
    for layout in times:
        frame(h, layout)  # warm-up: fonts, the Agg canvas
    c0, w0, p0 = cpu_ticks(), time.time(), time.process_time()
    for rep in range(args.repeats):
        for layout in rotation(list(times), rep):
            times[layout].append(frame(h, layout))
    load = foreign_cores(c0, cpu_ticks(), time.process_time() - p0, time.time() - w0)
    epoch = epoch_time()
    pr = paired_ratios(times["constrained"], times["fixed"])
    for layout, ts in times.items():
        print(f"{layout:12s} median {1e3 * statistics.median(ts):7.1f} ms CPU per frame "
              f"(min {1e3 * min(ts):.1f}, max {1e3 * max(ts):.1f})")
    print(f"constrained / fixed: median paired ratio {pr['median_paired_ratio']:.2f}, "
          f"ratio of medians {pr['ratio_of_medians']:.2f}")
    print(f"one training epoch: {1e3 * epoch:.1f} ms CPU; a fixed-layout frame is "
          f"{statistics.median(times['fixed']) / epoch:.1f}x an epoch")
    print(f"others' load during the frames: {load if load is None else round(load, 2)} cores")


if __name__ == "__main__":
    main()
