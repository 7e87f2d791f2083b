"""Weight initializers, registered by name.

Every initializer is called as ``init(shape, rng, dtype)`` and returns an array of the
active backend. Random draws come from the passed :class:`numpy.random.Generator` (on
the host), so one seed reproduces the same weights on every backend. Shapes follow
:func:`bpnn.init.compute_fans`: Dense weights are ``(n_in, n_out)``, conv kernels OIHW.

Glorot, He and LeCun are one :class:`VarianceScaling` initializer with presets:
``Var(W) = scale / fan`` where ``fan`` is fan_in, fan_out or their mean.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _checks, backend
from .._deprecation import warn_renamed
from .._registry import Configurable, Registry
from .fans import calculate_gain, compute_fans

#: The initializers by name (``"he_normal"``, ``"xavier_uniform"``, ...); :func:`bpnn.init.get` looks them up.
registry = Registry("initializer")

# std of a standard normal truncated to [-2, 2]: used to rescale truncated draws.
_TRUNC2_STD = 0.87962566103423978


class Initializer(Configurable):
    """Base class: subclasses implement :meth:`sample` on the host."""

    #: True for initializers that need a batch of data (LSUV); the Trainer runs them.
    data_dependent = False

    def __call__(self, shape, rng, dtype=None):
        shape = tuple(int(s) for s in shape)
        dtype = backend.as_dtype(dtype)
        host = np.asarray(self.sample(shape, backend.rng(rng)), dtype=np.float64)
        return backend.to_device(host.astype(dtype, copy=False))

    def sample(self, shape, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@registry.register("zeros", "zero")
class Zeros(Initializer):
    """W = 0. Fine for biases; for weights it leaves every hidden unit identical
    forever (the symmetry problem), which bpnn's tests demonstrate."""

    def sample(self, shape, rng):
        return np.zeros(shape)


@registry.register("constant")
class Constant(Initializer):
    """W = value everywhere (``torch.nn.init.constant_``); like zeros it never breaks symmetry.

    ``value`` defaults to 0 as in Keras' ``Constant``.
    """

    def __init__(self, value: float = 0.0):
        self.value = float(_checks.in_range("value", value, -math.inf, math.inf, True, True))

    def sample(self, shape, rng):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


@registry.register("ones")
class Ones(Constant):
    """W = 1 (``torch.nn.init.ones_``); BatchNorm's γ starts here."""

    def __init__(self, value: float = 1.0):
        super().__init__(value)


@registry.register("uniform")
class Uniform(Initializer):
    """W ~ U(a, b), defaults a = 0, b = 1 as ``torch.nn.init.uniform_``."""

    def __init__(self, a: float = 0.0, b: float = 1.0):
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and a < b):
            raise ValueError(f"a, b: got a={a!r}, b={b!r}; expected numbers with a < b")
        self.a, self.b = float(a), float(b)

    def sample(self, shape, rng):
        return rng.uniform(self.a, self.b, size=shape)

    def get_config(self):
        return {"a": self.a, "b": self.b}


@registry.register("normal")
class Normal(Initializer):
    """W ~ N(mean, std²), defaults mean = 0, std = 1 as ``torch.nn.init.normal_``.

    The classic "small random numbers" of the BP literature are ``Normal(std=0.01)``,
    i.e. 0.01 · N(0, 1), registered as ``"small_normal"``.
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        self.mean = float(_checks.in_range("mean", mean, -math.inf, math.inf, True, True))
        self.std = float(_checks.positive("std", std, allow_zero=True))

    def sample(self, shape, rng):
        return rng.normal(self.mean, self.std, size=shape)

    def get_config(self):
        return {"mean": self.mean, "std": self.std}


@registry.register("small_normal", "small_random")
class SmallNormal(Normal):
    """W = 0.01 · N(0, 1): the "small random numbers" of the classic BP texts."""

    def __init__(self, std: float = 0.01):
        super().__init__(0.0, std)

    def get_config(self):
        return {"std": self.std}


def _truncated_standard_normal(shape, low, high, rng):
    """Standard normal draws restricted to [low, high] by redrawing the rejected ones."""
    out = rng.standard_normal(size=shape)
    for _ in range(1000):
        bad = (out < low) | (out > high)
        n = int(bad.sum())
        if n == 0:
            return out
        out[bad] = rng.standard_normal(size=n)
    raise ValueError(
        f"a, b: the interval [{low:g}, {high:g}] (in standard deviations) holds too little "
        f"probability mass to sample by rejection; widen it"
    )


@registry.register("truncated_normal", "trunc_normal")
class TruncatedNormal(Initializer):
    """W ~ N(mean, std²) restricted to [a, b] (absolute bounds), as
    ``torch.nn.init.trunc_normal_``; defaults mean 0, std 1, a = −2, b = 2."""

    def __init__(self, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0):
        self.mean = float(mean)
        self.std = float(_checks.positive("std", std))
        if not a < b:
            raise ValueError(f"a, b: got a={a!r}, b={b!r}; expected a < b")
        self.a, self.b = float(a), float(b)

    def sample(self, shape, rng):
        z = _truncated_standard_normal(shape, (self.a - self.mean) / self.std,
                                       (self.b - self.mean) / self.std, rng)
        return self.mean + self.std * z

    def get_config(self):
        return {"mean": self.mean, "std": self.std, "a": self.a, "b": self.b}


@registry.register("variance_scaling")
class VarianceScaling(Initializer):
    """Var(W) = scale / fan, the common form of Glorot, He and LeCun initialization.

    ``mode`` picks fan = fan_in, fan_out or fan_avg = (fan_in + fan_out) / 2 (see
    :func:`compute_fans`). ``distribution``:

    - ``"normal"``: W ~ N(0, scale / fan)
    - ``"truncated_normal"``: N(0, σ²) truncated to ±2σ, σ chosen so the variance is scale / fan
      (as Keras' ``VarianceScaling``)
    - ``"uniform"``: W ~ U(−l, l) with l = √(3 · scale / fan)
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal"):
        self.scale = float(_checks.positive("scale", scale))
        self.mode = _checks.one_of("mode", mode, self._MODES)
        self.distribution = _checks.one_of("distribution", distribution, self._DISTRIBUTIONS)

    def std(self, shape) -> float:
        """The standard deviation this initializer gives a weight of ``shape``."""
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        return math.sqrt(self.scale / fan)

    def sample(self, shape, rng):
        std = self.std(shape)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0) * std
            return rng.uniform(-limit, limit, size=shape)
        if self.distribution == "normal":
            return rng.normal(0.0, std, size=shape)
        return _truncated_standard_normal(shape, -2.0, 2.0, rng) * (std / _TRUNC2_STD)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}


class _Preset(VarianceScaling):
    """A VarianceScaling whose config is its own few arguments."""

    def get_config(self):
        return {k: getattr(self, k) for k in self._ARGS}


@registry.register("xavier_uniform", "glorot_uniform")
class XavierUniform(_Preset):
    """Glorot & Bengio (2010): W ~ U(−l, l), l = gain · √(6 / (fan_in + fan_out)).

    Equals ``torch.nn.init.xavier_uniform_(w, gain)`` and Keras' ``glorot_uniform`` (gain 1).
    """

    _ARGS = ("gain",)
    _DIST = "uniform"

    def __init__(self, gain: float = 1.0):
        self.gain = float(_checks.positive("gain", gain))
        super().__init__(self.gain**2, "fan_avg", self._DIST)


@registry.register("xavier_normal", "glorot_normal")
class XavierNormal(XavierUniform):
    """Glorot & Bengio (2010): W ~ N(0, σ²), σ = gain · √(2 / (fan_in + fan_out)).

    Equals ``torch.nn.init.xavier_normal_(w, gain)`` (Keras' ``glorot_normal`` truncates).
    """

    _DIST = "normal"


@registry.register("he_uniform", "kaiming_uniform")
class HeUniform(_Preset):
    """He et al. (2015): W ~ U(−l, l), l = gain · √(3 / fan), gain = √(2 / (1 + a²)).

    Equals ``torch.nn.init.kaiming_uniform_(w, a, mode, nonlinearity)`` with its defaults
    a = 0, mode = "fan_in", nonlinearity = "leaky_relu" (so gain = √2 for ReLU).
    """

    _ARGS = ("a", "mode", "nonlinearity")
    _DIST = "uniform"

    def __init__(self, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
        self.a = float(_checks.in_range("a", a, -math.inf, math.inf, True, True))
        self.nonlinearity = nonlinearity
        gain = calculate_gain(nonlinearity, self.a)
        if mode == "fan_avg":
            raise ValueError("mode: got 'fan_avg'; valid values are 'fan_in', 'fan_out'")
        super().__init__(gain**2, mode, self._DIST)


@registry.register("he_normal", "kaiming_normal")
class HeNormal(HeUniform):
    """He et al. (2015): W ~ N(0, σ²), σ = gain / √fan, gain = √(2 / (1 + a²)).

    Equals ``torch.nn.init.kaiming_normal_`` with the same defaults (Keras' ``he_normal``
    truncates; use ``VarianceScaling(2, "fan_in", "truncated_normal")`` for that).
    """

    _DIST = "normal"


@registry.register("lecun_uniform")
class LecunUniform(_Preset):
    """LeCun et al. (1998, "Efficient BackProp"): W ~ U(−l, l), l = √(3 / fan_in), Var = 1/fan_in."""

    _ARGS = ()
    _DIST = "uniform"

    def __init__(self):
        super().__init__(1.0, "fan_in", self._DIST)


@registry.register("lecun_normal")
class LecunNormal(LecunUniform):
    """LeCun et al. (1998): W ~ N(0, 1/fan_in). (Keras' ``lecun_normal`` truncates at 2σ.)"""

    _DIST = "normal"


@registry.register("orthogonal")
class Orthogonal(Initializer):
    """Saxe et al. (2014): a (semi-)orthogonal matrix times ``gain``, as ``torch.nn.init.orthogonal_``.

    The weight is viewed as a matrix of shape (shape[0], prod(shape[1:])); a Gaussian
    matrix is QR-factorized and Q, with the signs of diag(R) folded in so the result is
    uniformly distributed, fills it. Rows or columns (whichever are fewer) are orthonormal.
    """

    def __init__(self, gain: float = 1.0):
        self.gain = float(_checks.positive("gain", gain))

    def sample(self, shape, rng):
        if len(shape) < 2:
            raise ValueError(f"shape: got {shape}; orthogonal init needs at least 2 dimensions")
        rows, cols = shape[0], math.prod(shape[1:])
        flat = rng.standard_normal(size=(rows, cols))
        if rows < cols:
            flat = flat.T
        q, r = np.linalg.qr(flat)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape)

    def get_config(self):
        return {"gain": self.gain}


@registry.register("sparse")
class Sparse(Initializer):
    r"""Martens (2010)'s sparse initialization: every unit gets ``nonzero`` incoming weights
    drawn from N(0, std²), all its other incoming weights 0 (defaults 15 and 1, the
    convention of Martens 2010 §5 and Sutskever et al. 2013 for deep sigmoid and tanh
    autoencoders; biases stay at their own initializer, zeros by default).

    A unit is an output column of a Dense weight (n_in, n_out) or an output channel of a
    convolution kernel (O, C, kh, kw); its fan_in incoming weights are chosen without
    replacement, min(``nonzero``, fan_in) of them, so

        Var(W) = std² · min(k, fan_in) / fan_in   over all entries,

    and a unit's input sum has variance std² · k · E[x²] whatever the layer's width: unlike
    the 1/fan_in rules, a unit's weights do not shrink as its layer widens, and no two
    units share their inputs by construction. ``torch.nn.init.sparse_`` is another rule
    under the same citation: it zeroes a fraction ``sparsity`` of the rows of each column
    of a 2-d (out, in) weight and draws the rest from N(0, 0.01²).
    """

    def __init__(self, nonzero: int = 15, std: float = 1.0):
        self.nonzero = int(_checks.positive("nonzero", nonzero, integer=True))
        self.std = float(_checks.positive("std", std))

    def sample(self, shape, rng):
        if len(shape) < 2:
            raise ValueError(f"shape: got {shape}; sparse init needs a weight of at least 2 dimensions "
                             f"(Dense (n_in, n_out) or a conv kernel OIHW)")
        fan_in, _ = compute_fans(shape)
        units = shape[1] if len(shape) == 2 else shape[0]
        k = min(self.nonzero, fan_in)
        # per unit: a random permutation of its fan_in inputs, the first k of which are kept
        chosen = np.argsort(rng.random((units, fan_in)), axis=1)[:, :k]
        flat = np.zeros((units, fan_in))
        np.put_along_axis(flat, chosen, self.std * rng.standard_normal((units, k)), axis=1)
        if len(shape) == 2:
            return flat.T  # (n_in, n_out): unit j is column j
        return flat.reshape(shape)  # OIHW: unit o is W[o], its C·kh·kw inputs in C, H, W order

    def get_config(self):
        return {"nonzero": self.nonzero, "std": self.std}


@registry.register("identity", "eye")
class Identity(Initializer):
    """W = gain · I for a square 2-d weight (``torch.nn.init.eye_``); identity mapping at init."""

    def __init__(self, gain: float = 1.0):
        self.gain = float(_checks.positive("gain", gain))

    def sample(self, shape, rng):
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"shape: got {shape}; identity init needs a square 2-d weight")
        return self.gain * np.eye(shape[0])

    def get_config(self):
        return {"gain": self.gain}


def get(identifier) -> Initializer:
    """An initializer from a name, config dict, class or instance (see :data:`registry`)."""
    return registry.get(identifier)


def serialize(initializer: Initializer) -> dict:
    """``{"class_name": name, "config": initializer.get_config()}``; :func:`get` reads it back."""
    return registry.serialize(initializer)


# Until this release the registry object was exported as ``bpnn.init.initializers``, the
# name of this module, which it hid; the old spelling works for one more release.
_REGISTRY_ATTRIBUTES = ("initializers", "names", "lookup", "register", "classes", "kind")


def __getattr__(name):
    if name in _REGISTRY_ATTRIBUTES:
        spelling = "bpnn.init.initializers" + ("" if name == "initializers" else f".{name}")
        new = "bpnn.init.registry" + ("" if name == "initializers" else f".{name}")
        warn_renamed(spelling, new)
        return registry if name == "initializers" else getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
