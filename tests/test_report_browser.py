"""The default `bpnn compare` report, opened in a real headless Chromium: no console errors,
no request leaves the file, every figure decodes and every table is there.

Needs Playwright's Python package (``pip install playwright``; its bundled browsers are
NOT needed) and a Chromium on the PATH (Debian: ``apt-get install chromium``) or named
by ``$BPNN_CHROMIUM``; skipped with the reason otherwise. The study is the default one
(7 initializations × 3 seeds, 10 hidden layers, digits) cut to 3 epochs to keep the
test short; ``BPNN_TEST_FULL_DEFAULT=1`` runs the default exactly (20 epochs).
"""
import os

import pytest

from bpnn import cli

pytest.importorskip("matplotlib", reason="the report needs matplotlib (bpnn[report])")
pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
from _browser import FLAGS, chromium  # noqa: E402

@pytest.fixture(scope="module")
def default_report(tmp_path_factory):
    if chromium() is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set BPNN_CHROMIUM)")
    out = tmp_path_factory.mktemp("compare") / "run"
    argv = ["compare", "--out", str(out), "--quiet"]
    if not os.environ.get("BPNN_TEST_FULL_DEFAULT"):
        argv += ["--epochs", "3"]
    assert cli.main(argv) == 0
    return out / "report.html"


def test_default_report_in_headless_chromium(default_report):
    console, page_errors, requests, blocked = [], [], [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))

            def guard(route):
                if route.request.url.startswith(("file://", "data:")):
                    route.continue_()
                else:  # anything else would be an external request: refuse and remember it
                    blocked.append(route.request.url)
                    route.abort()

            page.route("**/*", guard)
            page.goto(default_report.as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate("""Array.from(document.images).map(i => ({
                ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth, alt: i.alt}))""")
            tables = page.evaluate("Array.from(document.querySelectorAll('table')).map(t => t.tBodies[0].rows.length)")
            sections = page.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)")
            title = page.inner_text("h1")
            best = page.inner_text("tr.best")
            health = page.inner_text("#health")
        finally:
            browser.close()
    assert [m for m in console if m[0] in ("error", "warning")] == []
    assert page_errors == []
    assert blocked == []
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
    # every plot: the training curves, the depth profiles, one panel per initialization
    assert len(images) == 2 + 7 and all(i["ok"] and i["w"] > 300 for i in images), images
    # every table: results (one row per init), all runs (7 × 3), data (5 facts)
    assert tables == [7, 21, 5]
    assert sections == ["results", "health", "curves", "depth", "inside", "runs", "data", "config"]
    assert title == "Initialization study"
    assert "±" in best
    assert "unbroken symmetry" in health and "vanishing gradients" in health
