"""Edges of training: the last batch, file name templates, unwritable paths, temporary
files of killed writes and non-finite validation losses; each with its one-line error."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import bpnn
from bpnn import _atomic


class _Sizes(bpnn.Callback):
    def __init__(self):
        self.sizes = []

    def on_batch_begin(self, batch, logs=None):
        self.sizes.append(logs["size"])


def _bn_model():
    return bpnn.Sequential([bpnn.Dense(8), bpnn.BatchNorm(), bpnn.ReLU(), bpnn.Dense(3)], seed=0)


def _xy(n):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n)


def test_a_one_sample_last_batch_joins_the_batch_before_with_batchnorm():
    X, y = _xy(257)
    sizes = _Sizes()
    h = bpnn.Trainer(_bn_model()).fit(X, y, epochs=2, batch_size=32, verbose=False, callbacks=[sizes])
    assert sizes.sizes == 2 * ([32] * 7 + [33])
    assert len(h.epoch) == 2 and np.isfinite(h["loss"]).all()


def test_without_batchnorm_the_last_batch_keeps_its_one_sample():
    X, y = _xy(257)
    sizes = _Sizes()
    model = bpnn.Sequential([bpnn.Dense(8), bpnn.ReLU(), bpnn.Dense(3)], seed=0)
    bpnn.Trainer(model).fit(X, y, epochs=1, batch_size=32, verbose=False, callbacks=[sizes])
    assert sizes.sizes == [32] * 8 + [1]


class _BatchLosses(bpnn.Callback):
    def __init__(self):
        self.rows = []

    def on_batch_end(self, batch, logs=None):
        self.rows.append((logs["loss"], logs["size"]))


def test_drop_last_leaves_the_remainder_out_and_averages_over_the_samples_seen():
    X, y = _xy(70)
    sizes, losses = _Sizes(), _BatchLosses()
    trainer = bpnn.Trainer(_bn_model())
    h = trainer.fit(X, y, epochs=2, batch_size=32, verbose=False, callbacks=[sizes, losses], drop_last=True)
    assert sizes.sizes == [32, 32, 32, 32]
    first = losses.rows[:2]
    assert h["loss"][0] == pytest.approx(sum(v * m for v, m in first) / 64, rel=1e-12)
    with pytest.raises(ValueError, match=r"^drop_last: got 'yes'; expected True or False$"):
        trainer.fit(X, y, drop_last="yes", verbose=False)


@pytest.mark.parametrize("template, message", [
    ("ck-{nope}.safetensors", r"has the field \{nope\}, which is not a logged key; valid: epoch, loss"),
    ("ck-{}.safetensors", r"has a positional field \{\}; name it"),
    ("ck-{epoch:q}.safetensors", r"the format \{epoch:q\} does not take an integer"),
    ("ck-{epoch.real}.safetensors", r"has the field \{epoch.real\}, which is not a logged key"),
    ("ck-{epoch.safetensors", r"is not a valid file name template"),
])
def test_model_checkpoint_templates_are_checked_at_construction(template, message):
    with pytest.raises(ValueError, match=r"^path: ") as info:
        bpnn.ModelCheckpoint(template)
    assert "\n" not in str(info.value)
    assert __import__("re").search(message, str(info.value)), str(info.value)


def test_model_checkpoint_templates_with_log_keys_are_accepted(tmp_path):
    X, y = _xy(40)
    cb = bpnn.ModelCheckpoint(str(tmp_path / "ck-{epoch:02d}-{val_loss:.3f}-{val_accuracy:.2f}.safetensors"))
    bpnn.Trainer(_bn_model()).fit(X, y, epochs=2, validation_split=0.25, verbose=False, callbacks=[cb])
    assert sorted(p.name.split("-")[1] for p in tmp_path.iterdir()) == ["00", "01"]


def test_an_unwritable_target_is_named_not_its_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", os.path.join(str(tmp_path), ".tmp-model.safetensors-1-abc"))

    monkeypatch.setattr(_atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as info:
        _atomic.write_bytes_atomic(target, b"x")
    assert str(info.value) == f"[Errno 13] Permission denied: '{target}'"
    monkeypatch.undo()

    def full_disk(src, dst):
        raise OSError(28, "No space left on device", src, dst)

    monkeypatch.setattr(_atomic.os, "replace", full_disk)
    with pytest.raises(OSError) as info:
        _atomic.write_bytes_atomic(target, b"x")
    assert ".tmp-" not in str(info.value) and str(target) in str(info.value)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/sys") or os.access("/sys", os.W_OK) and os.geteuid() != 0,
                    reason="needs a directory this process cannot write")
def test_a_read_only_directory_is_named():
    with pytest.raises(OSError) as info:
        _atomic.write_bytes_atomic("/sys/bpnn-test.bin", b"x")
    assert "/sys/bpnn-test.bin" in str(info.value) and ".tmp-" not in str(info.value)


def test_temporary_files_of_killed_writers_are_removed_at_the_next_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)  # a process that has ended
    stale = [tmp_path / f".tmp-ck-{e}.safetensors-{pid}-abcd_123" for e in (3, 4)]
    live = tmp_path / f".tmp-ck-5.safetensors-{os.getpid()}-abcd_123"  # a writer still running
    other = tmp_path / f".tmp-log.csv-{pid}-abcd_123"
    for p in [*stale, live, other]:
        p.write_bytes(b"partial")
    X, y = _xy(40)
    bpnn.Trainer(_bn_model()).fit(X, y, epochs=1, verbose=False,
                                  callbacks=[bpnn.ModelCheckpoint(str(tmp_path / "ck-{epoch}.safetensors"))])
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists()
    bpnn.Trainer(_bn_model()).fit(X, y, epochs=1, verbose=False, callbacks=[bpnn.CSVLogger(tmp_path / "log.csv")])
    assert not other.exists()


def test_temporary_names_are_unique_and_carry_the_writer(tmp_path):
    with _atomic.atomic_write(tmp_path / "a.bin") as f1, _atomic.atomic_write(tmp_path / "a.bin") as f2:
        names = set(os.listdir(tmp_path))
        f1.write(b"1")
        f2.write(b"2")
    assert (tmp_path / "a.bin").read_bytes() == b"1"  # the last rename wins, whole
    assert len(names) == 2 and all(n.startswith(f".tmp-a.bin-{os.getpid()}-") for n in names)


def test_a_nan_validation_loss_warns_and_early_stopping_says_why():
    X, y = _xy(60)
    Y = np.eye(3, dtype=np.float32)[y]
    Xv = X[:10].copy()
    Xv[0, 0] = 3e38  # outputs near 1e38, whose squares overflow: the validation loss is inf
    model = bpnn.Sequential([bpnn.Dense(8), bpnn.ReLU(), bpnn.Dense(3)], seed=0)
    stopper = bpnn.EarlyStopping("val_loss", patience=2)
    trainer = bpnn.Trainer(model, loss="mse")
    with warnings.catch_warnings(record=True) as record, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        h = trainer.fit(X, Y, epochs=10, validation_data=(Xv, Y[:10]), callbacks=[stopper], verbose=False)
    nan_warnings = [str(w.message) for w in record if issubclass(w.category, bpnn.train.NonFiniteValidationWarning)]
    assert nan_warnings and nan_warnings[0].startswith("validation loss is ")
    assert "at epoch 0" in nan_warnings[0] and "no improvement" in nan_warnings[0]
    assert len(h.epoch) == 2
    assert h.stopped_reason == ("early stopping at epoch 1: val_loss did not improve for 2 epochs (no epoch had a "
                                "finite value); it was NaN or infinite at epoch(s) 0, 1, counted as no improvement")
    assert "inf at epoch None" not in h.stopped_reason
