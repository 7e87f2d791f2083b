"""Layers and containers (the Module protocol of explicit backpropagation)."""
from .activations import ELU, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Softplus, Tanh
from .batchnorm import BatchNorm
from .containers import Residual, Sequential
from .dense import Dense
from .dropout import Dropout
from .module import FlatParameters, Module, layers
from .reshape import Flatten

__all__ = [
    "Module", "FlatParameters", "layers", "Dense", "Sequential", "Residual", "Flatten", "Dropout",
    "BatchNorm", "Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "Softplus", "Softmax",
]
