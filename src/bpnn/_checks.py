"""Argument checks at the points where values enter bpnn.

Each error names the argument, the value received and what would have been valid.
"""
from __future__ import annotations

import numbers

import numpy as np


def positive(name: str, value, integer: bool = False, allow_zero: bool = False):
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        ok = value >= 0 if allow_zero else value > 0
        ok = ok and np.isfinite(value)
    if not ok:
        what = "integer" if integer else "number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: got {value!r}; expected a finite {what} {bound}")
    return value


def in_range(name: str, value, low, high, low_open=False, high_open=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        raise ValueError(f"{name}: got {value!r}; expected a number in {lb}{low}, {high}{hb}")
    return value


def one_of(name: str, value, choices):
    if value not in choices:
        raise ValueError(f"{name}: got {value!r}; valid values are {', '.join(map(repr, choices))}")
    return value


def array(name: str, value, min_ndim: int = 1, dtype=None, finite: bool = True) -> np.ndarray:
    """Convert ``value`` to an array and check it is numeric, non-empty and finite."""
    try:
        arr = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: could not be read as a numeric array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: got an array of dtype {arr.dtype}; expected numbers")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name}: got an array of shape {arr.shape}; expected at least {min_ndim} dimension(s)")
    if arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{name}: got an empty array of shape {arr.shape}; expected at least one sample")
    # One summation finds NaN/inf cheaply (a finite sum proves every entry finite);
    # only then is the full elementwise test run, to name the first bad entry.
    if finite and arr.dtype.kind == "f" and not np.isfinite(arr.sum()) and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name}: contains NaN or inf (first at index {tuple(int(i) for i in bad)}); "
            f"clean or impute the data first"
        )
    return arr


def missing_dependency(feature: str, package: str, install: str, exc: ImportError) -> ImportError:
    """The ImportError for an optional package that could not be imported: it says which
    feature needs which package and how to install it, and keeps the import's own error
    in the message (a package that is installed but broken fails with another reason).

    ``raise missing_dependency("the HTML report", "matplotlib", "'bpnn[report]'", exc) from exc``
    """
    return ImportError(f"{feature} needs {package}, which could not be imported ({type(exc).__name__}: {exc}); "
                       f"install it with: pip install {install}")
