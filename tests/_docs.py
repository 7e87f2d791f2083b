"""Build the documentation site once per test session (the ``docs_site`` fixture of
``tests/conftest.py``), for ``tests/test_docs.py`` and ``tests/test_docs_browser.py``.

The build is the README's command, strict: ``python -m sphinx -W --keep-going -b html``,
in a subprocess, on a copy of ``docs/`` in a temporary folder (so the gallery's outputs
and the generated API pages never land in the working tree), with the gallery in its
fast mode (``BPNN_GALLERY_FULL`` and ``BPNN_MNIST_DIR`` unset: the MNIST lessons fall
back to the bundled digits, as on CI). sphinx-gallery's own report of each example's
run time (``sg_execution_times.rst``) is read back.
"""
from __future__ import annotations

import importlib.util
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# what building needs beyond bpnn's own dependencies (the docs extra)
REQUIRED = ("sphinx", "myst_parser", "sphinx_gallery", "furo", "sphinx-mathjax-offline", "matplotlib", "sklearn")
# build products of an earlier build in the working tree, never copied
_PRODUCTS = ("_build", "auto_examples", "generated", "modules", "sg_execution_times.rst")


def _products(docs: Path, folder: str, names: list[str]) -> set[str]:
    """What ``copytree`` leaves out: the build products at the top of ``docs/`` (not the
    catalogs of the same names under ``locale/``), compiled catalogs and byte code anywhere."""
    top = Path(folder) == docs
    return {n for n in names if (top and n in _PRODUCTS) or n == "__pycache__" or n.endswith(".mo")}


@dataclass
class Site:
    """A built site: its HTML folder, the source copy it was built from, the build's
    wall and CPU time, its log, and each gallery example's run time as sphinx-gallery reports it."""

    html: Path
    source: Path
    returncode: int
    seconds: float
    cpu_seconds: float
    log: str
    example_seconds: dict = field(default_factory=dict)
    translations: dict = field(default_factory=dict)  # {language: Site} built into html/<language>

    def summary(self) -> str:
        lines = [f"docs build: {self.seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU (sphinx -W, gallery in "
                 f"fast mode), {len(self.example_seconds)} gallery example(s)"]
        lines += [f"  {name}: {sec:.2f} s" for name, sec in sorted(self.example_seconds.items())]
        lines += [f"{language} edition: {s.seconds:.1f} s wall, {s.cpu_seconds:.1f} s CPU"
                  for language, s in self.translations.items()]
        return "\n".join(lines)


def missing() -> list[str]:
    """The packages the build needs that are not installed."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def gallery_scripts() -> list[Path]:
    """The gallery's lesson scripts, the ones sphinx-gallery executes (``plot_*.py``)."""
    return sorted((DOCS / "gallery").glob("plot_*.py"))


def example_times(report: Path) -> dict:
    """``{script name: seconds}`` from sphinx-gallery's ``sg_execution_times.rst``."""
    if not report.exists():
        return {}
    text = report.read_text(encoding="utf-8")
    rows = re.findall(r"\(``([^`]+?\.py)``\)\s*\n\s*-\s*(\d+):(\d+(?:\.\d+)?)", text)
    return {Path(path).name: int(minutes) * 60 + float(seconds) for path, minutes, seconds in rows}


# The translated editions, each built into <language>/ inside the English site (the
# README's command), where the sidebar's language link expects it.
LANGUAGES = ("zh_CN",)


def build(workdir: Path, docs: Path = DOCS) -> Site:
    """Copy ``docs`` into ``workdir`` (beside a link to ``src/``, which ``docs/conf.py``
    puts on the path) and build it there: the English site, then, when that succeeded,
    each translated edition from the same copy (whose gallery outputs sphinx-gallery
    reuses instead of running the examples again)."""
    source = workdir / "docs"
    shutil.copytree(docs, source, ignore=lambda folder, names: _products(docs, folder, names))
    (workdir / "src").symlink_to(ROOT / "src", target_is_directory=True)
    site = _sphinx(source, workdir / "html")
    if site.returncode == 0:
        for language in LANGUAGES:
            site.translations[language] = _sphinx(source, site.html / language, "-D", f"language={language}")
    return site


def _sphinx(source: Path, html: Path, *options: str) -> Site:
    """``python -m sphinx -W --keep-going -b html [options] source html`` in a subprocess."""
    env = {k: v for k, v in os.environ.items() if k not in ("BPNN_GALLERY_FULL", "BPNN_MNIST_DIR")}
    env["MPLBACKEND"] = "Agg"
    start, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", *options,
                           str(source), str(html)], cwd=source.parent, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    return Site(html, source, proc.returncode, seconds, cpu, proc.stdout + proc.stderr,
                example_times(source / "sg_execution_times.rst") if not options else {})


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# the session's build, for the terminal summary (tests/conftest.py)
BUILT: list[Site] = []
