#!/usr/bin/env python
"""bpnn's scikit-learn estimators next to scikit-learn's MLPs, on datasets that ship offline.

1. Classification, digits (1797 × 64, X/16): ``BPNNClassifier(100)`` and
   ``MLPClassifier(100)`` (both with their defaults: ReLU, Adam, lr 1e-3, alpha 1e-4,
   batch min(200, n), 200 epochs, tol 1e-4 / 10 epochs) on the same stratified 75/25
   splits (``StratifiedShuffleSplit``, seeds 0..k−1; estimator ``random_state`` = split
   index). Target: mean accuracies within 1.5 percentage points.
2. Regression: test R² on diabetes, linnerud (3 targets, 20 samples), make_friedman1,
   make_friedman2, make_friedman3 (California housing needs a download: skipped), over
   random 75/25 splits. Every model sees the same preprocessing — X standardized
   (Pipeline with StandardScaler) and y standardized (TransformedTargetRegressor) —
   except the MATLAB-style rows, which do their own min-max scaling as MATLAB does:

   - ``MLPRegressor(100)``            scikit-learn, defaults
   - ``BPNNRegressor(100)``           bpnn, the same defaults (Adam)
   - ``BPNNRegressor(10, lm)``        tanh, Levenberg–Marquardt, 15 % validation stop (max_fail 6)
   - ``BPNNRegressor(10, br)``        tanh, Bayesian regularization (no validation set)

Usage::

    python benchmarks/bench_sklearn.py                 # full run (several minutes on 2 cores)
    python benchmarks/bench_sklearn.py --quick         # smoke test (< 1 min)
    python benchmarks/bench_sklearn.py --splits 5 --json bench-results/sklearn.json
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import numpy as np

from _harness import machine_info, write_json  # beside this script


def _mean_sd(values):
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def digits(splits: int, max_iter: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedShuffleSplit
    from sklearn.neural_network import MLPClassifier

    from bpnn.sklearn import BPNNClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rows = {"bpnn": [], "sklearn": []}
    times = {"bpnn": [], "sklearn": []}
    sss = StratifiedShuffleSplit(n_splits=splits, test_size=0.25, random_state=0)
    for i, (tr, te) in enumerate(sss.split(X, y)):
        for name, est in (("bpnn", BPNNClassifier(100, random_state=i, max_iter=max_iter)),
                          ("sklearn", MLPClassifier(100, random_state=i, max_iter=max_iter))):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = time.perf_counter()
                est.fit(X[tr], y[tr])
                times[name].append(time.perf_counter() - t)
            rows[name].append(float(est.score(X[te], y[te])))
    out = {}
    for name in rows:
        m, sd = _mean_sd(rows[name])
        out[name] = {"accuracy": rows[name], "mean": m, "sd": sd, "fit_seconds": statistics.fmean(times[name])}
    out["difference_points"] = 100 * (out["bpnn"]["mean"] - out["sklearn"]["mean"])
    out["within_1_5_points"] = abs(out["difference_points"]) <= 1.5
    return out


def regression_datasets(quick: bool):
    from sklearn.datasets import load_diabetes, load_linnerud, make_friedman1, make_friedman2, make_friedman3

    sets = {"diabetes": load_diabetes(return_X_y=True)}
    if not quick:
        sets["linnerud"] = load_linnerud(return_X_y=True)
        sets["friedman1"] = make_friedman1(n_samples=1000, noise=1.0, random_state=0)
        sets["friedman2"] = make_friedman2(n_samples=1000, noise=10.0, random_state=0)
    sets["friedman3"] = make_friedman3(n_samples=1000, noise=0.1, random_state=0)
    return sets


def regressors():
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bpnn.sklearn import BPNNRegressor

    def std(est):
        return TransformedTargetRegressor(make_pipeline(StandardScaler(), est), transformer=StandardScaler())

    return {
        "MLPRegressor(100)": lambda s: std(MLPRegressor(hidden_layer_sizes=100, random_state=s)),
        "BPNNRegressor(100)": lambda s: std(BPNNRegressor(100, random_state=s)),
        "BPNNRegressor(10, lm)": lambda s: BPNNRegressor(10, activation="tanh", solver="lm", early_stopping=True,
                                                         validation_fraction=0.15, n_iter_no_change=6,
                                                         max_iter=1000, random_state=s),
        "BPNNRegressor(10, br)": lambda s: BPNNRegressor(10, activation="tanh", solver="br", max_iter=1000,
                                                         random_state=s),
    }


def regression(splits: int, quick: bool):
    from sklearn.model_selection import train_test_split

    out = {}
    for dname, (X, y) in regression_datasets(quick).items():
        res = {}
        for mname, make in regressors().items():
            scores, secs = [], []
            for s in range(splits):
                Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=s)
                est = make(s)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t = time.perf_counter()
                    est.fit(Xtr, ytr)
                    secs.append(time.perf_counter() - t)
                scores.append(float(est.score(Xte, yte)))
            m, sd = _mean_sd(scores)
            res[mname] = {"r2": scores, "mean": m, "sd": sd, "fit_seconds": statistics.fmean(secs)}
        out[dname] = {"n_samples": int(len(X)), "n_features": int(X.shape[1]), "models": res}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 digits splits, 2 regression datasets, 2 splits")
    ap.add_argument("--splits", type=int, default=None, help="splits per dataset (default 5; quick: 2)")
    ap.add_argument("--json", default=None, help="write the results to this file")
    args = ap.parse_args(argv)
    splits = args.splits or (2 if args.quick else 5)
    import sklearn

    import bpnn

    result = {"machine": machine_info(), "numpy": np.__version__, "sklearn": sklearn.__version__, "bpnn": bpnn.__version__, "splits": splits}
    print(f"digits, {splits} stratified 75/25 splits, 100 hidden units, defaults")
    d = digits(splits, max_iter=200)
    result["digits"] = d
    for name in ("bpnn", "sklearn"):
        r = d[name]
        print(f"  {'BPNNClassifier' if name == 'bpnn' else 'MLPClassifier '}(100)  accuracy "
              f"{r['mean']:.4f} ± {r['sd']:.4f}   fit {r['fit_seconds']:.2f} s")
    print(f"  difference {d['difference_points']:+.2f} points "
          f"({'within' if d['within_1_5_points'] else 'NOT within'} 1.5)")
    print(f"\nregression, test R² (mean ± sd over {splits} random 75/25 splits)")
    reg = regression(splits, args.quick)
    result["regression"] = reg
    names = list(next(iter(reg.values()))["models"])
    width = max(len(n) for n in names)
    print(f"  {'dataset':<10} {'n':>5}  " + "  ".join(f"{n:>{max(width, 16)}}" for n in names))
    for dname, r in reg.items():
        cells = [f"{r['models'][n]['mean']:.3f} ± {r['models'][n]['sd']:.3f}" for n in names]
        print(f"  {dname:<10} {r['n_samples']:>5}  " + "  ".join(f"{c:>{max(width, 16)}}" for c in cells))
    print("  mean fit seconds: " + ", ".join(
        f"{n} {statistics.fmean(r['models'][n]['fit_seconds'] for r in reg.values()):.2f}" for n in names))
    write_json(args.json, result)
    return 0 if d["within_1_5_points"] else 1


if __name__ == "__main__":
    sys.exit(main())
