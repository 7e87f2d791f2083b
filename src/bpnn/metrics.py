"""Metrics computed from network outputs and targets."""
from __future__ import annotations




def _labels(target):
    return target if target.ndim == 1 else target.argmax(axis=1)


def accuracy(pred, target):
    """Fraction of samples whose arg-max output is the target class (labels or one-hot rows)."""
    return (pred.argmax(axis=1) == _labels(target)).mean()


def binary_accuracy(pred, target):
    """Fraction of entries where the logit's sign matches the 0/1 target (threshold ½)."""
    target = target.reshape(pred.shape)
    return ((pred > 0) == (target > 0.5)).mean()


METRICS = {"accuracy": accuracy, "binary_accuracy": binary_accuracy}


def get(name):
    """A metric function by name."""
    if callable(name):
        return name
    if name not in METRICS:
        raise ValueError(f"metrics: unknown metric {name!r}; valid names are {', '.join(METRICS)}")
    return METRICS[name]


