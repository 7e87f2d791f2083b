"""Optimizers: composable transforms behind a ``step()`` facade."""
from .adam import Adam
from .optimizer import Optimizer, optimizers
from .sgd import SGD
from .transforms import AddWeightDecay, Momentum, ScaleByAdam, Transform

__all__ = ["Optimizer", "optimizers", "SGD", "Adam", "Transform", "AddWeightDecay", "Momentum",
           "ScaleByAdam", "get"]


def get(identifier) -> Optimizer:
    """An optimizer from a name (``"sgd"``, ``"adam"``), config dict, class or instance."""
    return optimizers.get(identifier)
