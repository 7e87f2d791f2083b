"""Sphinx configuration of bpnn's documentation site.

Build it (from the repository root)::

    .venv/bin/pip install -e ".[docs]"
    .venv/bin/python -m sphinx -W -b html docs docs/_build/html

Why Sphinx rather than MkDocs: the API reference is generated from the docstrings
(autodoc + autosummary, numpydoc sections through napoleon, cross-references checked
with ``nitpicky``); the gallery is executed at build time by sphinx-gallery, so every
figure comes from the code as it is; code can be checked with ``sphinx.ext.doctest``;
and gettext catalogs (``-b gettext`` + ``language``) give the translated builds.

Nothing is fetched at build time or when a page is read: no intersphinx, MathJax is
served from the site itself (sphinx-mathjax-offline), and the furo theme uses the
system fonts.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
if SRC.is_dir():  # document the tree next to this file, installed or not
    sys.path.insert(0, str(SRC))
sys.path.insert(0, str(HERE / "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")

import bpnn  # noqa: E402

project = "bpnn"
author = "the bpnn developers"
copyright = "the bpnn developers"
version = release = bpnn.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "sphinx_gallery.gen_gallery",
    "bpnn_api",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# gallery/ holds the scripts (sphinx-gallery renders them into auto_examples/); _ext and
# _templates are code, not pages; sphinx-gallery's time reports stay files (read by tests/_docs.py), not
# pages: their page would load DataTables from a CDN
templates_path = ["_templates"]
exclude_patterns = ["_build", "gallery", "_ext", "_templates", "sg_execution_times.rst", "**/sg_execution_times.rst",
                    "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip"]

# -- strictness ---------------------------------------------------------------------
# Every cross-reference to a bpnn object must resolve. References to other libraries
# (numpy, typing, the words of a numpydoc type field) cannot, without intersphinx, which
# would need the network: those are ignored, and nothing else. Private objects
# (a path component with a leading underscore) have no pages by design.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!bpnn\b).*"),
    (r"py:.*", r"bpnn(\.\w+)*\._\w*.*"),
]

# -- MyST ---------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# -- API reference ------------------------------------------------------------------
# the pages are written by _ext/bpnn_api.py; autosummary draws the tables
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# -- gallery ------------------------------------------------------------------------
# Each lesson runs as a script in its fast mode (BPNN_GALLERY_FULL unset; =1 runs the
# full experiments). Without $BPNN_MNIST_DIR the MNIST lessons fall back to the bundled
# digits, so the build needs no data files and no network.
sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "show_signature": False,
    "within_subsection_order": "FileNameSortKey",
}

# -- translations -------------------------------------------------------------------
# The Chinese edition is this site built with ``-D language=zh_CN``: one gettext catalog
# per page under locale/zh_CN/LC_MESSAGES/<docname>.po.
locale_dirs = ["locale/"]
gettext_compact = False

# -- HTML ---------------------------------------------------------------------------
html_theme = "furo"
html_title = f"bpnn {release}"
html_static_path: list[str] = []
html_last_updated_fmt = None
html_show_sourcelink = False
# furo's sidebar, with a link to the same page in the other language under the search box
html_sidebars = {"**": ["sidebar/brand.html", "sidebar/search.html", "sidebar/language.html",
                        "sidebar/scroll-start.html", "sidebar/navigation.html", "sidebar/scroll-end.html"]}


def _drop_empty_globs(app, docname, source):
    """Drop a toctree's glob entry that matches no page yet (``formulas*``, the guide's
    ``*``), so that pages written later slot in and the site builds before they exist.
    Sphinx would warn about such an entry, and its warning cannot be suppressed."""
    from sphinx.util.matching import patfilter
    from sphinx.util import docname_join

    lines, in_toctree, is_glob = [], False, False
    for line in source[0].splitlines(keepends=True):
        text = line.strip()
        if text.startswith("```{toctree}"):
            in_toctree, is_glob = True, False
        elif in_toctree and text.startswith("```"):
            in_toctree = False
        elif in_toctree and text == ":glob:":
            is_glob = True
        elif (in_toctree and is_glob and text and not text.startswith(":") and any(c in text for c in "*?[")
              and not patfilter(app.env.found_docs - {docname}, docname_join(docname, text))):
            continue
        lines.append(line)
    source[0] = "".join(lines)


def _language_pages(app, config):
    """Pages written in Chinese only (zh_CN/, the glossary) belong to the Chinese edition
    (the index's ``zh_CN/*`` entry then matches nothing in the English one, and is dropped)."""
    if not (config.language or "en").startswith("zh"):
        config.exclude_patterns.append("zh_CN/**")


def _translate_run_time(app, docname, source):
    """sphinx-gallery's line "Total running time of the script: (m minutes s seconds)"
    carries each build's own time, so no catalog can hold it: the Chinese edition words it
    here (the rest of a lesson's page is translated by its catalog)."""
    import re

    if docname.startswith("auto_examples/") and (app.config.language or "en").startswith("zh"):
        source[0] = re.sub(r"\*\*Total running time of the script:\*\*\s*\(\s*(\d+) minutes\s+([\d.]+) seconds\)",
                           r"**脚本总运行时间：** \1 分 \2 秒", source[0])


def setup(app):
    # served from the site, as SVG: no web fonts to load (file:// pages may not load them)
    app.config.mathjax_path = "mathjax/tex-svg.js"
    app.connect("source-read", _drop_empty_globs)
    app.connect("source-read", _translate_run_time)
    app.connect("config-inited", _language_pages)
