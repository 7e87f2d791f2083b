"""Layers and containers (the Module protocol of explicit backpropagation)."""
from .activations import ELU, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Softplus, Tanh
from .batchnorm import BatchNorm
from .containers import Residual, Sequential
from .conv import Conv2D
from .dense import Dense
from .dropconnect import DropConnect
from .dropout import Dropout
from .jacobian import jacobian
from .module import FlatParameters, Module, layers
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .reshape import Flatten

__all__ = [
    "Module", "FlatParameters", "layers", "Dense", "Sequential", "Residual", "Flatten", "Dropout",
    "DropConnect",
    "BatchNorm", "Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "Softplus", "Softmax",
    "jacobian",
    "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
]
