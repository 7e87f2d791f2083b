"""Checkpoints resume exactly, and a killed write never leaves a different state."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import bpnn
from bpnn.train import CheckpointError, read_checkpoint

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import bpnn
    from bpnn.data import load_digits

    mode, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    X, y = load_digits()
    model = bpnn.Sequential([bpnn.Dense(32, init="he_normal"), bpnn.ReLU(), bpnn.Dropout(0.1),
                             bpnn.BatchNorm(), bpnn.Dense(10)], seed=3)
    opt = bpnn.optim.Adam(lr=3e-3, amsgrad=True)
    trainer = bpnn.Trainer(model, optimizer=opt)
    stopper = bpnn.EarlyStopping("val_loss", patience=50)
    plateau = bpnn.ReduceLROnPlateau("val_loss", factor=0.5, patience=0, min_delta=0.05, threshold_mode="abs")
    cbs = [stopper, plateau]
    kw = dict(batch_size=50, validation_split=0.2, verbose=False)
    if mode == "straight":
        h = trainer.fit(X, y, epochs=6, callbacks=cbs, **kw)
    elif mode == "first":
        h = trainer.fit(X, y, epochs=3, callbacks=cbs + [bpnn.ModelCheckpoint(path)], **kw)
    else:
        h = trainer.fit(X, y, epochs=6, callbacks=cbs, resume_from=path, **kw)
    np.savez(out, **model.state_dict())
    with open(out + ".json", "w") as f:
        json.dump(h.history, f)
""")


def _run(tmp_path, *args):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    subprocess.run([sys.executable, str(script), *args], check=True, env={**os.environ, "PYTHONHASHSEED": "0"})


def test_three_plus_three_epochs_in_a_new_process_equal_six_straight(tmp_path):
    ckpt = str(tmp_path / "ckpt.safetensors")
    _run(tmp_path, "straight", ckpt, str(tmp_path / "straight.npz"))
    _run(tmp_path, "first", ckpt, str(tmp_path / "first.npz"))
    _run(tmp_path, "resume", ckpt, str(tmp_path / "resumed.npz"))
    straight, resumed = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    assert set(straight.files) == set(resumed.files)
    for k in straight.files:
        np.testing.assert_array_equal(straight[k], resumed[k], err_msg=k)
    h_straight = json.loads((tmp_path / "straight.npz.json").read_text())
    h_resumed = json.loads((tmp_path / "resumed.npz.json").read_text())
    assert h_straight == h_resumed
    assert len(h_straight["loss"]) == 6
    assert len(set(h_straight["lr"])) > 1, "the plateau callback should have changed the lr (its state is resumed)"
    first = np.load(tmp_path / "first.npz")
    assert not all(np.array_equal(first[k], straight[k]) for k in first.files)


def _trainer(seed=0):
    model = bpnn.Sequential([bpnn.Dense(4), bpnn.Tanh(), bpnn.Dense(3)], input_shape=(5,), seed=seed)
    return bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.1, momentum=0.9))


def _xy(rng, n=40):
    return rng.normal(size=(n, 5)), rng.integers(0, 3, n)


def test_checkpoint_contents_and_metadata(tmp_path, rng):
    X, y = _xy(rng)
    trainer = _trainer()
    path = tmp_path / "c.safetensors"
    trainer.fit(X, y, epochs=2, batch_size=8, verbose=False, callbacks=[bpnn.ModelCheckpoint(path)])
    arrays, meta = read_checkpoint(path)
    assert meta["epoch"] == 1 and meta["format"] == "bpnn-checkpoint"
    assert meta["optimizer"]["step_count"] == 10
    np.testing.assert_array_equal(arrays["model/0.weight"], trainer.model[0].params["weight"])
    assert "optimizer/1/momentum_buffer" in arrays
    assert not any(k.startswith("optimizer/") and "/_" in k for k in arrays)


def test_damaged_or_foreign_checkpoints_are_refused_without_touching_the_model(tmp_path, rng):
    X, y = _xy(rng)
    trainer = _trainer()
    path = tmp_path / "c.safetensors"
    trainer.fit(X, y, epochs=1, batch_size=8, verbose=False, callbacks=[bpnn.ModelCheckpoint(path)])
    data = path.read_bytes()
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"\x80\x04\x95" + os.urandom(64))  # starts like a pickle
    for bad in (truncated, garbage, tmp_path / "missing.safetensors"):
        fresh = _trainer(seed=9)
        before = fresh.model.state_dict()
        with pytest.raises(CheckpointError, match=str(bad.name)):
            fresh.fit(X, y, epochs=2, batch_size=8, verbose=False, resume_from=bad)
        for k, v in fresh.model.state_dict().items():
            np.testing.assert_array_equal(v, before[k])
    other = bpnn.Trainer(bpnn.Sequential([bpnn.Dense(6), bpnn.Tanh(), bpnn.Dense(3)], input_shape=(5,), seed=0),
                         optimizer=bpnn.optim.SGD(lr=0.1, momentum=0.9))
    with pytest.raises(CheckpointError, match="does not fit this training run"):
        other.fit(X, y, epochs=2, verbose=False, resume_from=path)


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import bpnn
    from bpnn.train.checkpoint import save_checkpoint
    path = sys.argv[1]
    model = bpnn.Sequential([bpnn.Dense(300), bpnn.Dense(300)], input_shape=(300,), seed=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam())
    trainer.optimizer.attach(model)
    k = 0
    print("ready", flush=True)
    while True:
        for _, p, _ in model.named_parameters():
            p[...] = k
        save_checkpoint(path, trainer, epoch=k)
        k += 1
""")


def test_a_write_killed_at_any_moment_leaves_a_consistent_checkpoint(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(8):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.05, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not path.exists():
            continue
        arrays, meta = read_checkpoint(path)
        k = meta["epoch"]
        for name, value in arrays.items():
            if name.startswith("model/"):
                assert np.all(value == k), f"trial {trial}: {name} does not belong to epoch {k}"
        checked += 1
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
        for p in leftovers:  # a killed write may leave its temporary file, never the target
            p.unlink()
    assert checked >= 6


def test_a_stateful_schedule_resumes_exactly(tmp_path, rng):
    X, y = rng.normal(size=(60, 5)), rng.integers(0, 3, 60)

    def trainer():
        model = bpnn.Sequential([bpnn.Dense(4), bpnn.Tanh(), bpnn.Dense(3)], input_shape=(5,), seed=0)
        sched = bpnn.optim.ReduceOnPlateau(0.1, factor=0.5, patience=0, threshold=0.5)
        return bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=sched, momentum=0.9))

    class Feed(bpnn.Callback):  # the plateau schedule watches the training loss
        def on_epoch_end(self, epoch, logs=None):
            self.trainer.optimizer.lr.step(logs["loss"])

    kw = dict(batch_size=10, verbose=False)
    straight = trainer()
    h1 = straight.fit(X, y, epochs=6, callbacks=[Feed()], **kw)
    path = tmp_path / "c.safetensors"
    trainer().fit(X, y, epochs=3, callbacks=[Feed(), bpnn.ModelCheckpoint(path)], **kw)
    resumed = trainer()
    h2 = resumed.fit(X, y, epochs=6, callbacks=[Feed()], resume_from=path, **kw)
    assert h1.history == h2.history and len(set(h1["lr"])) > 1
    for k, v in straight.model.state_dict().items():
        np.testing.assert_array_equal(v, resumed.model.state_dict()[k])


def test_a_fresh_plateau_schedule_with_infinite_best_is_checkpointed_as_standard_json(tmp_path, rng):
    X, y = rng.normal(size=(30, 5)), rng.integers(0, 3, 30)
    model = bpnn.Sequential([bpnn.Dense(3)], input_shape=(5,), seed=0)
    opt = bpnn.optim.SGD(lr=bpnn.optim.ReduceOnPlateau(0.1))
    path = tmp_path / "c.safetensors"
    bpnn.Trainer(model, optimizer=opt).fit(X, y, epochs=1, verbose=False, callbacks=[bpnn.ModelCheckpoint(path)])
    _, meta = read_checkpoint(path)
    assert meta["optimizer"]["schedule"]["best"] == "inf"
    again = bpnn.Trainer(bpnn.Sequential([bpnn.Dense(3)], input_shape=(5,), seed=0),
                         optimizer=bpnn.optim.SGD(lr=bpnn.optim.ReduceOnPlateau(0.1)))
    again.fit(X, y, epochs=2, verbose=False, resume_from=path)
    assert again.optimizer.lr.best == float("inf")


NONFINITE_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    import bpnn

    mode, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = X @ rng.normal(size=(4, 1)) + 0.1 * rng.normal(size=(80, 1))
    model = bpnn.Sequential([bpnn.Dense(16), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(4,), seed=2)
    # lr 0.05, then 1.5 from epoch 2 (the validation loss rises), then 45 from epoch 4 (it diverges)
    sched = bpnn.optim.schedules.get({"class_name": "multi_step",
                                      "config": {"lr": 0.05, "milestones": [2, 4], "gamma": 30.0}})
    trainer = bpnn.Trainer(model, loss="mse", optimizer=bpnn.optim.SGD(lr=sched), seed=0)
    snapshots = {}

    class Snap(bpnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.update({f"{epoch}/{k}": v.copy() for k, v in model.state_dict().items()})

    kw = dict(batch_size=20, validation_data=(X[60:], y[60:]), verbose=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if mode == "first":
            h = trainer.fit(X[:60], y[:60], epochs=4, callbacks=[Snap(), bpnn.ModelCheckpoint(path)], **kw)
        else:
            h = trainer.fit(X[:60], y[:60], epochs=12, resume_from=path, **kw)
    np.savez(out, **model.state_dict(), **{"snap/" + k: v for k, v in snapshots.items()})
    with open(out + ".json", "w") as f:
        json.dump({"history": h.history, "stopped": h.stopped_reason,
                   "warnings": [str(w.message) for w in caught]}, f)
""")


def test_a_resumed_run_falls_back_to_the_best_epoch_before_the_checkpoint(tmp_path):
    """The trainer's own best-epoch weights (what a non-finite loss restores) are in the
    checkpoint: a run that diverges after a resume in a new process gets back the overall
    best epoch's weights, not the best since the resume."""
    script = tmp_path / "nonfinite.py"
    script.write_text(NONFINITE_SCRIPT)
    ckpt = str(tmp_path / "ckpt.safetensors")
    for mode in ("first", "resume"):
        subprocess.run([sys.executable, str(script), mode, ckpt, str(tmp_path / f"{mode}.npz")], check=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"})
    first, resumed = np.load(tmp_path / "first.npz"), np.load(tmp_path / "resume.npz")
    log = json.loads((tmp_path / "resume.npz.json").read_text())
    val = log["history"]["val_loss"]
    best = int(np.argmin(val))
    assert best < 3 and val[3] > val[best], "the best epoch must come before the checkpoint (of epoch 3)"
    assert len(val) > 4 and min(val[4:]) > val[best], "no epoch after the resume may improve on it"
    assert log["stopped"].startswith("non-finite loss") and f"weights restored from epoch {best}" in log["stopped"]
    names = [k for k in resumed.files if not k.startswith("snap/")]
    assert names
    for k in names:
        np.testing.assert_array_equal(resumed[k], first[f"snap/{best}/{k}"], err_msg=k)
    assert not all(np.array_equal(resumed[k], first[f"snap/3/{k}"]) for k in names)
    meta = read_checkpoint(ckpt)[1]
    assert meta["best"]["epoch"] == best
    assert {k for k in read_checkpoint(ckpt)[0] if k.startswith("best/")} == {f"best/{k}" for k in names}
