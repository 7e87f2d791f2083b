"""Callbacks: the hooks of the training loop (Keras' hook set) and the History."""
from __future__ import annotations

import weakref


class Callback:
    """Base class. Override any hook; ``self.trainer`` is set before training starts.

    Hooks: ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
    ``on_batch_begin(batch, logs)``, ``on_batch_end(batch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_end(logs)``. ``logs`` at epoch end holds
    ``loss``, the metrics, their ``val_`` twins and ``lr``. Set
    ``self.trainer.stop_training = True`` to stop after the current epoch.
    """

    _trainer_ref = None

    @property
    def trainer(self):
        """The trainer that runs this callback, or None. Held weakly: the trainer holds
        its callbacks (its History among them), and a strong reference back would keep
        every trained model, the layers' buffers included, alive until the garbage
        collector's next full pass (a benchmark that trained a fresh model per epoch
        grew by ~50 MB per model)."""
        ref = self._trainer_ref
        return None if ref is None else ref()

    @trainer.setter
    def trainer(self, trainer) -> None:
        self._trainer_ref = None if trainer is None else weakref.ref(trainer)

    def set_trainer(self, trainer) -> None:
        self.trainer = trainer

    def __getstate__(self):
        """Pickled without the trainer (a callback sent to another process, e.g. to a
        restart, is given its trainer there)."""
        state = dict(self.__dict__)
        state.pop("_trainer_ref", None)
        return state

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...


class CallbackList:
    """Dispatches each hook to every callback; batch hooks only to those that define them."""

    def __init__(self, callbacks, trainer):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise ValueError(f"callbacks: got {cb!r}; expected instances of bpnn.Callback")
            cb.set_trainer(trainer)
        self._batch_begin = [cb for cb in self.callbacks if type(cb).on_batch_begin is not Callback.on_batch_begin]
        self._batch_end = [cb for cb in self.callbacks if type(cb).on_batch_end is not Callback.on_batch_end]

    @property
    def wants_batch_hooks(self) -> bool:
        return bool(self._batch_begin or self._batch_end)

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_batch_begin(self, batch, logs=None):
        for cb in self._batch_begin:
            cb.on_batch_begin(batch, logs)

    def on_batch_end(self, batch, logs=None):
        for cb in self._batch_end:
            cb.on_batch_end(batch, logs)


class History(Callback):
    """Per-epoch record of training, returned by :meth:`bpnn.Trainer.fit`.

    ``history.history`` maps each log key (``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, ``lr``, …) to a list with one value per epoch; ``history.epoch``
    lists the epoch indices; ``stopped_reason`` says why training ended early, if it did.
    """

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.stopped_reason: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        last = {k: v[-1] for k, v in self.history.items()}
        return f"History(epochs={len(self.epoch)}, last={last})"
