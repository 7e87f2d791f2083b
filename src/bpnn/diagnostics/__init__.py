"""Diagnostics: gradient check, per-layer statistics during training, health verdicts."""
from .gradcheck import GradcheckResult, gradcheck
from .health import Thresholds, Verdict, diagnose
from .probe import Probe, named_leaves
from .stats import LayerStats, layer_statistics

__all__ = ["gradcheck", "GradcheckResult", "LayerStats", "layer_statistics", "Probe", "named_leaves",
           "diagnose", "Verdict", "Thresholds"]
