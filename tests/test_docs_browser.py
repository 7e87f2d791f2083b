"""The built documentation site, opened in a real headless Chromium: the index, a user-guide
page and a gallery page (and the formulas page when there is one). On each: no console
errors or warnings, no request leaves the site's files (fonts, scripts, MathJax: all
served from the site), every image decodes, the page has its main heading, and the
mathematics, where there is some, is typeset by the site's own MathJax.

Reuses the session's build (``docs_site`` in ``tests/conftest.py``). Needs Playwright's
Python package (its bundled browsers are NOT needed) and a Chromium on the PATH or named
by ``$BPNN_CHROMIUM``, as ``tests/test_report_browser.py``; skipped with the reason
otherwise.

The Chinese edition (``zh_CN/``) is opened the same way, its index, a guide page and a
gallery page, and its Chinese text must be drawn with a font that has the characters:
Chromium reports (DevTools ``CSS.getPlatformFontsForNode``) which fonts drew a probe
made of the page's own Chinese characters, and each must be a font that fontconfig
lists for Chinese (``fc-list :lang=zh``). A missing glyph would be drawn as a box by a
Latin font, which this check refuses (``.ci/run`` installs a CJK font when there is none).
"""
from __future__ import annotations

import shutil
import subprocess

import pytest
from _docs import DOCS, gallery_scripts

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
from _browser import FLAGS, chromium  # noqa: E402

def _pages() -> dict[str, str]:
    """``{what: page}``: the index, the first user-guide page (the architecture page while
    the guide has none), the first gallery example (the gallery's index while it has none)
    and the formulas page if it exists."""
    guide = sorted(p for p in (DOCS / "guide").glob("*.md") if p.stem != "index")
    scripts = gallery_scripts()
    pages = {"index": "index.html",
             "guide": f"guide/{guide[0].stem}.html" if guide else "architecture.html",
             "gallery": f"auto_examples/{scripts[0].stem}.html" if scripts else "auto_examples/index.html"}
    if (DOCS / "formulas.md").exists():
        pages["formulas"] = "formulas.html"
    return pages


def visit(browser, url: str) -> dict:
    """Open ``url`` with every non-file request refused; what the page showed and logged."""
    console, errors, requests, blocked = [], [], [], []
    page = browser.new_page()
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))

    def guard(route):
        if route.request.url.startswith(("file://", "data:", "blob:")):
            route.continue_()
        else:  # anything else would be an external request: refuse it and remember it
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(url)
    page.wait_for_load_state("load")
    # MathJax typesets after the load event: wait for it where the page has mathematics
    typeset = page.evaluate("""async () => {
        if (!document.querySelector('.math')) return null;
        if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
        return document.querySelectorAll('mjx-container').length; }""")
    result = {
        "console": [m for m in console if m[0] in ("error", "warning")],
        "errors": errors,
        "blocked": blocked,
        "requests": requests,
        "images": page.evaluate("""Array.from(document.images).map(i => ({
            src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}))"""),
        "h1": page.evaluate("Array.from(document.querySelectorAll('article h1, main h1')).map(h => h.innerText.trim())"),
        "math": page.evaluate("document.querySelectorAll('.math').length"),
        "typeset": typeset,
    }
    page.close()
    return result


def _zh_pages() -> dict[str, str]:
    """The Chinese edition's index, first guide page and first gallery example."""
    return {what: f"zh_CN/{page}" for what, page in _pages().items() if what != "formulas"}


def cjk_fonts() -> set[str]:
    """The font families fontconfig has for Chinese (every name of each family)."""
    if shutil.which("fc-list") is None:
        return set()
    out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout
    return {name.strip() for line in out.splitlines() for name in line.split(",") if name.strip()}


def fonts_drawing(browser, url: str, text_js: str) -> tuple[str, list[dict]]:
    """The text a probe holds (``text_js`` evaluated in the page, appended to the article
    as a span with its styles) and the platform fonts Chromium drew it with."""
    page = browser.new_page()
    page.goto(url)
    page.wait_for_load_state("load")
    text = page.evaluate("""(textJs) => { const probe = document.createElement('span');
        probe.id = 'bpnn-font-probe'; probe.textContent = eval(textJs);
        document.querySelector('article').appendChild(probe); return probe.textContent; }""", text_js)
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "#bpnn-font-probe"})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    page.close()
    return text, fonts


# the page's own Chinese characters, up to 300 of them
PAGE_CJK = ("Array.from(document.querySelector('article').innerText)"
            ".filter(c => /[\\u3400-\\u9fff]/.test(c)).slice(0, 300).join('')")


def assert_clean(seen: dict) -> None:
    """What :func:`visit` saw is a sound page: no console error or warning, no request
    leaving the site's files, every image decoded, one main heading, and the mathematics
    (where there is some) typeset."""
    assert seen["console"] == [] and seen["errors"] == [], (seen["console"], seen["errors"])
    assert seen["blocked"] == [], f"external requests: {seen['blocked']}"
    assert all(u.startswith(("file://", "data:", "blob:")) for u in seen["requests"]), seen["requests"]
    broken = [i["src"] for i in seen["images"] if not i["ok"]]
    assert not broken, f"broken images: {broken}"
    assert len(seen["h1"]) == 1 and seen["h1"][0], f"main heading: {seen['h1']}"
    if seen["math"]:
        assert seen["typeset"] and seen["typeset"] >= seen["math"], "MathJax did not typeset the page's mathematics"


@pytest.fixture(scope="module")
def browser():
    if chromium() is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set BPNN_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.mark.parametrize("what", sorted(_pages()))
def test_page_in_headless_chromium(docs_site, browser, what):
    path = docs_site.html / _pages()[what]
    assert path.is_file(), f"{_pages()[what]} was not built"
    seen = visit(browser, path.as_uri())
    assert_clean(seen)
    if what == "index":
        assert seen["h1"][0].startswith("bpnn")
    if what == "gallery" and gallery_scripts():
        assert any("sphx_glr_" in i["src"] for i in seen["images"]), "the example's figure is not on its page"


def test_the_guard_sees_an_external_request_and_a_broken_image(browser, tmp_path):
    page = tmp_path / "page.html"
    page.write_text('<html><body><main><h1>T</h1><img src="https://example.org/x.png">'
                    '<img src="missing.png"></main></body></html>')
    seen = visit(browser, page.as_uri())
    assert seen["blocked"] == ["https://example.org/x.png"]
    assert [i["ok"] for i in seen["images"]] == [False, False]
    assert seen["h1"] == ["T"]


@pytest.mark.parametrize("what", sorted(_zh_pages()))
def test_chinese_page_in_headless_chromium(docs_site, browser, what):
    path = docs_site.html / _zh_pages()[what]
    assert path.is_file(), f"{_zh_pages()[what]} was not built"
    seen = visit(browser, path.as_uri())
    assert_clean(seen)
    families = cjk_fonts()
    if not families:
        pytest.skip("fontconfig lists no font for Chinese (apt-get install fonts-noto-cjk)")
    text, fonts = fonts_drawing(browser, path.as_uri(), PAGE_CJK)
    assert len(text) >= 20, f"the page has little Chinese text: {text!r}"
    assert sum(f["glyphCount"] for f in fonts) == len(text)
    latin = [f["familyName"] for f in fonts if f["familyName"] not in families]
    assert not latin, f"Chinese characters drawn by fonts without them (boxes): {latin}; Chinese fonts: {sorted(families)}"


def test_the_font_check_sees_characters_no_font_has(docs_site, browser):
    families = cjk_fonts()
    if not families:
        pytest.skip("fontconfig lists no font for Chinese")
    # Tangut: no font on the machine has it, so it is drawn as boxes by the default font
    text, fonts = fonts_drawing(browser, (docs_site.html / "zh_CN" / "index.html").as_uri(), "'\\u{17000}\\u{17001}'")
    assert len(text) == 2
    assert [f["familyName"] for f in fonts if f["familyName"] not in families]
