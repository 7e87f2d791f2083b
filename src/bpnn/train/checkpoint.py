"""Training checkpoints that resume exactly, and the ModelCheckpoint callback.

A checkpoint is one safetensors file: arrays under ``model/<name>`` (parameters and
buffers) and ``optimizer/<i>/<key>`` (each transform's state), and a JSON document in
the file's metadata under ``"bpnn"`` with the format version, the epoch just
completed, the optimizer's step count and learning rate, the random generators'
states, the History and the state of callbacks that keep one, and a second metadata
entry, ``"bpnn_sha256"``, with the SHA-256 of the document and of every array, checked
when the file is read (:mod:`bpnn._tensorfile`). It is written atomically (temporary
file, fsync, rename): a process killed at any moment leaves the previous checkpoint or
the new one, never a mixture. Nothing is pickled.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .. import _checks
from .._atomic import atomic_write
from .._json import json_safe
from .._tensorfile import TensorFile, TensorFileError, encode, strict_json
from ..nn import layers
from ..nn.module import build_arrays
from .callbacks import Callback, is_stateful

FORMAT = "bpnn-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, or does not fit the model being trained."""


def _generators(trainer):
    gens = [trainer.rng]
    model_rng = getattr(trainer.model, "rng", None)
    if model_rng is not None and model_rng is not trainer.rng:
        gens.append(model_rng)
    return gens


def _stateful(callbacks):
    return [cb for cb in callbacks if is_stateful(cb)]


def save_checkpoint(path, trainer, epoch: int, callbacks=()) -> None:
    """Write the complete training state after ``epoch`` to ``path`` (atomically), with
    the SHA-256 of its document and of every array (see :mod:`bpnn._tensorfile`)."""
    model = trainer.model
    tensors = {f"model/{k}": np.ascontiguousarray(v) for k, v in model.state_dict().items()}
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
                      "state_keys": [sorted(entries) for entries in opt_state["state"]],
                      "epoch": opt_state.get("epoch"),
                      "schedule": json_safe(opt_state.get("schedule") or {}, nonfinite="string"),
                      "lr": trainer.optimizer.lr if not callable(trainer.optimizer.lr) else None,
                      "class": type(trainer.optimizer).__name__},
        "model": {"class": type(model).__name__, "parameters": model.num_parameters(),
                  "architecture": layers.serialize(model),
                  "input_shape": list(model.input_shape) if model.built else None,
                  "dtype": np.dtype(model.dtype).name if model.built and model.dtype is not None else None},
        "generators": [g.bit_generator.state for g in _generators(trainer)],
        "history": ({"history": json_safe(history.history),
                     "epoch": history.epoch} if history is not None else None),
        "callbacks": [[type(cb).__name__, cb.get_state()] for cb in _stateful(callbacks)],
    }
    data = encode(tensors, json.dumps(meta, allow_nan=False))
    with atomic_write(path) as handle:
        handle.write(data)


#: the most transforms a checkpoint without ``state_keys`` may declare (bpnn's longest
#: optimizer chain has a handful)
MAX_TRANSFORMS = 64
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def read_checkpoint(path):
    """Read and check a checkpoint file: ``(arrays, metadata)``; raises :class:`CheckpointError`.

    Everything that can be checked without the trainer is checked, naming the file and
    the array: the header first (names ``model/<name>`` and ``optimizer/<i>/<key>``,
    float32 or float64 arrays, the model's all of one dtype, transform indices within
    the declared count, which is bounded by what the file holds; ``callbacks/<j>/<name>``
    for arrays of the j-th callback state), then, for checkpoints
    that record the model's input shape, the declared architecture's array names, shapes
    and dtypes, built without allocating its weights, all before any array is read.
    Arrays are then read one at a time, verified against their SHA-256 checksums (files
    written before checksums are read unverified) and must be finite. Memory: the
    arrays' size, whatever the file declares.
    """
    path = os.fspath(path)
    try:
        with TensorFile(path, "a bpnn checkpoint") as tf:
            text = tf.document()
            meta = _parse_meta(path, text)
            specs = _check_specs(path, tf, meta)
            arrays = {}
            for name, spec in specs.items():
                value = tf.read(spec)
                if not np.isfinite(value).all():
                    raise CheckpointError(f"{path}: array {name!r} contains NaN or infinite values")
                arrays[name] = value
    except TensorFileError as exc:
        if exc.kind == "missing":
            raise CheckpointError(f"{path}: no such checkpoint file") from None
        raise CheckpointError(f"{path}: {exc.problem}") from None
    return arrays, meta


def _parse_meta(path: str, text) -> dict:
    try:
        meta = strict_json(text) if text is not None else None
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: its 'bpnn' document is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bpnn checkpoint (no '{FORMAT}' metadata)")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')!r}; "
                              f"this bpnn reads version {VERSION}")
    for key in ("optimizer", "model"):
        if not isinstance(meta.get(key), dict):
            raise CheckpointError(f"{path}: its '{key}' entry is {meta.get(key)!r:.80}; expected a JSON object")
    return meta


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_specs(path: str, tf: TensorFile, meta: dict) -> dict:
    """The declared arrays (name -> ArraySpec) checked against the document, nothing read."""
    model_specs, opt_specs = {}, {}
    callbacks = meta.get("callbacks")
    n_callbacks = len(callbacks) if isinstance(callbacks, list) else 0
    for name, spec in tf.arrays.items():
        if spec.dtype not in _FLOATS:
            raise CheckpointError(f"{path}: array {name!r} has dtype {spec.dtype}; checkpoint arrays are "
                                  f"float32 or float64")
        parts = name.split("/", 2)
        indexed = len(parts) == 3 and parts[1].isdigit() and parts[1] == str(int(parts[1])) and parts[2]
        if parts[0] == "model" and len(parts) == 2 and parts[1]:
            model_specs[parts[1]] = spec
        elif parts[0] == "optimizer" and indexed:
            opt_specs[(int(parts[1]), parts[2])] = spec
        elif parts[0] == "callbacks" and indexed and int(parts[1]) < n_callbacks:
            pass  # an array of the state of stateful callback <index> (EarlyStopping's best weights)
        else:
            raise CheckpointError(f"{path}: unexpected array {name!r}; a checkpoint names its arrays "
                                  f"'model/<name>', 'optimizer/<index>/<key>' or 'callbacks/<index>/<name>' "
                                  f"(index below the {n_callbacks} callback states it holds)")
    dtypes = sorted({spec.dtype.name for spec in model_specs.values()})
    declared = meta["model"].get("dtype")
    if len(dtypes) > 1 or (declared is not None and dtypes and dtypes != [declared]):
        raise CheckpointError(f"{path}: the model arrays have dtypes {dtypes}; the checkpoint declares the "
                              f"model's dtype {declared!r} (one of float32, float64)")
    _check_transforms(path, meta["optimizer"], opt_specs)
    if meta["model"].get("input_shape") is not None:
        _check_architecture(path, meta["model"], model_specs)
    return dict(tf.arrays)


def _check_transforms(path: str, opt: dict, opt_specs: dict) -> None:
    n = opt.get("n_transforms")
    if not _is_count(n):
        raise CheckpointError(f"{path}: optimizer n_transforms is {n!r:.40}; expected a non-negative integer")
    keys = opt.get("state_keys")
    if keys is not None:  # the count is the length of a list the file holds
        if not (isinstance(keys, list) and all(isinstance(k, list) and all(isinstance(s, str) for s in k)
                                               for k in keys)):
            raise CheckpointError(f"{path}: optimizer state_keys is not a list of lists of names")
        if len(keys) != n:
            raise CheckpointError(f"{path}: optimizer n_transforms is {n} but state_keys lists {len(keys)} "
                                  f"transforms")
        listed = {(i, k) for i, ks in enumerate(keys) for k in ks}
        if listed != set(opt_specs):
            missing = sorted(f"optimizer/{i}/{k}" for i, k in listed - set(opt_specs))
            unexpected = sorted(f"optimizer/{i}/{k}" for i, k in set(opt_specs) - listed)
            raise CheckpointError(f"{path}: the optimizer arrays do not match state_keys (missing: "
                                  f"{missing or 'none'}; unexpected: {unexpected or 'none'})")
        return
    highest = max((i for i, _ in opt_specs), default=-1)
    if not highest < n <= max(MAX_TRANSFORMS, highest + 1):
        raise CheckpointError(f"{path}: optimizer n_transforms is {n}; the arrays need at least {highest + 1} "
                              f"and a checkpoint declares at most {max(MAX_TRANSFORMS, highest + 1)}")


def _check_architecture(path: str, model_meta: dict, model_specs: dict) -> None:
    """The model arrays against the declared architecture, built without its weights."""
    shape, dtype = model_meta.get("input_shape"), model_meta.get("dtype")
    if not (isinstance(shape, list) and all(_is_count(s) and s > 0 for s in shape)):
        raise CheckpointError(f"{path}: the model's input_shape is {shape!r:.80}; expected a list of positive "
                              f"integers")
    if dtype not in ("float32", "float64"):
        raise CheckpointError(f"{path}: the model's dtype is {dtype!r:.40}; expected 'float32' or 'float64'")
    try:
        with build_arrays("shapes"):
            plan = layers.get(model_meta.get("architecture"))
            if not plan.built:
                plan.build(tuple(shape), None, dtype)
    except Exception as exc:  # anything a constructor rejects: the file is at fault
        raise CheckpointError(f"{path}: the model's architecture could not be rebuilt: {exc}") from None
    targets = {name: v for name, v, _ in plan.named_parameters()}
    targets.update(dict(plan.named_buffers()))
    unknown, missing = sorted(set(model_specs) - set(targets)), sorted(set(targets) - set(model_specs))
    if unknown or missing:
        raise CheckpointError(f"{path}: the model arrays do not match the architecture (missing: "
                              f"{missing or 'none'}; unexpected: {unknown or 'none'})")
    for name, target in targets.items():
        spec = model_specs[name]
        if spec.shape != tuple(target.shape) or spec.dtype != target.dtype:
            raise CheckpointError(f"{path}: array 'model/{name}' has shape {spec.shape} and dtype {spec.dtype}; "
                                  f"the architecture needs {tuple(target.shape)} and {target.dtype}")


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
