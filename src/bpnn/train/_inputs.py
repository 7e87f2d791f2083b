"""Checks shared by every trainer where training data enters."""
from __future__ import annotations

from .. import _checks


def check_xy(model, X, y, name_x: str = "X", name_y: str = "y"):
    """Validate X and targets (numeric, finite, non-empty, same length), build ``model`` on
    X's sample shape if it is not built, and check the shapes agree. Returns the arrays."""
    X = _checks.array(name_x, X, min_ndim=2)
    y = _checks.array(name_y, y, min_ndim=1)
    if len(X) != len(y):
        raise ValueError(f"{name_x}, {name_y}: {name_x} has {len(X)} samples but {name_y} has {len(y)}")
    if not model.built:
        model.build(X.shape[1:], model.rng, model.dtype)
    if X.shape[1:] != model.input_shape:
        raise ValueError(f"{name_x}: samples have shape {X.shape[1:]} but the model expects {model.input_shape}")
    return X, y
