"""Command line: ``bpnn compare`` (the built-in initialization study), ``bpnn report``,
``bpnn train`` (digits by default) and ``bpnn info``."""
from __future__ import annotations

import argparse
import sys
import time

from . import __version__

__all__ = ["build_parser", "main"]


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
    for title, reg in (("layers", bpnn.nn.layers), ("initializers", bpnn.init.registry),
                       ("losses", bpnn.losses.losses), ("optimizers", bpnn.optim.optimizers),
                       ("metrics", bpnn.metrics.registry)):
        print(f"{title}: {', '.join(reg.names())}")
    return 0


def _export(args) -> int:
    import bpnn

    if not (args.onnx or args.torch):
        print("bpnn export: error: say what to write: --onnx OUT.onnx and/or --torch OUT.safetensors",
              file=sys.stderr)
        return 2
    try:
        model = bpnn.load(args.model_file)
    except OSError as exc:
        print(f"bpnn: error: {exc}", file=sys.stderr)
        return 2
    shape = tuple(model.input_shape) if model.built else None
    if args.onnx:
        proto = bpnn.io.export_onnx(model, args.onnx, softmax_output=args.softmax, opset=args.opset)
        print(f"wrote {args.onnx}: ONNX opset {args.opset}, {len(proto.graph.node)} nodes, "
              f"input (batch, {', '.join(map(str, shape))}) -> output (batch, "
              f"{', '.join(map(str, model.output_shape))}){' + softmax' if args.softmax else ''}")
    if args.torch:
        import safetensors.numpy

        from bpnn.io import to_torch_state_dict, write_bytes_atomic

        state = to_torch_state_dict(model)
        write_bytes_atomic(args.torch, safetensors.numpy.save(dict(state)))
        print(f"wrote {args.torch}: {len(state)} arrays keyed as torch.nn.Sequential's state_dict "
              f"(load with safetensors.torch.load_file, then module.load_state_dict)")
    return 0


def _entries(values):
    """Registry entries from the command line: names, or JSON objects for configs
    (``'{"class_name": "sgd", "config": {"momentum": 0.9}}'``)."""
    import json

    if values is None:
        return None
    out = []
    for v in values:
        if v.lstrip().startswith("{"):
            try:
                out.append(json.loads(v))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{v!r}: not a valid JSON object ({exc})") from None
        else:
            out.append(v)
    return out


#: `bpnn compare` flags that change the study itself (refused with --resume) -> their spec field.
_STUDY_FLAGS = {"config": None, "name": "name", "data": "data", "data_dir": "data_dir", "target": "target",
                "task": "task", "test_size": "test_size", "max_samples": "max_samples", "depths": "depths",
                "width": "width", "hidden": "hidden", "activations": "activations", "inits": "inits",
                "optimizers": "optimizers", "lrs": "lrs", "seeds": "seeds", "n_seeds": "seeds",
                "epochs": "epochs", "batch_size": "batch_size", "loss": "loss", "stats_every": "stats_every",
                "search": "search", "n_trials": "n_trials", "lr_range": "lr_range",
                "weight_decay_range": "weight_decay_range", "search_seed": "search_seed", "out": "out"}


def _compare_spec(args):
    from bpnn.experiment import StudySpec

    spec = StudySpec.from_toml(args.config) if args.config else StudySpec()
    seeds = args.seeds
    if args.n_seeds is not None:
        if args.n_seeds < 1:
            raise ValueError(f"--n-seeds: got {args.n_seeds}; expected a positive number of seeds (0..N-1 are run)")
        if seeds is not None:
            raise ValueError(f"--n-seeds: got {args.n_seeds} with --seeds {' '.join(map(str, seeds))}; give one")
        seeds = list(range(args.n_seeds))
    batch = args.batch_size
    if batch is not None and batch.isdigit():
        batch = int(batch)
    return spec.replace(
        name=args.name, data=args.data, data_dir=args.data_dir, target=args.target, task=args.task,
        test_size=args.test_size, max_samples=args.max_samples, depths=args.depths, width=args.width,
        hidden=args.hidden, activations=_entries(args.activations), inits=_entries(args.inits),
        optimizers=_entries(args.optimizers), lrs=args.lrs, seeds=seeds, epochs=args.epochs, batch_size=batch,
        loss=args.loss, stats_every=args.stats_every, search=args.search, n_trials=args.n_trials,
        lr_range=args.lr_range, weight_decay_range=args.weight_decay_range, search_seed=args.search_seed,
        n_jobs=args.n_jobs, backend=args.backend, address=args.address, timeout=args.timeout, out=args.out)


def _compare(args) -> int:
    import os
    import time as _time

    from bpnn.experiment import StudySpec, run_study

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in _STUDY_FLAGS if getattr(args, k) is not None]
        if given or args.dry_run:
            given += ["--dry-run"] if args.dry_run else []
            raise ValueError(f"--resume: the study comes from {os.path.join(args.resume, 'config.toml')}; "
                             f"{', '.join(given)} cannot change it (only --backend, --address, --n-jobs, "
                             f"--timeout, --quiet and --no-report go with --resume)")
        spec = None
    else:
        spec = _compare_spec(args)
        if args.dry_run:
            print(spec.to_toml(), end="")
            print(f"# {len(spec.runs())} runs")
            return 0
        spec = spec.replace(out=spec.out or os.path.join("bpnn-runs", _time.strftime("compare-%Y%m%d-%H%M%S")))
    if not args.no_report:
        from bpnn.report import figures

        figures.require_matplotlib()  # fail now, not after the study, when matplotlib is missing
    paths = {}

    def announce(spec: StudySpec, info: dict, n_todo: int):
        n_runs = len(spec.runs())
        what = (f"{spec.n_trials} random trials × {len(spec.seeds)} seeds" if spec.search == "random"
                else f"{len(spec.seeds)} seeds each")
        done = f", {n_runs - n_todo} already done" if n_runs != n_todo else ""
        where = info["backend"] + (f" at {info['address']}" if info.get("address") else "") + \
            f", {info['n_workers']} worker{'s' if info['n_workers'] != 1 else ''}"
        print(f"bpnn compare: {spec.name}: {n_runs} runs ({what}{done}) on {spec.data}, {spec.epochs} epochs, "
              f"{where}; writing to {spec.out}", file=sys.stderr)

    def finish(result):
        if not args.no_report:
            from bpnn.report import write_report

            paths["report.html"] = write_report(result, os.path.join(result.spec.out, "report.html"))

    result = run_study(spec, progress=not args.quiet, out=args.resume, resume=bool(args.resume),
                       backend=args.backend if args.resume else None, address=args.address if args.resume else None,
                       n_jobs=args.n_jobs if args.resume else None, timeout=args.timeout if args.resume else None,
                       announce=announce, finish=finish)
    out = result.spec.out
    paths = {name: os.path.join(out, name) for name in ("results.csv", "results.json", "config.toml")} | paths
    print(result.table())
    failed = sum(1 for r in result.runs if r.get("error"))
    n_runs = len(result.runs)
    print(f"\n{n_runs} runs in {result.meta['seconds']:.1f} s" + (f", {failed} failed" if failed else ""))
    for name in ("report.html", "results.csv", "results.json", "config.toml"):
        if name in paths:
            print(f"{name:<13}{paths[name]}")
    if failed:
        first = next(r for r in result.runs if r.get("error"))
        print(f"first failure: {first['error'].splitlines()[0]}", file=sys.stderr)
    return 1 if failed == n_runs else 0


def _report(args) -> int:
    from bpnn.experiment import StudyResult
    from bpnn.report import write_report

    result = StudyResult.load(args.run_dir)
    import os

    base = args.run_dir if os.path.isdir(args.run_dir) else os.path.dirname(args.run_dir)
    try:
        table = result.table()
        path = write_report(result, args.out or os.path.join(base, "report.html"))
    except (KeyError, TypeError, IndexError, AttributeError) as exc:  # a value of the wrong kind deeper in
        raise ValueError(f"{os.path.join(base, 'results.json')}: damaged: the report cannot read it "
                         f"({type(exc).__name__}: {exc})") from None
    if not args.quiet:
        print(table)
    print(f"report.html  {path}")
    return 0


def _add_compare_parsers(sub) -> None:
    compare = sub.add_parser(
        "compare", help="compare initializations (and optimizers, activations, depths, lrs) over seeds; "
                        "write an HTML report",
        description="Run a study over inits × optimizers × activations × depths × lrs × seeds (or a random "
                    "search) and write report.html, results.csv, summary.csv, results.json and config.toml "
                    "into the output folder, with runs/ holding each run the moment it ends (--resume "
                    "continues a study that was stopped). "
                    "Without arguments: the built-in initialization study on scikit-learn's digits "
                    "(zeros, small_normal, xavier_uniform, he_normal, lecun_normal, orthogonal, lsuv; "
                    "10 hidden ReLU layers of 64; SGD momentum 0.9, lr 0.01; 3 seeds; 20 epochs). "
                    "Flags override the values of --config.")
    add = compare.add_argument
    add("--config", metavar="FILE.toml", help="study file (e.g. a config.toml written by an earlier run)")
    add("--name", help="title of the study")
    add("--data", help="digits | mnist | fashion_mnist | PATH.csv (default: digits)")
    add("--data-dir", help="folder holding the MNIST IDX files")
    add("--target", help="CSV: target column name or index (default: the last column)")
    add("--task", choices=["auto", "classification", "regression"], help="CSV: the task (default: auto)")
    add("--test-size", type=float, help="held-out fraction (default: 0.25)")
    add("--max-samples", type=int, help="use at most this many training samples")
    add("--depths", type=int, nargs="+", help="numbers of hidden layers to compare (default: 10)")
    add("--width", type=int, help="units per hidden layer (default: 64)")
    add("--hidden", type=int, nargs="+", help="explicit hidden widths (instead of --depths/--width)")
    add("--activations", nargs="+", help="hidden activations to compare (default: relu)")
    add("--inits", nargs="+", help="initializers to compare: names or JSON configs")
    add("--optimizers", nargs="+", help="optimizers to compare: names or JSON configs "
                                        "(default: SGD with momentum 0.9)")
    add("--lrs", type=float, nargs="+", help="learning rates to compare (default: 0.01)")
    add("--seeds", type=int, nargs="+", help="seeds (default: 0 1 2)")
    add("--n-seeds", type=int, help="seeds 0..N-1 (N >= 1)")
    add("--epochs", type=int, help="epochs per run (default: 20)")
    add("--batch-size", help="mini-batch size, or full / stochastic (default: 32)")
    add("--loss", help="loss (default: softmax_cross_entropy for classification, mse for regression)")
    add("--stats-every", type=int, help="per-layer statistics every K epochs (default: 1)")
    add("--search", help="grid (default: every combination) | random (--n-trials draws)")
    add("--n-trials", type=int, help="random search: number of trials, each run over every seed")
    add("--lr-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
        help="random search: learning rate log-uniform in [LOW, HIGH) (else one of --lrs)")
    add("--weight-decay-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
        help="random search: weight decay log-uniform in [LOW, HIGH) (else none)")
    add("--search-seed", type=int, help="random search: seed of the draws (default: 0)")
    add("--n-jobs", type=int, help="parallel runs (default: -1, all cores); with --backend dask and no "
                                   "--address, the number of local worker processes")
    add("--backend", help="loky (default: local processes) | sequential | dask | ray")
    add("--address", help="dask scheduler (tcp://HOST:8786) or ray cluster (HOST:6379) to join; without it "
                          "dask and ray start a local cluster")
    add("--timeout", type=float, help="seconds to wait for the cluster: reaching it and its first worker "
                                      "(default: 30)")
    add("--out", help="output folder, new or empty (default: bpnn-runs/compare-DATE-TIME)")
    add("--resume", metavar="RUN_DIR", help="continue the study of RUN_DIR (killed or stopped): run only the "
                                            "runs it has no file for, then rebuild its results and report")
    add("--no-report", action="store_true", help="skip the HTML report (no matplotlib needed)")
    add("--dry-run", action="store_true", help="print the configuration and the number of runs, run nothing")
    add("--quiet", action="store_true", help="no progress bar")
    compare.set_defaults(func=_compare)
    report = sub.add_parser("report", help="render report.html again from a directory written by bpnn compare",
                            description="Re-render the HTML report of a `bpnn compare` run directory from its "
                                        "results.json.")
    report.add_argument("run_dir", metavar="RUN_DIR", help="directory written by bpnn compare")
    report.add_argument("--out", help="where to write the report (default: RUN_DIR/report.html)")
    report.add_argument("--quiet", action="store_true", help="do not print the results table")
    report.set_defaults(func=_report)


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
    export = sub.add_parser("export", help="export a saved model to ONNX or to a torch state dict",
                            description="Export a model file written by bpnn.save: to ONNX (inference graph, "
                                        "evaluation mode) and/or to a safetensors file of arrays keyed as "
                                        "torch.nn.Sequential's state_dict.")
    export.add_argument("model_file", metavar="MODEL_FILE", help="a model file written by bpnn.save")
    export.add_argument("--onnx", metavar="OUT.onnx", help="write an ONNX model (needs bpnn[onnx])")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    export.add_argument("--softmax", action="store_true", help="append a softmax (probabilities, not logits)")
    export.add_argument("--torch", metavar="OUT.safetensors", help="write the torch-keyed state dict")
    export.set_defaults(func=_export)
    _add_compare_parsers(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError, OSError) as exc:  # bad input, a missing extra, files, datasets, a lock
        print(f"bpnn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
