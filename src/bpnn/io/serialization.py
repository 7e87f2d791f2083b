"""Model files: ``save(model, path)`` and ``load(path)``, never pickle.

Layout
------
One file, a standard safetensors file (https://huggingface.co/docs/safetensors):

- its **arrays** are every parameter and buffer of the model (BatchNorm running
  statistics included) under ``"model/<name>"`` — names as ``named_parameters`` gives them
  (``"model/0.weight"``, ``"model/1.running_mean"``) — and, when an optimizer is saved,
  its state under ``"optimizer/<transform index>/<key>"`` (``"optimizer/1/exp_avg"``), the
  names training checkpoints (:mod:`bpnn.train.checkpoint`) use;
- its string **metadata** holds one entry, ``"bpnn"``: the JSON document

  .. code-block:: text

      {"format": "bpnn-model", "format_version": 1, "bpnn_version": "0.1.0",
       "model": {"class_name": "sequential", "config": {...}},   # layers.serialize(model)
       "built": true, "input_shape": [64], "dtype": "float32",
       "rng": {...},            # the model's Generator state (dropout, shuffling), or null
       "optimizer": {"class_name": "adam", "config": {...},          # or null
                     "state": {"step_count": 120, "epoch": 3, ...},  # state_dict() less arrays
                     "state_keys": [[], ["exp_avg", "exp_avg_sq"]]}}

  Standard JSON throughout: a non-finite number in the optimizer's state (a fresh plateau
  schedule's best) is the string ``"inf"``, ``"-inf"`` or ``"nan"``, as in checkpoints.

One file keeps architecture and weights together (nothing to lose or mismatch), is
written with one atomic rename, and stays readable by any safetensors tool
(``safetensors.numpy.load_file``). Any file name works; ``.safetensors`` says what it is.

A second metadata entry, ``"bpnn_sha256"``, holds the SHA-256 of the document and of
each array (:mod:`bpnn._tensorfile`); files written before it load unverified.

Safety
------
Loading never unpickles and never imports or evaluates anything named in the file:
the header is parsed as JSON, arrays are raw little-endian buffers of declared dtype and
shape, and layers, initializers and optimizers are looked up in bpnn's own registries
(an unknown name is an error, not an import). Memory stays bounded: the declared
architecture is first built with placeholder arrays that take no memory
(:func:`bpnn.nn.module.build_arrays`) and its names, shapes and dtypes are compared with
the file's header; only then is the model built (no initializer runs) and each array read
into it, verified against its checksum. The model is complete and every array checked
(names, shapes, dtypes, checksums, finiteness) before it is returned, so a bad file raises
:class:`~bpnn.io.errors.InvalidModelFileError` (naming the file, the array and the
problem) and nothing is half-loaded. Old format versions are lifted by
:mod:`bpnn.io.migrations`.
"""
from __future__ import annotations

import contextlib
import json
import os

import numpy as np

from .. import backend
from .._json import json_safe
from .._tensorfile import TensorFile, TensorFileError, encode, strict_json
from ..nn.module import Module, build_arrays, layers
from ..optim.optimizer import Optimizer, optimizers
from .atomic import write_bytes_atomic
from .errors import InvalidModelFileError, ModelFileAccessError, ModelFileError, ModelFileNotFoundError
from .migrations import FORMAT_VERSION, MIGRATIONS, legacy_document

__all__ = ["save", "load", "read_document", "FORMAT_VERSION"]

_META_KEY = "bpnn"
_FORMAT = "bpnn-model"
_MODEL, _OPT = "model/", "optimizer/"


# =========================================================================== save
def save(model, path, optimizer=None) -> str:
    """Write ``model`` (architecture, hyperparameters, parameters, buffers, generator
    state) and optionally ``optimizer`` (its configuration and state) to ``path``.

    The write is atomic: ``path`` holds either its previous content or the complete new
    file, even if the process dies midway. Returns ``path``.

    Parameters
    ----------
    model : a :class:`bpnn.nn.Module` of registered layers (built or not; an unbuilt
        model saves its architecture only).
    path : str or path-like; its directory must exist.
    optimizer : a :class:`bpnn.optim.Optimizer` attached to ``model`` (or never attached),
        saved so that training resumes exactly where it stopped; its ``lr`` must be a
        number or a registered schedule (a plain callable cannot be written as JSON).
    """
    from .. import __version__

    if not isinstance(model, Module):
        raise ValueError(f"model: got {type(model).__name__}; expected a bpnn Module (e.g. Sequential)")
    doc = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "bpnn_version": __version__,
        "model": _serialize_layer(model),
        "built": bool(model.built),
        "input_shape": list(model.input_shape) if model.built else None,
        "dtype": (model.dtype or backend.default_dtype()).name if model.built else None,
        "rng": _rng_state(model),
        "optimizer": None,
    }
    arrays = {}
    if model.built:
        for name, value in _model_arrays(model).items():
            arrays[_MODEL + name] = _host(value)
    if optimizer is not None:
        doc["optimizer"], opt_arrays = _optimizer_entry(optimizer, model)
        arrays.update(opt_arrays)
    try:
        text = json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model: its configuration cannot be written as JSON ({exc})") from None
    write_bytes_atomic(path, encode(arrays, text))
    return os.fspath(path)


def _registered(module) -> bool:
    name = getattr(type(module), "registry_name", None)
    return name in layers and layers.lookup(name) is type(module)


def _serialize_layer(model) -> dict:
    culprit = next((m for m in model.modules() if not _registered(m)), None)
    if culprit is not None:
        raise ValueError(
            f"model: {type(culprit).__name__} is not a registered layer, so it could not be rebuilt "
            f"from the file; register it with @bpnn.nn.layers.register(name)")
    return layers.serialize(model)


def _model_arrays(model) -> dict:
    out = {name: value for name, value, _ in model.named_parameters()}
    out.update(dict(model.named_buffers()))
    return out


def _host(value) -> np.ndarray:
    return np.ascontiguousarray(backend.to_numpy(value))


def _rng_state(model):
    gen = getattr(model, "rng", None)
    if not isinstance(gen, np.random.Generator):
        return None
    return json_safe(gen.bit_generator.state)


def _optimizer_entry(optimizer, model):
    from ..optim.schedules import Schedule

    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"optimizer: got {type(optimizer).__name__}; expected a bpnn.optim.Optimizer")
    if callable(optimizer.lr) and not isinstance(optimizer.lr, Schedule):
        raise ValueError(
            f"optimizer: its lr is a plain callable ({optimizer.lr!r}), which cannot be written as JSON; "
            f"use a bpnn.optim.schedules schedule, or set a numeric lr before saving"
        )
    try:
        entry = optimizers.serialize(optimizer)
    except KeyError:
        raise ValueError(
            f"optimizer: {type(optimizer).__name__} is not a registered optimizer; register it with "
            f"@bpnn.optim.optimizers.register(name)"
        ) from None
    flat = getattr(optimizer, "bound_parameters", None)
    arrays = {}
    if flat is None:  # never attached: configuration only
        entry.update(state=None, state_keys=None)
        return entry, arrays
    if not model.is_packed_as(flat):
        raise ValueError("optimizer: it is attached to a different model (or to another set of "
                         "trainable parameters); pass the optimizer that trains this model")
    state = optimizer.state_dict()
    keys = []
    for i, transform_state in enumerate(state["state"]):
        keys.append(sorted(transform_state))
        for key in sorted(transform_state):
            arrays[f"{_OPT}{i}/{key}"] = np.ascontiguousarray(transform_state[key])
    # step count, epoch, schedule state: plain data beside the arrays
    # (non-finite numbers, such as a fresh plateau schedule's best, as "inf" strings like checkpoints)
    entry.update(state=json_safe({k: v for k, v in state.items() if k != "state"}, nonfinite="string"),
                 state_keys=keys)
    return entry, arrays


# =========================================================================== load
def load(path, *, with_optimizer: bool = False):
    """Read a model written by :func:`save` (any format version this bpnn knows).

    Returns the model — built, weights, buffers and generator state restored, ready for
    ``predict`` or more training — or, with ``with_optimizer=True``, the pair
    ``(model, optimizer)``, the optimizer attached to the model with its state restored
    (None when the file holds no optimizer).

    Raises :class:`~bpnn.io.errors.ModelFileNotFoundError` (a ``FileNotFoundError``) for a
    missing path, :class:`~bpnn.io.errors.ModelFileAccessError` (an ``OSError``) for a
    directory or an unreadable file, and :class:`~bpnn.io.errors.InvalidModelFileError`
    (a ``ValueError``) for anything wrong with the content. Each names the path and the
    problem; nothing is executed and nothing is returned half-loaded.

    Memory: the architecture the file declares is compared with the names, shapes and
    dtypes of the arrays the file holds before any layer is built, and the model is
    then built without running initializers; arrays are read one at a time. Loading
    therefore takes about the model's size plus its largest array, whatever the file
    claims. Each array (and the document) is verified against its SHA-256 checksum.
    """
    path = os.fspath(path)
    with _open(path) as tf:
        doc, specs = _read(path, tf)
        model = _build_model(path, doc, specs, tf)
        if not with_optimizer:
            return model
        return model, _build_optimizer(path, doc, specs, tf, model)


def read_document(path) -> dict:
    """The JSON document of a model file (migrated to the current format), for inspection.
    Reads the file's header only (no array data)."""
    path = os.fspath(path)
    with _open(path) as tf:
        return _read(path, tf)[0]


def _error(path: str, exc: TensorFileError) -> ModelFileError:
    if exc.kind == "missing":
        return ModelFileNotFoundError(path, exc.problem)
    if exc.kind == "access":
        return ModelFileAccessError(path, exc.problem, exc.errno)
    problem = exc.problem
    if problem.startswith("it is a zip archive"):
        problem += " — for torch weights use bpnn.io.from_torch_state_dict"
    return InvalidModelFileError(path, problem)


@contextlib.contextmanager
def _open(path: str):
    """The file as a :class:`~bpnn._tensorfile.TensorFile` (header read and checked); its
    errors become model-file errors naming ``path``."""
    try:
        tf = TensorFile(path, "a bpnn model file")
    except TensorFileError as exc:
        raise _error(path, exc) from None
    try:
        yield tf
    except TensorFileError as exc:
        raise _error(path, exc) from None
    finally:
        tf.close()


def _read(path: str, tf: TensorFile):
    """(document, array specs by name), both migrated to the current format."""
    doc = _document(path, tf)
    doc, specs = _migrate(path, doc, dict(tf.arrays))
    _check_document(path, doc)
    stray = sorted(k for k in specs if not k.startswith((_MODEL, _OPT)))
    if stray:
        raise InvalidModelFileError(path, f"unexpected arrays {stray}; a bpnn model file names its arrays "
                                          f"'model/<parameter>' or 'optimizer/<index>/<key>'")
    return doc, specs


def _document(path: str, tf: TensorFile) -> dict:
    metadata = tf.metadata
    if _META_KEY in metadata:
        text = tf.document()  # verified against its checksum
        try:
            doc = json.loads(text)  # lenient first, to tell checkpoints apart
            if isinstance(doc, dict) and doc.get("format") == _FORMAT:
                doc = strict_json(text)  # no NaN or Infinity in a model file
        except (ValueError, RecursionError) as exc:
            raise InvalidModelFileError(path, f"the '{_META_KEY}' metadata entry is not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise InvalidModelFileError(path, f"the '{_META_KEY}' metadata entry is not a JSON object")
        if doc.get("format") == "bpnn-checkpoint":
            raise InvalidModelFileError(
                path, "it is a training checkpoint, not a model file: resume training from it with "
                      "Trainer.fit(..., resume_from=path), or write the model with bpnn.save(model, path)")
        if doc.get("format") != _FORMAT:
            raise InvalidModelFileError(path, f"its '{_META_KEY}' document has format {doc.get('format')!r}; "
                                              f"a model file says {_FORMAT!r}")
        return doc
    try:
        legacy = legacy_document(metadata)
    except ValueError as exc:
        raise InvalidModelFileError(path, str(exc)) from None
    if legacy is not None:
        return legacy
    raise InvalidModelFileError(
        path, f"it is a safetensors file but not a bpnn model file (its metadata has no '{_META_KEY}' entry; "
              f"keys: {sorted(metadata) or 'none'}); to load plain weights into a model use "
              f"bpnn.io.from_torch_state_dict(model, safetensors.numpy.load_file(path))")


def _migrate(path: str, doc: dict, arrays: dict):
    from .. import __version__

    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise InvalidModelFileError(path, f"format_version is {version!r}; expected a non-negative integer")
    if version > FORMAT_VERSION:
        raise InvalidModelFileError(
            path, f"it was written by a newer bpnn ({doc.get('bpnn_version', 'unknown version')}, format "
                  f"version {version}); this bpnn {__version__} reads format versions up to {FORMAT_VERSION}: "
                  f"upgrade bpnn")
    while version < FORMAT_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise InvalidModelFileError(path, f"format version {version} is no longer readable")
        try:
            doc, arrays = step(doc, arrays)
        except Exception as exc:
            raise InvalidModelFileError(path, f"could not migrate format version {version} to "
                                              f"{version + 1}: {exc}") from None
        if doc.get("format_version") != version + 1:  # pragma: no cover - a broken migration
            raise InvalidModelFileError(path, f"the migration from format version {version} did not "
                                              f"produce version {version + 1}")
        version += 1
    return doc, arrays


def _check_document(path: str, doc: dict) -> None:
    def bad(key, expected):
        raise InvalidModelFileError(path, f"'{key}' is {doc.get(key)!r}; expected {expected}")

    for key in ("model", "built"):
        if key not in doc:
            raise InvalidModelFileError(path, f"the document has no '{key}' entry")
    if not isinstance(doc["built"], bool):
        bad("built", "true or false")
    if doc["built"]:
        shape = doc.get("input_shape")
        if not (isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                                for s in shape)):
            bad("input_shape", "a list of positive integers")
        if doc.get("dtype") not in ("float32", "float64"):
            bad("dtype", "'float32' or 'float64'")
    opt = doc.get("optimizer")
    if opt is not None:
        if not (isinstance(opt, dict) and isinstance(opt.get("class_name"), str)
                and isinstance(opt.get("config", {}), dict)):
            bad("optimizer", "null or {'class_name': ..., 'config': {...}, ...}")
        keys = opt.get("state_keys")
        if keys is not None and not (isinstance(keys, list) and all(
                isinstance(k, list) and all(isinstance(s, str) for s in k) for k in keys)):
            bad("optimizer", "state_keys as lists of names")
        extra = opt.get("state")
        if extra is not None and not isinstance(extra, dict):
            bad("optimizer", "its 'state' as null or a JSON object")
        step = (extra or {}).get("step_count", 0)
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            bad("optimizer", "a non-negative integer step_count")


def _construct(path: str, doc: dict, mode: str) -> Module:
    """The architecture of ``doc``, built when the document says so, its arrays created as
    :func:`bpnn.nn.module.build_arrays` ``mode`` says."""
    with build_arrays(mode):
        try:
            model = layers.get(doc["model"])
        except Exception as exc:  # anything a constructor rejects: the file is at fault
            raise InvalidModelFileError(path, f"the architecture could not be rebuilt: {exc}") from exc
        if not isinstance(model, Module):  # pragma: no cover - the registry holds modules only
            raise InvalidModelFileError(path, "the architecture is not a bpnn module")
        if not doc["built"]:
            if model.built:
                raise InvalidModelFileError(path, "the document says the model is not built, yet its "
                                                  "architecture declares an input shape")
            return model
        shape, dtype = tuple(doc["input_shape"]), np.dtype(doc["dtype"])
        try:
            if not model.built:
                model.build(shape, getattr(model, "rng", None), dtype)
        except Exception as exc:
            raise InvalidModelFileError(path, f"the model could not be built for input shape {shape}: "
                                              f"{exc}") from exc
    if tuple(model.input_shape) != shape or model.dtype != dtype:
        raise InvalidModelFileError(
            path, f"the architecture says input shape {model.input_shape} and dtype {model.dtype}, the "
                  f"document says {shape} and {dtype}")
    return model


def _build_model(path: str, doc: dict, specs: dict, tf: TensorFile) -> Module:
    given = {k[len(_MODEL):]: v for k, v in specs.items() if k.startswith(_MODEL)}
    # first the architecture's shapes only (no memory), checked against the file's arrays
    plan = _construct(path, doc, "shapes")
    if doc["built"]:
        _check_specs(path, "model", _model_arrays(plan), given)
        model = _construct(path, doc, "empty")  # no initializer runs: the file holds every value
        _fill(path, "model", _model_arrays(model), given, tf)
        for m in model.modules():  # weights come from the file: never re-run a data-dependent init
            m.mark_data_initialized()
    elif given:
        raise InvalidModelFileError(path, "the document says the model is not built, yet the file holds weights")
    else:
        model = _construct(path, doc, "init")  # an architecture only: nothing is built
    if doc.get("rng") is not None:
        gen = getattr(model, "rng", None)
        if not isinstance(gen, np.random.Generator):
            gen = model.rng = backend.rng(None)
        try:
            gen.bit_generator.state = doc["rng"]
        except Exception as exc:
            raise InvalidModelFileError(path, f"the generator state is invalid: {exc}") from None
    return model


def _check_specs(path: str, what: str, targets: dict, given: dict) -> None:
    """The file's arrays (``given``: name -> ArraySpec) match ``targets`` (name -> array)
    exactly in names, shapes and dtypes; checked before any array is read."""
    unknown = sorted(set(given) - set(targets))
    missing = sorted(set(targets) - set(given))
    if unknown or missing:
        raise InvalidModelFileError(
            path, f"the {what} arrays do not match the architecture (missing: {missing or 'none'}; "
                  f"unexpected: {unknown or 'none'})")
    for name, target in targets.items():
        spec = given[name]
        if tuple(spec.shape) != tuple(target.shape):
            raise InvalidModelFileError(path, f"{what} array '{name}' has shape {tuple(spec.shape)}; the "
                                              f"architecture needs {tuple(target.shape)}")
        if spec.dtype != target.dtype:
            raise InvalidModelFileError(path, f"{what} array '{name}' has dtype {spec.dtype}; the "
                                              f"model's is {target.dtype}")


def _read_finite(path: str, what: str, name: str, spec, tf: TensorFile, out=None) -> np.ndarray:
    value = tf.read(spec, out)  # verified against its checksum
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise InvalidModelFileError(path, f"{what} array '{name}' contains NaN or infinite values")
    return value


def _fill(path: str, what: str, targets: dict, given: dict, tf: TensorFile) -> None:
    """Read each array into the new model's own (host, contiguous) array, or copy it there."""
    for name, target in targets.items():
        if isinstance(target, np.ndarray) and target.flags.c_contiguous and target.flags.writeable:
            _read_finite(path, what, name, given[name], tf, out=target)
        else:
            target[...] = backend.to_device(_read_finite(path, what, name, given[name], tf))


def _build_optimizer(path: str, doc: dict, specs: dict, tf: TensorFile, model: Module):
    spec = doc.get("optimizer")
    if spec is None:
        return None
    try:
        optimizer = optimizers.get({"class_name": spec["class_name"], "config": spec.get("config", {})})
    except Exception as exc:
        raise InvalidModelFileError(path, f"the optimizer could not be rebuilt: {exc}") from exc
    keys = spec.get("state_keys")
    given = {k: v for k, v in specs.items() if k.startswith(_OPT)}
    if keys is None:
        if given:
            raise InvalidModelFileError(path, "the optimizer has state arrays but no state_keys")
        return optimizer
    if not model.built:
        raise InvalidModelFileError(path, "the file holds optimizer state for a model that is not built")
    try:
        optimizer.attach(model)
    except MemoryError:  # state sized by the architecture (K-FAC's factors grow with fan-in squared)
        raise InvalidModelFileError(path, f"the state of {spec['class_name']} for this architecture does not "
                                          f"fit in memory") from None
    if len(keys) != len(optimizer.state):
        raise InvalidModelFileError(path, f"the optimizer state has {len(keys)} transforms; "
                                          f"{spec['class_name']} has {len(optimizer.state)}")
    targets = {f"{_OPT}{i}/{k}": v for i, s in enumerate(optimizer.state) for k, v in s.items()
               if not k.startswith("_")}
    listed = {f"{_OPT}{i}/{k}" for i, ks in enumerate(keys) for k in ks}
    if listed != set(given):
        raise InvalidModelFileError(path, f"the optimizer's state_keys list {sorted(listed)} but the file holds "
                                          f"{sorted(given)}")
    _check_specs(path, "optimizer", targets, given)
    values = {name: _read_finite(path, "optimizer", name, given[name], tf) for name in targets}
    extra = spec.get("state") or {}
    state = {"step_count": 0, **extra,
             "state": [{k: values[f"{_OPT}{i}/{k}"] for k in ks} for i, ks in enumerate(keys)]}
    try:
        optimizer.load_state_dict(state)
    except Exception as exc:
        raise InvalidModelFileError(path, f"the optimizer state does not fit: {exc}") from exc
    return optimizer
