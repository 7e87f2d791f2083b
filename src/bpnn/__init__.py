"""bpnn — backpropagation neural networks for Python, done properly.

Build multilayer perceptrons from layers that own their forward and backward math,
choose any initializer and optimizer of the BP literature, train with one
:class:`Trainer`, and check every gradient numerically.
"""
from . import backend, init, losses, metrics, nn, optim
from .diagnostics import GradcheckResult, gradcheck
from .losses import MSE, BinaryCrossEntropyWithLogits, SoftmaxCrossEntropy
from .nn import (
    ELU, BatchNorm, Dense, DropConnect, Dropout, Flatten, Identity, LeakyReLU, Module, ReLU, Residual,
    Sequential, Sigmoid, Softmax, Softplus, Tanh,
)
from .nn import AvgPool2D, Conv2D, GlobalAvgPool2D, MaxPool2D
from .train import (
    CSVLogger, Callback, EarlyStopping, History, LearningRateScheduler, LiveLossPlot, ModelCheckpoint,
    NonFiniteLossWarning, ReduceLROnPlateau, Trainer,
)

from . import io
from .io import load, save

#: The version of bpnn.
__version__ = "0.1.0"

__all__ = [
    "backend", "init", "losses", "metrics", "nn", "optim", "gradcheck", "GradcheckResult",
    "Module", "Sequential", "Residual", "Dense", "DropConnect", "Flatten", "Dropout", "BatchNorm", "Identity",
    "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "Softplus", "Softmax", "MSE",
    "SoftmaxCrossEntropy", "BinaryCrossEntropyWithLogits", "Trainer", "Callback", "History",
    "NonFiniteLossWarning", "io", "save", "load", "EarlyStopping", "ReduceLROnPlateau", "LearningRateScheduler",
    "LiveLossPlot", "ModelCheckpoint", "CSVLogger", "__version__",
    "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
]
