"""Plain JSON data from what bpnn keeps in its state: one helper for every file it writes.

Standard JSON has no NaN or infinity, no tuples and no NumPy types; ``json.dumps``
(with ``allow_nan=False``, as bpnn always writes) rejects the first and the last.
:func:`json_safe` turns a nested structure into data it accepts, and each file format
chooses how a non-finite number is written (its documented convention):

=============  ===========================  ==========================================
``nonfinite``  written as                   used by
=============  ===========================  ==========================================
``"null"``     ``null`` (the value is gone)  metric histories (checkpoints, study
                                            results): a diverged epoch has no value
``"string"``   ``"inf"``, ``"-inf"``,       optimizer and schedule state (checkpoints,
               ``"nan"``                    model files): ``float()`` reads them back,
                                            so a plateau schedule's initial best of ±inf
                                            survives the round trip
=============  ===========================  ==========================================
"""
from __future__ import annotations

import math

import numpy as np

NONFINITE = ("null", "string")


def json_safe(obj, *, nonfinite: str = "null", digits: int | None = None):
    """``obj`` as data ``json.dumps(..., allow_nan=False)`` writes.

    - dicts → dicts; keys that JSON writes itself (str, int, float, bool, None) are
      kept, NumPy scalar keys become Python scalars, any other key becomes ``str(key)``;
    - lists and tuples → lists; NumPy arrays → nested lists;
    - NumPy scalars → the Python ``int`` / ``float`` / ``bool`` of the same value;
    - a finite float is kept, or rounded to ``digits`` significant digits when given
      (``float(f"{x:.{digits}g}")``: smaller files where the last digits carry nothing);
    - a non-finite float is written as ``nonfinite`` says (see the module docstring).

    Anything else is returned unchanged (``json.dumps`` then says what it cannot write).
    """
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite: got {nonfinite!r}; expected one of {', '.join(map(repr, NONFINITE))}")
    return _convert(obj, nonfinite, digits)


def _convert(obj, nonfinite, digits):
    if isinstance(obj, dict):
        return {_key(k): _convert(v, nonfinite, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_convert(v, nonfinite, digits) for v in obj]
    if isinstance(obj, np.ndarray):
        return _convert(obj.tolist(), nonfinite, digits)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None if nonfinite == "null" else repr(obj)
        return obj if digits is None else float(f"{obj:.{digits}g}")
    return obj


def _key(key):
    if isinstance(key, np.generic):
        key = key.item()
    return key if isinstance(key, (str, int, float, bool, type(None))) else str(key)
