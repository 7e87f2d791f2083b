"""Atomic file writes: a reader sees the old file or the new one, never a mix.

Every file bpnn writes whole (model files, checkpoints, downloaded datasets, study
results, reports) goes through :func:`atomic_write`. It lives at the bottom of the
package so that every layer can use it; :mod:`bpnn.io.atomic` is its public home.
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_parent(path, argument: str, directory=None) -> None:
    """Create the directory ``path`` goes in (its dirname, or ``directory`` when given)
    and its parents if missing, as Keras' ModelCheckpoint does; a place where that
    cannot be done (a file in the way, no permission) is a ``ValueError`` naming
    ``argument``, the directory and ``path``."""
    path = os.fspath(path)
    directory = os.path.abspath(os.fspath(directory) if directory is not None else os.path.dirname(path) or ".")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{argument}: cannot create the directory {directory!r} for {path!r} "
                         f"({exc.strerror or exc}); give a path in a writable directory") from None


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", *, encoding: str | None = None, newline: str | None = None):
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    ``mode`` is ``"wb"`` (bytes) or ``"w"`` (text; ``encoding`` default UTF-8, whatever
    the locale, and ``newline`` as for :func:`open`, e.g. ``""`` for the csv module).

    The temporary file has a unique name (``.tmp-<name>-<pid>-<random>``), so
    concurrent writers of the same path never share one: each rename is whole and the
    last one wins; :func:`remove_stale_temps` removes those of killed writers. An
    ``OSError`` about the temporary file (no permission, a read-only or full disk) is
    raised naming ``path``. The rename (``os.replace``) is atomic on POSIX and Windows, and the directory
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
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(os.path.basename(path)) + f"{os.getpid()}-",
                                   dir=directory)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if exc.filename == tmp or exc.filename2 == tmp:
            raise _naming(exc, path) from None
        raise
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


def _temp_prefix(name: str) -> str:
    return f".tmp-{name}-"


def _naming(exc: OSError, path: str) -> OSError:
    """``exc`` (about the temporary file) retold about the file the caller asked for."""
    return type(exc)(exc.errno, exc.strerror or str(exc), path)


_TEMP = re.compile(r"^\.tmp-(?P<name>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user; or no such check on this platform
        return True
    return True


def remove_stale_temps(path) -> list[str]:
    """Remove the temporary files that writes of ``path`` left behind when their process
    was killed (SIGKILL, power loss) before the rename; return their paths.

    ``path`` may be a pattern with ``*`` (any characters), e.g. a checkpoint file name
    template with its fields replaced by ``*``. A temporary file whose writer is still
    running (its process id, part of the name, is alive on this machine) is kept, so a
    concurrent writer is never disturbed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    pattern = os.path.basename(path)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        m = _TEMP.match(name)
        if m is None or not fnmatch.fnmatchcase(m.group("name"), pattern) or _alive(int(m.group("pid"))):
            continue
        full = os.path.join(directory, name)
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(full)
            removed.append(full)
    return removed


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically as UTF-8 (see :func:`atomic_write`)."""
    with atomic_write(path, "w") as handle:
        handle.write(text)
