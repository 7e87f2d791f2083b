"""Reproduce LeCun's MNIST table (no distortions) for the two MLP rows.

    784-800-10, cross-entropy                          LeCun's page: 1.6 %  test error
    784-500-300-10, softmax + cross-entropy + weight decay            1.53 %

Trains on the 60,000 training images, reports the error on the 10,000 test images,
the epochs and the wall time. Data: the official IDX files (``--data-dir`` or
``$BPNN_MNIST_DIR``; default ../shared/data/mnist beside the repository).

    python benchmarks/mnist_lecun.py [--rows 800 500-300] [--seed 1] [--json out.json]

Both rows: He-normal hidden layers, SGD with Nesterov momentum 0.9 and a cosine decay of
the learning rate to 1 % of it over the run, batch 128, coupled weight decay, no
dropout and no distortions (``--dropout`` adds dropout after each hidden layer). The
per-row defaults (``ROW_DEFAULTS``) were chosen on a handful of runs; the test set
is only reported, never used to stop or select.
"""
from __future__ import annotations

import argparse
import math
import time

import bpnn
from bpnn.data import load_mnist

from _harness import MNIST_DIR, machine_info, write_json  # beside this script

TARGETS = {"800": 1.6, "500-300": 1.53}
# epochs, learning rate, weight decay of each row unless given on the command line
ROW_DEFAULTS = {"800": {"epochs": 50, "lr": 0.2, "weight_decay": 1e-4},
                "500-300": {"epochs": 50, "lr": 0.2, "weight_decay": 1e-4}}


def build(row: str, seed: int, dropout: float = 0.0):
    widths = [int(w) for w in row.split("-")]
    layers = []
    for w in widths:
        layers += [bpnn.Dense(w, init="he_normal"), bpnn.ReLU()]
        if dropout:
            layers.append(bpnn.Dropout(dropout))
    layers.append(bpnn.Dense(10, init="xavier_uniform"))
    return bpnn.Sequential(layers, input_shape=(784,), seed=seed)


def run(row, data, epochs, batch_size, lr, weight_decay, seed, verbose, dropout=0.0):
    Xtr, ytr, Xte, yte = data
    steps = epochs * math.ceil(len(Xtr) / batch_size)

    def cosine(step):  # cosine decay from lr to 1 % of it over the whole run
        return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))

    model = build(row, seed, dropout)
    optimizer = bpnn.optim.SGD(lr=cosine, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    trainer = bpnn.Trainer(model, loss="softmax_cross_entropy", optimizer=optimizer)
    start = time.perf_counter()
    history = trainer.fit(Xtr, ytr, epochs=epochs, batch_size=batch_size, validation_data=(Xte, yte),
                          verbose=verbose)
    seconds = time.perf_counter() - start
    test = trainer.evaluate(Xte, yte)
    return {"row": f"784-{row}-10", "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "weight_decay": weight_decay, "dropout": dropout, "seconds": seconds, "seconds_per_epoch": seconds / epochs,
            "test_error_percent": 100 * (1 - test["accuracy"]), "target_percent": TARGETS.get(row),
            "val_error_curve": [100 * (1 - a) for a in history["val_accuracy"]]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=MNIST_DIR)
    p.add_argument("--rows", nargs="+", default=["800", "500-300"])
    p.add_argument("--epochs", type=int, default=None, help="default 50")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None,
                   help="initial learning rate of the cosine decay; default 0.2")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="L2 (coupled) weight decay; default 1e-4")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout after each hidden layer (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    data = load_mnist(args.data_dir, download=False)
    results = []
    for row in args.rows:
        d = ROW_DEFAULTS.get(row, ROW_DEFAULTS["800"])
        wd = args.weight_decay if args.weight_decay is not None else d["weight_decay"]
        epochs = args.epochs if args.epochs is not None else d["epochs"]
        lr = args.lr if args.lr is not None else d["lr"]
        r = run(row, data, epochs, args.batch_size, lr, wd, args.seed, args.verbose, args.dropout)
        results.append(r)
        target = r["target_percent"]
        verdict = "" if target is None else (" (meets LeCun's %.2f %%)" % target if r["test_error_percent"] <= target
                                             else " (LeCun: %.2f %%)" % target)
        print(f"{r['row']:>16}: test error {r['test_error_percent']:.2f} %{verdict}; {r['epochs']} epochs, "
              f"{r['seconds']:.0f} s ({r['seconds_per_epoch']:.1f} s/epoch), lr {lr:g}, weight decay {wd:g}, "
              f"dropout {args.dropout:g}", flush=True)
    write_json(args.json, {"meta": {"machine": machine_info(), "bpnn": bpnn.__version__}, "results": results})


if __name__ == "__main__":
    main()
