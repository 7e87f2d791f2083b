"""Training checkpoints that resume exactly, and the ModelCheckpoint callback.

A checkpoint is one safetensors file: arrays under ``model/<name>`` (parameters and
buffers), ``optimizer/<i>/<key>`` (each transform's state) and ``callbacks/<j>/<name>``
(arrays in the j-th stateful callback's state, e.g. EarlyStopping's best weights),
``best/<name>`` (the trainer's own best-epoch weights: what a non-finite loss falls back
to, or the Levenberg–Marquardt validation stop's best-validation weights), and a
JSON document in the file's metadata under ``"bpnn"`` with the format version, the epoch just
completed, the optimizer's step count and learning rate (for the Levenberg–Marquardt
trainer, ``"optimizer"`` is null and ``"lm"`` holds the solver's μ and its counters, the
validation stop's count and the training record), the epoch and value of the ``best/``
weights, the random generators'
states, the History and the state of callbacks that keep one, and a second metadata
entry, ``"bpnn_sha256"``, with the SHA-256 of the document and of every array, checked
when the file is read (:mod:`bpnn._tensorfile`). It is written atomically (temporary
file, fsync, rename): a process killed at any moment leaves the previous checkpoint or
the new one, never a mixture. Nothing is pickled.
"""
from __future__ import annotations

import copy
import json
import math
import os

import numpy as np

from .. import _checks
from .._atomic import atomic_write, ensure_parent, remove_stale_temps
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
    rng = getattr(trainer, "rng", None)  # the Levenberg–Marquardt trainer has none of its own
    gens = [] if rng is None else [rng]
    model_rng = getattr(trainer.model, "rng", None)
    if model_rng is not None and model_rng is not rng:
        gens.append(model_rng)
    return gens


def _optimizer(trainer):
    """The gradient trainer's optimizer; None for the Levenberg–Marquardt trainer."""
    return getattr(trainer, "optimizer", None)


def _stateful(callbacks):
    return [cb for cb in callbacks if is_stateful(cb)]


def save_checkpoint(path, trainer, epoch: int, callbacks=()) -> None:
    """Write the complete training state after ``epoch`` to ``path`` (atomically), with
    the SHA-256 of its document and of every array (see :mod:`bpnn._tensorfile`)."""
    model = trainer.model
    tensors = {f"model/{k}": np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    opt = _optimizer(trainer)
    opt_meta = None
    if opt is not None:
        opt_state = opt.state_dict()
        for i, entries in enumerate(opt_state["state"]):
            for key, value in entries.items():
                tensors[f"optimizer/{i}/{key}"] = np.ascontiguousarray(value)
        opt_meta = {"step_count": opt_state["step_count"], "n_transforms": len(opt_state["state"]),
                    "state_keys": [sorted(entries) for entries in opt_state["state"]],
                    "epoch": opt_state.get("epoch"),
                    "schedule": json_safe(opt_state.get("schedule") or {}, nonfinite="string"),
                    "lr": opt.lr if not callable(opt.lr) else None,
                    "class": type(opt).__name__}
    best = getattr(trainer, "best_weights", None)
    best_arrays = None if best is None else best.arrays()
    for name, value in (best_arrays or {}).items():
        tensors[f"best/{name}"] = np.ascontiguousarray(value)
    history = trainer.history
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "optimizer": opt_meta,
        "best": (None if best_arrays is None else
                 {"epoch": best.epoch, "value": best.value if best.value is not None
                  and math.isfinite(best.value) else None}),
        "model": {"class": type(model).__name__, "parameters": model.num_parameters(),
                  "architecture": layers.serialize(model),
                  "input_shape": list(model.input_shape) if model.built else None,
                  "dtype": np.dtype(model.dtype).name if model.built and model.dtype is not None else None},
        "generators": [g.bit_generator.state for g in _generators(trainer)],
        "history": ({"history": json_safe(history.history, nonfinite="string"),
                     "epoch": history.epoch} if history is not None else None),
        "callbacks": _callback_states(callbacks, tensors),
    }
    if opt is None:
        meta["lm"] = json_safe(trainer._checkpoint_state(), nonfinite="string")
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
    for key in ("optimizer", "model") if not isinstance(meta.get("lm"), dict) else ("model",):
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
        elif parts[0] == "best" and len(parts) == 2 and parts[1] and isinstance(meta.get("best"), dict):
            pass  # the trainer's best-epoch weights, checked against the model on restore
        else:
            raise CheckpointError(f"{path}: unexpected array {name!r}; a checkpoint names its arrays "
                                  f"'model/<name>', 'optimizer/<index>/<key>', 'best/<name>' (with a 'best' "
                                  f"entry) or 'callbacks/<index>/<name>' "
                                  f"(index below the {n_callbacks} callback states it holds)")
    dtypes = sorted({spec.dtype.name for spec in model_specs.values()})
    declared = meta["model"].get("dtype")
    if len(dtypes) > 1 or (declared is not None and dtypes and dtypes != [declared]):
        raise CheckpointError(f"{path}: the model arrays have dtypes {dtypes}; the checkpoint declares the "
                              f"model's dtype {declared!r} (one of float32, float64)")
    if isinstance(meta.get("optimizer"), dict):
        _check_transforms(path, meta["optimizer"], opt_specs)
    elif opt_specs:
        raise CheckpointError(f"{path}: optimizer arrays such as 'optimizer/{min(opt_specs)[0]}/"
                              f"{min(opt_specs)[1]}' in a checkpoint without an optimizer")
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


def _callback_states(callbacks, tensors) -> list:
    """The ``callbacks`` entry of a checkpoint: ``[class name, state]`` per stateful
    callback. Arrays a state holds under ``"arrays"`` (``{name: array}``, e.g. the best
    weights of EarlyStopping) go into ``tensors`` as ``callbacks/<j>/<name>``; the JSON
    keeps their names."""
    out = []
    for j, cb in enumerate(_stateful(callbacks)):
        state = cb.get_state()
        if isinstance(state, dict) and "arrays" in state:
            state = dict(state)
            arrays = state.pop("arrays") or {}
            for name, value in arrays.items():
                tensors[f"callbacks/{j}/{name}"] = np.ascontiguousarray(value)
            state["arrays"] = sorted(arrays)
        out.append([type(cb).__name__, state])
    return out


class _Plan:
    """A checkpoint parsed and checked against one trainer: every piece of the state to
    restore, as new objects, for :func:`restore_checkpoint` to swap in."""

    epoch: int
    model_state: dict
    opt_state: dict
    lr: float | None
    gen_states: list
    history: tuple
    callbacks: list
    best: object  # a BestWeights, or None when the file holds no best weights
    lm: object  # the Levenberg–Marquardt trainer's checked state (its ``_plan_checkpoint_state``)


def _integer(what, value, low=0, high=None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low \
            or (high is not None and value > high):
        valid = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{what}: got {value!r}; expected an integer {valid}")
    return int(value)


def _dict(what, value) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{what}: got {type(value).__name__} {_short(value)}; expected a JSON object")
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_array(name, value, like) -> np.ndarray:
    """``value`` as it may replace ``like``: same shape, same dtype (no cast), finite."""
    if tuple(value.shape) != tuple(like.shape):
        raise ValueError(f"array '{name}' has shape {tuple(value.shape)}; this training run's is "
                         f"{tuple(like.shape)}")
    if value.dtype != like.dtype:
        raise ValueError(f"array '{name}' has dtype {value.dtype}; this training run's is {like.dtype} "
                         f"(arrays are never cast)")
    if value.dtype.kind in "fc" and not np.isfinite(value).all():
        raise ValueError(f"array '{name}' holds NaN or inf")
    return value


def _plan_model(arrays, trainer) -> dict:
    current = trainer.model.state_dict()
    given = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    unknown, missing = sorted(set(given) - set(current)), sorted(set(current) - set(given))
    if unknown or missing:
        raise ValueError(f"the model's parameter names differ (in the file only: {unknown[:5] or 'none'}; "
                         f"missing from the file: {missing[:5] or 'none'})")
    return {k: _check_array(f"model/{k}", given[k], current[k]).copy() for k in current}


def _plan_optimizer(arrays, meta, opt) -> tuple[dict, float | None]:
    from ..optim.schedules import Schedule

    info = _dict("optimizer", meta.get("optimizer"))
    current = opt.state_dict()
    n = len(current["state"])
    declared = _integer("optimizer.n_transforms", info.get("n_transforms"), 0)
    if declared != n:
        raise ValueError(f"optimizer.n_transforms: the file has {declared} transform states, this "
                         f"optimizer has {n}")
    state = [{} for _ in range(n)]
    for k, v in arrays.items():
        if not k.startswith("optimizer/"):
            continue
        parts = k.split("/", 2)
        if (len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= n
                or parts[2] not in current["state"][int(parts[1])]):
            raise ValueError(f"array '{k}' does not belong to this optimizer "
                             f"(it has {n} transform states)")
        i, key = int(parts[1]), parts[2]
        state[i][key] = _check_array(k, v, current["state"][i][key]).copy()
    for i, (mine, theirs) in enumerate(zip(current["state"], state)):
        missing = sorted(set(mine) - set(theirs))
        if missing:
            raise ValueError(f"the optimizer state of transform {i} lacks {missing}")
    opt_state = {"step_count": _integer("optimizer.step_count", info.get("step_count"), 0),
                 "state": state, "schedule": _dict("optimizer.schedule", info.get("schedule") or {})}
    if info.get("epoch") is not None:
        opt_state["epoch"] = _integer("optimizer.epoch", info["epoch"], 0)
    if opt_state["schedule"] and isinstance(opt.lr, Schedule):
        trial = copy.deepcopy(opt.lr)  # the schedule's own reading, on a copy
        trial.load_state_dict(opt_state["schedule"])
    lr = info.get("lr")
    if lr is not None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"optimizer.lr: got {_short(lr)}; expected a finite number > 0")
        lr = float(lr)
    return opt_state, lr


def _plan_generators(meta, trainer) -> list:
    gens = _generators(trainer)
    saved = meta.get("generators")
    if not isinstance(saved, list) or len(saved) != len(gens):
        raise ValueError(f"generators: expected a list of {len(gens)} generator states"
                         + (" (the trainer and model share a generator in one case and not the other)"
                            if isinstance(saved, list) else f", got {_short(saved)}"))
    states = []
    for i, (gen, state) in enumerate(zip(gens, saved)):
        trial = type(gen.bit_generator)()
        try:
            trial.state = _dict(f"generators[{i}]", state)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise ValueError(f"generators[{i}]: not a state of {type(gen.bit_generator).__name__} "
                             f"({type(exc).__name__}: {exc})") from None
        states.append(trial.state)
    return states


def _plan_history(meta, epoch) -> tuple[dict, list]:
    saved = _dict("history", meta.get("history"))
    record, epochs = _dict("history.history", saved.get("history")), saved.get("epoch")
    if not isinstance(epochs, list):
        raise ValueError(f"history.epoch: got {_short(epochs)}; expected a list of epochs")
    epochs = [_integer("history.epoch[]", e, 0, epoch) for e in epochs]
    if epochs and epochs[-1] != epoch:
        raise ValueError(f"history.epoch: ends at epoch {epochs[-1]}, the checkpoint is of epoch {epoch}")
    history = {}
    for key, values in record.items():
        if not isinstance(values, list) or len(values) > len(epochs) or not all(
                v is None or (isinstance(v, str) and v in _NONFINITE)
                or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
            raise ValueError(f"history.history[{key!r}]: expected a list of at most {len(epochs)} numbers")
        history[key] = [_NONFINITE.get(v, v) if isinstance(v, str) else v for v in values]
    return history, epochs


#: how a History's non-finite values are written (``json_safe(..., nonfinite="string")``);
#: older checkpoints wrote None
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _plan_callbacks(arrays, meta, callbacks) -> list:
    saved = meta.get("callbacks", [])
    if not isinstance(saved, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) for e in saved):
        raise ValueError(f"callbacks: got {_short(saved)}; expected a list of [class name, state] pairs")
    entries = []
    for j, (name, state) in enumerate(saved):
        if isinstance(state, dict) and "arrays" in state:
            names = state["arrays"]
            if not isinstance(names, list) or not all(isinstance(a, str) for a in names):
                raise ValueError(f"callbacks[{j}].arrays: got {_short(names)}; expected a list of names")
            state = dict(state)
            held = {}
            for a in names:
                key = f"callbacks/{j}/{a}"
                if key not in arrays:
                    raise ValueError(f"callbacks[{j}] ({name}): array '{key}' is missing")
                value = arrays[key]
                if value.dtype.kind in "fc" and not np.isfinite(value).all():
                    raise ValueError(f"array '{key}' holds NaN or inf")
                held[a] = value.copy()
            state["arrays"] = held
        entries.append((name, state))
    expected = {f"callbacks/{j}/{a}" for j, (_, s) in enumerate(entries)
                if isinstance(s, dict) and isinstance(s.get("arrays"), dict) for a in s["arrays"]}
    stray = sorted(k for k in arrays if not k.startswith(("model/", "optimizer/", "best/")) and k not in expected)
    if stray:
        raise ValueError(f"array '{stray[0]}' belongs to no part of a checkpoint")
    return _match_callbacks(_stateful(callbacks), entries)


def _plan_best(arrays, meta, trainer, epoch):
    """The trainer's best-epoch weights (``best/<name>`` arrays and the ``best`` entry)
    as a new BestWeights; None when the file holds none (older files)."""
    from .best_weights import BestWeights

    given = {k[len("best/"):]: v for k, v in arrays.items() if k.startswith("best/")}
    info = meta.get("best")
    if info is None:
        if given:
            raise ValueError(f"array 'best/{min(given)}' without a 'best' entry")
        return None
    info = _dict("best", info)
    best_epoch = info.get("epoch")
    if best_epoch is not None:
        best_epoch = _integer("best.epoch", best_epoch, 0, epoch)
    value = info.get("value")
    if value is None:
        value = math.inf
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"best.value: got {_short(value)}; expected a finite number or null")
    for name, v in given.items():
        if v.dtype.kind in "fc" and not np.isfinite(v).all():
            raise ValueError(f"array 'best/{name}' holds NaN or inf")
    weights = BestWeights()
    weights.load(trainer.model, best_epoch, float(value), given)  # names, shapes, dtypes: the model's
    return weights


def _plan(arrays, meta, trainer, callbacks) -> _Plan:
    plan = _Plan()
    plan.epoch = _integer("epoch", meta.get("epoch"), 0)
    plan.model_state = _plan_model(arrays, trainer)
    opt = _optimizer(trainer)
    if opt is not None:
        if not isinstance(meta.get("optimizer"), dict):
            raise ValueError(f"optimizer: got {_short(meta.get('optimizer'))}; this trainer's checkpoint holds "
                             f"its optimizer state (the file is of a Levenberg–Marquardt run?)")
        plan.opt_state, plan.lr = _plan_optimizer(arrays, meta, opt)
        plan.lm = None
    else:
        if meta.get("optimizer") is not None or "lm" not in meta:
            raise ValueError("lm: the file holds no Levenberg–Marquardt state (it is of a gradient-descent run?)")
        plan.lm = trainer._plan_checkpoint_state(meta["lm"], plan.epoch)
    plan.best = _plan_best(arrays, meta, trainer, plan.epoch)
    plan.gen_states = _plan_generators(meta, trainer)
    plan.history = _plan_history(meta, plan.epoch)
    plan.callbacks = _plan_callbacks(arrays, meta, callbacks)
    return plan


def _set_callback_states(pairs) -> None:
    """``set_state`` on every callback, all or none: on a failure the callbacks already
    set (and the one that failed) get back the state they had."""
    before = [(cb, cb.get_state()) for cb, _ in pairs]
    done = 0
    try:
        for cb, state in pairs:
            done += 1
            try:
                cb.set_state(state)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError) as exc:
                raise ValueError(f"the state of callback {type(cb).__name__}: {exc}") from None
    except BaseException:
        for cb, state in before[:done]:
            cb.set_state(state)
        raise


def restore_checkpoint(path, trainer, history, callbacks=()) -> int:
    """Load ``path`` into a prepared trainer (model built, optimizer attached).

    All or nothing: the whole checkpoint is parsed and checked first, into new objects
    (arrays by name, shape, dtype — never cast — and finiteness; every count, epoch,
    learning rate, generator state, History and callback state), and only then swapped
    in. A checkpoint that fails any check raises :class:`CheckpointError` and leaves the
    weights, the optimizer, the random generators, ``history`` and the callbacks as they
    were. Returns the epoch to start from. ``trainer.best_weights`` becomes the file's
    best-epoch weights (a BestWeights; None for a file without them). A
    Levenberg–Marquardt trainer (no ``optimizer``) checks its own state with
    ``trainer._plan_checkpoint_state(state, epoch)`` and takes it with
    ``trainer._load_checkpoint_state(plan)``.
    """
    arrays, meta = read_checkpoint(path)
    try:
        plan = _plan(arrays, meta, trainer, callbacks)
        _set_callback_states(plan.callbacks)  # the one part that runs code of the callbacks'
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError) as exc:
        raise CheckpointError(f"{path}: does not fit this training run: {exc}") from None
    # Everything below was checked above and cannot fail.
    trainer.model.load_state_dict(plan.model_state)
    opt = _optimizer(trainer)
    if opt is not None:
        opt.load_state_dict(plan.opt_state)
        if plan.lr is not None and not callable(opt.lr):
            opt.lr = plan.lr
    else:
        trainer._load_checkpoint_state(plan.lm)
    trainer.best_weights = plan.best
    for gen, state in zip(_generators(trainer), plan.gen_states):
        gen.bit_generator.state = state
    history.history, history.epoch = plan.history
    return plan.epoch + 1


class ModelCheckpoint(Callback):
    """Save a checkpoint at the end of epochs — Keras' ``ModelCheckpoint``.

    ``path`` may contain ``{epoch}`` and log keys (``"ckpt-{epoch:03d}.safetensors"``,
    ``"{val_loss:.4f}"``); the template is checked when the callback is made (a field that
    is not ``epoch``, ``loss``, ``lr``, ``penalty``, a registered metric or its ``val_``
    twin, or a format spec a number does not take, is a ValueError naming it).
    Temporary files that a killed write of these files left are removed when training
    starts.
    With ``save_best_only`` a checkpoint is written only when ``monitor`` improves
    (``mode`` min/max/auto). Every ``save_freq`` epochs otherwise. Writes are atomic;
    resume with ``trainer.fit(..., resume_from=path)`` (:class:`bpnn.Trainer` or
    :class:`~bpnn.train.LMTrainer`). ``last_path`` is the file
    written last.

    With ``Trainer.fit(n_restarts=...)`` each run writes its files under its own names
    (``path`` + ``".restart<run>"``, so runs in parallel never share a file); when the
    runs are done the kept run's files take the names in ``path`` and the others are
    deleted, so the checkpoints hold the kept run.
    """

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", save_freq: int = 1):
        from .monitor import Monitor

        self.path = _check_template(os.fspath(path))
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
        try:
            self._pending = self.path.format(epoch=epoch, **logs)
        except KeyError as exc:
            raise ValueError(f"path: {self.path!r} names the field {{{exc.args[0]}}}, which this run does not "
                             f"log; fields: epoch, {', '.join(sorted(logs))}") from None

    def on_train_begin(self, logs=None):
        """Create the checkpoints' directory when its name has no template field (so that a
        place that cannot hold them fails now, not after the first epoch), and remove the
        temporary files that killed writes of this callback's files left."""
        pieces = _template_fields(os.path.dirname(self.path))
        if all(field is None for _, field, _, _ in pieces):
            ensure_parent(self.path, "path", directory="".join(literal for literal, *_ in pieces))
        remove_stale_temps(_glob(self.path))

    def flush(self, epoch) -> None:
        """Write the checkpoint chosen in ``on_epoch_end``, now that every callback has
        seen the epoch, so the saved state of the other callbacks includes it."""
        path, self._pending = self._pending, None
        if path is not None:
            ensure_parent(path, "path")  # e.g. a directory named by a template field
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


#: keys the trainers log, besides metric names (and their ``val_``/``test_`` twins)
_LOG_KEYS = ("epoch", "loss", "lr", "penalty", "mu", "gradient", "val_fail", "gamk", "alpha", "beta", "ssX")


def _template_fields(path: str) -> list:
    """``(literal, field, spec, conversion)`` per piece of a ``str.format`` template."""
    import string

    try:
        return list(string.Formatter().parse(path))
    except ValueError as exc:
        raise ValueError(f"path: {path!r} is not a valid file name template ({exc}); write a literal "
                         f"brace as {{{{ or }}}}") from None


def _check_template(path: str) -> str:
    """Check a ModelCheckpoint file name template where it is given: its fields must be
    ``epoch`` or logged keys, each with a format spec that a number takes."""
    from .. import metrics

    known = set(_LOG_KEYS) | set(metrics.registry.names(aliases=True))
    for _, field, spec, conv in _template_fields(path):
        if field is None:
            continue
        base = field[4:] if field.startswith("val_") else field[5:] if field.startswith("test_") else field
        if field == "" or field.isdigit():
            raise ValueError(f"path: {path!r} has a positional field {{{field}}}; name it, e.g. {{epoch:03d}}")
        if base not in known:
            names = ", ".join(sorted(metrics.registry.names()))
            raise ValueError(f"path: {path!r} has the field {{{field}}}, which is not a logged key; valid: "
                             f"epoch, loss, val_loss, lr, and the metrics ({names}) with or without val_")
        try:
            format(0 if field == "epoch" else 0.5, spec)
        except ValueError as exc:
            raise ValueError(f"path: {path!r}: the format {{{field}:{spec}}} does not take "
                             f"{'an integer' if field == 'epoch' else 'a number'} ({exc})") from None
    return path


def _glob(path: str) -> str:
    """``path`` with each template field replaced by ``*`` (its files' pattern)."""
    import glob

    out = []
    for literal, field, _, _ in _template_fields(path):
        out.append(glob.escape(literal))
        if field is not None:
            out.append("*")
    return "".join(out)


def _restart_suffix(run: int) -> str:
    return f".restart{run}"
