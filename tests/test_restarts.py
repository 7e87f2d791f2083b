"""Multiple restarts: one implementation and one rule for the kept run, for Trainer.fit and
both estimator paths; every run's History, score and seed are kept."""
import math

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


# --------------------------------------------------------------------------- one rule, every path
def test_the_winner_rule():
    from bpnn.train.restarts import best_restart

    assert best_restart([2.0, 1.0, 1.0, 3.0]) == 1, "the lowest score; the first of equal ones"
    assert best_restart([math.nan, 3.0, math.inf, 0.5, -math.inf]) == 3, "non-finite scores never win"
    assert best_restart([math.nan, math.inf]) == 0, "nothing finite: the first run"


def _sin_data(n=90):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (n, 2))
    return X, np.sin(2 * X[:, 0]) * X[:, 1] + 0.05 * rng.normal(size=n)


def _fit_path(path, validation, n_restarts=3):
    """Fit with restarts on one of the three paths; return (scores, seeds, best, the
    kept model, the loss of the kept weights computed apart from the restarts code)."""
    from bpnn.sklearn import BPNNRegressor

    X, y = _sin_data()
    if path == "trainer":
        model = bpnn.Sequential([bpnn.Dense(6), bpnn.Tanh(), bpnn.Dense(1)], seed=3, dtype="float64")
        trainer = bpnn.Trainer(model, loss="mse", optimizer=bpnn.optim.Adam(lr=0.02), metrics=[])
        Y = y[:, None]
        trainer.fit(X, Y, epochs=5, batch_size=16, verbose=False, n_restarts=n_restarts,
                    validation_data=(X[:20], Y[:20]) if validation else None)
        expected = trainer.evaluate(*((X[:20], Y[:20]) if validation else (X, Y)))["loss"]
        return trainer.restart_scores, trainer.restart_seeds, trainer.best_restart, model, expected
    solver = "lm" if path == "lm" else "adam"
    est = BPNNRegressor(5, activation="tanh", solver=solver, learning_rate_init=0.02, max_iter=40,
                        early_stopping=validation, n_iter_no_change=4, random_state=0,
                        n_restarts=n_restarts).fit(X, y)
    if path == "lm":
        rec = est.training_record_
        expected = rec.best_vperf if validation else rec.perf[-1]  # MSE of the kept weights
    else:
        expected = est.best_validation_loss_ if validation else float(np.mean((est.predict(X) - y) ** 2))
    return est.restart_scores_, est.restart_seeds_, est.best_restart_, est.model_, expected


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")  # 40 epochs: not converged, on purpose
@pytest.mark.parametrize("validation", [True, False], ids=["validation", "no-validation"])
@pytest.mark.parametrize("path", ["trainer", "gradient", "lm"])
def test_every_path_scores_runs_by_the_loss_of_the_weights_they_keep(path, validation):
    """Trainer.fit, the gradient estimators and the LM/BR estimators: each run's score is
    the loss of its final weights (best validation weights where they are put back) on
    the validation data, else on the training data, and the lowest wins."""
    from bpnn.train.restarts import best_restart

    scores, seeds, best, _, expected = _fit_path(path, validation)
    assert len(scores) == 3 and len(set(seeds)) == 3 and len(set(scores)) == 3
    assert best == best_restart(scores) == int(np.argmin(scores))
    assert scores[best] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("path", ["trainer", "gradient", "lm"])
def test_every_path_keeps_the_run_the_one_rule_picks(path, monkeypatch):
    """The paths share one implementation: scripted scores (run 1 non-finite, run 2 the
    lowest) make each of them keep run 2."""
    from bpnn.train import restarts

    scripted, trained = [1.0, math.nan, 0.5], []

    def score(trainer, X, y, validation_data=None):
        trained.append(trainer.model)
        return scripted[len(trained) - 1]

    monkeypatch.setattr(restarts, "restart_score", score)
    scores, _, best, kept, _ = _fit_path(path, validation=True)
    assert best == 2 and scores[0] == 1.0 and math.isnan(scores[1]) and scores[2] == 0.5
    for name, value in trained[2].state_dict().items():
        np.testing.assert_array_equal(kept.state_dict()[name], value, err_msg=name)
    assert not all(np.array_equal(kept.state_dict()[k], v) for k, v in trained[0].state_dict().items())


def test_gradient_estimators_without_restoring_score_the_final_weights():
    """Early stopping's validation data without a stopping rule (n_iter_no_change=inf):
    the kept weights are the last epoch's, so that is what a run is scored by (not the
    best validation loss it passed through)."""
    from bpnn.sklearn import BPNNRegressor

    X, y = _sin_data()
    est = BPNNRegressor(5, activation="tanh", learning_rate_init=0.05, max_iter=30, early_stopping=True,
                        n_iter_no_change=np.inf, random_state=0, n_restarts=2).fit(X, y)
    assert est.restart_scores_[est.best_restart_] == pytest.approx(est.validation_loss_curve_[-1], rel=1e-12)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_model_checkpoint_in_restarts_holds_the_kept_run(tmp_path, monkeypatch, n_jobs):
    from bpnn.train import read_checkpoint, restarts

    if n_jobs == 1:
        # Keep the first run, so that the last run is the one that wrote its files last.
        scripted = iter([0.5, 1.0, 2.0])
        monkeypatch.setattr(restarts, "restart_score", lambda *args, **kwargs: next(scripted))
    X, y = load_digits()
    X, y = X[:200], y[:200]
    model = bpnn.Sequential([bpnn.Dense(8), bpnn.Tanh(), bpnn.Dense(10)], seed=2)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=5e-3))
    last = bpnn.ModelCheckpoint(tmp_path / "last.safetensors")
    every = bpnn.ModelCheckpoint(str(tmp_path / "e{epoch}.safetensors"), save_freq=2)
    trainer.fit(X, y, epochs=3, validation_split=0.25, n_restarts=3, n_jobs=n_jobs, verbose=False,
                callbacks=[last, every])
    if n_jobs == 1:
        assert trainer.best_restart == 0
    arrays, meta = read_checkpoint(tmp_path / "last.safetensors")
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(arrays[f"model/{name}"], value, err_msg=name)
    assert meta["history"]["history"]["loss"] == trainer.history["loss"], "the kept run's History"
    _, meta1 = read_checkpoint(tmp_path / "e1.safetensors")
    assert meta1["history"]["history"]["loss"] == trainer.history["loss"][:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e1.safetensors", "last.safetensors"], \
        "the other runs' files are gone"
    assert last.last_path == str(tmp_path / "last.safetensors") and every.last_path == str(tmp_path / "e1.safetensors")
