"""One home for "keep the best epoch's weights": one copy per improving epoch, shared by
the trainer, EarlyStopping, the scikit-learn stopping rule and the LM validation stop."""
from __future__ import annotations

import math

import numpy as np
import pytest

import bpnn
from bpnn.nn.module import Module
from bpnn.train import LMTrainer, best_weights


@pytest.fixture
def copies(monkeypatch):
    """Counts the model copies made during a test: every Snapshot, and every state_dict
    (the way EarlyStopping copied the weights before)."""
    count = {"snapshots": 0, "state_dicts": 0}
    snapshot_init, state_dict = best_weights.Snapshot.__init__, Module.state_dict

    def counting_snapshot(self, model, epoch):
        count["snapshots"] += 1
        snapshot_init(self, model, epoch)

    def counting_state_dict(self):
        count["state_dicts"] += 1
        return state_dict(self)

    monkeypatch.setattr(best_weights.Snapshot, "__init__", counting_snapshot)
    monkeypatch.setattr(Module, "state_dict", counting_state_dict)
    return count


def _improvements(values) -> int:
    """How many values beat every earlier one (strictly, finite)."""
    best, n = math.inf, 0
    for v in values:
        if math.isfinite(v) and v < best:
            best, n = v, n + 1
    return n


def test_one_copy_per_improving_epoch_with_early_stopping_restoring(rng, copies):
    X = rng.normal(size=(80, 4))
    y = np.argmax(X[:, :3] + 0.5 * rng.normal(size=(80, 3)), axis=1)
    model = bpnn.Sequential([bpnn.Dense(8), bpnn.Tanh(), bpnn.Dense(3)], input_shape=(4,), seed=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.3, momentum=0.9))
    stopper = bpnn.EarlyStopping("val_loss", patience=3, restore_best_weights=True)
    seen = {}

    class Weights(bpnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = [p.copy() for _, p, _ in self.trainer.model.named_parameters()]

    history = trainer.fit(X, y, epochs=12, verbose=False, validation_split=0.25, callbacks=[Weights(), stopper])
    improving = _improvements(history["val_loss"])
    assert 2 <= improving < len(history.epoch)
    # The trainer keeps the weights before training (what a non-finite first epoch falls
    # back to) and each improving epoch, once: EarlyStopping shares that copy.
    assert copies == {"snapshots": 1 + improving, "state_dicts": 0}
    best = int(np.argmin(history["val_loss"]))
    assert stopper.best_epoch == best
    for (_, p, _), saved in zip(model.named_parameters(), seen[best]):
        np.testing.assert_array_equal(p, saved)


def test_one_copy_per_improving_epoch_in_the_estimators_stopping(copies):
    from bpnn.sklearn import BPNNRegressor

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (120, 2))
    y = np.sin(2 * X[:, 0]) + X[:, 1] + 0.2 * rng.normal(size=120)
    est = BPNNRegressor(6, solver="sgd", learning_rate_init=0.2, early_stopping=True, n_iter_no_change=4,
                        max_iter=200, random_state=0).fit(X, y)
    improving = _improvements(est.validation_loss_curve_)
    assert 2 <= improving < len(est.validation_loss_curve_)
    assert copies == {"snapshots": 1 + improving, "state_dicts": 0}
    assert est.restart_scores_[0] == pytest.approx(est.best_validation_loss_, rel=1e-12), \
        "the best validation weights were put back"


def test_one_copy_per_improving_epoch_in_the_lm_validation_stop(rng, copies):
    xtr = rng.uniform(-1, 1, (20, 1))
    ttr = np.sin(3 * xtr) + 0.3 * rng.standard_normal(xtr.shape)
    xva = np.linspace(-1, 1, 100).reshape(-1, 1)
    model = bpnn.Sequential([bpnn.Dense(15), bpnn.Tanh(), bpnn.Dense(1)], input_shape=(1,), seed=0,
                            dtype="float64")
    stopper = bpnn.EarlyStopping("val_loss", patience=100, restore_best_weights=True)
    record = LMTrainer(model, max_fail=4).fit(xtr, ttr, validation_data=(xva, np.sin(3 * xva)),
                                              callbacks=[stopper])
    assert record.stop == "Validation stop."
    improving = _improvements(record.vperf)
    assert improving >= 2
    assert copies == {"snapshots": improving, "state_dicts": 0}, "LM's validation stop and EarlyStopping share"


def test_best_weights_put_back_every_parameter_and_buffer_in_place(rng):
    model = bpnn.Sequential([bpnn.Dense(4), bpnn.BatchNorm(), bpnn.Dense(2)], input_shape=(3,), seed=0)
    trainer = bpnn.Trainer(model, loss="mse", optimizer=bpnn.optim.SGD(lr=0.1))
    trainer.fit(rng.normal(size=(16, 3)), rng.normal(size=(16, 2)), epochs=1, verbose=False)
    before = model.state_dict()
    flat = model.flat_parameters()
    kept = best_weights.BestWeights()
    assert not kept.saved and kept.restore() is False
    kept.save(trainer, 0, 1.5)
    trainer.fit(rng.normal(size=(16, 3)), rng.normal(size=(16, 2)), epochs=2, verbose=False)
    assert kept.restore() and (kept.epoch, kept.value) == (0, 1.5)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert model.flat_parameters() is flat, "written in place: the flat vector's views stay valid"


def test_a_trainer_without_shared_snapshots_still_gets_a_copy():
    class Bare:  # a trainer from elsewhere: a model, no weight_snapshots
        model = bpnn.Sequential([bpnn.Dense(2)], input_shape=(3,), seed=0)

    before = Bare.model.state_dict()
    kept = best_weights.BestWeights()
    kept.save(Bare, 4)
    for _, p, _ in Bare.model.named_parameters():
        p[...] = 0.0
    assert kept.restore()
    for name, value in Bare.model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
