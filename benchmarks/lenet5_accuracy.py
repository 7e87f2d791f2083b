#!/usr/bin/env python
"""LeNet-5 on MNIST: test error against LeCun et al. (1998).

LeCun et al. report 0.95 % test error for LeNet-5 trained on the 60,000 MNIST images,
and 0.8 % when the training set is enlarged with random affine distortions (their
"distortions" rows). This script trains bpnn's LeNet-5 (the common ReLU / max-pooling
variant: conv 6@5×5 pad 2 → pool → conv 16@5×5 → pool → 120 → 84 → 10) with SGD
(Nesterov momentum 0.9, L2 weight decay 5e-4; ``--optimizer adam`` for Adam) and an
exponentially decaying learning rate, and reports the test error after every epoch
and at the end (the figure to quote: no model selection on the test set), the epochs
and the wall time.

    python benchmarks/lenet5_accuracy.py                        # no distortions, 20 epochs
    python benchmarks/lenet5_accuracy.py --augment affine       # shifts, rotations, scaling, shear
    python benchmarks/lenet5_accuracy.py --augment elastic      # elastic distortion (Simard 2003)
    python benchmarks/lenet5_accuracy.py --quick                # smoke test: 2 epochs on 6,000 images

MNIST is read from ``--data-dir`` (default ``$BPNN_MNIST_DIR`` or ../shared/data/mnist).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import bpnn
from bpnn.data import ImageAugment, load_mnist

from _harness import MNIST_DIR, layer_paths, machine_header, write_json  # beside this script

LECUN = {"none": 0.95, "affine": 0.80, "elastic": 0.80, "affine+elastic": 0.80}  # % test error, LeCun et al. 1998, table / fig. 9
AUGMENTS = {
    "none": None,
    # LeCun et al.'s distortions: translations, scaling, squeezing, horizontal shearing
    "affine": dict(shift=2.0, rotation=5.0, scale=0.1, shear=0.1),
    # Simard et al. 2003's elastic distortion (their α and σ for MNIST), alone
    "elastic": dict(elastic_alpha=34.0, elastic_sigma=4.0),
    # both at once (measured too strong for LeNet-5's capacity: it under-fits)
    "affine+elastic": dict(shift=2.0, rotation=10.0, scale=0.1, shear=0.15, elastic_alpha=34.0, elastic_sigma=4.0),
}


def lenet5(init="he_uniform", seed=0):
    nn = bpnn.nn
    return bpnn.Sequential([
        nn.Conv2D(6, 5, padding=2, init=init), nn.ReLU(), nn.MaxPool2D(2),
        nn.Conv2D(16, 5, init=init), nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(),
        nn.Dense(120, init=init), nn.ReLU(), nn.Dense(84, init=init), nn.ReLU(), nn.Dense(10),
    ], input_shape=(1, 28, 28), seed=seed)


class TestError(bpnn.Callback):
    """Test error (%) after every epoch, printed and kept in ``errors``."""

    def __init__(self, X, y, t0):
        self.X, self.y, self.t0, self.errors = X, y, t0, []

    def on_epoch_end(self, epoch, logs=None):
        err = 100.0 * float(np.mean(self.trainer.predict(self.X).argmax(1) != self.y))
        self.errors.append(err)
        print(f"epoch {epoch + 1:3d}  train loss {logs['loss']:.4f}  train acc {100 * logs['accuracy']:.2f} %  "
              f"test error {err:.2f} %  lr {logs['lr']:.2e}  {time.perf_counter() - self.t0:7.1f} s", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default="sgd")
    ap.add_argument("--lr", type=float, default=None, help="default 1e-3 (Adam, AdamW), 0.05 (SGD)")
    ap.add_argument("--momentum", type=float, default=0.9, help="SGD: Nesterov momentum")
    ap.add_argument("--weight-decay", type=float, default=5e-4, help="L2 (adam, sgd) or decoupled (adamw)")
    ap.add_argument("--gamma", type=float, default=0.85, help="learning-rate decay per epoch")
    ap.add_argument("--augment", choices=sorted(AUGMENTS), default="none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=None, help="training images (default all 60,000)")
    ap.add_argument("--data-dir", default=MNIST_DIR)
    ap.add_argument("--quick", action="store_true", help="2 epochs on 6,000 images (smoke test)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    machine = machine_header()  # CPU, vector extensions, BLAS core type and threads, bpnn's kernel path
    if args.quick:
        args.epochs, args.samples = 2, args.samples or 6000
    X, y, Xt, yt = load_mnist(data_dir=args.data_dir, download=False, flatten=False)
    if args.samples:
        X, y = X[:args.samples], y[:args.samples]
    aug = AUGMENTS[args.augment]
    augment = None if aug is None else ImageAugment(**aug)
    model = lenet5(seed=args.seed)
    if args.lr is None:
        args.lr = 0.05 if args.optimizer == "sgd" else 1e-3
    schedule = bpnn.optim.ExponentialDecay(args.lr, args.gamma)  # per epoch
    if args.optimizer == "sgd":
        opt = bpnn.optim.SGD(lr=schedule, momentum=args.momentum, nesterov=True, weight_decay=args.weight_decay)
    else:
        cls = bpnn.optim.AdamW if args.optimizer == "adamw" else bpnn.optim.Adam
        opt = cls(lr=schedule, weight_decay=args.weight_decay)
    trainer = bpnn.Trainer(model, optimizer=opt)
    t0 = time.perf_counter()
    cb = TestError(Xt, yt, t0)
    print(f"LeNet-5, {len(X)} training images, augment={args.augment} {aug or ''}, {args.optimizer} lr {args.lr} × "
          f"{args.gamma}^epoch, weight decay {args.weight_decay}, batch {args.batch_size}, seed {args.seed}",
          flush=True)
    trainer.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, callbacks=[cb], verbose=False,
                augment=augment)
    wall = time.perf_counter() - t0
    paths = {f"{i} {type(layer).__name__}": p for i, layer in enumerate(model.layers) if (p := layer_paths(layer))}
    print("kernel path per layer: " + "; ".join(f"{k}: {v}" for k, v in paths.items()))
    final = cb.errors[-1]
    target = LECUN[args.augment]
    print(f"\nfinal test error {final:.2f} % after {args.epochs} epochs, {wall:.0f} s wall "
          f"({wall / args.epochs:.1f} s/epoch); LeCun et al. 1998: {target:.2f} % "
          f"({'reached' if final <= target else 'not reached'}); best epoch {min(cb.errors):.2f} % "
          f"(epoch {int(np.argmin(cb.errors)) + 1}, for information only)")
    write_json(args.json, {"args": vars(args), "machine": machine, "kernel_paths": paths, "test_error_per_epoch": cb.errors,
                           "final_test_error": final, "wall_s": wall, "lecun_target": target})
    return 0


if __name__ == "__main__":
    sys.exit(main())
