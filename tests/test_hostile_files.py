"""A hostile-file battery for model files and training checkpoints.

Fixtures are written by the tests themselves (nothing binary is committed):

- every truncation length of a small model file and of a checkpoint, and 300 random
  byte flips of each: no file loads with changed content, and nothing escapes but the
  library's own errors;
- three files built to exhaust memory (a tiny file declaring a huge architecture, a
  huge array backed by a sparse file, a checkpoint declaring 10**9 optimizer
  transforms), each refused in a subprocess whose address space may grow by at most
  64 MB;
- a pickle, a ``torch.save`` file, a directory, a FIFO and a symbolic-link loop.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bpnn
from bpnn._tensorfile import encode
from bpnn.io import ModelFileError
from bpnn.nn import BatchNorm, Dense, ReLU, Sequential
from bpnn.train import CheckpointError, read_checkpoint

N_FLIPS = 300


def _trained(tmp_path):
    """A small model trained two epochs by Adam, its model file and its checkpoint."""
    model = Sequential([Dense(3), BatchNorm(), ReLU(), Dense(2)], input_shape=(4,), seed=0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 4)).astype(np.float32), np.arange(16) % 2
    ckpt = tmp_path / "ckpt.safetensors"
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=0.01))
    trainer.fit(X, y, epochs=2, batch_size=8, verbose=False, callbacks=[bpnn.ModelCheckpoint(str(ckpt))])
    path = tmp_path / "model.safetensors"
    bpnn.save(model, path, optimizer=trainer.optimizer)
    return path, ckpt


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _trained(tmp_path_factory.mktemp("hostile"))


def _content(path):
    """What a model file says: its JSON document and each array's dtype, shape and bytes
    (the checksum table is derived from these; safetensors orders metadata at random)."""
    from bpnn._tensorfile import TensorFile

    with TensorFile(path) as tf:
        return tf.document(), {name: (spec.dtype, spec.shape, tf.read(spec).tobytes())
                               for name, spec in tf.arrays.items()}


def _model_outcome(path, original, scratch) -> str:
    """"refused" (a ModelFileError naming the path), "same" (loaded, and saving what was
    loaded gives the ``original`` content back) or "changed"; anything else propagates."""
    try:
        model, optimizer = bpnn.load(path, with_optimizer=True)
    except ModelFileError as exc:
        assert str(path) in str(exc), str(exc)
        return "refused"
    bpnn.save(model, scratch, optimizer=optimizer)
    return "same" if _content(scratch) == original else "changed"


def _same_checkpoint(a, b) -> bool:
    (arrays_a, meta_a), (arrays_b, meta_b) = a, b
    return (meta_a == meta_b and arrays_a.keys() == arrays_b.keys()
            and all(arrays_a[k].dtype == arrays_b[k].dtype and arrays_a[k].tobytes() == arrays_b[k].tobytes()
                    for k in arrays_a))


def _checkpoint_outcome(path, original) -> str:
    try:
        content = read_checkpoint(path)
    except CheckpointError as exc:
        assert str(path) in str(exc), str(exc)
        return "refused"
    return "same" if _same_checkpoint(content, original) else "changed"


# --------------------------------------------------------------------------- truncation
def test_every_truncation_of_a_model_file_is_refused(files, tmp_path):
    data, original = files[0].read_bytes(), _content(files[0])
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data)
    outcomes = {"refused": 0, "same": 0, "changed": 0}
    for cut in range(len(data) - 1, -1, -1):  # every length from one byte short to empty
        os.truncate(path, cut)
        outcomes[_model_outcome(path, original, tmp_path / "again.safetensors")] += 1
    assert outcomes == {"refused": len(data), "same": 0, "changed": 0}


def test_every_truncation_of_a_checkpoint_is_refused(files, tmp_path):
    data = files[1].read_bytes()
    original = read_checkpoint(files[1])
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data)
    outcomes = {"refused": 0, "same": 0, "changed": 0}
    for cut in range(len(data) - 1, -1, -1):
        os.truncate(path, cut)
        outcomes[_checkpoint_outcome(path, original)] += 1
    assert outcomes == {"refused": len(data), "same": 0, "changed": 0}


# --------------------------------------------------------------------------- byte flips
def _flips(data: bytes, path, seed: int):
    """Write ``data`` to ``path``, then N_FLIPS times: one byte changed at random (a random
    non-zero XOR), yield its position, and put the byte back."""
    path.write_bytes(data)
    rng = np.random.default_rng(seed)
    with open(path, "r+b", buffering=0) as f:
        for pos, xor in zip(rng.integers(0, len(data), N_FLIPS), rng.integers(1, 256, N_FLIPS)):
            pos = int(pos)
            f.seek(pos)
            f.write(bytes([data[pos] ^ int(xor)]))
            yield pos
            f.seek(pos)
            f.write(data[pos:pos + 1])


def test_random_byte_flips_in_a_model_file_never_load_changed_content(files, tmp_path):
    data, original = files[0].read_bytes(), _content(files[0])
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    path = tmp_path / "flip.safetensors"
    outcomes = {"refused": 0, "same": 0, "changed": 0}
    in_data = 0
    for pos in _flips(data, path, seed=1):
        outcome = _model_outcome(path, original, tmp_path / "again.safetensors")
        outcomes[outcome] += 1
        in_data += pos >= header_end
    assert outcomes["changed"] == 0, outcomes
    assert in_data > 10, "the flips should reach the arrays too"
    # a flip may only pass where it changes nothing that is read (the name of the checksum
    # entry, which makes the file one without checksums, or the padding of the header)
    assert outcomes["same"] <= 5, outcomes


def test_random_byte_flips_in_a_checkpoint_never_load_changed_content(files, tmp_path):
    data = files[1].read_bytes()
    original = read_checkpoint(files[1])
    path = tmp_path / "flip.safetensors"
    outcomes = {"refused": 0, "same": 0, "changed": 0}
    for _ in _flips(data, path, seed=2):
        outcomes[_checkpoint_outcome(path, original)] += 1
    assert outcomes["changed"] == 0, outcomes
    assert outcomes["same"] <= 5, outcomes


def test_a_flipped_bit_names_the_file_and_the_array(files, tmp_path):
    data = bytearray(files[0].read_bytes())
    data[-1] ^= 0x01  # the last byte of the last array's data
    path = tmp_path / "bit.safetensors"
    path.write_bytes(bytes(data))
    with pytest.raises(bpnn.io.InvalidModelFileError, match="does not match its SHA-256 checksum") as info:
        bpnn.load(path, with_optimizer=True)
    assert str(path) in str(info.value) and "'optimizer/" in str(info.value)
    data = bytearray(files[1].read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its SHA-256 checksum") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "'optimizer/" in str(info.value)


def test_a_flip_in_the_json_document_is_caught_by_its_checksum(files, tmp_path):
    data = files[0].read_bytes()
    at = data.index(b'\\"lr\\": 0.01')  # the optimizer's learning rate, inside the escaped document
    changed = data[:at] + b'\\"lr\\": 0.09' + data[at + 12:]
    path = tmp_path / "lr.safetensors"
    path.write_bytes(changed)
    with pytest.raises(bpnn.io.InvalidModelFileError, match="JSON document .* does not match its SHA-256"):
        bpnn.load(path, with_optimizer=True)


# --------------------------------------------------------------------------- memory
MEMORY_PROBE = textwrap.dedent("""
    import json, os, resource, sys
    import numpy as np
    import bpnn
    from bpnn.io import ModelFileError
    from bpnn.train import CheckpointError, read_checkpoint

    kind, path, good_model, good_ckpt = sys.argv[1:5]
    bpnn.load(good_model, with_optimizer=True)  # every lazy import done before measuring
    read_checkpoint(good_ckpt)
    trainer = None
    if kind == "resume":
        trainer = bpnn.Trainer(bpnn.Sequential([bpnn.Dense(3), bpnn.BatchNorm(), bpnn.ReLU(), bpnn.Dense(2)],
                                               input_shape=(4,), seed=0), optimizer=bpnn.optim.Adam(lr=0.01))
        X, y = np.ones((8, 4), np.float32), np.arange(8) % 2
    def status(key):  # bytes, from /proc/self/status
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident size (VmHWM) to the current one
        rss = status("VmRSS")
    except OSError:  # not allowed here: growth of the lifetime peak (RLIMIT_AS still bounds it)
        rss = status("VmHWM")
    limit = status("VmSize") + 64 * 2**20  # the address space may grow by 64 MB at most
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    try:
        if kind == "model":
            bpnn.load(path, with_optimizer=True)
        elif kind == "checkpoint":
            read_checkpoint(path)
        else:
            trainer.fit(X, y, epochs=1, verbose=False, resume_from=path)
        outcome, message = "loaded", ""
    except (ModelFileError, CheckpointError) as exc:
        outcome, message = "refused", str(exc)
    except MemoryError as exc:
        outcome, message = "MemoryError", repr(exc)
    peak = status("VmHWM")
    print(json.dumps({"outcome": outcome, "message": message, "growth": peak - rss}))
""")

needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")


def _probe(tmp_path, files, kind, path):
    script = tmp_path / "probe.py"
    script.write_text(MEMORY_PROBE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), kind, str(path), str(files[0]), str(files[1])],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "refused", result
    assert str(path) in result["message"], result
    assert result["growth"] <= 64 * 2**20, result
    return result


def _document(path) -> dict:
    from bpnn._tensorfile import TensorFile

    with TensorFile(path) as tf:
        return json.loads(tf.document())


def _arrays(path) -> dict:
    from bpnn._tensorfile import TensorFile

    with TensorFile(path) as tf:
        return {name: tf.read(spec) for name, spec in tf.arrays.items()}


@needs_linux
def test_a_tiny_file_declaring_a_huge_architecture_is_refused_before_building(files, tmp_path):
    doc = _document(files[0])
    layers = doc["model"]["config"]["layers"]
    layers[0]["config"]["units"] = 16384
    layers[3]["config"]["init"] = {"class_name": "orthogonal", "config": {}}
    doc["input_shape"] = doc["model"]["config"]["input_shape"] = [16384]
    path = tmp_path / "huge_arch.safetensors"
    path.write_bytes(encode(_arrays(files[0]), json.dumps(doc)))  # valid checksums: a deliberate file
    assert path.stat().st_size < 4096
    result = _probe(tmp_path, files, "model", path)
    assert "has shape (4, 3); the architecture needs (16384, 16384)" in result["message"]


def _sparse_copy(src, dst, name, shape):
    """``src`` with array ``name`` declared as float32 ``shape``: its data a hole in a sparse file."""
    data = src.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__")
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    out, offset, body = {}, 0, []
    for key, entry in entries:
        start, end = entry["data_offsets"]
        size = int(np.prod(shape)) * 4 if key == name else end - start
        out[key] = {**entry, "data_offsets": [offset, offset + size]}
        if key == name:
            out[key].update(shape=list(shape), dtype="F32")
        body.append((offset, b"" if key == name else data[8 + n + start:8 + n + end]))
        offset += size
    out["__metadata__"] = meta
    text = json.dumps(out).encode()
    text += b" " * (-len(text) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for at, chunk in body:
            if chunk:
                f.seek(8 + len(text) + at)
                f.write(chunk)
        f.truncate(8 + len(text) + offset)
    return dst


@needs_linux
@pytest.mark.parametrize("gib", [1, 6])
def test_a_huge_array_in_a_sparse_file_is_refused_before_it_is_read(files, tmp_path, gib):
    shape = (gib * 16384, 16384)
    model = _sparse_copy(files[0], tmp_path / "sparse_model.safetensors", "model/0.weight", shape)
    assert model.stat().st_size > gib * 2**30 and model.stat().st_blocks * 512 < 2**20  # a hole
    result = _probe(tmp_path, files, "model", model)
    assert f"'0.weight' has shape {shape}" in result["message"]
    ckpt = _sparse_copy(files[1], tmp_path / "sparse_ckpt.safetensors", "model/0.weight", shape)
    result = _probe(tmp_path, files, "checkpoint", ckpt)
    assert "array 'model/0.weight' has shape" in result["message"]


def _rewrite_checkpoint(src, dst, change, *, checksums=True):
    arrays, meta = _arrays(src), _document(src)
    change(meta)
    if checksums:
        dst.write_bytes(encode(arrays, json.dumps(meta)))
    else:  # a file as bpnn wrote before checksums and state_keys
        from safetensors.numpy import save_file

        save_file(arrays, dst, metadata={"bpnn": json.dumps(meta)})
    return dst


@needs_linux
def test_a_checkpoint_declaring_a_billion_transforms_is_refused(files, tmp_path):
    def billion(meta):
        meta["optimizer"]["n_transforms"] = 10 ** 9

    path = _rewrite_checkpoint(files[1], tmp_path / "billion.safetensors", billion)
    assert path.stat().st_size < 8192
    result = _probe(tmp_path, files, "resume", path)
    assert "n_transforms is 1000000000" in result["message"]

    def old_billion(meta):
        billion(meta)
        del meta["optimizer"]["state_keys"]

    path = _rewrite_checkpoint(files[1], tmp_path / "old_billion.safetensors", old_billion, checksums=False)
    result = _probe(tmp_path, files, "resume", path)
    assert "n_transforms is 1000000000" in result["message"] and "at most" in result["message"]


# --------------------------------------------------------------------------- checkpoint arrays
@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.float16])
def test_checkpoint_arrays_of_another_dtype_are_refused_by_name(files, tmp_path, dtype):
    arrays, meta = _arrays(files[1]), _document(files[1])
    arrays["model/0.weight"] = arrays["model/0.weight"].astype(dtype)
    path = tmp_path / "dtype.safetensors"
    path.write_bytes(encode(arrays, json.dumps(meta)))
    with pytest.raises(CheckpointError, match=f"'model/0.weight' has dtype {np.dtype(dtype).name}"):
        read_checkpoint(path)


def test_float64_weights_in_a_float32_checkpoint_are_refused(files, tmp_path):
    arrays, meta = _arrays(files[1]), _document(files[1])
    arrays["model/0.weight"] = arrays["model/0.weight"].astype(np.float64)
    path = tmp_path / "f64.safetensors"
    path.write_bytes(encode(arrays, json.dumps(meta)))
    with pytest.raises(CheckpointError, match="float32"):
        read_checkpoint(path)


@pytest.mark.parametrize("name", ["model/0.weight", "optimizer/1/exp_avg_sq"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_checkpoint_arrays_are_refused_by_name(files, tmp_path, name, value):
    arrays, meta = _arrays(files[1]), _document(files[1])
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = value
    path = tmp_path / "nan.safetensors"
    path.write_bytes(encode(arrays, json.dumps(meta)))
    with pytest.raises(CheckpointError, match=f"'{name}' contains NaN or infinite values") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_checkpoint_without_checksums_still_reads(files, tmp_path):
    def strip(meta):
        del meta["optimizer"]["state_keys"]
        del meta["model"]["input_shape"], meta["model"]["dtype"]

    path = _rewrite_checkpoint(files[1], tmp_path / "old.safetensors", strip, checksums=False)
    arrays, meta = read_checkpoint(path)
    original, _ = read_checkpoint(files[1])
    assert arrays.keys() == original.keys() and all(np.array_equal(arrays[k], original[k]) for k in arrays)


# --------------------------------------------------------------------------- not files
class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _both_refuse(path, *fragments):
    """bpnn.load and read_checkpoint each refuse ``path`` with their own error naming it."""
    for read, error in ((lambda p: bpnn.load(p, with_optimizer=True), ModelFileError),
                        (read_checkpoint, CheckpointError)):
        with pytest.raises(error) as info:
            read(path)
        message = str(info.value)
        assert str(path) in message, message
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} not in {message!r}"


def test_pickles_and_torch_save_files_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"state": _Payload(marker)}, protocol=4))
    _both_refuse(path, "pickle", "never unpickles")
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"0.weight": torch.ones(3, 4), "evil": _Payload(marker)}, path)
    _both_refuse(path, "zip archive", "never unpickles")
    assert not marker.exists(), "a pickle payload was executed"


@pytest.fixture
def alarm():
    """Fail instead of hanging if opening something blocks (a FIFO without a writer)."""
    if not hasattr(signal, "SIGALRM"):
        pytest.skip("no SIGALRM on this platform")

    def timeout(*_):
        raise TimeoutError("reading blocked")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_directories_fifos_and_symlink_loops_are_refused(tmp_path, alarm):
    _both_refuse(tmp_path, "is a directory")
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    _both_refuse(fifo, "not a regular file")
    loop_a, loop_b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    _both_refuse(loop_a, "symbolic links form a loop")
    dangling = tmp_path / "gone.safetensors"
    dangling.symlink_to(tmp_path / "nothing")
    _both_refuse(dangling, "no such")


# --------------------------------------------------------------------------- building without weights
def test_build_arrays_shapes_takes_no_memory_and_empty_runs_no_initializer(monkeypatch):
    from bpnn.nn.module import build_arrays

    with build_arrays("shapes"):
        plan = Sequential([Dense(16384, init="orthogonal"), BatchNorm(), Dense(3)], input_shape=(16384,))
    weight = plan[0].params["weight"]
    assert weight.shape == (16384, 16384) and weight.dtype == np.float32 and weight.strides == (0, 0)
    assert plan[1].buffers["running_var"].shape == (16384,) and not weight.flags.writeable
    calls = []
    orthogonal = type(bpnn.init.get("orthogonal"))
    original = orthogonal.__call__

    def counting(self, shape, rng, dtype):
        calls.append(tuple(shape))
        return original(self, shape, rng, dtype)

    monkeypatch.setattr(orthogonal, "__call__", counting)
    with build_arrays("empty"):
        model = Sequential([Dense(4, init="orthogonal"), BatchNorm(), Dense(3)], input_shape=(5,))
    assert calls == [] and model[0].params["weight"].shape == (5, 4) and model[0].params["weight"].flags.writeable
    np.testing.assert_array_equal(model[1].buffers["running_var"], np.ones(4, np.float32))
    Sequential([Dense(4, init="orthogonal")], input_shape=(5,))  # outside the block, initializers run again
    assert calls == [(5, 4)]
    with pytest.raises(ValueError, match="mode: got 'lazy'"):
        with build_arrays("lazy"):
            pass


def test_callback_arrays_are_read_within_the_callback_states_the_file_holds(files, tmp_path):
    arrays, meta = _arrays(files[1]), _document(files[1])
    meta["callbacks"] = [["EarlyStopping", {"arrays": ["best/0.weight"]}]]
    arrays["callbacks/0/best/0.weight"] = arrays["model/0.weight"] * 2
    path = tmp_path / "cb.safetensors"
    path.write_bytes(encode(arrays, json.dumps(meta)))
    read, _ = read_checkpoint(path)
    np.testing.assert_array_equal(read["callbacks/0/best/0.weight"], arrays["model/0.weight"] * 2)
    arrays["callbacks/7/best/0.weight"] = arrays.pop("callbacks/0/best/0.weight")
    path.write_bytes(encode(arrays, json.dumps(meta)))
    with pytest.raises(CheckpointError, match="unexpected array 'callbacks/7/best/0.weight'"):
        read_checkpoint(path)
