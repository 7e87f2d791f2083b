"""The Chinese edition of the documentation site (``sphinx -D language=zh_CN``, built into
``zh_CN/`` of the session's site by ``tests/_docs.py``) is complete and strict:

- it builds without a warning, with every page of the English site, the glossary, and
  ``lang="zh-CN"``;
- every catalog of ``docs/locale/zh_CN`` is complete (no empty or fuzzy message);
- the pages the Chinese readers learn from (the index, getting started, the user guide,
  the formulas page, the gallery) are translated: each has its catalog, and no paragraph,
  heading or list item of prose on its built page is left in English;
- its code is the English site's code, block for block, so the code the Chinese pages
  show is the code the doctests run (``tests/test_guide_doctest.py``,
  ``tests/test_formulas_doctest.py``, the gallery tests).

Its internal links are checked with the English site's (``tests/test_docs.py`` walks
every page under the site's folder, ``zh_CN/`` included).
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _docs import DOCS, gallery_scripts

LOCALE = DOCS / "locale" / "zh_CN" / "LC_MESSAGES"
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def translated_docnames() -> list[str]:
    """The pages that must be read in Chinese: the index, getting started, the user guide,
    the formulas page and every gallery lesson (with the gallery's index)."""
    names = ["index", "getting-started", "formulas", "auto_examples/index"]
    names += [f"guide/{p.stem}" for p in sorted((DOCS / "guide").glob("*.md"))]
    names += [f"auto_examples/{p.stem}" for p in gallery_scripts()]
    return names


@pytest.fixture(scope="module")
def zh(docs_site):
    return docs_site.translations["zh_CN"]


def test_the_chinese_edition_builds_strictly_with_every_page(docs_site, zh):
    assert zh.returncode == 0
    assert not re.search(r"\b(WARNING|ERROR)\b", zh.log), zh.log[-4000:]
    english = {p.relative_to(docs_site.html) for p in docs_site.html.rglob("*.html")
               if zh.html not in p.parents}
    chinese = {p.relative_to(zh.html) for p in zh.html.rglob("*.html")}
    assert english - chinese == set(), f"pages missing from the Chinese edition: {sorted(english - chinese)[:20]}"
    assert (zh.html / "zh_CN" / "glossary.html").is_file()
    assert 'href="zh_CN/glossary.html"' in (zh.html / "index.html").read_text(encoding="utf-8")
    assert '<html class="no-js" lang="zh-CN"' in (zh.html / "index.html").read_text(encoding="utf-8")


def _catalogs():
    return sorted(LOCALE.rglob("*.po"))


@pytest.mark.parametrize("catalog", _catalogs(), ids=lambda p: str(p.relative_to(LOCALE)))
def test_every_catalog_is_complete(catalog):
    babel = pytest.importorskip("babel.messages.pofile")
    with catalog.open("rb") as handle:
        messages = [m for m in babel.read_po(handle) if m.id]
    assert messages, "an empty catalog"
    empty = [m.id for m in messages if not m.string]
    fuzzy = [m.id for m in messages if m.fuzzy]
    assert not empty and not fuzzy, f"untranslated: {empty[:5]}, fuzzy: {fuzzy[:5]}"


class _Prose(HTMLParser):
    """The text of each paragraph, heading, list item and table cell of a page's article,
    leaving out code, mathematics and sphinx-gallery's captured output; and the text of
    each code block."""

    BLOCKS = {"p", "h1", "h2", "h3", "h4", "li", "td", "th", "dt", "dd", "figcaption"}
    SKIPPED = {"pre", "code", "script", "style"}

    def __init__(self):
        super().__init__()
        self.blocks, self.code, self._stack, self._skip, self._in_article = [], [], [], 0, 0
        self._pre = None

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "article":
            self._in_article += 1
        if tag in ("br", "img", "hr", "meta", "link", "input", "wbr"):
            return
        skip = tag in self.SKIPPED or {"math", "sphx-glr-script-out", "sig"} & set(classes)
        self._stack.append((tag, skip))
        self._skip += bool(skip)
        if tag == "pre" and self._pre is None:
            self._pre = []
        if tag in self.BLOCKS:
            self.blocks.append([])

    def handle_endtag(self, tag):
        if tag == "article":
            self._in_article -= 1
        while self._stack:
            open_tag, skip = self._stack.pop()
            self._skip -= bool(skip)
            if open_tag == "pre" and self._pre is not None:
                self.code.append("".join(self._pre))
                self._pre = None
            if open_tag == tag:
                break

    def handle_data(self, data):
        if self._pre is not None:
            self._pre.append(data)
        if self._in_article and not self._skip and self.blocks:
            self.blocks[-1].append(data)

    def english_blocks(self) -> list[str]:
        """The blocks of prose in English: some words and not one Chinese character."""
        texts = (" ".join("".join(b).split()) for b in self.blocks)
        return [t for t in texts if len(LATIN_WORD.findall(t)) >= 4 and not CJK.search(t)]


def _parse(path: Path) -> _Prose:
    parser = _Prose()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.parametrize("docname", translated_docnames())
def test_the_page_is_read_in_chinese(zh, docname):
    assert (LOCALE / f"{docname}.po").is_file(), f"no catalog for {docname}"
    english = _parse(zh.html / f"{docname}.html").english_blocks()
    assert english == [], f"{len(english)} blocks left in English on {docname}: {english[:5]}"


@pytest.mark.parametrize("docname", translated_docnames())
def test_the_chinese_page_shows_the_tested_code(docs_site, zh, docname):
    english, chinese = _parse(docs_site.html / f"{docname}.html"), _parse(zh.html / f"{docname}.html")
    assert chinese.code == english.code


def test_the_prose_check_sees_english_and_ignores_code_and_math():
    parser = _Prose()
    parser.feed('<article><h1>标题</h1><p>This sentence was left in English.</p><p>这一段是中文，含 `code`。</p>'
                '<p><code>model.fit(X, y, epochs=3)</code></p><p><span class="math">a b c d e</span></p>'
                '<div class="sphx-glr-script-out"><p>printed output in English words here</p></div>'
                '<pre>x = 1  # some code in English here</pre></article><p>Outside the article text here.</p>')
    assert parser.english_blocks() == ["This sentence was left in English."]
    assert parser.code == ["x = 1  # some code in English here"]
