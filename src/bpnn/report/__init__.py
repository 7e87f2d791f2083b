"""The report of a study: one self-contained HTML file (matplotlib figures embedded as
PNG), written by ``bpnn compare`` and re-rendered from saved results by ``bpnn report``.
The MATLAB-style plots of one training run are in :mod:`bpnn.plotting`
(also importable as ``bpnn.plotting``)."""
from __future__ import annotations

import os

from .._atomic import write_text_atomic
from .html import esc, make_figures, render


def write_report(result, path, n_jobs: int = -1) -> str:
    """Render ``result`` (a :class:`~bpnn.experiment.StudyResult`) to the HTML file ``path``;
    figures are drawn on ``n_jobs`` processes (default all cores; 1: in this process)."""
    page = render(result, n_jobs=n_jobs)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomic(path, page)
    return path


def render_run_dir(run_dir, out=None, n_jobs: int = -1) -> str:
    """Re-render the report of a run directory from its ``results.json``; returns the path
    written (``RUN_DIR/report.html`` unless ``out`` is given)."""
    from ..experiment import StudyResult

    result = StudyResult.load(run_dir)
    base = run_dir if os.path.isdir(run_dir) else os.path.dirname(run_dir)
    return write_report(result, out or os.path.join(base, "report.html"), n_jobs)


__all__ = ["write_report", "render_run_dir", "render", "make_figures", "esc"]
