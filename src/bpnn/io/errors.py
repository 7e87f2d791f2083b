"""Errors raised while reading or writing model files.

Every error names the file and the problem. Content problems (a truncated file, a
pickle, an unknown layer, arrays of the wrong shape, a newer format) are
:class:`InvalidModelFileError`, a ``ValueError``; a path that cannot be opened is a
``FileNotFoundError`` / ``OSError`` subclass. All of them are :class:`ModelFileError`,
so ``except bpnn.io.ModelFileError`` catches every one.
"""
from __future__ import annotations

import errno
import os


class ModelFileError(Exception):
    """Base of every model-file error; ``path`` and ``problem`` say which file and what."""

    path: str = ""
    problem: str = ""


def _describe(path, problem) -> str:
    return f"{path}: {problem}"


class InvalidModelFileError(ModelFileError, ValueError):
    """The file exists but is not a valid bpnn model file (nothing was loaded)."""

    def __init__(self, path, problem: str):
        self.path, self.problem = os.fspath(path), problem
        super().__init__(_describe(self.path, problem))


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """No file at the path."""

    def __init__(self, path, problem: str = "no such file"):
        self.path, self.problem = os.fspath(path), problem
        super().__init__(errno.ENOENT, _describe(self.path, problem), self.path)

    def __str__(self) -> str:
        return _describe(self.path, self.problem)


class ModelFileAccessError(ModelFileError, OSError):
    """The path exists but cannot be read as a file (a directory, no permission, ...)."""

    def __init__(self, path, problem: str, code: int | None = None):
        self.path, self.problem = os.fspath(path), problem
        super().__init__(code if code is not None else errno.EIO, _describe(self.path, problem), self.path)

    def __str__(self) -> str:
        return _describe(self.path, self.problem)
