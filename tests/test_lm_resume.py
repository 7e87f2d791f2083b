"""A Levenberg–Marquardt run resumes exactly from a checkpoint, in a new process, and a
refused checkpoint leaves the LM trainer as it was."""
import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bpnn
from bpnn.train import CheckpointError, LMTrainer

pytest.importorskip("safetensors.numpy")
# a checkpoint's bytes taken apart and written back without its checksums, as for the Trainer
from test_resume_all_or_nothing import _parts, _write  # noqa: E402

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import bpnn
    from bpnn.train import LMTrainer

    def data():
        rng = np.random.default_rng(0)
        X = rng.uniform(-1, 1, (60, 2))
        return X, np.sin(3 * X[:, :1]) * X[:, 1:] + 0.3 * rng.normal(size=(60, 1))

    def run(solver, resume_from, folder, tag):
        X, T = data()
        model = bpnn.Sequential([bpnn.Dense(8), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(2,), seed=1,
                                dtype="float64")
        trainer = LMTrainer(model, solver, epochs=12 if solver == "br" else 40, max_fail=3 if solver == "lm" else None)
        cbs = [] if resume_from else [bpnn.ModelCheckpoint(os.path.join(folder, solver + "-{epoch}.safetensors"))]
        record = trainer.fit(X[:40], T[:40], validation_data=(X[40:], T[40:]), callbacks=cbs,
                             resume_from=resume_from)
        out = record.to_dict()
        del out["time"]
        out["history"], out["history_epoch"] = trainer.history.history, trainer.history.epoch
        out["stopped_reason"] = trainer.history.stopped_reason
        np.savez(os.path.join(folder, tag + ".npz"), **model.state_dict())
        with open(os.path.join(folder, tag + ".json"), "w") as f:
            json.dump(out, f)

    folder, jobs = sys.argv[1], sys.argv[2:]
    for job in jobs:  # "lm" (straight, writing a checkpoint per epoch) or "lm@8" (resumed from epoch 8)
        solver, _, at = job.partition("@")
        path = os.path.join(folder, f"{solver}-{at}.safetensors") if at else None
        run(solver, path, folder, job)
""")


def _run(folder, *jobs):
    script = folder / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(folder), *jobs], check=True, env=env)


def _result(folder, tag):
    return dict(np.load(folder / f"{tag}.npz")), json.loads((folder / f"{tag}.json").read_text())


def test_lm_and_br_resumed_in_a_new_process_equal_the_straight_runs(tmp_path):
    _run(tmp_path, "lm", "br")
    # the rest of each run in a new process: LM from before a validation failure, from
    # one failure into the run (the validation stop fires after the resume), and from
    # the epoch whose validation stop ended the run; BR (γ, α, β resumed) mid-run
    straight_lm = _result(tmp_path, "lm")
    assert straight_lm[1]["stop"] == "Validation stop."
    stop_epoch = len(straight_lm[1]["epoch"]) - 1
    fails = straight_lm[1]["val_fail"]
    assert fails[8] == 1 and fails[3] == 1 and stop_epoch > 8, "the data no longer give the planned run"
    assert straight_lm[1]["best_epoch"] < stop_epoch  # the best-validation weights are put back
    _run(tmp_path, "lm@2", "lm@8", f"lm@{stop_epoch}", "br@5")
    for tag, straight in (("lm@2", straight_lm), ("lm@8", straight_lm), (f"lm@{stop_epoch}", straight_lm),
                          ("br@5", _result(tmp_path, "br"))):
        weights, record = _result(tmp_path, tag)
        assert set(weights) == set(straight[0])
        for k in weights:
            np.testing.assert_array_equal(weights[k], straight[0][k], err_msg=f"{tag}: {k}")
        assert record == straight[1], tag
    br = _result(tmp_path, "br")[1]
    assert len(br["history"]["gamk"]) == 13 and len(set(br["history"]["gamk"][5:])) > 1


# ----------------------------------------------------------------------------- refused
def _data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (60, 2))
    return X, np.sin(3 * X[:, :1]) * X[:, 1:] + 0.3 * rng.normal(size=(60, 1))


def _lm():
    model = bpnn.Sequential([bpnn.Dense(8), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(2,), seed=1,
                            dtype="float64")
    return LMTrainer(model, "lm", epochs=6, max_fail=3)


def _fit(trainer, **kw):
    X, T = _data()
    return trainer.fit(X[:40], T[:40], validation_data=(X[40:], T[40:]), **kw)


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lmck")
    _fit(_lm(), callbacks=[bpnn.ModelCheckpoint(folder / "c-{epoch}.safetensors")])
    return (folder / "c-3.safetensors").read_bytes()




def _state(trainer):
    return {"model": copy.deepcopy(trainer.model.state_dict()), "record": trainer.record.to_dict(),
            "record_obj": trainer.record, "history": trainer.history,
            "history_data": copy.deepcopy((trainer.history.history, trainer.history.epoch)),
            "solver": {k: v for k, v in vars(trainer.solver).items() if k != "_flat"},
            "flat": trainer.solver._flat, "best": trainer.best_weights,
            "model_rng": copy.deepcopy(trainer.model.rng.bit_generator.state)}


def _set_meta(keys, value):
    def corrupt(arrays, meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return corrupt


def _drop_best(arrays, meta):
    del arrays[min(k for k in arrays if k.startswith("best/"))]


def _nan_best(arrays, meta):
    k = min(k for k in arrays if k.startswith("best/"))
    arrays[k] = np.full_like(arrays[k], np.nan)


def _as_gradient_run(arrays, meta):
    meta["optimizer"] = {"step_count": 3, "n_transforms": 0, "state_keys": [], "lr": 0.1}
    del meta["lm"]


CASES = {
    "negative mu": (_set_meta(("lm", "solver", "mu"), -1.0), "mu: got -1.0"),
    "mu a string": (_set_meta(("lm", "solver", "mu"), "os.system"), "mu: got 'os.system'"),
    "val_fail": (_set_meta(("lm", "validation", "val_fail"), -2), "val_fail: got -2"),
    "validation best": (_set_meta(("lm", "validation", "best"), "x"), "best: got 'x'"),
    "short record": (lambda a, m: m["lm"]["record"]["perf"].pop(), "lm.record.perf: expected a list of 4"),
    "record best_epoch": (_set_meta(("lm", "record", "best_epoch"), 99), "best_epoch: got 99"),
    "no lm entry": (lambda a, m: m.pop("lm"), "its 'optimizer' entry is None"),
    "a gradient run's file": (_as_gradient_run, "no Levenberg–Marquardt state"),
    "best weights missing": (_drop_best, "best weights: names"),
    "best weights NaN": (_nan_best, "NaN"),
    "best epoch after the checkpoint": (_set_meta(("best", "epoch"), 7), "best.epoch: got 7"),
    "epoch": (_set_meta(("epoch",), -5), "epoch: got -5"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_refused_lm_checkpoint_leaves_the_trainer_as_it_was(tmp_path, lm_checkpoint, case):
    corrupt, message = CASES[case]
    arrays, meta = _parts(lm_checkpoint)
    corrupt(arrays, meta)
    path = tmp_path / "bad.safetensors"
    _write(path, arrays, meta)
    trainer = _lm()
    _fit(trainer, callbacks=[bpnn.EarlyStopping("val_loss", patience=9)])
    before = _state(trainer)
    with pytest.raises(CheckpointError, match="bad.safetensors") as info:
        _fit(trainer, resume_from=path)
    assert message in str(info.value)
    after = _state(trainer)
    for key in ("record_obj", "history", "flat", "best"):
        assert after.pop(key) is before.pop(key), key
    np.testing.assert_equal(after, before)
    # and the untouched file resumes
    good = tmp_path / "good.safetensors"
    good.write_bytes(lm_checkpoint)
    record = _fit(trainer, resume_from=good)
    assert record.epoch[:4] == [0, 1, 2, 3] and len(record.epoch) == 7


def test_a_gradient_trainer_refuses_an_lm_checkpoint(tmp_path, lm_checkpoint):
    path = tmp_path / "lm.safetensors"
    path.write_bytes(lm_checkpoint)
    model = bpnn.Sequential([bpnn.Dense(8), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(2,), seed=1, dtype="float64")
    trainer = bpnn.Trainer(model, loss="mse", optimizer=bpnn.optim.SGD(lr=0.1))
    X, T = _data()
    with pytest.raises(CheckpointError, match="Levenberg–Marquardt run"):
        trainer.fit(X, T, epochs=5, resume_from=path, verbose=False)


def test_resuming_past_the_last_epoch_stops_with_the_checkpoints_best_weights(tmp_path, lm_checkpoint):
    path = tmp_path / "c.safetensors"
    path.write_bytes(lm_checkpoint)
    arrays, _ = _parts(lm_checkpoint)
    trainer = _lm()
    trainer.epochs = 2  # the checkpoint is of epoch 3
    record = _fit(trainer, resume_from=path)
    assert record.stop == "Maximum epoch reached." and record.epoch == [0, 1, 2, 3]
    for k, v in trainer.model.state_dict().items():
        np.testing.assert_array_equal(v, arrays[f"best/{k}"], err_msg=k)  # the validation stop's, put back
