"""Levenberg–Marquardt: the damped Gauss–Newton step for sum-of-squares training.

Why here and not among the gradient optimizers: LM is an optimizer (it turns what
backpropagation computes into a weight update, so it sits in ``optim`` as DESIGN.md
lists it), but it is not a :class:`~bpnn.optim.Optimizer` transform chain. It needs
the per-sample Jacobian of the outputs (:func:`bpnn.nn.jacobian`) rather than one
gradient, it works on the whole training set at once, and each step evaluates the
error at trial weights to accept or reject them. So it is a *least-squares solver*
with its own small registry; the epoch loop around it (stopping criteria, validation
stop, training record) is :class:`bpnn.train.LMTrainer`.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _checks, backend
from .._registry import Configurable, Registry
from ..nn.jacobian import jacobian

#: The second-order solvers of :class:`bpnn.train.LMTrainer` by name (``"lm"``/``"trainlm"``, ``"br"``/``"trainbr"``).
least_squares_solvers = Registry("least-squares solver")

#: Rows of the error vector evaluated per forward pass when only the error is needed.
_FORWARD_ROWS = 8192


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def sum_squared_errors(model, X, T) -> float:
    """Σ (y − t)² of ``model`` (evaluation mode) over all samples and outputs, forwarded
    in blocks of rows."""
    total = 0.0
    for i in range(0, len(X), _FORWARD_ROWS):
        r = model.forward(X[i:i + _FORWARD_ROWS], training=False) - T[i:i + _FORWARD_ROWS].reshape(
            (-1,) + tuple(model.output_shape))
        total += float((r * r).sum())
    return total


@least_squares_solvers.register("lm", "trainlm", "levenberg_marquardt")
class LevenbergMarquardt(Configurable):
    r"""Levenberg–Marquardt (Levenberg 1944; Marquardt 1963; Hagan & Menhaj 1994) with
    MATLAB ``trainlm``'s μ schedule and defaults.

    Minimizes the sum of squared errors E(θ) = Σ r², r = y(θ) − t over all samples and
    outputs (N·K errors). With J = ∂y/∂θ (N·K × P, by backpropagation) one epoch solves

        (JᵀJ + μ I) δ = −Jᵀ r,     θ ← θ + δ

    by a linear solve (never an explicit inverse). If the error at θ + δ is lower the
    step is accepted and μ ← μ · ``mu_dec`` (floored at 1e-20, as MATLAB); otherwise μ ←
    μ · ``mu_inc`` and the system is solved again, until a step is accepted or μ exceeds
    ``mu_max``. Small μ is Gauss–Newton, large μ a short gradient-descent step of length
    ≈ ‖Jᵀr‖/μ. The reported gradient is ‖∇E‖ = 2‖Jᵀ r‖.

    Defaults are MATLAB's ``trainlm``: mu = 0.001, mu_dec = 0.1, mu_inc = 10, mu_max = 1e10
    (``min_grad`` 1e-7, ``max_fail`` 6 and 1000 epochs belong to the loop,
    :class:`bpnn.train.LMTrainer`).

    Memory: JᵀJ is P × P. When the parameter count makes it (and the linear solve's copy)
    exceed ``memory_limit`` bytes (default 1 GiB) :meth:`attach` raises a ValueError that
    states the limit. J itself is never held whole when it would not fit: it is built in
    blocks of samples and JᵀJ, Jᵀr accumulated (MATLAB's ``mem_reduc``); the number of
    blocks is in ``self.jacobian_blocks``. JᵀJ and the solve are in float64 whatever the
    model's dtype (float64 models are recommended: LM reaches errors float32 cannot hold).

    Use (the epoch loop normally does this)::

        lm = LevenbergMarquardt().attach(model)
        info = lm.step(X, T)     # one epoch: linearize at θ, then the μ loop
    """

    #: MATLAB ``trainlm`` uses validation stopping (max_fail = 6) by default.
    default_max_fail = 6

    def __init__(self, mu: float = 1e-3, mu_dec: float = 0.1, mu_inc: float = 10.0,
                 mu_max: float = 1e10, memory_limit: int = 1 << 30):
        self.mu = float(_checks.positive("mu", mu))
        self.mu_dec = float(_checks.in_range("mu_dec", mu_dec, 0.0, 1.0, low_open=True, high_open=True))
        self.mu_inc = float(_checks.positive("mu_inc", mu_inc))
        if self.mu_inc <= 1:
            raise ValueError(f"mu_inc: got {mu_inc!r}; expected a number > 1")
        self.mu_max = float(_checks.positive("mu_max", mu_max))
        self.memory_limit = int(_checks.positive("memory_limit", memory_limit, integer=True))
        self.initial_mu = self.mu
        self._flat = None
        self.jacobian_blocks = 1

    # ------------------------------------------------------------------ binding
    def attach(self, model) -> "LevenbergMarquardt":
        """Bind to ``model``'s trainable parameters and check that JᵀJ fits in memory."""
        if not model.built:
            raise RuntimeError("LevenbergMarquardt.attach: build the model first (give input_shape or run it once)")
        flat = model.flat_parameters()
        p = len(flat)
        need = 2 * p * p * 8
        if need > self.memory_limit:
            max_p = int(math.isqrt(self.memory_limit // 16))
            raise ValueError(
                f"memory_limit: Levenberg–Marquardt needs JᵀJ and its damped copy, 2 × P² float64 "
                f"values; with P = {p:,} trainable parameters that is {_fmt_bytes(need)}, over "
                f"memory_limit = {_fmt_bytes(self.memory_limit)} (at this limit P may be at most "
                f"{max_p:,}). Use a smaller network, a gradient optimizer (Adam, SGD), or raise "
                f"memory_limit"
            )
        self.model = model
        self._flat = flat
        self._mu = self.mu
        return self

    def _bound(self):
        if self._flat is None:
            raise RuntimeError("the solver is not attached to a model: call solver.attach(model)")
        return self._flat

    @property
    def current_mu(self) -> float:
        """μ for the next step."""
        return self._mu

    # ------------------------------------------------------------------ evaluation
    def sse(self, X, T) -> float:
        """Σ (y(θ) − t)² over all samples and outputs at the current weights."""
        return sum_squared_errors(self.model, X, T)

    def _block_rows(self, n, k, p, itemsize):
        budget = max(self.memory_limit - 2 * p * p * 8, self.memory_limit // 4)
        per_sample = k * p * (itemsize + 8)  # J block (+ its float64 copy when the model is float32)
        return max(1, min(n, budget // max(per_sample, 1)))

    def linearize(self, X, T):
        """SSE, JᵀJ (P × P) and Jᵀr (P,) at the current weights, in float64."""
        flat = self._bound()
        xp = backend.xp
        n = len(X)
        k = math.prod(self.model.output_shape)
        p = len(flat)
        rows = self._block_rows(n, k, p, flat.params.dtype.itemsize)
        self.jacobian_blocks = -(-n // rows)
        jj = xp.zeros((p, p), dtype=xp.float64)
        je = xp.zeros(p, dtype=xp.float64)
        sse = 0.0
        buf = None
        for i in range(0, n, rows):
            xb, tb = X[i:i + rows], T[i:i + rows]
            if buf is None or buf.size != len(xb) * k * p:
                buf = xp.empty(len(xb) * k * p, dtype=flat.params.dtype)
            y, J = jacobian(self.model, xb, out=buf)
            r = (y.reshape(len(xb), k) - tb.reshape(len(xb), k)).reshape(-1)
            if J.dtype != xp.float64:
                J, r = J.astype(xp.float64), r.astype(xp.float64)
            jj += J.T @ J
            je += J.T @ r
            sse += float(r @ r)
        return sse, jj, je

    # ------------------------------------------------------------------ the step
    def _solve(self, a, b):
        xp = backend.xp
        try:
            d = xp.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            return None
        return d if bool(xp.isfinite(d).all()) else None

    def _objective(self, sse, params) -> float:
        """The function LM decreases (BR overrides it)."""
        return sse

    def _system(self, jj, je, params, mu):
        """Matrix and right-hand side of the damped step (BR overrides it)."""
        a = jj.copy()
        a.reshape(-1)[:: len(a) + 1] += mu  # the diagonal, in place (a is C-contiguous)
        return a, -je

    def update(self, X, T, sse, jj, je) -> dict:
        """The μ loop from a linearization: solve, try, accept or raise μ and retry.

        Returns ``{"accepted", "trials", "sse", "mu", "mu_trials"}``: whether a step was
        taken, how many solves it needed, the SSE after the step (before it when none was
        accepted), μ after the loop, and μ of each trial.
        """
        flat = self._bound()
        xp = backend.xp
        w0 = flat.params.copy()
        w64 = w0.astype(xp.float64)
        f0 = self._objective(sse, w64)
        trials = []
        mu = self._mu
        while mu <= self.mu_max:
            trials.append(mu)
            a, b = self._system(jj, je, w64, mu)
            d = self._solve(a, b)
            if d is not None:
                flat.params[...] = w64 + d
                sse2 = self.sse(X, T)
                if math.isfinite(sse2):
                    f2 = self._objective(sse2, flat.params.astype(xp.float64, copy=False))
                    if f2 < f0:
                        self._mu = max(mu * self.mu_dec, 1e-20)
                        return {"accepted": True, "trials": len(trials), "sse": sse2, "mu": self._mu,
                                "mu_trials": trials}
            flat.params[...] = w0
            mu *= self.mu_inc
        self._mu = mu
        return {"accepted": False, "trials": len(trials), "sse": sse, "mu": mu, "mu_trials": trials}

    def step(self, X, T) -> dict:
        """One epoch: linearize at the current weights, then the μ loop (see :meth:`update`).

        The returned dict also holds ``"sse_before"`` and ``"gradient"`` (2‖Jᵀr‖).
        """
        sse, jj, je = self.linearize(X, T)
        info = self.update(X, T, sse, jj, je)
        info["sse_before"] = sse
        info["gradient"] = 2.0 * float(backend.xp.linalg.norm(je))
        return info

    def state(self) -> dict:
        """Extra per-epoch quantities for the training record (BR adds γ, α, β)."""
        return {}

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict:
        """What the next step depends on besides the weights (JSON data): μ."""
        return {"mu": self._mu}

    def check_checkpoint_state(self, state) -> dict:
        """``state`` (from :meth:`checkpoint_state`) checked, as a new dict for
        :meth:`load_checkpoint_state`; ValueError naming the entry otherwise."""
        if not isinstance(state, dict) or set(state) != set(self.checkpoint_state()):
            raise ValueError(f"solver state: got {str(state)[:80]}; expected the keys "
                             f"{sorted(self.checkpoint_state())}")
        mu = state["mu"]
        if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 < mu < math.inf:
            raise ValueError(f"solver state: mu: got {mu!r}; expected a finite number > 0")
        return {"mu": float(mu)}

    def load_checkpoint_state(self, state: dict) -> None:
        """Take a state :meth:`check_checkpoint_state` returned (attached solvers only)."""
        self._mu = state["mu"]

    def get_config(self):
        return {"mu": self.mu, "mu_dec": self.mu_dec, "mu_inc": self.mu_inc, "mu_max": self.mu_max,
                "memory_limit": self.memory_limit}


def get(identifier) -> LevenbergMarquardt:
    """A least-squares solver from a name (``"lm"``/``"trainlm"``, ``"br"``/``"trainbr"``),
    config dict, class or instance."""
    return least_squares_solvers.get(identifier)
