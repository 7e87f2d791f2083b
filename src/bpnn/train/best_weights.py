"""The weights of the best epoch: one copy per improving epoch, put back on request.

Several parts of one training run keep "the weights of the best epoch so far": the
trainer itself (what a non-finite loss falls back to), :class:`~bpnn.EarlyStopping`
with ``restore_best_weights``, the scikit-learn estimators' stopping rule and the
Levenberg–Marquardt trainer's validation stop. Each decides for itself when an epoch
is best (Keras' ``min_delta``, scikit-learn's strict improvement, MATLAB's ``max_fail``
count differ on purpose), and each keeps a :class:`BestWeights`; the copies all come
from the run's :class:`WeightSnapshots`, which copies the model at most once per epoch.
So an epoch that improves for the trainer and for EarlyStopping is copied once, not
twice.
"""
from __future__ import annotations

_NOTHING = object()  # the epoch key of a WeightSnapshots that has not copied anything yet


class Snapshot:
    """A copy of a model's parameters and buffers, taken at the end of ``epoch`` (None:
    before training). It is only read after it is taken, so holders may share it."""

    def __init__(self, model, epoch):
        self.model = model
        self.epoch = epoch
        self.params = tuple(p.copy() for _, p, _ in model.named_parameters())
        self.buffers = tuple(b.copy() for _, b in model.named_buffers())

    @classmethod
    def of_arrays(cls, model, epoch, arrays: dict) -> "Snapshot":
        """A snapshot from ``{name: array}`` as :meth:`arrays` gives (a checkpoint's copy);
        the names, shapes and dtypes must be the model's (ValueError otherwise)."""
        from .. import backend

        params = [(name, p) for name, p, _ in model.named_parameters()]
        buffers = list(model.named_buffers())
        names = {name for name, _ in params + buffers}
        if set(arrays) != names:
            raise ValueError(f"best weights: names {sorted(set(arrays) ^ names)[:5]} differ from the model's")
        for name, like in params + buffers:
            value = arrays[name]
            if tuple(value.shape) != tuple(like.shape) or value.dtype != like.dtype:
                raise ValueError(f"best weights: '{name}' is {value.dtype}{tuple(value.shape)}; the model's is "
                                 f"{like.dtype}{tuple(like.shape)}")
        snap = cls.__new__(cls)
        snap.model, snap.epoch = model, epoch
        snap.params = tuple(backend.to_device(arrays[name]).copy() for name, _ in params)
        snap.buffers = tuple(backend.to_device(arrays[name]).copy() for name, _ in buffers)
        return snap

    def arrays(self) -> dict:
        """``{name: NumPy array}`` of the copy, parameters and buffers named as the model's."""
        from .. import backend

        names = [name for name, _, _ in self.model.named_parameters()] + [n for n, _ in self.model.named_buffers()]
        return {name: backend.to_numpy(a) for name, a in zip(names, self.params + self.buffers)}

    def restore(self) -> None:
        """Write the copy back into the model's arrays, in place (views such as the flat
        parameter vector stay valid)."""
        for (_, p, _), saved in zip(self.model.named_parameters(), self.params):
            p[...] = saved
        for (_, b), saved in zip(self.model.named_buffers(), self.buffers):
            b[...] = saved


class WeightSnapshots:
    """The copies of one model taken during one training run, at most one per epoch.

    :meth:`take` returns the epoch's :class:`Snapshot`, copying the model only the first
    time it is asked for that epoch. A trainer makes one per run and offers it to its
    callbacks as ``trainer.weight_snapshots``. The trainers take their own snapshot
    before the epoch's callbacks run, so a callback that asks for the same epoch shares
    it; sharing is right because no callback changes the weights between two epochs
    (bpnn's put weights back only at the end of training).
    """

    def __init__(self, model):
        self.model = model
        self._epoch = _NOTHING
        self._last = None

    def take(self, epoch) -> Snapshot:
        if epoch != self._epoch:
            self._last = Snapshot(self.model, epoch)
            self._epoch = epoch
        return self._last


def snapshots_of(trainer) -> WeightSnapshots:
    """The run's shared snapshots: ``trainer.weight_snapshots`` (bpnn's trainers), else
    a private one for a trainer that offers none."""
    shared = getattr(trainer, "weight_snapshots", None)
    return shared if shared is not None else WeightSnapshots(trainer.model)


class BestWeights:
    """The one home of "keep the weights of the best epoch, put them back later".

    The owner decides when an epoch is the best so far and calls ``save(trainer, epoch,
    value)``; :meth:`restore` writes those weights back into the model. ``epoch`` and
    ``value`` tell which epoch was kept (``epoch`` None: the weights before training).
    The copy is the run's shared :class:`Snapshot` of that epoch.
    """

    def __init__(self):
        self.epoch = None
        self.value = None
        self._snapshot: Snapshot | None = None

    @property
    def saved(self) -> bool:
        """Whether any weights have been saved."""
        return self._snapshot is not None

    def save(self, trainer, epoch, value=None) -> None:
        """Keep ``trainer.model``'s weights as they are at the end of ``epoch``."""
        self._snapshot = snapshots_of(trainer).take(epoch)
        self.epoch, self.value = epoch, value

    def arrays(self) -> dict | None:
        """The saved weights as ``{name: array}`` (what a checkpoint stores), or None."""
        return None if self._snapshot is None else self._snapshot.arrays()

    def load(self, model, epoch, value, arrays: dict | None) -> None:
        """Hold ``arrays`` (from :meth:`arrays`; None: nothing saved) as the weights of
        ``epoch``; checked against ``model`` before anything changes."""
        snapshot = None if arrays is None else Snapshot.of_arrays(model, epoch, arrays)
        self._snapshot, self.epoch, self.value = snapshot, epoch, value

    def restore(self) -> bool:
        """Put the saved weights back; False (and nothing changed) when none were saved."""
        if self._snapshot is None:
            return False
        self._snapshot.restore()
        return True
