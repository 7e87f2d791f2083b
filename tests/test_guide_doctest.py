"""The user guide's examples run: every ``>>>`` line of every ``docs/guide/*.md`` page.

Each page's ```` ```pycon ```` blocks are one doctest, run with the standard library's
:mod:`doctest` (``ELLIPSIS | NORMALIZE_WHITESPACE``) in one namespace per page, so a
block may use the names an earlier block of the same page defined, once with the
compiled kernels and once with the NumPy fallbacks (the ``kernels`` fixture), which must
print the same. Lines outside those blocks are blanked rather than removed, so a failure
reports the page's own line number.

The pages are found by globbing (``index.md`` aside), one parametrized test each: the
pages 01-07 (backpropagation by hand to CNNs) and the later ones (08-13:
Levenberg-Marquardt and the MATLAB workflow, K-FAC, diagnostics and the report, studies
and clusters, files and interop, the scikit-learn estimators) are all covered by this
one test, as soon as a page exists; a page needs nothing but its ```` ```pycon ````
blocks. Every page must hold at least one example, and ``>>>`` lines in a block of
another language (which would silently not run) are refused.

Writing examples for a page: show exact outputs where they are deterministic (a seeded
model gives the same weights on every run; print floats rounded, e.g. ``f"{x:.4f}"``, so
both runs print the same),
use ``...`` with ELLIPSIS for the rest, pass ``verbose=False`` to ``fit``, and keep a
page's examples to a few seconds.
"""
from __future__ import annotations

import doctest
import pathlib
import re

import pytest

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide"
PAGES = sorted(p for p in GUIDE.glob("*.md") if p.name != "index.md")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*\{?([\w-]*)\}?")


def fenced_blocks(text: str):
    """``(language, first line number, lines)`` of each fenced block of a Markdown text
    (language "" for a bare fence; MyST's ```` ```{math} ```` gives "math")."""
    blocks, current = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line)
        if current is None:
            if fence:
                current = (fence.group(1), fence.group(2), number + 1, [])
        elif line.strip() == current[0][0] * len(current[0]):
            blocks.append((current[1], current[2], current[3]))
            current = None
        else:
            current[3].append(line)
    return blocks


def doctest_text(text: str) -> str:
    """``text`` with every line outside a ```` ```pycon ```` block (fences included) blanked."""
    out = [""] * len(text.splitlines())
    for language, first, lines in fenced_blocks(text):
        if language == "pycon":
            out[first - 1:first - 1 + len(lines)] = lines
    return "\n".join(out) + "\n"


def test_the_guide_has_pages():
    assert len(PAGES) >= 7, f"expected the user guide's pages in {GUIDE}, found {[p.name for p in PAGES]}"


def test_blanking_keeps_only_pycon_blocks_and_line_numbers():
    page = "text >>> not code\n```pycon\n>>> 1 + 1\n2\n```\n```{math}\n>>> 3\n```\n"
    assert doctest_text(page) == "\n\n>>> 1 + 1\n2\n\n\n\n\n"
    assert [(lang, first) for lang, first, _ in fenced_blocks(page)] == [("pycon", 3), ("math", 7)]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_guide_page_examples_run(page, kernels):
    source = page.read_text(encoding="utf-8")
    misplaced = [f"line {first}" for language, first, lines in fenced_blocks(source)
                 if language != "pycon" and any(line.lstrip().startswith(">>>") for line in lines)]
    assert not misplaced, f"{page.name}: >>> examples outside a ```pycon block do not run: {misplaced}"
    test = doctest.DocTestParser().get_doctest(doctest_text(source), {"__name__": f"guide_{page.stem}"},
                                               page.name, str(page), 0)
    assert test.examples, f"{page.name}: no ```pycon example with >>> lines; every guide page shows its API"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    result = runner.run(test, out=report.append)
    assert result.failed == 0, f"{page.name}: {result.failed} of {result.attempted} examples failed\n" + "".join(report)
