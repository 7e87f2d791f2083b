#!/usr/bin/env python
"""Train LeNet-5 on MNIST with a chosen initializer and optimizer, report the test error,
and save the model.

    python examples/lenet5_mnist.py                                   # He init, Adam, 10 epochs
    python examples/lenet5_mnist.py --init xavier_uniform --optimizer sgd --lr 0.05 --momentum 0.9
    python examples/lenet5_mnist.py --augment --epochs 30 --out lenet5_aug.bpnn
    python examples/lenet5_mnist.py --data-dir /path/to/mnist         # local IDX files (.gz or plain)
    python examples/lenet5_mnist.py --samples 300 --test-samples 300 --epochs 1   # a quick check

Images are NCHW (N, 1, 28, 28), as in PyTorch. Without ``--data-dir`` the files are
looked up in ``$BPNN_MNIST_DIR`` and the cache, and downloaded if missing. The model is
written with :func:`bpnn.save` (safetensors + JSON; load it back with ``bpnn.load``).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import bpnn
from bpnn.data import ImageAugment, load_mnist
from bpnn.data.mnist import DatasetError


def lenet5(init: str, seed: int) -> bpnn.Sequential:
    """LeNet-5 (LeCun et al. 1998) in its common modern form: ReLU and max pooling."""
    nn = bpnn.nn
    return bpnn.Sequential([
        nn.Conv2D(6, 5, padding=2, init=init), nn.ReLU(), nn.MaxPool2D(2),   # 6@28×28 → 6@14×14
        nn.Conv2D(16, 5, init=init), nn.ReLU(), nn.MaxPool2D(2),             # 16@10×10 → 16@5×5
        nn.Flatten(),
        nn.Dense(120, init=init), nn.ReLU(),
        nn.Dense(84, init=init), nn.ReLU(),
        nn.Dense(10),                                                        # logits
    ], input_shape=(1, 28, 28), seed=seed)


def make_optimizer(args):
    schedule = bpnn.optim.ExponentialDecay(args.lr, args.gamma) if args.gamma < 1 else args.lr
    if args.optimizer == "sgd":
        return bpnn.optim.SGD(lr=schedule, momentum=args.momentum, nesterov=args.momentum > 0)
    return bpnn.optim.get({"class_name": args.optimizer, "config": {"lr": schedule}})


def main(argv=None):
    ap = argparse.ArgumentParser(description="Train LeNet-5 on MNIST with bpnn.")
    ap.add_argument("--init", default="he_uniform",
                    help="weight initializer (any name of bpnn.init.registry, e.g. he_normal, "
                         "xavier_uniform, lecun_normal, orthogonal)")
    ap.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "nadam", "rmsprop", "adagrad", "sgd"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--momentum", type=float, default=0.9, help="SGD only (Nesterov when > 0)")
    ap.add_argument("--gamma", type=float, default=0.85, help="learning rate × gamma every epoch (1: constant)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--augment", action="store_true",
                    help="random shifts, rotations, scaling, shear and elastic distortion of every batch")
    ap.add_argument("--samples", type=int, default=None, help="use only the first N training images")
    ap.add_argument("--test-samples", type=int, default=None, help="use only the first N test images")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="lenet5_mnist.bpnn", help="where to save the trained model")
    args = ap.parse_args(argv)

    try:
        X, y, X_test, y_test = load_mnist(data_dir=args.data_dir, flatten=False)
    except DatasetError as exc:
        sys.exit(f"lenet5_mnist.py: MNIST: {exc}")
    if args.samples:
        X, y = X[:args.samples], y[:args.samples]
    if args.test_samples:
        X_test, y_test = X_test[:args.test_samples], y_test[:args.test_samples]
    model = lenet5(args.init, args.seed)
    print(model.summary())
    trainer = bpnn.Trainer(model, loss="softmax_cross_entropy", optimizer=make_optimizer(args))
    augment = ImageAugment(shift=2, rotation=10, scale=0.1, shear=0.15, elastic_alpha=34, elastic_sigma=4) \
        if args.augment else None
    t0 = time.perf_counter()
    trainer.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, validation_data=(X_test, y_test),
                augment=augment, verbose=True)
    error = 100.0 * float(np.mean(trainer.predict(X_test).argmax(axis=1) != y_test))
    print(f"test error {error:.2f} % after {args.epochs} epochs ({time.perf_counter() - t0:.0f} s); "
          f"LeCun et al. 1998: 0.95 % without distortions, 0.8 % with")
    path = bpnn.save(model, args.out, optimizer=trainer.optimizer)
    print(f"model saved to {path}; reload with bpnn.load({path!r})")
    return error


if __name__ == "__main__":
    main()
