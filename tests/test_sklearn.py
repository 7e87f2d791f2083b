"""BPNNClassifier and BPNNRegressor: scikit-learn's own estimator checks, Pipeline and
GridSearchCV, the parameters they translate, and digits next to MLPClassifier."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_digits, load_iris, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import bpnn  # noqa: E402
from bpnn.sklearn import EXPECTED_FAILED_CHECKS, BPNNClassifier, BPNNRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _expected_failures(est):
    return EXPECTED_FAILED_CHECKS[type(est).__name__]


@parametrize_with_checks(
    [BPNNClassifier(), BPNNRegressor(),
     BPNNClassifier(10, activation="tanh", solver="lm", max_iter=50),
     BPNNRegressor(10, activation="tanh", solver="br", max_iter=50)],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


def test_pipeline_and_grid_search(iris):
    Xtr, Xte, ytr, yte = iris
    pipe = Pipeline([("scale", StandardScaler()), ("net", BPNNClassifier(max_iter=100, random_state=0))])
    grid = GridSearchCV(pipe, {"net__hidden_layer_sizes": [(4,), (16,)], "net__solver": ["adam", "lm"]}, cv=3)
    grid.fit(Xtr, ytr)
    assert set(grid.cv_results_["param_net__solver"]) == {"adam", "lm"}
    assert grid.best_estimator_.named_steps["net"].n_iter_ >= 1
    assert grid.score(Xte, yte) >= 0.9
    reg = GridSearchCV(Pipeline([("scale", StandardScaler()), ("net", BPNNRegressor(random_state=0))]),
                       {"net__solver": ["lm", "br"], "net__hidden_layer_sizes": [5]}, cv=3)
    X, y = make_regression(120, 4, noise=5.0, random_state=0)
    reg.fit(X, y)
    assert reg.best_score_ > 0.9


def test_digits_close_to_mlpclassifier_on_one_split():
    # The benchmark runs 5 splits; one split here keeps the test fast.
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.25, stratify=y, random_state=0)
    ours = BPNNClassifier(100, random_state=0).fit(Xtr, ytr).score(Xte, yte)
    theirs = MLPClassifier(100, random_state=0).fit(Xtr, ytr).score(Xte, yte)
    assert abs(ours - theirs) <= 0.015, (ours, theirs)


def test_predict_proba_labels_and_fitted_attributes(iris):
    Xtr, Xte, ytr, yte = iris
    labels = np.array(["setosa", "versicolor", "virginica"])
    clf = BPNNClassifier((8, 6), activation=["tansig", "relu"], max_iter=150, random_state=0).fit(Xtr, labels[ytr])
    p = clf.predict_proba(Xte)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert set(clf.predict(Xte)) <= set(labels) and list(clf.classes_) == list(labels)
    np.testing.assert_array_equal(clf.predict(Xte), labels[p.argmax(axis=1)])
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(Xte)), p)
    assert [w.shape for w in clf.coefs_] == [(4, 8), (8, 6), (6, 3)]
    assert [b.shape for b in clf.intercepts_] == [(8,), (6,), (3,)]
    kinds = [type(m).__name__ for m in clf.model_.layers]
    assert kinds == ["Dense", "Tanh", "Dense", "ReLU", "Dense"]
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.validation_loss_curve_ == []
    assert clf.t_ == clf.n_iter_ * len(Xtr) and clf.loss_ == clf.loss_curve_[-1]
    assert clf.out_activation_ == "identity"


def test_early_stopping_keeps_a_validation_curve_and_the_best_weights(iris):
    Xtr, _, ytr, _ = iris
    clf = BPNNClassifier(16, early_stopping=True, validation_fraction=0.2, n_iter_no_change=5, max_iter=300,
                         learning_rate_init=0.05, random_state=1).fit(Xtr, ytr)
    assert len(clf.validation_loss_curve_) == len(clf.loss_curve_) == clf.n_iter_ < 300
    assert clf.best_validation_loss_ == min(clf.validation_loss_curve_)
    # the best validation epoch's weights were restored: the same split scored now gives that loss
    _, Xva, _, yva = train_test_split(clf._x_scaler.transform(Xtr) if clf._x_scaler else Xtr, ytr,
                                      test_size=0.2, stratify=ytr, random_state=1)
    logits = clf.model_.predict(Xva)
    z = logits - logits.max(axis=1, keepdims=True)
    ce = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(yva)), yva]))
    assert ce == pytest.approx(clf.best_validation_loss_, rel=1e-5)


def test_partial_fit_continues_with_the_same_optimizer(iris):
    Xtr, _, ytr, _ = iris
    clf = BPNNClassifier(10, random_state=0, learning_rate_init=0.01)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(Xtr, ytr)
    clf.partial_fit(Xtr[:20], ytr[:20], classes=[0, 1, 2])
    opt = clf._optimizer
    first = opt.step_count
    for _ in range(30):
        clf.partial_fit(Xtr, ytr)
    assert clf._optimizer is opt and opt.step_count == first + 30
    assert clf.n_iter_ == 31 and len(clf.loss_curve_) == 31
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[1]
    with pytest.raises(ValueError, match=r"labels \[7\] were not seen"):
        clf.partial_fit(Xtr[:3], [0, 1, 7])
    assert not hasattr(BPNNClassifier(solver="lm"), "partial_fit")
    assert not hasattr(BPNNRegressor(solver="br"), "partial_fit")


def test_warm_start_continues_from_the_fitted_network(iris):
    Xtr, _, ytr, _ = iris
    clf = BPNNClassifier(10, max_iter=20, warm_start=True, random_state=0, n_iter_no_change=np.inf)
    clf.fit(Xtr, ytr)
    model, end = clf.model_, clf.loss_curve_[-1]
    clf.fit(Xtr, ytr)
    assert clf.model_ is model and clf.n_iter_ == 40 and len(clf.loss_curve_) == 40
    assert clf.loss_curve_[20] < clf.loss_curve_[0] and abs(clf.loss_curve_[20] - end) < 0.1
    cold = BPNNClassifier(10, max_iter=20, random_state=0, n_iter_no_change=np.inf).fit(Xtr, ytr)
    cold.fit(Xtr, ytr)
    assert cold.n_iter_ == 20


def test_solver_names_instances_and_learning_rate_rules(iris):
    Xtr, _, ytr, _ = iris
    sgd = bpnn.optim.SGD(lr=0.05, momentum=0.9)
    clf = BPNNClassifier(8, solver=sgd, max_iter=10, random_state=0).fit(Xtr, ytr)
    assert sgd.step_count == 0 and clf._optimizer.step_count > 0, "the given instance is copied, not trained"
    assert type(BPNNClassifier(8, solver="rmsprop", max_iter=5).fit(Xtr, ytr)._optimizer).__name__ == "RMSprop"
    inv = BPNNClassifier(8, solver="sgd", learning_rate="invscaling", learning_rate_init=0.1, power_t=0.5,
                         max_iter=5, random_state=0, n_iter_no_change=np.inf).fit(Xtr, ytr)
    assert inv._optimizer.lr == pytest.approx(0.1 / (inv.t_ + 1) ** 0.5)
    sched = bpnn.optim.ExponentialDecay(0.05, gamma=0.9)
    ex = BPNNClassifier(8, learning_rate=sched, max_iter=5, random_state=0).fit(Xtr, ytr)
    assert isinstance(ex._optimizer.lr, bpnn.optim.ExponentialDecay)
    adaptive = BPNNRegressor(8, solver="sgd", learning_rate="adaptive", learning_rate_init=0.01, tol=10.0,
                             n_iter_no_change=2, max_iter=50, random_state=0).fit(Xtr, ytr.astype(float))
    assert adaptive._optimizer.lr < 0.01 * 0.2 ** 2, "no epoch improves by tol = 10: lr divided by 5 repeatedly"


def test_penalty_dropout_init_and_restarts(iris):
    Xtr, _, ytr, _ = iris
    clf = BPNNClassifier((6, 5), alpha=0.2, l1_ratio=0.25, dropout=[0.1, 0.0], init="he_normal", batch_size=50,
                         max_iter=3, random_state=0).fit(Xtr, ytr)
    kinds = [type(m).__name__ for m in clf.model_.layers]
    assert kinds == ["Dense", "ReLU", "Dropout", "Dense", "ReLU", "Dense"]
    reg = clf.model_[0].regularizers["weight"]
    assert reg.l2 == pytest.approx(0.2 / 50 * 0.75) and reg.l1 == pytest.approx(0.2 / 50 * 0.25)
    assert type(clf.model_[0].init).__name__ == "HeNormal"
    one = BPNNClassifier(4, max_iter=15, random_state=3, n_iter_no_change=np.inf).fit(Xtr, ytr)
    three = BPNNClassifier(4, max_iter=15, random_state=3, n_restarts=3, n_iter_no_change=np.inf).fit(Xtr, ytr)
    assert three.loss_ <= one.loss_, "the first restart is the single run; the best of three is no worse"
    assert three.restart_scores_[0] == one.restart_scores_[0] and three.restart_seeds_[0] == one.restart_seeds_[0]
    assert three.restart_scores_[three.best_restart_] == min(three.restart_scores_) <= one.restart_scores_[0]


def test_lm_regressor_undoes_target_scaling_and_reports_the_record():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (200, 2))
    y = 1000.0 + 40.0 * np.tanh(X[:, 0]) * X[:, 1]
    est = BPNNRegressor(8, activation="tansig", solver="lm", early_stopping=True, validation_fraction=0.15,
                        n_iter_no_change=6, max_iter=300, random_state=0).fit(X, y)
    assert est.score(X, y) > 0.999
    assert abs(est.predict(X).mean() - 1000.0) < 5.0, "outputs are in the targets' units"
    rec = est.training_record_
    assert rec.stop and est.n_iter_ == rec.num_epochs and est.validation_loss_curve_
    assert est._y_scaler is not None and est._x_scaler is not None, "lm scales inputs and targets (mapminmax)"
    assert type(est.model_[0].init).__name__ == "XavierUniform" and est.mu_ > 0
    br = BPNNRegressor(8, activation="tanh", solver="br", max_iter=100, random_state=0).fit(X, y)
    assert 0 < br.gamma_ < br.model_.num_parameters()
    assert br.score(X, y) > 0.999


def test_lm_classifier_has_a_softmax_output(iris):
    Xtr, Xte, ytr, yte = iris
    clf = BPNNClassifier(5, activation="tanh", solver="lm", max_iter=100, random_state=0).fit(Xtr, ytr)
    assert type(clf.model_.layers[-1]).__name__ == "Softmax" and clf.out_activation_ == "softmax"
    np.testing.assert_allclose(clf.predict_proba(Xte).sum(axis=1), 1.0)
    assert clf.score(Xte, yte) >= 0.9


def test_pickle_round_trip_keeps_predictions_and_training_works_after(iris):
    Xtr, Xte, ytr, _ = iris
    clf = BPNNClassifier(10, max_iter=20, random_state=0, warm_start=True).fit(Xtr, ytr)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(Xte), clf.predict_proba(Xte))
    clone.fit(Xtr, ytr)  # warm start: the rebuilt model's flat buffer must drive its layers
    flat = clone.model_.flat_parameters()
    assert np.shares_memory(flat.params, clone.model_[0].params["weight"])
    assert not np.allclose(clone.predict_proba(Xte), clf.predict_proba(Xte))


def test_invalid_parameters_are_named(iris):
    Xtr, _, ytr, _ = iris
    with pytest.raises(InvalidParameterError, match="'activation' parameter"):
        BPNNClassifier(activation="swish").fit(Xtr, ytr)
    with pytest.raises(InvalidParameterError, match="'solver' parameter"):
        BPNNClassifier(solver="lbfgs").fit(Xtr, ytr)
    with pytest.raises(ValueError, match="activation: got 2 values for 1 hidden layer"):
        BPNNClassifier(5, activation=["tanh", "relu"]).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="activation: got 'swish'"):
        BPNNClassifier((5, 5), activation=["tanh", "swish"]).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="dropout: got 1.5"):
        BPNNClassifier((5,), dropout=[1.5]).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="only one class"):
        BPNNClassifier().fit(Xtr, np.zeros(len(Xtr)))


def test_convergence_warning_when_max_iter_is_reached(iris):
    Xtr, _, ytr, _ = iris
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BPNNClassifier(5, max_iter=2, random_state=0).fit(Xtr, ytr)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
