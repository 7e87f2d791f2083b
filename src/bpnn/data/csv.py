"""Numeric tables from CSV files: features as a float32 array, the target column as text.

The file is read as UTF-8 (a byte-order mark is skipped); the dialect (comma, semicolon
or tab) is sniffed, a header row is recognised by a cell that is not a number, and every
error names the file (and the line and the column, or the encoding it seems to have).
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


def _encoding_hint(path: str, exc: UnicodeDecodeError) -> str:
    """Where decoding failed, and the encoding the file's first bytes suggest."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "it starts with a UTF-16 byte-order mark"
    return f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is not UTF-8; Latin-1 or Windows-1252 perhaps"


def read_csv(path, target=None):
    """Read a numeric table: ``(X, y_raw, feature_names, target_name)``.

    The first row is a header when any of its cells is not a number. ``target`` is a
    column name or 0-based index (default the last column). Feature cells must be
    numbers (empty cells are errors); target cells may be text (class names).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"data: no such file {path!r}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            sample = f.read(65536)
            if "\0" in sample:  # UTF-16 without a byte-order mark, or not text at all
                raise csv.Error("it contains NUL bytes")
            f.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            rows = [r for r in csv.reader(f, dialect) if any(c.strip() for c in r)]
    except UnicodeDecodeError as exc:
        raise ValueError(f"data: {path!r} is not UTF-8 text ({_encoding_hint(path, exc)}); "
                         f"save it as UTF-8 (CSV UTF-8 in a spreadsheet's 'Save as')") from None
    except csv.Error as exc:
        raise ValueError(f"data: {path!r} cannot be read as CSV ({exc}); if it is UTF-16 text, "
                         f"save it as UTF-8") from None
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
