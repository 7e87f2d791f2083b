"""A refused checkpoint leaves the trainer exactly as it was, and every stateful callback
resumes exactly."""
import copy
import json

import numpy as np
import pytest

import bpnn
from bpnn.train import CheckpointError

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def _model(seed=0):
    return bpnn.Sequential([bpnn.Dense(8), bpnn.ReLU(), bpnn.Dropout(0.2), bpnn.BatchNorm(), bpnn.Dense(3)],
                           input_shape=(5,), seed=seed)


def _callbacks():
    return [bpnn.EarlyStopping("val_loss", patience=20, restore_best_weights=True),
            bpnn.ReduceLROnPlateau("val_loss", factor=0.5, patience=0, min_delta=0.5)]


def _trainer(seed=0):
    sched = bpnn.optim.schedules.get({"class_name": "step_lr", "config": {"lr": 0.01, "step_size": 2}})
    return bpnn.Trainer(_model(seed), optimizer=bpnn.optim.Adam(lr=sched))


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    return X, rng.integers(0, 3, 60)


KW = dict(batch_size=10, verbose=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint after 3 epochs of 5 steps each (step_count 15)."""
    X, y = _data()
    path = tmp_path_factory.mktemp("ck") / "c.safetensors"
    _trainer(1).fit(X[:50], y[:50], epochs=3, validation_data=(X[50:], y[50:]),
                    callbacks=_callbacks() + [bpnn.ModelCheckpoint(path)], **KW)
    with open(path, "rb") as f:
        data = f.read()
    return path, data


def _parts(data):
    """The arrays and the JSON document of a checkpoint's bytes."""
    arrays = safetensors_numpy.load(data)
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(json.loads(data[8:8 + header_len])["__metadata__"]["bpnn"])
    return arrays, meta


def _write(path, arrays, meta):
    # Integrity fields, where the format has them, are dropped so that the check under
    # test is the restore's own (a file without them is read as an older one).
    meta = {k: v for k, v in meta.items() if "sha" not in k.lower() and "checksum" not in k.lower()}
    path.write_bytes(safetensors_numpy.save(arrays, metadata={"bpnn": json.dumps(meta)}))


def _state(trainer):
    """Everything a failed resume must leave alone, as plain data."""
    opt = trainer.optimizer
    return {
        "model": trainer.model.state_dict(),
        "optimizer": opt.state_dict(),
        "lr": opt.lr.state_dict() if hasattr(opt.lr, "state_dict") else opt.lr,
        "lr_repr": repr(opt.lr),
        "rng": copy.deepcopy(trainer.rng.bit_generator.state),
        "model_rng": copy.deepcopy(trainer.model.rng.bit_generator.state),
        "history": trainer.history,
        "history_data": copy.deepcopy((trainer.history.history, trainer.history.epoch)),
        "callbacks": trainer.callbacks,
        "callback_states": [cb.get_state() for cb in trainer.callbacks],
        "stop_training": trainer.stop_training,
        "best_weights": trainer.best_weights,
    }


def _assert_same(a, b, where=""):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)) and not isinstance(a, bpnn.History):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, (bpnn.History, bpnn.Callback)):
        assert a is b, where
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def _set(meta, keys, value):
    d = meta
    for k in keys[:-1]:
        d = d[k]
    if value is _DELETE:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


_DELETE = object()


def _meta_case(keys, value):
    def corrupt(arrays, meta):
        _set(meta, keys, value)
    return corrupt


def _array_case(name, fn):
    def corrupt(arrays, meta):
        arrays[name] = fn(arrays[name])
        if arrays[name] is _DELETE:
            del arrays[name]
    return corrupt


def _rename(old, new):
    def corrupt(arrays, meta):
        arrays[new] = arrays.pop(old)
    return corrupt


def _with_nan(a):
    a = a.copy()
    a.flat[0] = np.nan
    return a


def _with_inf(a):
    a = a.copy()
    a.flat[-1] = np.inf
    return a


def _early_stopping_index(meta):
    return [n for n, _ in meta["callbacks"]].index("EarlyStopping")


def _bogus_best(arrays, meta):
    meta["callbacks"][_early_stopping_index(meta)][1]["best"] = "x"


def _plateau_best(arrays, meta):
    i = [n for n, _ in meta["callbacks"]].index("ReduceLROnPlateau")
    meta["callbacks"][i][1]["best"] = {"evil": 1}


def _drop_best_weights(arrays, meta):
    j = _early_stopping_index(meta)
    for k in [k for k in arrays if k.startswith(f"callbacks/{j}/")]:
        del arrays[k]


CASES = {
    "generator state without inc": _meta_case(["generators", 0, "state", "inc"], _DELETE),
    "generator of another kind": _meta_case(["generators", 0, "bit_generator"], "MT19937"),
    "no history": _meta_case(["history"], _DELETE),
    "history a string": _meta_case(["history"], "x"),
    "history lists of strings": _meta_case(["history", "history", "loss"], ["a", "b", "c"]),
    "lr a string": _meta_case(["optimizer", "lr"], "os.system"),
    "lr negative": _meta_case(["optimizer", "lr"], -0.1),
    "bogus EarlyStopping best": _bogus_best,
    "bogus ReduceLROnPlateau best": _plateau_best,
    "EarlyStopping best weights missing": _drop_best_weights,
    "n_transforms -1": _meta_case(["optimizer", "n_transforms"], -1),
    "n_transforms 10**9": _meta_case(["optimizer", "n_transforms"], 10**9),
    "step_count a float": _meta_case(["optimizer", "step_count"], 1.5),
    "optimizer array of transform 99999999": _rename("optimizer/1/exp_avg", "optimizer/99999999/exp_avg"),
    "optimizer array missing": _array_case("optimizer/1/exp_avg", lambda a: _DELETE),
    "stray model array": _rename("optimizer/1/exp_avg", "model/stray"),
    "epoch -5": _meta_case(["epoch"], -5),
    "epoch a string": _meta_case(["epoch"], "3"),
    "schedule state a list": _meta_case(["optimizer", "schedule"], [1, 2]),
    "callbacks not a list": _meta_case(["callbacks"], {"a": 1}),
    "weights int32": _array_case("model/0.weight", lambda a: (a * 100).astype(np.int32)),
    "weights uint8": _array_case("model/0.weight", lambda a: np.abs(a * 100).astype(np.uint8)),
    "weights float16": _array_case("model/0.weight", lambda a: a.astype(np.float16)),
    "weights float64": _array_case("model/0.weight", lambda a: a.astype(np.float64)),
    "weights NaN": _array_case("model/4.weight", _with_nan),
    "weights inf": _array_case("model/0.bias", _with_inf),
    "running mean NaN": _array_case("model/3.running_mean", _with_nan),
    "optimizer state NaN": _array_case("optimizer/1/exp_avg_sq", _with_nan),
    "weights of another shape": _array_case("model/0.weight", lambda a: a[:, :4].copy()),
    "trainer best weights NaN": _array_case("best/0.weight", _with_nan),
    "trainer best weights missing": _array_case("best/0.weight", lambda a: _DELETE),
    "trainer best weights float64": _array_case("best/3.running_var", lambda a: a.astype(np.float64)),
    "trainer best weights of another shape": _array_case("best/4.bias", lambda a: a[:2].copy()),
    "trainer best epoch after the checkpoint": _meta_case(["best", "epoch"], 99),
    "trainer best value a string": _meta_case(["best", "value"], "x"),
    "trainer best arrays without a best entry": _meta_case(["best"], None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_refused_checkpoint_leaves_the_trainer_bit_identical(case, checkpoint, tmp_path):
    path, data = checkpoint
    arrays, meta = _parts(data)
    assert "optimizer/1/exp_avg" in arrays and any(k.startswith("callbacks/") for k in arrays)
    CASES[case](arrays, meta)
    bad = tmp_path / "bad.safetensors"
    _write(bad, arrays, meta)

    X, y = _data()
    trainer = _trainer(2)
    callbacks = _callbacks()
    trainer.fit(X[:30], y[:30], epochs=1, validation_data=(X[50:], y[50:]), callbacks=callbacks, **KW)
    assert trainer.optimizer.step_count == 3
    before = _state(trainer)
    with pytest.raises(CheckpointError, match="bad.safetensors") as info:
        trainer.fit(X[:50], y[:50], epochs=5, validation_data=(X[50:], y[50:]), callbacks=callbacks,
                    resume_from=bad, **KW)
    assert "\n" not in str(info.value)
    _assert_same(before, _state(trainer))
    assert trainer.optimizer.step_count == 3


def test_the_unaltered_checkpoint_is_accepted_by_the_same_harness(checkpoint, tmp_path):
    """The harness above fails only because of the corruption: the file rewritten as is resumes."""
    path, data = checkpoint
    arrays, meta = _parts(data)
    good = tmp_path / "good.safetensors"
    _write(good, arrays, meta)
    X, y = _data()
    trainer = _trainer(2)
    trainer.fit(X[:50], y[:50], epochs=4, validation_data=(X[50:], y[50:]), callbacks=_callbacks(),
                resume_from=good, **KW)
    assert trainer.optimizer.step_count == 20 and trainer.history.epoch == [0, 1, 2, 3]


# --------------------------------------------------------------------------- exact resume
def _straight_and_resumed(tmp_path, make_callbacks, epochs=8, cut=4, seed=0):
    X, y = _data()
    kw = dict(validation_data=(X[50:], y[50:]), **KW)
    straight = _trainer(seed)
    h1 = straight.fit(X[:50], y[:50], epochs=epochs, callbacks=make_callbacks("straight"), **kw)
    path = tmp_path / "c.safetensors"
    first = _trainer(seed)
    first.fit(X[:50], y[:50], epochs=cut, callbacks=make_callbacks("resumed") + [bpnn.ModelCheckpoint(path)], **kw)
    resumed = _trainer(seed)
    h2 = resumed.fit(X[:50], y[:50], epochs=epochs, callbacks=make_callbacks("resumed"), resume_from=path, **kw)
    return straight, h1, resumed, h2


def _assert_models_equal(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def test_early_stopping_with_best_weights_resumes_exactly(tmp_path):
    def make(_):
        # min_delta so that some later epochs do not improve: the best epoch is not the last
        return [bpnn.EarlyStopping("val_loss", patience=50, min_delta=0.02, restore_best_weights=True),
                bpnn.ReduceLROnPlateau("val_loss", factor=0.5, patience=1, min_delta=0.05)]

    straight, h1, resumed, h2 = _straight_and_resumed(tmp_path, make)
    assert h1.history == h2.history
    best = straight.callbacks[0].best_epoch
    assert best is not None and best < 7, "the best epoch should not be the last one"
    assert resumed.callbacks[0].best_epoch == best
    _assert_models_equal(straight, resumed)


def test_csv_logger_with_append_drops_the_rows_after_the_checkpoint(tmp_path):
    X, y = _data()
    kw = dict(validation_data=(X[50:], y[50:]), **KW)
    straight_csv, resumed_csv = tmp_path / "straight.csv", tmp_path / "resumed.csv"
    _trainer().fit(X[:50], y[:50], epochs=6, callbacks=[bpnn.CSVLogger(straight_csv)], **kw)
    path = tmp_path / "c.safetensors"
    # the first run checkpoints epoch 2 but logs up to epoch 4, as a run killed after epoch 4
    # whose last checkpoint is of epoch 2
    _trainer().fit(X[:50], y[:50], epochs=3, callbacks=[bpnn.CSVLogger(resumed_csv, append=True),
                                                       bpnn.ModelCheckpoint(path)], **kw)
    with open(resumed_csv, "a") as f:
        f.write("3,9,9,9,9,9\n4,9,9,9,9,9\n")
    _trainer().fit(X[:50], y[:50], epochs=6, callbacks=[bpnn.CSVLogger(resumed_csv, append=True)],
                   resume_from=path, **kw)
    assert resumed_csv.read_text() == straight_csv.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_run_that_stopped_early_stays_stopped_when_resumed_from_its_last_checkpoint(tmp_path):
    X, y = _data()
    kw = dict(validation_data=(X[50:], y[50:]), **KW)
    path = tmp_path / "c.safetensors"

    def stopper():
        return bpnn.EarlyStopping("val_loss", patience=1, min_delta=10.0, restore_best_weights=True)

    first = _trainer()
    h1 = first.fit(X[:50], y[:50], epochs=20, callbacks=[stopper(), bpnn.ModelCheckpoint(path)], **kw)
    assert h1.epoch == [0, 1] and h1.stopped_reason.startswith("early stopping at epoch 1")
    again = _trainer()
    h2 = again.fit(X[:50], y[:50], epochs=20, callbacks=[stopper()], resume_from=path, **kw)
    assert h2.epoch == [0, 1] and h2.stopped_reason == h1.stopped_reason
    assert again.optimizer.step_count == first.optimizer.step_count
    _assert_models_equal(first, again)


def test_a_non_finite_validation_loss_survives_the_checkpoint(tmp_path):
    X, y = _data()
    Y = np.eye(3, dtype=np.float32)[y]
    Xv = X[50:].copy()
    Xv[0, 0] = 3e38  # an infinite validation loss every epoch

    def trainer():
        return bpnn.Trainer(_model(), loss="mse", optimizer=bpnn.optim.Adam(lr=1e-3))

    kw = dict(validation_data=(Xv, Y[50:]), **KW)
    path = tmp_path / "c.safetensors"
    with np.errstate(all="ignore"), pytest.warns(bpnn.train.NonFiniteValidationWarning):
        h1 = trainer().fit(X[:50], Y[:50], epochs=4, **kw)
        trainer().fit(X[:50], Y[:50], epochs=2, callbacks=[bpnn.ModelCheckpoint(path)], **kw)
        h2 = trainer().fit(X[:50], Y[:50], epochs=4, resume_from=path, **kw)
    assert h1["val_loss"] == [np.inf] * 4
    assert h2.history == h1.history
