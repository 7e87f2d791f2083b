"""The user guide's examples run: every ``>>>`` line of every ``docs/guide/*.md`` page.

Each page's ```` ```pycon ```` blocks are one doctest, run with the standard library's
:mod:`doctest` (``ELLIPSIS | NORMALIZE_WHITESPACE``) in one namespace per page, so a
block may use the names an earlier block of the same page defined. Lines outside those
blocks are blanked rather than removed, so a failure reports the page's own line
number. The pages are found by globbing, one parametrized test each: a new page of the
guide is covered as soon as it exists, and every page must hold at least one example.

Writing examples for a page: show exact outputs where they are deterministic (a seeded
model gives the same weights on every run; print floats rounded, e.g. ``f"{x:.4f}"``, so
the compiled kernels and the NumPy fallbacks, ``BPNN_DISABLE_NUMBA=1``, print the same),
use ``...`` with ELLIPSIS for the rest, and pass ``verbose=False`` to ``fit``.
"""
from __future__ import annotations

import doctest
import pathlib
import re

import pytest

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide"
PAGES = sorted(p for p in GUIDE.glob("*.md") if p.name != "index.md")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*\{?(\w*)\}?")


def doctest_text(text: str) -> str:
    """``text`` with every line outside a ```` ```pycon ```` block (fences included) blanked."""
    out, inside, marker = [], False, None
    for line in text.splitlines():
        fence = FENCE.match(line)
        if fence and not inside:
            inside, marker = True, (fence.group(1), fence.group(2))
            out.append("")
            continue
        if fence and inside and line.strip() == marker[0][0] * len(marker[0]):
            inside, marker = False, None
            out.append("")
            continue
        out.append(line if inside and marker[1] == "pycon" else "")
    return "\n".join(out) + "\n"


def test_the_guide_has_pages():
    assert len(PAGES) >= 7, f"expected the user guide's pages in {GUIDE}, found {[p.name for p in PAGES]}"


def test_blanking_keeps_only_pycon_blocks_and_line_numbers():
    page = "text >>> not code\n```pycon\n>>> 1 + 1\n2\n```\n```python\n>>> 3\n```\n"
    assert doctest_text(page) == "\n\n>>> 1 + 1\n2\n\n\n\n\n"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_guide_page_examples_run(page):
    text = doctest_text(page.read_text(encoding="utf-8"))
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {"__name__": f"guide_{page.stem}"}, page.name, str(page), 0)
    assert test.examples, f"{page.name}: no ```pycon example with >>> lines; every guide page shows its API"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    result = runner.run(test, out=report.append)
    assert result.failed == 0, f"{page.name}: {result.failed} of {result.attempted} examples failed\n" + "".join(report)
