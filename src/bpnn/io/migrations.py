"""Format versions of bpnn model files, and the migrations between them.

A model file is read into a *document* (the JSON that describes the model) and its
arrays; while the document's ``format_version`` is older than
:data:`FORMAT_VERSION`, the migration registered for that version rewrites
(document, arrays) into the next version's layout. A new format version therefore
means: bump :data:`FORMAT_VERSION`, register one ``@migration(old)`` function, and
commit a fixture written by the old version (``tests/fixtures/``) so its loading stays
tested.

Versions
--------
0 (bpnn before 0.1; kept as a hand-made fixture): a safetensors file whose metadata held
  ``bpnn_format_version = "0"`` and ``model_config`` (the JSON of
  ``layers.serialize(model)``, the root ``Sequential`` carrying ``input_shape`` and
  ``dtype``); arrays were keyed by bare parameter names (``"0.weight"``); BatchNorm's
  configuration named ε ``epsilon`` (Keras' name); no optimizer state, no generator state.
1 (current): metadata key ``bpnn`` holds the whole JSON document (``"format": "bpnn-model"``, see
  :mod:`bpnn.io.serialization`); arrays are ``"model/<name>"`` and
  ``"optimizer/<transform index>/<key>"`` (as training checkpoints name them); BatchNorm's ε is ``eps`` (PyTorch's name).
"""
from __future__ import annotations

import json
from typing import Callable

#: The version of the model-file format that :func:`bpnn.io.save` writes; older files are migrated on load.
FORMAT_VERSION = 1

#: from-version -> function (document, arrays) -> (document of from-version + 1, arrays)
MIGRATIONS: dict[int, Callable] = {}


def migration(from_version: int):
    """Register the function that lifts a document of ``from_version`` to the next version."""

    def decorate(fn):
        if from_version in MIGRATIONS:
            raise KeyError(f"a migration from format version {from_version} is already registered")
        MIGRATIONS[from_version] = fn
        return fn

    return decorate


def legacy_document(metadata: dict) -> dict | None:
    """The document of a file older than the ``bpnn`` metadata key (version 0), else None."""
    if "bpnn_format_version" not in metadata:
        return None
    raw = metadata["bpnn_format_version"]
    try:
        version = int(raw)
    except ValueError:
        raise ValueError(f"bpnn_format_version is {raw!r}, not an integer") from None
    return {"format_version": version, "legacy_metadata": dict(metadata)}


def _walk_configs(node, visit) -> None:
    """Call ``visit`` on every ``{"class_name": ..., "config": {...}}`` dict in a config tree."""
    if isinstance(node, dict):
        if "class_name" in node and isinstance(node.get("config"), dict):
            visit(node)
        for value in node.values():
            _walk_configs(value, visit)
    elif isinstance(node, list):
        for value in node:
            _walk_configs(value, visit)


_BATCH_NORM_NAMES = {"batch_norm", "batchnorm", "batch_norm1d", "batch_norm2d"}


@migration(0)
def _v0_to_v1(doc: dict, arrays: dict):
    meta = doc["legacy_metadata"]
    if "model_config" not in meta:
        raise ValueError("a format-0 file needs a 'model_config' metadata entry")
    model = json.loads(meta["model_config"])

    def rename_epsilon(node):
        if node["class_name"] in _BATCH_NORM_NAMES and "epsilon" in node["config"]:
            node["config"]["eps"] = node["config"].pop("epsilon")

    _walk_configs(model, rename_epsilon)
    root = model.get("config", {}) if isinstance(model, dict) else {}
    input_shape = root.get("input_shape") if isinstance(root, dict) else None
    dtype = root.get("dtype", "float32") if isinstance(root, dict) else "float32"
    new = {
        "format": "bpnn-model",
        "format_version": 1,
        "bpnn_version": "unknown (format 0)",
        "model": model,
        "built": bool(arrays) or input_shape is not None,
        "input_shape": input_shape,
        "dtype": dtype,
        "rng": None,
        "optimizer": None,
    }
    return new, {f"model/{name}": value for name, value in arrays.items()}
