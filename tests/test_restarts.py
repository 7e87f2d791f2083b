"""Multiple restarts keep the best run by validation and every run's History."""
import numpy as np
import pytest

import bpnn
from bpnn.data import load_digits


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_restarts_keep_the_best_by_validation(n_jobs):
    X, y = load_digits()
    X, y = X[:600], y[:600]
    model = bpnn.Sequential([bpnn.Dense(16), bpnn.Tanh(), bpnn.Dense(10)], seed=5)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=5e-3))
    h = trainer.fit(X, y, epochs=3, batch_size=32, validation_split=0.25, n_restarts=3, n_jobs=n_jobs, verbose=False)
    assert len(trainer.restart_histories) == 3 and len(set(trainer.restart_seeds)) == 3
    assert trainer.best_restart == int(np.argmin(trainer.restart_scores))
    assert h is trainer.restart_histories[trainer.best_restart]
    finals = [rh["val_loss"][-1] for rh in trainer.restart_histories]
    assert len(set(finals)) == 3, "different seeds must give different runs"
    np.testing.assert_allclose(trainer.evaluate(X[450:], y[450:])["loss"], min(trainer.restart_scores), rtol=1e-6)


def test_restarts_are_reproducible_and_parallel_equals_serial():
    X, y = load_digits()
    X, y = X[:300], y[:300]
    scores = []
    for n_jobs in (1, 2):
        model = bpnn.Sequential([bpnn.Dense(8), bpnn.Tanh(), bpnn.Dense(10)], seed=1)
        trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.1))
        trainer.fit(X, y, epochs=2, validation_split=0.2, n_restarts=2, n_jobs=n_jobs, verbose=False)
        scores.append(trainer.restart_scores)
    assert scores[0] == scores[1]


def test_clones_of_a_model_built_with_input_shape_are_seeded():
    from bpnn.train.restarts import _clone_unbuilt

    model = bpnn.Sequential([bpnn.Dense(5), bpnn.Tanh(), bpnn.Dense(2)], input_shape=(3,), seed=0)
    a, b, c = _clone_unbuilt(model, 11), _clone_unbuilt(model, 11), _clone_unbuilt(model, 12)
    for key in a.state_dict():
        np.testing.assert_array_equal(a.state_dict()[key], b.state_dict()[key])
    assert not np.array_equal(a.state_dict()["0.weight"], c.state_dict()["0.weight"])
    assert a.input_shape == (3,)
