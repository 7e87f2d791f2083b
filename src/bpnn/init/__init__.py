"""Weight initialization: the registry of initializers, fans, gains and LSUV."""
from .fans import calculate_gain, compute_fans
from .initializers import (
    Constant, HeNormal, HeUniform, Identity, Initializer, LecunNormal, LecunUniform, Normal,
    Ones, Orthogonal, SmallNormal, TruncatedNormal, Uniform, VarianceScaling, XavierNormal,
    XavierUniform, Zeros, get, initializers,
)
from .lsuv import LSUV, lsuv

__all__ = [
    "initializers", "get", "compute_fans", "calculate_gain", "Initializer", "Zeros", "Constant", "Ones",
    "Uniform", "Normal", "SmallNormal", "TruncatedNormal", "VarianceScaling", "XavierUniform",
    "XavierNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal", "Orthogonal",
    "Identity", "LSUV", "lsuv",
]
