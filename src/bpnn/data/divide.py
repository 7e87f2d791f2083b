"""Division of samples into training, validation and test sets (MATLAB's ``divide*``).

Each function returns a :class:`Division` of three sorted index arrays, unpackable as
MATLAB's ``[trainInd, valInd, testInd] = dividerand(Q, ...)``. Ratios are normalized to
sum to 1, as in MATLAB; the validation and test counts are rounded and the training set
gets the rest.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _checks, backend


class Division(NamedTuple):
    """Indices of the training, validation and test samples."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def take(self, *arrays):
        """``(a[train], a[val], a[test])`` for one array; a tuple of such triples for several."""
        out = []
        for a in arrays:
            a = np.asarray(a)
            out.append((a[self.train], a[self.val], a[self.test]))
        return tuple(out) if len(out) != 1 else out[0]


def _counts(n, train_ratio, val_ratio, test_ratio):
    _checks.positive("n", n, integer=True)
    ratios = [_checks.positive(name, r, allow_zero=True) for name, r in
              (("train_ratio", train_ratio), ("val_ratio", val_ratio), ("test_ratio", test_ratio))]
    total = sum(ratios)
    if total <= 0 or ratios[0] <= 0:
        raise ValueError(f"train_ratio: got ratios {tuple(ratios)}; the training ratio must be > 0")
    n_val = int(round(n * ratios[1] / total))
    n_test = int(round(n * ratios[2] / total))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"n: {n} samples leave no training sample with ratios {tuple(ratios)}")
    return n_train, n_val, n_test


def dividerand(n: int, train_ratio: float = 0.7, val_ratio: float = 0.15, test_ratio: float = 0.15,
               rng=None) -> Division:
    """Random division (MATLAB ``dividerand``, the default of ``feedforwardnet``): a
    permutation drawn from ``rng`` (int seed or Generator), cut by the ratios."""
    n_train, n_val, _ = _counts(n, train_ratio, val_ratio, test_ratio)
    order = backend.rng(rng).permutation(n)
    return Division(np.sort(order[:n_train]), np.sort(order[n_train:n_train + n_val]),
                    np.sort(order[n_train + n_val:]))


def divideblock(n: int, train_ratio: float = 0.7, val_ratio: float = 0.15, test_ratio: float = 0.15) -> Division:
    """Contiguous blocks in order: the first samples train, the next validate, the last test
    (MATLAB ``divideblock``; the choice for time series)."""
    n_train, n_val, _ = _counts(n, train_ratio, val_ratio, test_ratio)
    idx = np.arange(n)
    return Division(idx[:n_train], idx[n_train:n_train + n_val], idx[n_train + n_val:])


def divideint(n: int, train_ratio: float = 0.7, val_ratio: float = 0.15, test_ratio: float = 0.15) -> Division:
    """Interleaved division (MATLAB ``divideint``): sample i goes to the set whose share of
    the first i + 1 samples lags its ratio the most, so every stretch of the data is
    represented in all three sets with the exact counts of :func:`divideblock`."""
    counts = np.array(_counts(n, train_ratio, val_ratio, test_ratio), dtype=np.float64)
    share = counts / n
    taken = np.zeros(3)
    sets = [[], [], []]
    for i in range(n):
        lag = share * (i + 1) - taken
        lag[taken >= counts] = -np.inf
        j = int(np.argmax(lag))
        sets[j].append(i)
        taken[j] += 1
    return Division(*(np.asarray(s, dtype=np.int64) for s in sets))


def divideind(n: int, train_ind, val_ind=(), test_ind=()) -> Division:
    """Division by given indices (MATLAB ``divideind``); they must lie in 0..n−1 and not
    overlap. Samples in none of the three are not used."""
    _checks.positive("n", n, integer=True)
    out = []
    seen = np.zeros(n, dtype=bool)
    for name, ind in (("train_ind", train_ind), ("val_ind", val_ind), ("test_ind", test_ind)):
        ind = np.asarray(ind, dtype=np.int64).ravel() if len(ind) else np.zeros(0, dtype=np.int64)
        if ind.size and (ind.min() < 0 or ind.max() >= n):
            raise ValueError(f"{name}: indices must lie in 0..{n - 1}, got values in [{ind.min()}, {ind.max()}]")
        if np.unique(ind).size != ind.size or seen[ind].any():
            raise ValueError(f"{name}: indices repeat or overlap another set's")
        seen[ind] = True
        out.append(np.sort(ind))
    if out[0].size == 0:
        raise ValueError("train_ind: the training set is empty")
    return Division(*out)


def dividetrain(n: int) -> Division:
    """Everything trains (MATLAB ``dividetrain``); no validation or test set."""
    _checks.positive("n", n, integer=True)
    empty = np.zeros(0, dtype=np.int64)
    return Division(np.arange(n), empty, empty.copy())


#: Names accepted by :func:`divide` (MATLAB's function names work too).
DIVIDERS = {"random": dividerand, "dividerand": dividerand, "block": divideblock,
            "divideblock": divideblock, "interleaved": divideint, "divideint": divideint,
            "none": dividetrain, "dividetrain": dividetrain}


def divide(n: int, method="random", ratios=(0.7, 0.15, 0.15), rng=None) -> Division:
    """Divide n samples by ``method``: ``"random"`` (default), ``"block"``,
    ``"interleaved"``, ``"none"`` (MATLAB names also accepted), a :class:`Division`, or a
    triple of index arrays (as :func:`divideind`)."""
    if isinstance(method, str):
        if method not in DIVIDERS:
            raise ValueError(f"division: got {method!r}; valid names are {', '.join(map(repr, DIVIDERS))}, "
                             f"or a triple of index arrays")
        fn = DIVIDERS[method]
        if fn is dividetrain:
            return fn(n)
        if fn is dividerand:
            return fn(n, *ratios, rng=rng)
        return fn(n, *ratios)
    try:
        train, val, test = method
    except (TypeError, ValueError):
        raise ValueError(f"division: got {method!r}; expected a name or a triple (train, val, test) of "
                         f"index arrays") from None
    return divideind(n, train, val, test)
