"""Atomic file writes, for model files and training checkpoints.

A reader (or a process restarted after a crash) sees either the previous complete file
or the new complete file, never a torn one: the data goes to a temporary file in the
same directory, is flushed and fsynced, and is renamed over the target with
``os.replace`` (atomic on POSIX and Windows); the directory is fsynced afterwards so
the rename itself survives a power loss.

:func:`atomic_write` (a context manager yielding an open file) lives in
``bpnn._atomic`` so that lower layers (``data``, ``train``) can use it too; this module
is its public home and adds :func:`write_bytes_atomic`.
"""
from __future__ import annotations

import os

from .._atomic import atomic_write

__all__ = ["atomic_write", "write_bytes_atomic"]


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`).

    The directory must exist. On any error the previous file at ``path`` (if any) is left
    untouched and no temporary file remains.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{path}: the directory {directory} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory; give a file name")
    with atomic_write(path, "wb") as handle:
        handle.write(data)
