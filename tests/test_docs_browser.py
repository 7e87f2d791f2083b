"""The built documentation site, opened in a real headless Chromium: the index, a user-guide
page and a gallery page (and the formulas page when there is one). On each: no console
errors or warnings, no request leaves the site's files (fonts, scripts, MathJax: all
served from the site), every image decodes, the page has its main heading, and the
mathematics, where there is some, is typeset by the site's own MathJax.

Reuses the session's build (``docs_site`` in ``tests/conftest.py``). Needs Playwright's
Python package (its bundled browsers are NOT needed) and a Chromium on the PATH or named
by ``$BPNN_CHROMIUM``, as ``tests/test_report_browser.py``; skipped with the reason
otherwise.
"""
from __future__ import annotations

import os
import shutil

import pytest
from _docs import DOCS, gallery_scripts

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def _chromium():
    for name in (os.environ.get("BPNN_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        path = name and shutil.which(name)
        if path:
            return path
    return None


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


@pytest.fixture(scope="module")
def browser():
    if _chromium() is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set BPNN_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=_chromium(), args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.parametrize("what", sorted(_pages()))
def test_page_in_headless_chromium(docs_site, browser, what):
    path = docs_site.html / _pages()[what]
    assert path.is_file(), f"{_pages()[what]} was not built"
    seen = visit(browser, path.as_uri())
    assert seen["console"] == [] and seen["errors"] == [], (seen["console"], seen["errors"])
    assert seen["blocked"] == [], f"external requests: {seen['blocked']}"
    assert all(u.startswith(("file://", "data:", "blob:")) for u in seen["requests"]), seen["requests"]
    broken = [i["src"] for i in seen["images"] if not i["ok"]]
    assert not broken, f"broken images: {broken}"
    assert len(seen["h1"]) == 1 and seen["h1"][0], f"main heading: {seen['h1']}"
    if what == "index":
        assert seen["h1"][0].startswith("bpnn")
    if what == "gallery" and gallery_scripts():
        assert any("sphx_glr_" in i["src"] for i in seen["images"]), "the example's figure is not on its page"
    if seen["math"]:
        assert seen["typeset"] and seen["typeset"] >= seen["math"], "MathJax did not typeset the page's mathematics"


def test_the_guard_sees_an_external_request_and_a_broken_image(browser, tmp_path):
    page = tmp_path / "page.html"
    page.write_text('<html><body><main><h1>T</h1><img src="https://example.org/x.png">'
                    '<img src="missing.png"></main></body></html>')
    seen = visit(browser, page.as_uri())
    assert seen["blocked"] == ["https://example.org/x.png"]
    assert [i["ok"] for i in seen["images"]] == [False, False]
    assert seen["h1"] == ["T"]
