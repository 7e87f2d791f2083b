"""Numeric tables from CSV files: features as a float32 array, the target column as text.

The dialect (comma, semicolon or tab) is sniffed, a header row is recognised by a cell
that is not a number, and every error names the line, the column and the file.
"""
from __future__ import annotations

import csv
import os

import numpy as np


def is_number(text: str) -> bool:
    """True when ``float(text)`` reads ``text`` (the test for a header row and a numeric target)."""
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_csv(path, target=None):
    """Read a numeric table: ``(X, y_raw, feature_names, target_name)``.

    The first row is a header when any of its cells is not a number. ``target`` is a
    column name or 0-based index (default the last column). Feature cells must be
    numbers (empty cells are errors); target cells may be text (class names).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"data: no such file {path!r}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(65536)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        rows = [r for r in csv.reader(f, dialect) if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise ValueError(f"data: {path!r} has fewer than two rows")
    header = None
    if any(not is_number(c) for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    width = len(rows[0])
    names = header or [f"column {i}" for i in range(width)]
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(f"data: line {i + 1 + (header is not None)} of {path!r} has {len(r)} cells, "
                             f"expected {width}")
    if width < 2:
        raise ValueError(f"data: {path!r} needs at least one feature column and a target column")
    if target is None:
        t = width - 1
    elif isinstance(target, int) or (isinstance(target, str) and target.isdigit() and target not in names):
        t = int(target)
        if not 0 <= t < width:
            raise ValueError(f"target: column index {t} is out of range 0..{width - 1}")
    elif target in names:
        t = names.index(target)
    else:
        raise ValueError(f"target: no column named {target!r}; columns are {names}")
    cols = [i for i in range(width) if i != t]
    X = np.empty((len(rows), len(cols)), dtype=np.float32)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            try:
                X[i, j] = float(r[c])
            except ValueError:
                raise ValueError(f"data: line {i + 1 + (header is not None)}, column {names[c]!r} of {path!r} "
                                 f"is {r[c]!r}, not a number") from None
    y_raw = [r[t].strip() for r in rows]
    return X, y_raw, [names[c] for c in cols], names[t]
