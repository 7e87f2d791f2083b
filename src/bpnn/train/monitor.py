"""Shared logic of callbacks that watch one logged quantity for improvement."""
from __future__ import annotations

import math

from .. import _checks


class Monitor:
    """Tracks the best value of ``logs[monitor]`` with ``mode`` "min", "max" or "auto"
    ("auto": max for accuracy-like keys, min otherwise) and a ``min_delta``.

    ``threshold_mode="abs"`` (Keras): improved when better than best by more than
    min_delta; ``"rel"`` (torch's ReduceLROnPlateau): better than best · (1 ∓ min_delta).
    """

    def __init__(self, monitor: str, mode: str = "auto", min_delta: float = 0.0, threshold_mode: str = "abs"):
        self.monitor = monitor
        _checks.one_of("mode", mode, ("auto", "min", "max"))
        if mode == "auto":
            mode = "max" if ("acc" in monitor or monitor.endswith("r2")) else "min"
        self.mode = mode
        self.min_delta = abs(float(_checks.in_range("min_delta", min_delta, -math.inf, math.inf, True, True)))
        self.threshold_mode = _checks.one_of("threshold_mode", threshold_mode, ("abs", "rel"))
        self.best = math.inf if mode == "min" else -math.inf

    def value(self, logs) -> float:
        if self.monitor not in (logs or {}):
            raise ValueError(
                f"monitor: {self.monitor!r} is not in the logs; available keys: {', '.join(sorted(logs or {}))}"
                f" (val_ keys need validation_data or validation_split)"
            )
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            bound = self.best * (1 - self.min_delta) if self.threshold_mode == "rel" else self.best - self.min_delta
            return value < bound
        bound = self.best * (1 + self.min_delta) if self.threshold_mode == "rel" else self.best + self.min_delta
        return value > bound

    def state(self) -> dict:
        """JSON-safe state: an infinite ``best`` (nothing seen yet) is stored as None."""
        return {"best": self.best if math.isfinite(self.best) else None}

    def parse_state(self, state) -> float:
        """The ``best`` that :meth:`load_state` would set; ValueError for a state that
        :meth:`state` cannot have written."""
        if not isinstance(state, dict) or "best" not in state:
            raise ValueError(f"state: got {state!r}; expected a dict with 'best'")
        best = state["best"]
        if best is None:
            return math.inf if self.mode == "min" else -math.inf
        if isinstance(best, bool) or not isinstance(best, (int, float)) or not math.isfinite(best):
            raise ValueError(f"state: best of {self.monitor!r}: got {best!r}; expected a finite number or None")
        return float(best)

    def load_state(self, state: dict) -> None:
        self.best = self.parse_state(state)

    def describe_best(self) -> str:
        """``"best 0.123"`` or, before any finite value, ``"no finite value yet"``."""
        return f"best {self.best:.6g}" if math.isfinite(self.best) else "no finite value yet"
