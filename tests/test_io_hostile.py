"""Hostile and broken model files: each gives a clear error naming the file; nothing runs.

Truncated files, wrong array shapes, unknown layers, pickles (plain, inside a zip as
torch.save writes them, and smuggled into a safetensors array), a header pointing at
garbage, missing paths, directories — and a seeded fuzz of single-byte corruptions, none
of which may escape as anything but a :class:`bpnn.io.ModelFileError`.
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import struct

import numpy as np
import pytest
from safetensors.numpy import load_file, save, save_file

import bpnn
from bpnn.io import InvalidModelFileError, ModelFileAccessError, ModelFileError, ModelFileNotFoundError
from bpnn.nn import BatchNorm, Dense, Dropout, ReLU, Sequential


def _model():
    return Sequential([Dense(5), BatchNorm(), ReLU(), Dropout(0.2), Dense(3)], input_shape=(4,), seed=0)


@pytest.fixture
def good(tmp_path):
    model = _model()
    path = tmp_path / "good.safetensors"
    bpnn.save(model, path, optimizer=bpnn.optim.Adam().attach(model))
    return path


def _rewrite(src, dst, *, doc=None, arrays=None):
    """Copy a model file with its JSON document and/or arrays changed (a hand-crafted file)."""
    old_arrays = load_file(src)
    old_doc = bpnn.io.read_document(src)
    new_doc = doc(old_doc) if doc else old_doc
    new_arrays = arrays(old_arrays) if arrays else old_arrays
    save_file(new_arrays, dst, metadata={"bpnn": json.dumps(new_doc)})
    return dst


def _raises(path, *fragments, cls=InvalidModelFileError):
    with pytest.raises(cls) as info:
        bpnn.load(path, with_optimizer=True)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert isinstance(info.value, ModelFileError)
    return message


# --------------------------------------------------------------------------- truncated
def test_truncated_files_are_reported_as_truncated(good, tmp_path):
    data = good.read_bytes()
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    for cut in (0, 3, 8, 8 + 20, header_end - 1, header_end + 5, len(data) - 1):
        path = tmp_path / f"cut_{cut}.safetensors"
        path.write_bytes(data[:cut])
        message = _raises(path)
        assert ("truncated" in message) or (cut == 0 and "empty" in message), message
        assert isinstance(pytest.raises(ValueError, bpnn.load, path).value, InvalidModelFileError)


# --------------------------------------------------------------------------- wrong content
def test_wrong_array_shapes_are_named(good, tmp_path):
    path = _rewrite(good, tmp_path / "shape.safetensors",
                    arrays=lambda a: {**a, "model/0.weight": np.zeros((5, 4), np.float32)})
    _raises(path, "model array '0.weight' has shape (5, 4)", "needs (4, 5)")
    path = _rewrite(good, tmp_path / "opt.safetensors",
                    arrays=lambda a: {**a, "optimizer/1/exp_avg": np.zeros(3, np.float32)})
    _raises(path, "optimizer array 'optimizer/1/exp_avg' has shape (3,)")


def test_missing_extra_and_mistyped_arrays(good, tmp_path):
    path = _rewrite(good, tmp_path / "missing.safetensors",
                    arrays=lambda a: {k: v for k, v in a.items() if k != "model/1.running_var"})
    _raises(path, "missing: ['1.running_var']")
    path = _rewrite(good, tmp_path / "extra.safetensors", arrays=lambda a: {**a, "model/9.weight": np.ones(2)})
    _raises(path, "unexpected: ['9.weight']")
    path = _rewrite(good, tmp_path / "stray.safetensors", arrays=lambda a: {**a, "payload": np.ones(2)})
    _raises(path, "unexpected arrays ['payload']")
    path = _rewrite(good, tmp_path / "dtype.safetensors",
                    arrays=lambda a: {**a, "model/0.bias": a["model/0.bias"].astype(np.float64)})
    _raises(path, "'0.bias' has dtype float64", "model's is float32")
    path = _rewrite(good, tmp_path / "nan.safetensors",
                    arrays=lambda a: {**a, "model/4.weight": np.full_like(a["model/4.weight"], np.nan)})
    _raises(path, "'4.weight' contains NaN")


def test_json_naming_an_unknown_layer(good, tmp_path):
    def rename(doc):
        doc["model"]["config"]["layers"][0]["class_name"] = "dense_xl"
        return doc

    path = _rewrite(good, tmp_path / "unknown.safetensors", doc=rename)
    _raises(path, "architecture could not be rebuilt", "unknown layer 'dense_xl'", "did you mean 'dense'")


@pytest.mark.parametrize("mutate,fragment", [
    (lambda d: d["model"]["config"]["layers"][0]["config"].update(units=-3), "units: got -3"),
    (lambda d: d["model"]["config"]["layers"][0]["config"].update(evil="__import__('os')"), "evil"),
    (lambda d: d["model"].update(class_name="os.system"), "unknown layer 'os.system'"),
    (lambda d: d["model"]["config"]["layers"][0]["config"]["init"].update(class_name="builtins.eval"),
     "unknown initializer 'builtins.eval'"),
    (lambda d: d["optimizer"].update(class_name="subprocess"), "optimizer could not be rebuilt"),
    (lambda d: d.update(format_version=99), "newer bpnn"),
    (lambda d: d.update(format_version="1"), "format_version is '1'"),
    (lambda d: d.update(input_shape=[4, -1]), "input_shape"),
    (lambda d: d.update(input_shape=[7]), "input shape"),
    (lambda d: d.update(dtype="float16"), "dtype"),
    (lambda d: d.update(rng={"bit_generator": "MT19937", "state": 5}), "generator state is invalid"),
    (lambda d: d.pop("model"), "no 'model' entry"),
    (lambda d: d.update(format="bpnn-weights"), "format 'bpnn-weights'"),
], ids=["bad_value", "unknown_argument", "dotted_class", "initializer_eval", "optimizer", "newer_version",
        "string_version", "negative_shape", "shape_mismatch", "dtype", "rng", "no_model", "other_format"])
def test_bad_documents_give_clear_errors(good, tmp_path, mutate, fragment):
    def change(doc):
        mutate(doc)
        return doc

    _raises(_rewrite(good, tmp_path / "bad.safetensors", doc=change), fragment)


def test_a_training_checkpoint_is_told_apart_from_a_model_file(tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    y = np.arange(20) % 3
    ckpt = tmp_path / "ckpt.safetensors"
    bpnn.Trainer(_model()).fit(X, y, epochs=1, verbose=False, callbacks=[bpnn.ModelCheckpoint(str(ckpt))])
    _raises(ckpt, "training checkpoint, not a model file", "resume_from")


def test_metadata_that_is_not_a_bpnn_document(good, tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"0.weight": np.ones((2, 2), np.float32)}, path)
    _raises(path, "not a bpnn model file", "from_torch_state_dict")
    path.write_bytes(save({"w": np.ones(2)}, metadata={"bpnn": "[" * 100_000}))  # recursion bomb
    _raises(path, "not valid JSON")
    path.write_bytes(save({"w": np.ones(2)}, metadata={"bpnn": '{"format": "bpnn-model", "format_version": NaN}'}))
    _raises(path, "NaN is not allowed")
    path.write_bytes(save({"w": np.ones(2)}, metadata={"bpnn": "[1, 2]"}))
    _raises(path, "not a JSON object")


# --------------------------------------------------------------------------- pickles
class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_renamed_to_a_model_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    for protocol in (2, 4, 5):
        path = tmp_path / f"model_p{protocol}.safetensors"
        path.write_bytes(pickle.dumps({"state": _Payload(marker)}, protocol=protocol))
        _raises(path, "pickle", "never unpickles")
    path = tmp_path / "model_p0.safetensors"  # protocol 0 has no magic number; still refused
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=0))
    _raises(path, "not a bpnn model file")
    assert not marker.exists(), "a pickle payload was executed"


def test_a_torch_save_file_is_refused_without_unpickling(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"0.weight": torch.ones(3, 4), "evil": _Payload(marker)}, path)
    _raises(path, "zip archive", "never unpickles", "from_torch_state_dict")
    assert not marker.exists()


def test_a_pickle_smuggled_into_a_safetensors_array_is_never_unpickled(good, tmp_path):
    marker = tmp_path / "pwned"
    blob = np.frombuffer(pickle.dumps(_Payload(marker)), dtype=np.uint8).copy()
    path = _rewrite(good, tmp_path / "smuggled.safetensors", arrays=lambda a: {**a, "model/0.bias": blob})
    _raises(path, "'0.bias' has shape")
    assert not marker.exists()


def test_a_header_pointing_at_garbage(good, tmp_path):
    data = good.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    name = "model/0.weight"

    def write(h, body=data[8 + n:]):
        text = json.dumps(h).encode()
        path = tmp_path / "garbage.safetensors"
        path.write_bytes(struct.pack("<Q", len(text)) + text + body)
        return path

    beyond = json.loads(json.dumps(header))
    beyond[name]["data_offsets"] = [0, 10 ** 9]
    _raises(write(beyond), f"array '{name}' needs 1000000000 bytes", "truncated")
    overlap = json.loads(json.dumps(header))
    overlap[name]["data_offsets"] = [0, 4]  # 4 bytes cannot hold a (4, 5) float32 array
    _raises(write(overlap), f"array '{name}' declares 4 bytes for shape (4, 5) of F32, which take 80")
    odd = json.loads(json.dumps(header))
    odd[name]["dtype"] = "PICKLE"
    _raises(write(odd), f"array '{name}' has dtype 'PICKLE'", "header is corrupt")
    gap = json.loads(json.dumps(header))
    gap[name]["data_offsets"] = [o + 4 for o in gap[name]["data_offsets"]]  # overlaps the next array
    _raises(write(gap), "header is corrupt")
    _raises(write(header, data[8 + n:] + b"\0" * 8), "bytes appended")
    malformed = json.loads(json.dumps(header))
    malformed[name] = "not an entry"
    _raises(write(malformed), "malformed")
    # a valid length followed by bytes that are not JSON
    path = tmp_path / "noise.safetensors"
    path.write_bytes(struct.pack("<Q", 16) + b"{" + os.urandom(15) + b"\0" * 32)
    _raises(path, "not valid JSON")


# --------------------------------------------------------------------------- paths
def test_a_missing_path_and_a_directory(tmp_path):
    missing = tmp_path / "nothing_here.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        bpnn.load(missing)
    assert isinstance(info.value, ModelFileNotFoundError) and isinstance(info.value, ModelFileError)
    assert str(missing) in str(info.value) and "no such file" in str(info.value)
    with pytest.raises(OSError) as info:
        bpnn.load(tmp_path)
    assert isinstance(info.value, ModelFileAccessError) and info.value.errno == errno.EISDIR
    assert str(tmp_path) in str(info.value) and "is a directory" in str(info.value)
    link = tmp_path / "dangling.safetensors"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(ModelFileError, match="not a regular file|no such file"):
        bpnn.load(link)


# --------------------------------------------------------------------------- fuzz
def test_random_corruptions_of_a_file_without_checksums_only_ever_raise_model_file_errors(good, tmp_path):
    """A file written before checksums (no 'bpnn_sha256' entry) still loads; flip one byte
    anywhere 300 times: each load succeeds or raises a ModelFileError — never another
    exception, and never a half-built model. (Files with checksums: test_hostile_files.)"""
    old = _rewrite(good, tmp_path / "old.safetensors")  # the same content, no checksum table
    data = bytearray(old.read_bytes())
    assert b"bpnn_sha256" not in data
    n = 8 + struct.unpack("<Q", data[:8])[0]
    rng = np.random.default_rng(0)
    path = tmp_path / "fuzz.safetensors"
    outcomes = {"loaded": 0, "refused": 0}
    positions = np.concatenate([rng.integers(0, n, 200), rng.integers(n, len(data), 100)])
    for pos in positions:
        corrupt = bytearray(data)
        corrupt[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(corrupt))
        try:
            model, _ = bpnn.load(path, with_optimizer=True)
        except ModelFileError as exc:
            assert str(path) in str(exc)
            outcomes["refused"] += 1
        else:
            assert model.built and np.isfinite(model.predict(np.ones((2, 4)))).all()
            outcomes["loaded"] += 1
    assert outcomes["refused"] > 100, outcomes  # most header corruptions are caught
    assert outcomes["loaded"] > 0, outcomes  # without checksums, flips inside weights go unseen


# --------------------------------------------------------------------------- atomic save
def test_a_failed_save_leaves_the_previous_file_intact(good, tmp_path, monkeypatch):
    before = good.read_bytes()

    def crash(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="No space"):
        bpnn.save(Sequential([Dense(2)], input_shape=(3,)), good)
    monkeypatch.undo()
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.safetensors"], "a temporary file was left"
    assert bpnn.load(good).predict(np.ones((1, 4))).shape == (1, 3)
