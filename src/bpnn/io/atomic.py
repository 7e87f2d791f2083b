"""Atomic file writes, for model files and training checkpoints.

A reader (or a process restarted after a crash) sees either the previous complete file
or the new complete file, never a torn one: the data goes to a temporary file in the
same directory, is flushed and fsynced, and is renamed over the target (a rename is
atomic on POSIX and Windows); the directory is fsynced afterwards so the rename itself
survives a power loss.

:func:`atomic_write` (a context manager yielding an open file, bytes or text),
:func:`write_bytes_atomic` and :func:`write_text_atomic` live in ``bpnn._atomic`` so
that lower layers (``data``, ``train``) use them too; this module is their public home.
"""
from __future__ import annotations

from .._atomic import atomic_write, write_bytes_atomic, write_text_atomic

__all__ = ["atomic_write", "write_bytes_atomic", "write_text_atomic"]
