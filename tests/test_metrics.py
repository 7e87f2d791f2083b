"""Metrics: a registry like every other family (names, configs, classes, instances,
callables), the values they compute, and the names the Trainer reports them under."""
from __future__ import annotations

import numpy as np
import pytest

import bpnn
from bpnn import metrics

PRED = np.array([[2.0, 0.1, 0.3], [0.1, 0.2, 3.0], [1.0, 4.0, 0.0], [0.5, 0.1, 0.2]])
LABELS = np.array([0, 2, 0, 0])          # rows 0, 1 and 3 right: 3/4


@pytest.mark.parametrize("name", metrics.registry.names(aliases=True))
def test_every_registered_name_resolves_and_round_trips_its_config(name):
    metric = metrics.get(name)
    assert isinstance(metric, metrics.Metric)
    assert metric.__name__ == type(metric).registry_name
    config = metrics.serialize(metric)
    assert config == {"class_name": type(metric).registry_name, "config": metric.get_config()}
    again = metrics.get(config)
    assert type(again) is type(metric) and again.get_config() == metric.get_config()


def test_accuracy_from_labels_and_from_one_hot_rows():
    for identifier in ("accuracy", metrics.Accuracy, metrics.Accuracy(), {"class_name": "accuracy"}):
        fn = metrics.get(identifier)
        assert float(fn(PRED, LABELS)) == 0.75
        assert float(fn(PRED, np.eye(3)[LABELS])) == 0.75
    assert metrics.accuracy(PRED, LABELS) == 0.75      # the plain function stays public


def test_binary_accuracy_thresholds_logits_at_zero_and_targets_at_a_half():
    z = np.array([[1.5], [-0.2], [0.3], [-3.0]])
    t = np.array([1.0, 1.0, 0.0, 0.0])               # right: rows 0 and 3
    assert float(metrics.get("binary_accuracy")(z, t)) == 0.5


def test_a_callable_is_returned_as_is():
    def top_error(pred, target):
        return 1 - metrics.accuracy(pred, target)

    assert metrics.get(top_error) is top_error
    assert metrics.get(metrics.accuracy) is metrics.accuracy


def test_an_unknown_name_is_answered_with_the_closest_valid_names():
    with pytest.raises(ValueError, match=r"unknown metric 'acuracy'; did you mean 'accuracy'"):
        metrics.get("acuracy")
    with pytest.raises(ValueError, match="Valid names: accuracy, binary_accuracy"):
        metrics.get("f1")
    with pytest.raises(ValueError, match="expected a name"):
        metrics.get(3)


def test_the_old_metrics_dict_still_works_and_warns():
    with pytest.warns(DeprecationWarning, match=r"bpnn\.metrics\.METRICS is deprecated"):
        table = metrics.METRICS
    assert table == {"accuracy": metrics.accuracy, "binary_accuracy": metrics.binary_accuracy}


def test_the_trainer_reports_names_instances_and_callables_under_their_names():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)

    def error_rate(pred, target):
        return 1 - metrics.accuracy(pred, target)

    # a config dict, as every registry of bpnn takes (it failed with an AttributeError before)
    for acc in ("accuracy", metrics.Accuracy(), {"class_name": "accuracy", "config": {}}, metrics.Accuracy):
        model = bpnn.Sequential([bpnn.Dense(3)], input_shape=(3,), seed=0)
        trainer = bpnn.Trainer(model, metrics=[acc, error_rate], seed=0)
        hist = trainer.fit(X, y, epochs=1, batch_size=10, verbose=False)
        assert set(hist.history) >= {"accuracy", "error_rate"}
        assert hist.history["accuracy"][0] + hist.history["error_rate"][0] == pytest.approx(1.0)


def test_a_metric_config_without_its_class_name_gets_a_clear_error():
    model = bpnn.Sequential([bpnn.Dense(3)], input_shape=(3,), seed=0)
    with pytest.raises(ValueError, match="class_name"):
        bpnn.Trainer(model, metrics=[{"name": "accuracy"}])
