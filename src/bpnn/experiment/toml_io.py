"""TOML in and out: ``tomllib`` (Python 3.11+) or ``tomli`` to read; a small writer.

The writer covers what a study configuration holds — strings, numbers, booleans,
lists of those, inline tables, and one level of ``[section]`` tables — and its output
reads back through ``tomllib`` to the same values (a test round-trips it).
"""
from __future__ import annotations

import json
import math
import re

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    try:
        import tomli as _toml
    except ModuleNotFoundError:
        _toml = None

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def loads(text: str) -> dict:
    """Parse TOML text."""
    if _toml is None:  # pragma: no cover - Python 3.10 without tomli
        raise ImportError("reading TOML on Python 3.10 needs tomli: pip install tomli")
    return _toml.loads(text)


def load(path) -> dict:
    """Parse a TOML file; errors name the file."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from None
    except Exception as exc:  # tomllib.TOMLDecodeError and friends
        if isinstance(exc, ImportError):
            raise
        raise ValueError(f"{path}: not valid TOML ({exc})") from None


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        text = repr(v)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(v, str):
        # JSON string escapes are valid TOML basic-string escapes (\" \\ \n \t \uXXXX ...).
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")


def dumps(data: dict, comments: dict | None = None, header: str = "") -> str:
    """TOML text for ``data``: top-level scalars first, then one ``[section]`` per dict.

    ``comments`` maps ``"section.key"`` (or ``"key"``) to a comment written above it;
    None values are left out (TOML has no null).
    """
    comments = comments or {}
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    if lines:
        lines.append("")
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    for k, v in data.items():
        if k in tables or v is None:
            continue
        if k in comments:
            lines.append(f"# {comments[k]}")
        lines.append(f"{_key(k)} = {_value(v)}")
    for name, table in tables.items():
        lines.append("")
        lines.append(f"[{_key(name)}]")
        for k, v in table.items():
            note = comments.get(f"{name}.{k}")
            if v is None:
                if note:
                    lines.append(f"# {note}")
                    lines.append(f"# {_key(k)} = ...")
                continue
            if note:
                lines.append(f"# {note}")
            lines.append(f"{_key(k)} = {_value(v)}")
    return "\n".join(lines) + "\n"
