"""Weight initialization: the registry of initializers, fans, gains and LSUV.

``bpnn.init.get(identifier)`` resolves a name (``"he_normal"``), a config dict, a class
or an instance; ``bpnn.init.serialize(initializer)`` writes the config dict that ``get``
reads back; ``bpnn.init.registry`` is the name → class table (register a new
initializer with ``@bpnn.init.registry.register("my_init")``). The classes live in
``bpnn.init.initializers``.
"""
from .fans import calculate_gain, compute_fans
from .initializers import (
    Constant, HeNormal, HeUniform, Identity, Initializer, LecunNormal, LecunUniform, Normal,
    Ones, Orthogonal, SmallNormal, Sparse, TruncatedNormal, Uniform, VarianceScaling, XavierNormal,
    XavierUniform, Zeros, get, registry, serialize,
)
from .lsuv import LSUV, lsuv

__all__ = [
    "registry", "get", "serialize", "compute_fans", "calculate_gain", "Initializer", "Zeros", "Constant",
    "Ones", "Uniform", "Normal", "SmallNormal", "Sparse", "TruncatedNormal", "VarianceScaling", "XavierUniform",
    "XavierNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal", "Orthogonal",
    "Identity", "LSUV", "lsuv",
]
