"""The run folder of a study: checked before the first run, locked, written run by run.

Layout of ``RUN_DIR``::

    config.toml            the study (written before the first run; ``--resume`` reads it)
    runs/run-000012.json   one file per finished run, written atomically when it ends
    study.lock             who holds the folder (pid, host, start time), while a study runs
    results.json, results.csv, summary.csv, report.html    built from runs/ at the end

Each run file is complete or absent (:mod:`bpnn._atomic`), and its name is the run's
index, so a run is recorded at most once however often a study is killed and resumed;
a resumed study runs only the indexes that have no file.

The lock is an exclusive ``flock`` on the folder itself, taken without waiting: the
kernel drops it when the process ends, even by SIGKILL, so a killed study never leaves
a stale lock. ``study.lock`` only names the holder for the error message. Where
``fcntl`` is missing (Windows) the lock is the presence of ``study.lock``, removed when
the study ends; after a crash, remove it by hand.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sys
import time

from .._atomic import remove_stale_temps, write_text_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK = "study.lock"
CONFIG = "config.toml"
RUNS = "runs"
#: What marks a folder as a study's (besides run files in runs/): another study must not
#: write into it unless resuming.
STUDY_FILES = (CONFIG, "results.json")
_RUN_FILE = re.compile(r"^run-(\d+)\.json$")
#: Spec fields that say how and where a study runs, not what it computes.
EXECUTION_FIELDS = ("name", "n_jobs", "backend", "address", "timeout", "out")


def fingerprint(spec) -> str:
    """A digest of what the study computes (the spec less :data:`EXECUTION_FIELDS`): a
    run file carries it, so a resume never mixes in runs of a different study."""
    d = {k: v for k, v in spec.to_dict().items() if k not in EXECUTION_FIELDS}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


class FolderLockedError(OSError):
    """The run folder is held by another study (the message names the holder)."""


def run_file_name(index: int) -> str:
    return f"run-{index:06d}.json"


def is_study_folder(path) -> bool:
    if not os.path.isdir(path):
        return False
    runs = os.path.join(path, RUNS)
    return (any(os.path.exists(os.path.join(path, f)) for f in STUDY_FILES)
            or (os.path.isdir(runs) and any(_RUN_FILE.match(n) for n in os.listdir(runs))))


def check_folder(path, resume: bool = False) -> str:
    """Check ``path`` as a study's output folder, creating nothing; return it absolute.

    Refused: a file; a folder below a file; a folder that already holds a study
    (unless ``resume``); with ``resume``, a folder that holds no study. Writability is
    proven when the folder is locked (:meth:`RunFolder.acquire`), still before any run.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"out: got {path!r}; expected a folder path")
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"out: {path!r} is a file; give a folder (a new one, or a study's to resume)")
    if resume:
        if not os.path.isfile(os.path.join(path, CONFIG)):
            raise ValueError(f"resume: {path!r} holds no study ({CONFIG} missing); give the folder that "
                             f"`bpnn compare` wrote")
    elif is_study_folder(path):
        raise ValueError(f"out: {path!r} already holds a study; give a new folder, or continue that study "
                         f"with --resume {path}")
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ValueError(f"out: cannot create {path!r}: {probe!r} is a file")
    return path


class RunFolder:
    """A study's output folder (see the module docstring); a context manager that holds
    its lock. Construction checks the folder (:func:`check_folder`) and changes nothing."""

    def __init__(self, path, resume: bool = False):
        self.path = check_folder(path, resume)
        self.resume = resume
        self._fd = None
        self._created = False

    def file(self, name) -> str:
        return os.path.join(self.path, name)

    # ------------------------------------------------------------------ lock
    def acquire(self) -> "RunFolder":
        """Create the folder if needed, prove it writable and lock it; errors name the folder."""
        try:
            self._created = not os.path.isdir(self.path)
            os.makedirs(os.path.join(self.path, RUNS), exist_ok=True)
        except OSError as exc:
            raise ValueError(f"out: cannot create {self.path!r} ({exc.strerror or exc})") from None
        if fcntl is not None:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise FolderLockedError(f"out: {self.path!r} is locked by another study ({self.holder()}); "
                                        f"wait for it to end, or give another folder") from None
            self._fd = fd
        elif os.path.exists(self.file(LOCK)):  # pragma: no cover - Windows
            raise FolderLockedError(f"out: {self.path!r} is locked by another study ({self.holder()}); wait for "
                                    f"it to end, or remove {self.file(LOCK)} if no study is running")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join(sys.argv)}
        try:
            write_text_atomic(self.file(LOCK), json.dumps(holder))
        except OSError as exc:
            self.release()
            raise ValueError(f"out: {self.path!r} is not writable ({exc.strerror or exc})") from None
        # Leftovers of a killed writer: temporary files of atomic writes that never finished,
        # of run files (runs/) and of the tables, results.json and the report (the folder itself)
        for folder in (self.file(RUNS), self.path):
            remove_stale_temps(os.path.join(folder, "*"))
        return self

    def holder(self) -> str:
        """Who holds the lock, in words, from ``study.lock``."""
        try:
            with open(self.file(LOCK), encoding="utf-8") as f:
                h = json.load(f)
            return f"pid {h['pid']} on {h['host']}, started {h['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def release(self, remove_if_unused: bool = False) -> None:
        """Drop the lock; with ``remove_if_unused``, remove what :meth:`acquire` created
        when no run was written (a study refused before its first run leaves nothing)."""
        with contextlib.suppress(OSError):
            os.unlink(self.file(LOCK))
        if remove_if_unused and self._created:
            with contextlib.suppress(OSError):
                os.rmdir(self.file(RUNS))
                os.rmdir(self.path)
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    # ------------------------------------------------------------------ runs
    def write_config(self, spec) -> None:
        write_text_atomic(self.file(CONFIG), spec.to_toml())

    def write_run(self, result: dict, spec) -> None:
        """Write one finished run (atomically) under its index, with the study's :func:`fingerprint`."""
        path = os.path.join(self.file(RUNS), run_file_name(result["run"]["index"]))
        write_text_atomic(path, json.dumps({"study": fingerprint(spec), "result": result}, separators=(",", ":"),
                                           allow_nan=False))

    def read_runs(self, spec) -> dict:
        """index → result of every run on disk; a file of another study is an error."""
        by_index = {r["index"]: r for r in spec.runs()}
        study = fingerprint(spec)
        done = {}
        folder = self.file(RUNS)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            m = _RUN_FILE.match(name)
            if not m:
                continue
            path = os.path.join(folder, name)
            try:
                with open(path, encoding="utf-8") as f:
                    record = json.load(f)
            except (OSError, ValueError) as exc:
                raise ValueError(f"resume: {path} cannot be read ({exc})") from None
            index = int(m.group(1))
            result = record.get("result") if isinstance(record, dict) else None
            if (record.get("study") != study or not isinstance(result, dict)
                    or by_index.get(index) != result.get("run")):
                raise ValueError(f"resume: {path} is not run {index} of the study in {self.file(CONFIG)}; "
                                 f"was the configuration changed?")
            done[index] = result
        return done
