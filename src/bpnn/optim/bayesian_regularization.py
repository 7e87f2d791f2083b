"""Bayesian regularization: Levenberg–Marquardt on β·E_D + α·E_W with α, β re-estimated."""
from __future__ import annotations

import math

from .. import backend
from .levenberg_marquardt import LevenbergMarquardt, least_squares_solvers


@least_squares_solvers.register("br", "trainbr", "bayesian_regularization")
class BayesianRegularization(LevenbergMarquardt):
    r"""Bayesian regularization (MacKay 1992; Foresee & Hagan 1997) as MATLAB ``trainbr``.

    Minimizes F(θ) = β E_D + α E_W, E_D = Σ r² (sum of squared errors over the N·K
    errors) and E_W = Σ θ² (sum of squared weights and biases), with the
    Levenberg–Marquardt step of the Gauss–Newton Hessian 2βJᵀJ + 2αI of F:

        (β JᵀJ + (α + μ) I) δ = −(β Jᵀ r + α θ)

    and the μ schedule of :class:`LevenbergMarquardt` (accept when F decreases). After
    every accepted step, with JᵀJ taken at the new weights, the evidence framework
    re-estimates the hyperparameters from the effective number of parameters

        γ = P − α · tr((β JᵀJ + α I)⁻¹) = Σ_i β λ_i / (β λ_i + α)   (λ_i eigenvalues of JᵀJ),
        α = γ / (2 E_W),    β = (N·K − γ) / (2 E_D).

    Initial values (MATLAB): γ = P, β = (N·K − γ)/(2 E_D) (1 if that is ≤ 0 or E_D = 0),
    α = γ/(2 E_W). γ, α, β, E_W are reported every epoch (``gamk``, ``alpha``, ``beta``,
    ``ssX`` in the training record); γ ≪ P says the network has more weights than the
    data can determine.

    Defaults are MATLAB ``trainbr``'s: mu = 0.005, mu_dec = 0.1, mu_inc = 10, mu_max = 1e10,
    and no validation stop (the regularization replaces it), 1000 epochs. MATLAB also
    recommends inputs and targets scaled to [−1, 1] (``mapminmax``), which
    :class:`bpnn.data.MinMaxScaler` does.
    """

    default_max_fail = None

    def __init__(self, mu: float = 5e-3, mu_dec: float = 0.1, mu_inc: float = 10.0,
                 mu_max: float = 1e10, memory_limit: int = 1 << 30):
        super().__init__(mu, mu_dec, mu_inc, mu_max, memory_limit)
        self.gamma = None
        self.alpha = None
        self.beta = None
        self.ssw = None
        self._stepped = False

    def attach(self, model):
        super().attach(model)
        self.gamma = self.alpha = self.beta = self.ssw = None
        self._stepped = False
        return self

    def _ssw(self, params) -> float:
        p = params.astype(backend.xp.float64, copy=False)
        return float(p @ p)

    def _objective(self, sse, params) -> float:
        return self.beta * sse + self.alpha * self._ssw(params)

    def _system(self, jj, je, params, mu):
        a = jj * self.beta
        a.reshape(-1)[:: len(a) + 1] += self.alpha + mu  # the diagonal, in place
        return a, -(self.beta * je + self.alpha * params)

    def effective_parameters(self, jj) -> float:
        """γ = Σ β λ_i / (β λ_i + α) over the eigenvalues λ_i of JᵀJ (symmetric solver)."""
        xp = backend.xp
        lam = xp.clip(xp.linalg.eigvalsh(jj), 0.0, None)
        return float((self.beta * lam / (self.beta * lam + self.alpha)).sum())

    def linearize(self, X, T):
        sse, jj, je = super().linearize(X, T)
        n_err = len(X) * math.prod(self.model.output_shape)
        p = len(self._flat)
        ssw = self._ssw(self._flat.params)
        if self.gamma is None:
            self.gamma = float(p)
            self.beta = (n_err - self.gamma) / (2 * sse) if sse > 0 else 1.0
            if self.beta <= 0:
                self.beta = 1.0
            self.alpha = self.gamma / (2 * ssw) if ssw > 0 else 1.0
        elif self._stepped:
            self.gamma = self.effective_parameters(jj)
            self.alpha = self.gamma / (2 * ssw) if ssw > 0 else 1.0
            beta = (n_err - self.gamma) / (2 * sse) if sse > 0 else 1.0
            self.beta = beta if beta > 0 else self.beta  # γ → N·K (as many weights as errors)
        self._stepped = False
        self.ssw = ssw
        return sse, jj, je

    def update(self, X, T, sse, jj, je):
        info = super().update(X, T, sse, jj, je)
        self._stepped = info["accepted"]
        return info

    def state(self) -> dict:
        return {"gamk": self.gamma, "alpha": self.alpha, "beta": self.beta, "ssX": self.ssw}

    def checkpoint_state(self) -> dict:
        """μ, and γ, α, β, the sum of squared weights and whether the last step was
        taken (the next linearization re-estimates α and β from them)."""
        return {**super().checkpoint_state(), "gamma": self.gamma, "alpha": self.alpha, "beta": self.beta,
                "ssw": self.ssw, "stepped": self._stepped}

    def check_checkpoint_state(self, state) -> dict:
        out = super().check_checkpoint_state(state)
        for key in ("gamma", "alpha", "beta", "ssw"):
            v = state[key]
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                  or v < 0):
                raise ValueError(f"solver state: {key}: got {v!r}; expected a finite number >= 0 or null")
            out[key] = None if v is None else float(v)
        if not isinstance(state["stepped"], bool):
            raise ValueError(f"solver state: stepped: got {state['stepped']!r}; expected true or false")
        out["stepped"] = state["stepped"]
        return out

    def load_checkpoint_state(self, state: dict) -> None:
        super().load_checkpoint_state(state)
        self.gamma, self.alpha, self.beta, self.ssw = (state[k] for k in ("gamma", "alpha", "beta", "ssw"))
        self._stepped = state["stepped"]
