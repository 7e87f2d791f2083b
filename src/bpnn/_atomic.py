"""Atomic file writes: a reader sees the old file or the new one, never a mix.

Every file bpnn writes whole (model files, checkpoints, downloaded datasets, study
results, reports) goes through :func:`atomic_write`. It lives at the bottom of the
package so that every layer can use it; :mod:`bpnn.io.atomic` is its public home.
"""
from __future__ import annotations

import contextlib
import os
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", *, encoding: str | None = None, newline: str | None = None):
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    ``mode`` is ``"wb"`` (bytes) or ``"w"`` (text; ``encoding`` default UTF-8, whatever
    the locale, and ``newline`` as for :func:`open`, e.g. ``""`` for the csv module).

    The temporary file has a unique name (``.tmp-<name>-<random>``), so concurrent
    writers of the same path never share one: each rename is whole and the last one
    wins. The rename (``os.replace``) is atomic on POSIX and Windows, and the directory
    is fsynced afterwards, so a process killed at any moment (even by SIGKILL) leaves
    either the previous complete file or the new complete file. On an exception the
    temporary file is removed and ``path`` is untouched. The directory must exist.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode: got {mode!r}; expected 'wb' (bytes) or 'w' (text)")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{path}: the directory {directory} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory; give a file name")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically as UTF-8 (see :func:`atomic_write`)."""
    with atomic_write(path, "w") as handle:
        handle.write(text)
