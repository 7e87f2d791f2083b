"""Callbacks: the hooks of the training loop (Keras' hook set), the one way trainers run
them, and the History."""
from __future__ import annotations

import contextlib
import copy
import weakref

from .best_weights import WeightSnapshots


class Callback:
    """Base class. Override any hook; ``self.trainer`` is set before training starts.

    Every hook a trainer calls is declared here, with a default that does nothing:

    - ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
      ``on_batch_begin(batch, logs)``, ``on_batch_end(batch, logs)``,
      ``on_epoch_end(epoch, logs)``, ``on_train_end(logs)`` — Keras' hooks. ``logs`` at
      epoch end holds ``loss``, the metrics, their ``val_`` twins and ``lr``.
    - ``flush(epoch)`` — after every callback's ``on_epoch_end`` of the epoch (for the
      Levenberg–Marquardt trainer, after the epoch's step as well).
    - ``get_state()`` / ``set_state(state)`` — what a checkpoint stores and a resumed
      run restores (arrays go under the state's ``"arrays"`` key, ``{name: array}``).
    - ``restart_copy(run)`` / ``on_restarts_end(copies, best)`` — around
      ``Trainer.fit(n_restarts=...)``.

    Both trainers (:class:`bpnn.Trainer`, :class:`bpnn.train.LMTrainer`) call them the
    same way, through :class:`CallbackList`. A callback sees the trainer's public
    surface: ``model``, ``optimizer`` (gradient trainer), ``history``,
    ``stop_training`` (set it True to stop after the current epoch), ``callbacks`` and
    ``weight_snapshots``.
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

    def on_train_begin(self, logs=None):
        """Training starts. ``logs`` hold Keras' ``params``: ``verbose`` (whether the
        trainer shows its own progress bar) and, from the gradient trainer, ``epochs``,
        ``steps_per_epoch``, ``batch_size``, ``samples``."""

    def on_train_end(self, logs=None):
        """Training ended normally, or stopped (early stopping, a non-finite loss)."""

    def on_epoch_begin(self, epoch, logs=None):
        """An epoch starts."""

    def on_epoch_end(self, epoch, logs=None):
        """An epoch ended; ``logs`` holds its losses and metrics (a callback may add keys
        for the callbacks after it)."""

    def on_batch_begin(self, batch, logs=None):
        """A batch starts (``logs["size"]``). Called only when overridden, so callbacks
        without batch hooks cost nothing per batch."""

    def on_batch_end(self, batch, logs=None):
        """A batch ended (``logs["loss"]``, ``logs["size"]``). Called only when overridden."""

    def flush(self, epoch) -> None:
        """Called after every callback's ``on_epoch_end`` of ``epoch``: the place for work
        that must see what all callbacks did this epoch (a checkpoint stores the other
        callbacks' state as of this epoch)."""

    def get_state(self) -> dict | None:
        """JSON-safe state a checkpoint stores so that a resumed run continues exactly,
        or None (the default): nothing to store. A callback that returns state also
        overrides :meth:`set_state`. Arrays (say, weights) go under the key ``"arrays"``
        as ``{name: array}``: the checkpoint stores them as arrays and gives them back in
        the same place; they must be finite.

        ``set_state(get_state())`` must give back exactly the same state: a checkpoint
        that is refused puts every callback's state back that way."""
        return None

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned, when resuming from a checkpoint.
        Check the whole state first and change nothing when it is invalid (raise
        ValueError naming the bad entry)."""
        raise NotImplementedError(f"{type(self).__name__} stores state (get_state) but does not define set_state")

    def restart_copy(self, run: int) -> "Callback":
        """The callback run number ``run`` of ``Trainer.fit(n_restarts=...)`` uses: by
        default a deep copy, so runs (perhaps in other processes) do not share state."""
        return copy.deepcopy(self)

    def on_restarts_end(self, copies, best: int) -> None:
        """After restarts: ``copies`` are the ones :meth:`restart_copy` made, in run order,
        as they ended their runs (back from the worker processes), and ``best`` is the
        index of the run that was kept. Only a callback that overrides this hook gets
        its copies back (the others' need not pickle after training)."""


def is_stateful(callback) -> bool:
    """Whether a checkpoint stores ``callback``'s state (it overrides ``get_state``)."""
    return type(callback).get_state is not Callback.get_state


class CallbackList:
    """Dispatches each hook to every callback; batch hooks only to those that define them.

    Both trainers run their callbacks through it: ``with callbacks.running(params):``
    around the epochs calls ``on_train_begin`` and, when the block ends without an
    exception, ``on_train_end``; :meth:`on_epoch_end` calls every ``on_epoch_end`` and
    then every ``flush``.
    """

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

    def _call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None, flush: bool = True):
        """Every callback's ``on_epoch_end``, then every callback's ``flush`` (so that a
        checkpoint written in ``flush`` holds what all of them decided this epoch).
        ``flush=False`` leaves the flush to the trainer (:meth:`flush`): the
        Levenberg–Marquardt trainer flushes after the epoch's step, so that a checkpoint
        holds the weights the next epoch starts from."""
        self._call("on_epoch_end", epoch, logs)
        if flush:
            self.flush(epoch)

    def flush(self, epoch):
        self._call("flush", epoch)

    @contextlib.contextmanager
    def running(self, logs=None):
        """``on_train_begin(logs)`` now, ``on_train_end`` when the block ends normally."""
        self.on_train_begin(logs)
        yield self
        self.on_train_end({})

    def on_batch_begin(self, batch, logs=None):
        for cb in self._batch_begin:
            cb.on_batch_begin(batch, logs)

    def on_batch_end(self, batch, logs=None):
        for cb in self._batch_end:
            cb.on_batch_end(batch, logs)


class CallbackHost:
    """What a trainer offers its callbacks, shared by :class:`bpnn.Trainer` and
    :class:`bpnn.train.LMTrainer`; :meth:`_start_run` begins each run the same way.

    ``history`` (the current run's :class:`History`), ``stop_training`` (a callback sets
    it True to stop after the current epoch), ``initial_epoch`` (0, or the first epoch
    after the checkpoint a run resumed from), ``best_weights`` (the trainer's own
    :class:`~bpnn.train.best_weights.BestWeights`, saved in checkpoints: the gradient
    trainer's fallback on a non-finite loss, the Levenberg–Marquardt validation stop's
    best-validation weights) and the read-only ``callbacks`` and ``weight_snapshots``.
    """

    history = None
    best_weights = None
    stop_training = False
    #: the epoch the current run starts at: 0, or the epoch after a resumed checkpoint's
    initial_epoch = 0
    _callbacks: tuple = ()
    _weight_snapshots = None

    @property
    def callbacks(self) -> tuple:
        """The callbacks of the current (or last) run, in order, History excluded."""
        return self._callbacks

    @property
    def weight_snapshots(self) -> WeightSnapshots | None:
        """The current run's :class:`~bpnn.train.best_weights.WeightSnapshots`: every
        :class:`~bpnn.train.best_weights.BestWeights` of the run copies the model through
        it, at most once per epoch."""
        return self._weight_snapshots

    def _run_state(self) -> tuple:
        """What :meth:`_start_run` replaces, for :meth:`_restore_run_state`."""
        return self.history, self._callbacks, self._weight_snapshots, self.stop_training, self.initial_epoch

    def _restore_run_state(self, state: tuple) -> None:
        """Undo :meth:`_start_run` (a run that could not start, e.g. a refused checkpoint)."""
        (self.history, self._callbacks, self._weight_snapshots, self.stop_training,
         self.initial_epoch) = state

    def _start_run(self, callbacks) -> CallbackList:
        """A fresh History, callbacks and snapshots for a run; the CallbackList to run."""
        callbacks = tuple(callbacks)
        history = History()
        run = CallbackList([history, *callbacks], self)  # checks the callbacks first
        self.history, self._callbacks = history, callbacks
        self._weight_snapshots = WeightSnapshots(self.model)
        self.stop_training = False
        self.initial_epoch = 0
        return run


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
        try:
            return self.history[key]
        except KeyError:
            if not self.epoch:
                why = f" (training stopped: {self.stopped_reason})" if self.stopped_reason else ""
                raise KeyError(f"History[{key!r}]: no epoch was completed{why}, so nothing is recorded") from None
            raise KeyError(f"History[{key!r}]: not recorded; the recorded keys are {sorted(self.history)}") from None

    def __repr__(self):
        last = {k: v[-1] for k, v in self.history.items()}
        return f"History(epochs={len(self.epoch)}, last={last})"

    #: how many of the last epochs :meth:`_repr_html_` lists
    HTML_EPOCHS = 10

    def _repr_html_(self) -> str:
        """How a notebook shows the History: a table of the last epochs (every logged key,
        epochs counted from 1), why training stopped early if it did, and the curves (one
        panel per quantity, training and validation together:
        :func:`bpnn._figures.history_figure`) as an inline PNG; the table alone when
        matplotlib is missing. Self-contained: no style sheet, no script."""
        from .._figures import history_figure, png_base64
        from .._html import esc, img, num, table

        n = len(next(iter(self.history.values()), []))
        if not n:
            return '<div class="bpnn-history"><p><b>History</b>: no epoch recorded yet</p></div>'
        keys = list(self.history)
        first = max(n - self.HTML_EPOCHS, 0)
        rows = []
        for i in range(first, n):
            values = [self.history[k][i] if i < len(self.history[k]) else None for k in keys]
            rows.append([(str(i + 1), True)] + [(esc(num(v if isinstance(v, (int, float)) else None)), True)
                                                for v in values])
        shown = f"the last {n - first} of {n} epochs" if first else f"{n} epoch{'s' * (n != 1)}"
        parts = [f"<p><b>History</b>: {shown}</p>"]
        if self.stopped_reason:
            parts.append(f"<p>Stopped early: {esc(self.stopped_reason)}</p>")
        parts.append(table(["epoch", *keys], rows))
        try:
            fig = history_figure(self.history, feature="a History's curves", install="'bpnn[notebook]'")
        except ImportError as exc:
            parts.append(f"<p>No curves: {esc(exc)}</p>")
        else:
            parts.append(img("Loss and metrics per epoch, training and validation", png_base64(fig)))
        return f'<div class="bpnn-history">{"".join(parts)}</div>'
