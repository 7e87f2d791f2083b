"""Training checkpoints that resume exactly, and the ModelCheckpoint callback.

A checkpoint is one safetensors file: arrays under ``model/<name>`` (parameters and
buffers) and ``optimizer/<i>/<key>`` (each transform's state), and a JSON document in
the file's metadata under ``"bpnn"`` with the format version, the epoch just
completed, the optimizer's step count and learning rate, the random generators'
states, the History and the state of callbacks that keep one. It is written
atomically (temporary file, fsync, rename): a process killed at any moment leaves the
previous checkpoint or the new one, never a mixture. Nothing is pickled.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .. import _checks
from .._atomic import atomic_write
from .._json import json_safe
from ..nn import layers
from .callbacks import Callback, is_stateful

FORMAT = "bpnn-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, or does not fit the model being trained."""


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError as exc:  # pragma: no cover - safetensors is a core dependency
        raise ImportError("checkpoints need safetensors: pip install safetensors") from exc
    return st


def _generators(trainer):
    gens = [trainer.rng]
    model_rng = getattr(trainer.model, "rng", None)
    if model_rng is not None and model_rng is not trainer.rng:
        gens.append(model_rng)
    return gens


def _stateful(callbacks):
    return [cb for cb in callbacks if is_stateful(cb)]


def save_checkpoint(path, trainer, epoch: int, callbacks=()) -> None:
    """Write the complete training state after ``epoch`` to ``path`` (atomically)."""
    st = _safetensors()
    tensors = {f"model/{k}": np.ascontiguousarray(v) for k, v in trainer.model.state_dict().items()}
    opt_state = trainer.optimizer.state_dict()
    for i, entries in enumerate(opt_state["state"]):
        for key, value in entries.items():
            tensors[f"optimizer/{i}/{key}"] = np.ascontiguousarray(value)
    history = trainer.history
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "optimizer": {"step_count": opt_state["step_count"], "n_transforms": len(opt_state["state"]),
                      "epoch": opt_state.get("epoch"),
                      "schedule": json_safe(opt_state.get("schedule") or {}, nonfinite="string"),
                      "lr": trainer.optimizer.lr if not callable(trainer.optimizer.lr) else None,
                      "class": type(trainer.optimizer).__name__},
        "model": {"class": type(trainer.model).__name__, "parameters": trainer.model.num_parameters(),
                  "architecture": layers.serialize(trainer.model)},
        "generators": [g.bit_generator.state for g in _generators(trainer)],
        "history": ({"history": json_safe(history.history),
                     "epoch": history.epoch} if history is not None else None),
        "callbacks": [[type(cb).__name__, cb.get_state()] for cb in _stateful(callbacks)],
    }
    data = st.save(tensors, metadata={"bpnn": json.dumps(meta, allow_nan=False)})
    with atomic_write(path) as handle:
        handle.write(data)


def read_checkpoint(path):
    """Read and check a checkpoint file: ``(arrays, metadata)``; raises :class:`CheckpointError`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("bpnn", "null"))
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bpnn checkpoint (no '{FORMAT}' metadata)")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')!r}; "
                              f"this bpnn reads version {VERSION}")
    return arrays, meta


def _match_callbacks(given, saved):
    """Pair each given stateful callback with the saved state of the same class, in order.

    Saved states without a callback (say, the ModelCheckpoint that wrote the file) are
    ignored; a given callback without a saved state is an error, since resuming would
    not be exact.
    """
    pools: dict[str, list] = {}
    for name, state in saved:
        pools.setdefault(name, []).append(state)
    pairs = []
    for cb in given:
        pool = pools.get(type(cb).__name__)
        if not pool:
            raise ValueError(f"the checkpoint holds no state for callback {type(cb).__name__}; "
                             f"saved: {[n for n, _ in saved] or 'none'}")
        pairs.append((cb, pool.pop(0)))
    return pairs


def restore_checkpoint(path, trainer, history, callbacks=()) -> int:
    """Load ``path`` into a prepared trainer (model built, optimizer attached).

    Everything is validated before anything is written. Returns the epoch to start from.
    """
    arrays, meta = read_checkpoint(path)
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    try:
        current = trainer.model.state_dict()
        if set(model_state) != set(current) or any(model_state[k].shape != current[k].shape for k in current):
            raise ValueError("the model's parameter names or shapes differ")
        opt = trainer.optimizer
        n = int(meta["optimizer"]["n_transforms"])
        opt_state = {"step_count": int(meta["optimizer"]["step_count"]),
                     "state": [{} for _ in range(n)], "schedule": meta["optimizer"].get("schedule") or {}}
        if meta["optimizer"].get("epoch") is not None:
            opt_state["epoch"] = int(meta["optimizer"]["epoch"])
        for k, v in arrays.items():
            if k.startswith("optimizer/"):
                _, i, key = k.split("/", 2)
                opt_state["state"][int(i)][key] = v
        gens = _generators(trainer)
        if len(gens) != len(meta["generators"]):
            raise ValueError("the trainer and model share a generator in one case and not the other")
        cb_states = _match_callbacks(_stateful(callbacks), meta.get("callbacks", []))
        before = opt.state_dict()
        opt.load_state_dict(opt_state)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: does not fit this training run: {exc}") from None
    del before
    trainer.model.load_state_dict(model_state)
    if meta["optimizer"].get("lr") is not None and not callable(trainer.optimizer.lr):
        trainer.optimizer.lr = meta["optimizer"]["lr"]
    for gen, state in zip(gens, meta["generators"]):
        gen.bit_generator.state = state
    if meta.get("history"):
        history.history = {k: list(v) for k, v in meta["history"]["history"].items()}
        history.epoch = list(meta["history"]["epoch"])
    for cb, state in cb_states:
        cb.set_state(state)
    return int(meta["epoch"]) + 1


class ModelCheckpoint(Callback):
    """Save a checkpoint at the end of epochs — Keras' ``ModelCheckpoint``.

    ``path`` may contain ``{epoch}`` and log keys (``"ckpt-{epoch:03d}.safetensors"``).
    With ``save_best_only`` a checkpoint is written only when ``monitor`` improves
    (``mode`` min/max/auto). Every ``save_freq`` epochs otherwise. Writes are atomic;
    resume with ``trainer.fit(..., resume_from=path)``. ``last_path`` is the file
    written last.

    With ``Trainer.fit(n_restarts=...)`` each run writes its files under its own names
    (``path`` + ``".restart<run>"``, so runs in parallel never share a file); when the
    runs are done the kept run's files take the names in ``path`` and the others are
    deleted, so the checkpoints hold the kept run.
    """

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", save_freq: int = 1):
        from .monitor import Monitor

        self.path = os.fspath(path)
        self.save_best_only = bool(save_best_only)
        self.save_freq = _checks.positive("save_freq", save_freq, integer=True)
        self._monitor = Monitor(monitor, mode)
        self.last_path = None
        self._pending = None
        self._written: dict = {}  # every path written, in order (a dict as an ordered set)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = self._monitor.value(logs)
            if not self._monitor.improved(value):
                return
            self._monitor.best = value
        elif (epoch + 1) % self.save_freq:
            return
        self._pending = self.path.format(epoch=epoch, **logs)

    def flush(self, epoch) -> None:
        """Write the checkpoint chosen in ``on_epoch_end``, now that every callback has
        seen the epoch, so the saved state of the other callbacks includes it."""
        path, self._pending = self._pending, None
        if path is not None:
            save_checkpoint(path, self.trainer, epoch, self.trainer.callbacks)
            self.last_path = path
            self._written[path] = None

    def restart_copy(self, run: int) -> "ModelCheckpoint":
        clone = super().restart_copy(run)
        clone.path = self.path + _restart_suffix(run)
        clone._written = {}
        return clone

    def on_restarts_end(self, copies, best: int) -> None:
        """Give the kept run's files their final names; delete the other runs' files."""
        for run, clone in enumerate(copies):
            suffix = _restart_suffix(run)
            for staged in clone._written:
                if run == best:
                    os.replace(staged, staged[:-len(suffix)])
                    self._written[staged[:-len(suffix)]] = None
                elif os.path.exists(staged):
                    os.remove(staged)
        kept = copies[best]
        self.last_path = None if kept.last_path is None else kept.last_path[:-len(_restart_suffix(best))]
        self._monitor.load_state(kept._monitor.state())

    def get_state(self) -> dict:
        return self._monitor.state()

    def set_state(self, state: dict) -> None:
        self._monitor.load_state(state)


def _restart_suffix(run: int) -> str:
    return f".restart{run}"
