"""Diagnostics: gradient check (per-layer statistics and health verdicts come later)."""
from .gradcheck import GradcheckResult, gradcheck

__all__ = ["gradcheck", "GradcheckResult"]
