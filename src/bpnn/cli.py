"""Command line: ``bpnn train`` (digits by default) and ``bpnn info``."""
from __future__ import annotations

import argparse
import sys
import time

from . import __version__


def _train(args) -> int:
    import bpnn
    from bpnn.data import load_digits, train_test_split

    X, y = load_digits()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, seed=args.seed)
    layers = []
    for width in args.hidden:
        layers += [bpnn.Dense(width, init=args.init), bpnn.nn.layers.get(args.activation)]
    layers.append(bpnn.Dense(10, init="xavier_uniform"))
    model = bpnn.Sequential(layers, input_shape=(X.shape[1],), seed=args.seed)
    optimizer = bpnn.optim.optimizers.get(args.optimizer)
    optimizer.lr = args.lr
    trainer = bpnn.Trainer(model, loss="softmax_cross_entropy", optimizer=optimizer)
    start = time.perf_counter()
    trainer.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, verbose=not args.quiet)
    seconds = time.perf_counter() - start
    result = trainer.evaluate(Xte, yte)
    arch = "-".join(str(s) for s in (X.shape[1], *args.hidden, 10))
    print(f"digits {arch} ({args.activation}, init {args.init}, {args.optimizer} lr {args.lr}), "
          f"{args.epochs} epochs in {seconds:.1f} s")
    print(f"test accuracy: {result['accuracy']:.4f}   test loss: {result['loss']:.4f}")
    return 0


def _info(args) -> int:
    import bpnn

    print(f"bpnn {__version__} on backend {bpnn.backend.backend_name()}")
    for title, reg in (("layers", bpnn.nn.layers), ("initializers", bpnn.init.initializers),
                       ("losses", bpnn.losses.losses), ("optimizers", bpnn.optim.optimizers)):
        print(f"{title}: {', '.join(reg.names())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bpnn", description="Backpropagation neural networks.")
    parser.add_argument("--version", action="version", version=f"bpnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an MLP on scikit-learn's digits and print test accuracy",
                           description="Train an MLP on scikit-learn's digits (stratified 75/25 split) "
                                       "and print the test accuracy.")
    train.add_argument("--hidden", type=int, nargs="+", default=[100], help="hidden layer widths (default: 100)")
    train.add_argument("--activation", default="relu", help="hidden activation (default: relu)")
    train.add_argument("--init", default="he_normal", help="hidden-layer initializer (default: he_normal)")
    train.add_argument("--optimizer", default="adam", help="optimizer name (default: adam)")
    train.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    train.add_argument("--epochs", type=int, default=30, help="epochs (default: 30)")
    train.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default: 32)")
    train.add_argument("--seed", type=int, default=0, help="seed for init, shuffling and the split (default: 0)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)
    info = sub.add_parser("info", help="version, backend and registered names")
    info.set_defaults(func=_info)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError) as exc:
        print(f"bpnn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
