"""CSV log of the History, one row per epoch."""
from __future__ import annotations

import csv
import os

from .callbacks import Callback


class CSVLogger(Callback):
    """Append one row per epoch (``epoch`` then every log key) to ``path`` — Keras' CSVLogger.

    The header is written with the first row; with ``append`` an existing file is
    continued (useful when resuming). Each row is flushed as soon as it is written.
    """

    def __init__(self, path, separator: str = ",", append: bool = False):
        self.path = os.fspath(path)
        self.separator = separator
        self.append = bool(append)
        self._keys = None
        self._file = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0
        self._file = open(self.path, "a" if self.append else "w", newline="")
        self._writer = csv.writer(self._file, delimiter=self.separator)
        if exists:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            self._keys = header[1:] if header else None

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
