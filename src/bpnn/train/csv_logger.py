"""CSV log of the History, one row per epoch."""
from __future__ import annotations

import csv
import os

from .._atomic import atomic_write, ensure_parent, remove_stale_temps
from .callbacks import Callback


class CSVLogger(Callback):
    """Append one row per epoch (``epoch`` then every log key) to ``path`` — Keras' CSVLogger.

    A missing directory of ``path`` is created when training begins. The header is
    written with the first row; with ``append`` an existing file is
    continued (useful when resuming). Each row is flushed as soon as it is written.

    A run resumed from a checkpoint (``Trainer.fit(resume_from=...)``) with ``append``
    first drops the rows of the epochs after the checkpoint's (a killed run may have
    logged epochs it had not checkpointed yet), so the file ends up as an uninterrupted
    run's. That rewrite is atomic, and temporary files a killed rewrite left are removed.
    """

    def __init__(self, path, separator: str = ",", append: bool = False):
        self.path = os.fspath(path)
        self.separator = separator
        self.append = bool(append)
        self._keys = None
        self._file = None
        self._writer = None  # open between on_train_begin and on_train_end only

    def on_train_begin(self, logs=None):
        ensure_parent(self.path, "path")  # a missing directory is made, before the first epoch
        remove_stale_temps(self.path)
        exists = self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0
        start = getattr(self.trainer, "initial_epoch", 0) if self.trainer is not None else 0
        if exists and start:
            self._drop_rows_from(start)
        self._file = open(self.path, "a" if self.append else "w", newline="")
        self._writer = csv.writer(self._file, delimiter=self.separator)
        if exists:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            self._keys = header[1:] if header else None

    def _drop_rows_from(self, epoch: int) -> None:
        """Keep the header and the rows of epochs before ``epoch`` (atomically)."""
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f, delimiter=self.separator))
        kept = rows[:1] + [r for r in rows[1:] if not (r and r[0].lstrip("-").isdigit() and int(r[0]) >= epoch)]
        if len(kept) == len(rows):
            return
        with atomic_write(self.path, "w", newline="") as f:
            csv.writer(f, delimiter=self.separator).writerows(kept)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = list(logs)
            self._writer.writerow(["epoch", *self._keys])
        self._writer.writerow([epoch, *(logs.get(k, "") for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None
        # a finished logger holds nothing open, so the trainer still pickles (parallel restarts)
        self._writer = None
