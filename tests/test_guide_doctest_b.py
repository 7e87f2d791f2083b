"""The user guide's pages 08–13 run as written: every ``>>>`` example of each page, in
order, in one namespace per page, with its printed output compared (doctest)."""
from __future__ import annotations

import doctest
import pathlib
import tempfile

import pytest

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide"
PAGES = [p for p in sorted(GUIDE.glob("*.md")) if p.name[:2].isdigit() and 8 <= int(p.name[:2]) <= 13]


def test_the_pages_are_there():
    assert [p.name[:2] for p in PAGES] == ["08", "09", "10", "11", "12", "13"]


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")  # the estimators' short max_iter, on purpose
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_guide_page_examples(page, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the pages' tempfile.mkdtemp() folders land here
    result = doctest.testfile(str(page), module_relative=False, globs={}, report=True,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{page.name} has no >>> examples"
    assert result.failed == 0, f"{page.name}: {result.failed} of {result.attempted} examples failed (see above)"
