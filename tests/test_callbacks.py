"""EarlyStopping, ReduceLROnPlateau, LearningRateScheduler, CSVLogger, ModelCheckpoint."""
import csv

import numpy as np
import pytest

import bpnn
from bpnn.train import read_checkpoint


class Scripted(bpnn.Callback):
    """Replaces the logged value of ``key`` by a scripted sequence (runs before the others)."""

    def __init__(self, key, values):
        self.key, self.values = key, list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


def _setup(rng, seed=0):
    X = rng.normal(size=(60, 4))
    y = rng.integers(0, 3, 60)
    model = bpnn.Sequential([bpnn.Dense(8), bpnn.Tanh(), bpnn.Dense(3)], input_shape=(4,), seed=seed)
    return bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.1)), X, y


def test_early_stopping_stops_after_patience_and_restores_the_best_weights(rng):
    trainer, X, y = _setup(rng)
    seq = [1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6]
    snapshots = []

    class Snap(bpnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(trainer.model.state_dict())

    stopper = bpnn.EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    h = trainer.fit(X, y, epochs=7, verbose=False, validation_split=0.2,
                    callbacks=[Scripted("val_loss", seq), Snap(), stopper])
    assert len(h.epoch) == 4 and stopper.stopped_epoch == 3 and stopper.best_epoch == 1
    assert "early stopping at epoch 3" in h.stopped_reason
    for k, v in trainer.model.state_dict().items():
        np.testing.assert_array_equal(v, snapshots[1][k])


def test_early_stopping_min_delta_and_max_mode(rng):
    trainer, X, y = _setup(rng)
    stopper = bpnn.EarlyStopping("val_accuracy", patience=0, min_delta=0.05)
    h = trainer.fit(X, y, epochs=5, verbose=False, validation_split=0.2,
                    callbacks=[Scripted("val_accuracy", [0.5, 0.6, 0.62, 0.9, 0.95]), stopper])
    assert stopper._monitor.mode == "max"
    assert len(h.epoch) == 3  # 0.62 is not better than 0.6 by more than 0.05


def test_monitoring_a_missing_key_names_the_available_ones(rng):
    trainer, X, y = _setup(rng)
    with pytest.raises(ValueError, match="monitor: 'val_loss' is not in the logs; available keys: .*loss"):
        trainer.fit(X, y, epochs=1, verbose=False, callbacks=[bpnn.EarlyStopping("val_loss")])


def test_reduce_lr_on_plateau_matches_torch(rng):
    torch = pytest.importorskip("torch")
    values = [1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    trainer, X, y = _setup(rng)
    cb = bpnn.ReduceLROnPlateau("val_loss", factor=0.5, patience=1, cooldown=1, min_lr=0.02)
    h = trainer.fit(X, y, epochs=len(values), verbose=False, validation_split=0.2,
                    callbacks=[Scripted("val_loss", values), cb])
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1, min_lr=0.02)
    expected = []
    for v in values:
        expected.append(opt.param_groups[0]["lr"])
        sched.step(v)
    np.testing.assert_allclose(h["lr"], expected, rtol=1e-12)
    assert len(set(expected)) > 2


def test_learning_rate_scheduler_sets_the_lr_each_epoch(rng):
    trainer, X, y = _setup(rng)
    h = trainer.fit(X, y, epochs=4, verbose=False,
                    callbacks=[bpnn.LearningRateScheduler(lambda epoch, lr: 0.1 / (1 + epoch))])
    np.testing.assert_allclose(h["lr"], [0.1, 0.05, 0.1 / 3, 0.025])


def test_csv_logger_writes_one_row_per_epoch_and_appends(tmp_path, rng):
    trainer, X, y = _setup(rng)
    path = tmp_path / "log.csv"
    trainer.fit(X, y, epochs=3, verbose=False, validation_split=0.2, callbacks=[bpnn.CSVLogger(path)])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], trainer.history["loss"])
    trainer.fit(X, y, epochs=1, verbose=False, validation_split=0.2, callbacks=[bpnn.CSVLogger(path, append=True)])
    assert len(list(csv.reader(path.open()))) == 5


def test_a_trainer_after_a_csv_logger_still_pickles(tmp_path, rng):
    """Parallel restarts (``n_jobs`` > 1) send the trainer, with the callbacks of its last
    fit, to joblib's workers (pickled with cloudpickle): a finished CSVLogger must hold no
    open file or writer."""
    cloudpickle = pytest.importorskip("cloudpickle", reason="joblib's workers receive tasks pickled by cloudpickle")

    trainer, X, y = _setup(rng)
    trainer.fit(X, y, epochs=1, verbose=False, callbacks=[bpnn.CSVLogger(tmp_path / "log.csv")])
    cloudpickle.dumps(trainer)


def test_model_checkpoint_save_best_only_and_epoch_in_the_name(tmp_path, rng):
    trainer, X, y = _setup(rng)
    ckpt = bpnn.ModelCheckpoint(tmp_path / "best.safetensors", save_best_only=True)
    trainer.fit(X, y, epochs=5, verbose=False, validation_split=0.2,
                callbacks=[Scripted("val_loss", [0.5, 0.4, 0.6, 0.3, 0.35]), ckpt])
    _, meta = read_checkpoint(tmp_path / "best.safetensors")
    assert meta["epoch"] == 3
    every = bpnn.ModelCheckpoint(str(tmp_path / "e{epoch:02d}.safetensors"), save_freq=2)
    trainer.fit(X, y, epochs=5, verbose=False, callbacks=[every])
    assert sorted(p.name for p in tmp_path.glob("e*.safetensors")) == ["e01.safetensors", "e03.safetensors"]


def test_a_callback_pickles_without_its_trainer():
    """Callbacks travel to other processes (restarts on joblib's process backend); the
    weak reference to the trainer does not."""
    import pickle

    import bpnn

    cb = bpnn.train.callbacks.History()
    model = bpnn.Sequential([bpnn.nn.Dense(2)], input_shape=(3,), seed=0)
    trainer = bpnn.Trainer(model)
    cb.set_trainer(trainer)
    copy = pickle.loads(pickle.dumps(cb))
    assert copy.trainer is None and cb.trainer is trainer


# --------------------------------------------------------------------------- the protocol
#: Every hook a trainer (or Trainer.fit's restarts, or a checkpoint) calls on a callback.
HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end",
         "flush", "get_state", "set_state", "restart_copy", "on_restarts_end")


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_declared_on_callback_with_a_docstring(hook):
    method = getattr(bpnn.Callback, hook)
    assert callable(method) and method.__doc__ and method.__doc__.strip()
    assert hook in bpnn.Callback.__doc__, "the class docstring lists every hook"


class Recorder(bpnn.Callback):
    """Logs the hooks it hears, tagged with its name."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def on_train_begin(self, logs=None):
        self.log.append((self.name, "train_begin"))

    def on_epoch_begin(self, epoch, logs=None):
        self.log.append((self.name, "epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.log.append((self.name, "epoch_end", epoch))

    def flush(self, epoch):
        self.log.append((self.name, "flush", epoch))

    def on_train_end(self, logs=None):
        self.log.append((self.name, "train_end"))


def _expected_hooks(n_epochs):
    out = [("a", "train_begin"), ("b", "train_begin")]
    for e in range(n_epochs):
        out += [("a", "epoch_begin", e), ("b", "epoch_begin", e), ("a", "epoch_end", e), ("b", "epoch_end", e),
                ("a", "flush", e), ("b", "flush", e)]  # flush after every callback's on_epoch_end
    return out + [("a", "train_end"), ("b", "train_end")]


def test_both_trainers_run_callbacks_the_same_way(rng):
    x = rng.uniform(-1, 1, (30, 1))
    t = np.sin(3 * x)
    runs = {}
    for name in ("Trainer", "LMTrainer"):
        model = bpnn.Sequential([bpnn.Dense(4), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(1,), seed=0,
                                dtype="float64")
        log = []
        a, b = Recorder("a", log), Recorder("b", log)
        if name == "Trainer":
            trainer = bpnn.Trainer(model, loss="mse", optimizer=bpnn.optim.SGD(lr=0.1), metrics=[])
            trainer.fit(x, t, epochs=3, verbose=False, callbacks=[a, b])
        else:
            trainer = bpnn.train.LMTrainer(model, epochs=2)  # epochs 0 (the start), 1, 2
            trainer.fit(x, t, callbacks=[a, b])
        runs[name] = log
        assert trainer.callbacks == (a, b) and a.trainer is trainer
        assert trainer.weight_snapshots is not None and trainer.weight_snapshots.model is model
        with pytest.raises(AttributeError):
            trainer.callbacks = ()
    assert runs["Trainer"] == runs["LMTrainer"] == _expected_hooks(3)


def test_an_exception_skips_on_train_end_in_both_trainers(rng):
    """As before the shared helper: a failing epoch propagates without on_train_end."""
    x = rng.uniform(-1, 1, (30, 1))
    t = np.sin(3 * x)

    class Boom(bpnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("boom")

    for make in (lambda m: bpnn.Trainer(m, loss="mse", metrics=[]), lambda m: bpnn.train.LMTrainer(m, epochs=2)):
        model = bpnn.Sequential([bpnn.Dense(3), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(1,), seed=0,
                                dtype="float64")
        log = []
        with pytest.raises(RuntimeError, match="boom"):
            make(model).fit(x, t, callbacks=[Recorder("a", log), Boom()], verbose=False)
        assert ("a", "train_end") not in log and ("a", "epoch_end", 0) in log


def test_checkpoints_store_the_state_of_callbacks_that_override_get_state(tmp_path, rng):
    from bpnn.train.callbacks import is_stateful

    assert is_stateful(bpnn.EarlyStopping()) and is_stateful(bpnn.ModelCheckpoint(tmp_path / "c"))
    assert not is_stateful(bpnn.CSVLogger(tmp_path / "log.csv")) and not is_stateful(bpnn.Callback())

    class HalfDone(bpnn.Callback):
        def get_state(self):
            return {"n": 1}

    with pytest.raises(NotImplementedError, match="HalfDone stores state .* does not define set_state"):
        HalfDone().set_state({"n": 1})


def test_history_names_a_missing_key_and_a_run_that_completed_no_epoch():
    import warnings
    X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = np.zeros(64, dtype=int)
    model = bpnn.Sequential([bpnn.Dense(8), bpnn.ReLU(), bpnn.Dense(2)], input_shape=(4,), seed=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=1e30))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the non-finite loss's warning and NumPy's overflow
        history = trainer.fit(X, y, epochs=3, batch_size=8, verbose=False)
    with pytest.raises(KeyError, match=r"History\['loss'\]: no epoch was completed \(training stopped: .*non-finite"):
        history["loss"]
    good = bpnn.Trainer(bpnn.Sequential([bpnn.Dense(2)], input_shape=(4,), seed=0)).fit(X, y, epochs=1, verbose=False)
    assert len(good["loss"]) == 1
    with pytest.raises(KeyError, match=r"History\['val_loss'\]: not recorded; the recorded keys are \['accuracy', 'loss'"):
        good["val_loss"]


def test_csv_logger_and_checkpoints_create_their_directory_or_fail_before_training(tmp_path):
    """A missing directory is made (as Keras' ModelCheckpoint does), also one named by a
    template field; a place that cannot hold it fails when training begins, naming it."""
    import bpnn

    rng = np.random.default_rng(0)
    X, y = rng.random((20, 3)), rng.integers(0, 2, 20)
    trainer = bpnn.Trainer(bpnn.Sequential([bpnn.Dense(2)], input_shape=(3,), seed=0))
    trainer.fit(X, y, epochs=2, verbose=False,
                callbacks=[bpnn.train.CSVLogger(tmp_path / "logs" / "run" / "log.csv"),
                           bpnn.train.ModelCheckpoint(str(tmp_path / "ckpt" / "e{epoch}" / "m.bpnn"))])
    assert (tmp_path / "logs" / "run" / "log.csv").read_text().count("\n") == 3
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["e0", "e1"]
    (tmp_path / "a_file").write_text("")
    for cb in (bpnn.train.CSVLogger(tmp_path / "a_file" / "log.csv"),
               bpnn.train.ModelCheckpoint(str(tmp_path / "a_file" / "x" / "m{epoch}.bpnn"))):
        epochs = []

        class Counter(bpnn.train.Callback):
            def on_epoch_end(self, epoch, logs=None):
                epochs.append(epoch)

        counter = Counter()
        with pytest.raises(ValueError, match=r"path: cannot create the directory .*a_file"):
            trainer.fit(X, y, epochs=1, verbose=False, callbacks=[counter, cb])
        assert epochs == []  # refused before the first epoch
