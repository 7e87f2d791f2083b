"""Optimizers: composable transforms behind a ``step()`` facade, learning-rate schedules,
clipping and constraints.

- Optimizers (``optimizers`` registry, all equal to their ``torch.optim`` twins):
  :class:`SGD` (momentum, dampening, Nesterov, weight decay, torch or classic momentum
  form), :class:`AdaGrad`, :class:`RMSprop`, :class:`Adam`, :class:`AdamW`,
  :class:`NAdam`, :class:`Rprop`.
- Pieces every optimizer takes: ``clip_norm``, ``clip_value`` (gradient clipping) and
  ``max_norm`` (max-norm constraint); ``lr`` may be a schedule.
- Any chain: ``Optimizer([ClipByGlobalNorm(1.0), ScaleByAdam(), AddDecoupledWeightDecay(0.01)], lr=...)``.
- Schedules (``schedules`` registry, equal to their ``torch.optim.lr_scheduler`` twins):
  :class:`Constant`, :class:`StepDecay`, :class:`MultiStepDecay`, :class:`ExponentialDecay`,
  :class:`InverseTimeDecay`, :class:`PolynomialDecay`, :class:`CosineAnnealing`,
  :class:`CosineWarmRestarts`, :class:`LinearWarmup`, :class:`ReduceOnPlateau`.
- L1/L2 penalties belong to the loss: :class:`L1`, :class:`L2`, :class:`L1L2` (from
  ``bpnn.nn.regularizers``), given to a layer: ``Dense(128, regularizer=L2(1e-4))``.
"""
from ..nn.regularizers import L1, L1L2, L2, Regularizer, regularizers
from .adagrad import AdaGrad, ScaleByAdagrad
from .adam import Adam, AdamW
from .bayesian_regularization import BayesianRegularization  # second-order: BR (registers "br")
from .clipping import ClipByGlobalNorm, ClipByValue
from .constraints import Constraint, MaxNorm, constraints
from .kfac import KFAC  # second-order: K-FAC (registers "kfac")
from .levenberg_marquardt import LevenbergMarquardt, least_squares_solvers  # second-order: LM
from .nadam import NAdam, ScaleByNadam
from .optimizer import NonFiniteCurvatureError, Optimizer, optimizers
from .rmsprop import RMSprop, ScaleByRms
from .rprop import Rprop, ScaleByRprop
from .schedules import (
    Constant, CosineAnnealing, CosineWarmRestarts, ExponentialDecay, InverseTimeDecay, LinearWarmup,
    MultiStepDecay, PolynomialDecay, ReduceOnPlateau, Schedule, StepDecay, schedules,
)
from .sgd import SGD
from .transforms import (
    AddDecoupledWeightDecay, AddWeightDecay, Momentum, ScaleByAdam, Trace, Transform, transforms,
)

__all__ = [
    "Optimizer", "optimizers", "SGD", "AdaGrad", "RMSprop", "Adam", "AdamW", "NAdam", "Rprop",
    "Transform", "transforms", "AddWeightDecay", "AddDecoupledWeightDecay", "Momentum", "Trace",
    "ScaleByAdam", "ScaleByAdagrad", "ScaleByRms", "ScaleByNadam", "ScaleByRprop",
    "ClipByGlobalNorm", "ClipByValue", "Constraint", "MaxNorm", "constraints",
    "Schedule", "schedules", "Constant", "StepDecay", "MultiStepDecay", "ExponentialDecay",
    "InverseTimeDecay", "PolynomialDecay", "CosineAnnealing", "CosineWarmRestarts", "LinearWarmup",
    "ReduceOnPlateau", "Regularizer", "regularizers", "L1", "L2", "L1L2", "get", "NonFiniteCurvatureError",
    "KFAC", "LevenbergMarquardt", "least_squares_solvers", "BayesianRegularization",
]


def get(identifier) -> Optimizer:
    """An optimizer from a name (``"sgd"``, ``"adam"``), config dict, class or instance."""
    return optimizers.get(identifier)
