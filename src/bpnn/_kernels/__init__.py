"""Compiled kernels for the hot loops, behind one switch; each has a NumPy twin.

numba is optional (``pip install "bpnn[fast]"``). Every kernel here has a NumPy
fallback with the same arithmetic, written with ``backend.xp``, and the test suite runs
both. The compiled path is taken for NumPy arrays while :func:`enabled` is true: numba
importable and not switched off, by the environment variable ``BPNN_DISABLE_NUMBA=1``
or by :func:`set_enabled` (the tests' ``kernels`` fixture). Every kernel module asks
:func:`use_compiled` before taking it.

Modules, by concept:

- :mod:`.compiler` — the ``@kernel`` decorator: a plain Python function compiled by
  numba on its first call and kept in numba's on-disk cache;
- :mod:`.parallel` — one kernel call split over threads, and the thresholds that decide
  when a call is long enough to split;
- :mod:`.gemm` — matrix products with few output columns and the direct convolution on
  register tiles of the vector width numba compiles for (AVX-512, AVX2 with FMA,
  128-bit), whose compiled loops and numba intrinsics are in :mod:`.gemm_tiles`;
- :mod:`.windows` — im2col, col2im, max and average pooling;
- :mod:`.optim` — the optimizer steps (Adam, SGD), ``axpy`` and the L1/L2 penalties;
- :mod:`.batchnorm` — batch normalization over the rows of an (M, C) array;
- :mod:`.relu` — ReLU and its gradient;
- :mod:`.stats` — the one-pass statistics of :mod:`bpnn.diagnostics`.

``import bpnn`` does not import numba: kernels compile on first use.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

_AVAILABLE = importlib.util.find_spec("numba") is not None
_enabled = _AVAILABLE and os.environ.get("BPNN_DISABLE_NUMBA", "") in ("", "0")


def available() -> bool:
    """Whether numba is installed (the compiled kernels can be switched on)."""
    return _AVAILABLE


def enabled() -> bool:
    """Whether the compiled kernels are in use (numba importable and not disabled)."""
    return _enabled


def set_enabled(flag: bool) -> None:
    """Switch between the compiled kernels and the NumPy fallbacks (tests run both)."""
    global _enabled
    if flag and not _AVAILABLE:
        raise ImportError("the compiled kernels need numba: pip install 'bpnn[fast]'")
    _enabled = bool(flag)


def use_compiled(*arrays) -> bool:
    """Whether to run the compiled kernel on these arrays: the kernels are enabled and
    every array is a NumPy array (CuPy arrays take the fallbacks)."""
    return _enabled and all(isinstance(a, np.ndarray) for a in arrays)
