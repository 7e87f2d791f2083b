"""The one place that knows which array library bpnn runs on.

Everything else in bpnn asks this module for the array module (``backend.xp``), the
default floating dtype and random generators; only this file imports NumPy (and,
when asked, CuPy) as an array library.

- ``xp``: the active array module, ``numpy`` by default; ``set_backend("cupy")`` swaps it.
- dtype policy: ``float32`` by default, ``set_default_dtype("float64")`` for gradient
  checks and exact comparisons. Models remember the dtype they were built with.
- randomness: one :class:`numpy.random.Generator` made by :func:`rng` from one seed is
  passed to every random draw (initializers, shuffling, dropout). Draws are made on the
  host with NumPy, so the same seed gives the same numbers on every backend.
"""
from __future__ import annotations

import numpy

from ._checks import missing_dependency

__all__ = ["xp", "set_backend", "backend_name", "as_dtype", "default_dtype", "set_default_dtype", "rng",
           "to_device", "to_numpy"]

#: The active array module: ``numpy`` by default, ``cupy`` after ``set_backend("cupy")``.
xp = numpy
_default_dtype = numpy.dtype(numpy.float32)
_FLOAT_DTYPES = ("float32", "float64")
_BACKENDS = ("numpy", "cupy")


def set_backend(name: str) -> None:
    """Select the array library: ``"numpy"`` (CPU) or ``"cupy"`` (NVIDIA GPU, ``bpnn[gpu]``)."""
    global xp
    if name not in _BACKENDS:
        raise ValueError(f"backend: got {name!r}; valid backends are {', '.join(_BACKENDS)}")
    if name == "cupy":
        try:
            import cupy
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise missing_dependency("backend 'cupy'", "CuPy", "'bpnn[gpu]' (on a machine with CUDA)", exc) from exc
        xp = cupy
    else:
        xp = numpy


def backend_name() -> str:
    """Name of the active array library."""
    return "numpy" if xp is numpy else "cupy"


def as_dtype(dtype) -> numpy.dtype:
    """Normalize ``dtype`` (None means the default) and check it is float32 or float64."""
    if dtype is None:
        return _default_dtype
    try:
        dt = numpy.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in _FLOAT_DTYPES:
        raise ValueError(f"dtype: got {dtype!r}; valid dtypes are {', '.join(_FLOAT_DTYPES)}")
    return dt


def default_dtype() -> numpy.dtype:
    """The floating dtype used when a model is built without one (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Change the default floating dtype (``"float32"`` or ``"float64"``)."""
    global _default_dtype
    _default_dtype = as_dtype(dtype)


def rng(seed=None) -> numpy.random.Generator:
    """The seeded random generator every draw goes through.

    ``seed`` may be None (fresh entropy), an int, or an existing Generator (returned as is).
    """
    if isinstance(seed, numpy.random.Generator):
        return seed
    if seed is not None and not (isinstance(seed, (int, numpy.integer)) and seed >= 0):
        raise ValueError(f"seed: got {seed!r}; expected a non-negative int, a Generator or None")
    return numpy.random.default_rng(seed)


def to_device(a, dtype=None):
    """Move a host array (drawn by the seeded generator) to the active backend."""
    return xp.asarray(a, dtype=dtype)


def to_numpy(a) -> numpy.ndarray:
    """Bring an array of the active backend back to a NumPy array on the host."""
    if xp is numpy:
        return numpy.asarray(a)
    return xp.asnumpy(a)  # pragma: no cover - GPU only
