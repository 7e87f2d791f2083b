"""The data of a study: digits, MNIST / Fashion-MNIST, or a CSV file, split once.

Every run of a study trains on the same training part and is evaluated on the same
held-out part, so runs differ only in what the study varies.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..data.csv import is_number, read_csv


@dataclass
class StudyData:
    """Training and held-out arrays plus what the report says about them."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    task: str                      # "classification" | "regression"
    n_outputs: int
    description: str
    feature_names: list = field(default_factory=list)
    target_name: str | None = None
    class_names: list = field(default_factory=list)

    def summary(self) -> dict:
        return {"description": self.description, "task": self.task, "n_outputs": self.n_outputs,
                "n_train": int(len(self.X_train)), "n_test": int(len(self.X_test)),
                "n_features": int(np.prod(self.X_train.shape[1:])),
                "feature_names": list(self.feature_names), "target_name": self.target_name,
                "class_names": [str(c) for c in self.class_names]}


def load_study_data(spec) -> StudyData:
    """Load and split the data named by ``spec.data`` (see :class:`~bpnn.experiment.StudySpec`)."""
    if spec.data == "digits":
        from ..data import load_digits

        X, y = load_digits()
        data = _split(X, y, spec, "classification", "scikit-learn digits (8×8 images, 10 classes)")
    elif spec.data in ("mnist", "fashion_mnist"):
        data = _mnist(spec)
    else:
        data = _csv(spec)
    return data


def _split(X, y, spec, task, description, **extra) -> StudyData:
    from ..data import train_test_split

    stratify = task == "classification"
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=spec.test_size, stratify=stratify,
                                          seed=spec.split_seed)
    Xtr, ytr = _limit(Xtr, ytr, spec)
    n_out = int(max(ytr.max(), yte.max()) + 1) if task == "classification" else 1
    return StudyData(Xtr, ytr, Xte, yte, task, n_out, description, **extra)


def _limit(X, y, spec):
    if spec.max_samples is None or spec.max_samples >= len(X):
        return X, y
    keep = np.sort(np.random.default_rng(spec.split_seed).permutation(len(X))[:spec.max_samples])
    return X[keep], y[keep]


def _mnist(spec) -> StudyData:
    from .. import data as data_mod

    load = getattr(data_mod, "load_mnist", None)
    if load is None:  # pragma: no cover - depends on the version
        raise ImportError(f"data: {spec.data!r} needs bpnn.data.load_mnist, which this version of bpnn lacks")
    Xtr, ytr, Xte, yte = load(data_dir=spec.data_dir, kind=spec.data)
    Xtr = np.asarray(Xtr).reshape(len(Xtr), -1)
    Xte = np.asarray(Xte).reshape(len(Xte), -1)
    Xtr, ytr = _limit(Xtr, np.asarray(ytr), spec)
    name = "MNIST" if spec.data == "mnist" else "Fashion-MNIST"
    return StudyData(Xtr, ytr, Xte, np.asarray(yte), "classification", 10,
                     f"{name} (28×28 images, 10 classes; official train/test split)")


def _csv(spec) -> StudyData:
    X, y_raw, features, target = read_csv(spec.data, spec.target)
    numeric = all(is_number(v) for v in y_raw)
    values = np.array([float(v) for v in y_raw]) if numeric else None
    task = spec.task
    if task == "auto":
        task = ("classification" if not numeric
                or (np.all(np.mod(values, 1) == 0) and len(np.unique(values)) <= 20) else "regression")
    if not np.isfinite(X).all():
        raise ValueError(f"data: {spec.data!r} contains NaN or infinite feature values")
    base = os.path.basename(spec.data)
    if task == "classification":
        classes = sorted(set(y_raw), key=lambda v: (float(v), v) if numeric else (0, v))
        if len(classes) < 2:  # as the estimators refuse it (bpnn.sklearn.BPNNClassifier)
            raise ValueError(f"data: {spec.data!r}: a classifier needs samples of at least 2 classes; column "
                             f"{target!r} holds only one class, {classes[0]!r}")
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in y_raw], dtype=np.int64)
        description = f"{base}: {len(X)} rows, {X.shape[1]} features, {len(classes)} classes of {target!r}"
        data = _split(X, y, spec, task, description, feature_names=features, target_name=target,
                      class_names=classes)
        data.n_outputs = len(classes)
    else:
        if values is None:
            raise ValueError(f"task: 'regression' needs a numeric target, column {target!r} holds text")
        description = f"{base}: {len(X)} rows, {X.shape[1]} features, regression on {target!r}"
        data = _split(X, values.astype(np.float32), spec, task, description, feature_names=features,
                      target_name=target)
        mu, sd = data.y_train.mean(), data.y_train.std() or 1.0
        data.y_train = ((data.y_train - mu) / sd).astype(np.float32)
        data.y_test = ((data.y_test - mu) / sd).astype(np.float32)
        data.description += " (target standardized with the training mean and std)"
    # Standardize features with the training statistics (held-out data never leaks in).
    mu = data.X_train.mean(axis=0)
    sd = data.X_train.std(axis=0)
    sd[sd == 0] = 1.0
    data.X_train = ((data.X_train - mu) / sd).astype(np.float32)
    data.X_test = ((data.X_test - mu) / sd).astype(np.float32)
    data.description += "; features standardized"
    return data
