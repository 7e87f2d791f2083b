"""Metrics computed from network outputs and targets, registered by name.

A metric is called as ``metric(pred, target)`` on one batch and returns a scalar; the
Trainer averages it over the batches of an epoch (weighted by batch size) and reports
it under its name in the History. ``get`` accepts what users write, as every registry
of bpnn does: a name (``"accuracy"``), a config dict, a registered class or instance,
or any callable ``f(pred, target)`` (reported under ``f.__name__``).
"""
from __future__ import annotations

from ._deprecation import warn_renamed
from ._registry import Configurable, Registry

#: The metrics by name (``"accuracy"``, ``"binary_accuracy"``); :func:`bpnn.metrics.get` looks them up.
registry = Registry("metric")

__all__ = ["accuracy", "binary_accuracy", "Metric", "Accuracy", "BinaryAccuracy", "get", "serialize", "registry"]


def _labels(target):
    return target if target.ndim == 1 else target.argmax(axis=1)


def accuracy(pred, target):
    """Fraction of samples whose arg-max output is the target class (labels or one-hot rows)."""
    return (pred.argmax(axis=1) == _labels(target)).mean()


def binary_accuracy(pred, target):
    """Fraction of entries where the logit's sign matches the 0/1 target (threshold ½)."""
    target = target.reshape(pred.shape)
    return ((pred > 0) == (target > 0.5)).mean()


class Metric(Configurable):
    """Base class: ``metric(pred, target)`` returns the value on one batch.

    ``__name__`` is the registry name, so a metric instance is named like the function
    it stands for (the Trainer keys the History by it).
    """

    def __call__(self, pred, target):
        raise NotImplementedError

    @property
    def __name__(self) -> str:
        return type(self).registry_name


@registry.register("accuracy")
class Accuracy(Metric):
    """Classification accuracy: mean over samples of [argmax_k pred_nk = y_n], where y_n
    is the label (or the arg-max of a one-hot / probability target row)."""

    def __call__(self, pred, target):
        return accuracy(pred, target)


@registry.register("binary_accuracy")
class BinaryAccuracy(Metric):
    """Accuracy of binary logits: mean over entries of [(z > 0) = (t > ½)], as Keras'
    ``binary_accuracy`` at threshold ½ applied to probabilities σ(z)."""

    def __call__(self, pred, target):
        return binary_accuracy(pred, target)


def get(identifier):
    """A metric from a name, config dict, registered class or instance, or a callable
    ``f(pred, target)`` returned as is; an unknown name gets the closest valid names."""
    if callable(identifier) and not isinstance(identifier, type):
        return identifier
    return registry.get(identifier)


def serialize(metric: Metric) -> dict:
    """``{"class_name": name, "config": metric.get_config()}``; :func:`get` reads it back."""
    return registry.serialize(metric)


def __getattr__(name):
    # Until this release the metrics were a plain dict ``METRICS`` (name → function).
    if name == "METRICS":
        warn_renamed("bpnn.metrics.METRICS", "bpnn.metrics.registry or bpnn.metrics.get(name)")
        return {"accuracy": accuracy, "binary_accuracy": binary_accuracy}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
