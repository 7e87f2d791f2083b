"""Small bundled datasets and a stratified split."""
from __future__ import annotations

import numpy as np

from .. import _checks


def _sklearn():
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise _checks.missing_dependency("this dataset", "scikit-learn", "'bpnn[datasets]'", exc) from exc
    import sklearn

    return sklearn


def load_digits(scale: bool = True):
    """scikit-learn's 8×8 handwritten digits: X (1797, 64) float32, y (1797,) int64 in 0..9.

    With ``scale`` the pixel values 0..16 are divided by 16 into [0, 1].
    """
    _sklearn()
    from sklearn.datasets import load_digits as _load

    data = _load()
    X = data.data.astype(np.float32)
    if scale:
        X /= 16.0
    return X, data.target.astype(np.int64)


def train_test_split(X, y, test_size: float = 0.25, stratify: bool = True, seed=0):
    """Split into (X_train, X_test, y_train, y_test); stratified by class by default."""
    _checks.in_range("test_size", test_size, 0.0, 1.0, low_open=True, high_open=True)
    _sklearn()
    from sklearn.model_selection import train_test_split as _split

    return _split(X, y, test_size=test_size, stratify=y if stratify else None, random_state=seed)
