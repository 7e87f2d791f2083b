"""TensorBoard logging as a training callback (optional extra ``bpnn[tensorboard]``).

Events are written with tensorboardX (a maintained writer that needs neither torch nor
TensorFlow) and read by TensorBoard itself: ``tensorboard --logdir runs``.
"""
from __future__ import annotations

import os

from .. import _checks, backend
from ..train.callbacks import Callback

__all__ = ["TensorBoard"]


def _scalar_tag(key: str) -> str:
    """``loss`` → ``loss/train``, ``val_loss`` → ``loss/validation``, ``lr`` → ``lr``: train and
    validation curves of one quantity sit side by side in TensorBoard's scalar dashboard."""
    if key == "lr":
        return "lr"
    if key.startswith("val_"):
        return f"{key[4:]}/validation"
    return f"{key}/train"


class TensorBoard(Callback):
    """Write training curves and per-layer histograms for TensorBoard.

    Every epoch: each entry of the epoch logs as a scalar at step = epoch — ``loss/train``,
    ``loss/validation``, ``accuracy/train``, ..., ``lr``. Every ``histogram_freq`` epochs:
    a histogram of each parameter (``weights/<name>``, e.g. ``weights/0.weight``) and of its
    gradient (``gradients/<name>``; the gradient of the last mini-batch of the epoch).
    With ``update_freq`` an integer k (``"batch"``: 1), the mini-batch loss is also written every k batches
    as ``batch/loss`` at step = global batch index.

    Parameters
    ----------
    log_dir : directory of the event files, default ``"runs"`` (created if needed).
    histogram_freq : int ≥ 0, default 1; 0 writes no histograms.
    update_freq : ``"epoch"`` (default), ``"batch"`` or a positive int (batches between
        batch-loss points).
    """

    def __init__(self, log_dir="runs", histogram_freq: int = 1, update_freq="epoch"):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as exc:
            raise _checks.missing_dependency("the TensorBoard callback", "tensorboardX", "'bpnn[tensorboard]'",
                                             exc) from exc
        self._writer_class = SummaryWriter
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = _checks.positive("histogram_freq", histogram_freq, integer=True, allow_zero=True)
        if update_freq == "batch":
            update_freq = 1
        elif update_freq != "epoch" and not isinstance(update_freq, str):
            _checks.positive("update_freq", update_freq, integer=True)
        elif update_freq != "epoch":
            _checks.one_of("update_freq", update_freq, ("epoch", "batch"))
        self.update_freq = update_freq
        self.writer = None
        self._batches = 0

    def on_train_begin(self, logs=None):
        if self.writer is None:
            self.writer = self._writer_class(logdir=self.log_dir)

    def on_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch" or self.writer is None:
            return
        if self._batches % self.update_freq == 0 and logs and "loss" in logs:
            self.writer.add_scalar("batch/loss", float(logs["loss"]), self._batches)
        self._batches += 1

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.writer.add_scalar(_scalar_tag(key), float(value), epoch)
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0:
            for name, value, grad in self.trainer.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", backend.to_numpy(value), epoch)
                self.writer.add_histogram(f"gradients/{name}", backend.to_numpy(grad), epoch)
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        """Flush and close the event file (done at the end of training)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
