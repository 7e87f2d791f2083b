"""The documentation site builds strictly and completely.

The site is built once per session (``docs_site`` in ``tests/conftest.py``, by
``tests/_docs.py``: ``python -m sphinx -W --keep-going -b html`` with the gallery in
its fast mode); the tests read what it wrote:

- every page of the table of contents is there, the guide pages that exist included;
- every gallery script was executed (sphinx-gallery's time report lists it, each under
  a minute) and its page shows its figure;
- every public name of bpnn (``bpnn.__all__`` and the ``__all__`` of each public module
  under it) has an entry in the objects inventory (``objects.inv``), on a page that
  exists;
- every internal link and resource of every page resolves: the file exists, and so does
  the ``#anchor`` in it.

The build's time and each example's are printed in pytest's terminal summary.
"""
from __future__ import annotations

import importlib
import pkgutil
import posixpath
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from _docs import DOCS, gallery_scripts

# pages the root toctree names, as built
PAGES = ["index.html", "getting-started.html", "guide/index.html", "auto_examples/index.html",
         "api/index.html", "architecture.html", "matlab.html"]


def test_the_site_builds_strictly_with_every_page(docs_site):
    assert docs_site.returncode == 0
    assert not re.search(r"\b(WARNING|ERROR)\b", docs_site.log), docs_site.log[-4000:]
    missing = [p for p in PAGES if not (docs_site.html / p).is_file()]
    assert not missing, f"pages not built: {missing}"
    guide_index = (docs_site.html / "guide" / "index.html").read_text(encoding="utf-8")
    for page in sorted((DOCS / "guide").glob("*.md")):
        if page.stem != "index":
            assert (docs_site.html / "guide" / f"{page.stem}.html").is_file()
            assert f'href="{page.stem}.html"' in guide_index, f"the guide's index does not list {page.name}"
    if (DOCS / "formulas.md").exists():
        assert 'href="formulas.html"' in (docs_site.html / "index.html").read_text(encoding="utf-8")


def test_every_gallery_example_ran_and_shows_its_figure(docs_site):
    index = (docs_site.html / "auto_examples" / "index.html").read_text(encoding="utf-8")
    for script in gallery_scripts():
        page = docs_site.html / "auto_examples" / f"{script.stem}.html"
        assert page.is_file(), f"{script.name} has no page"
        assert f'href="{script.stem}.html"' in index, f"the gallery's index does not list {script.name}"
        assert script.name in docs_site.example_seconds, f"{script.name} was not executed"
        assert docs_site.example_seconds[script.name] < 60, f"{script.name} ran over a minute in its fast mode"
        assert re.search(rf'<img[^>]+src="[^"]*sphx_glr_{re.escape(script.stem)}_\d+\.png"',
                         page.read_text(encoding="utf-8")), f"{script.name}'s page shows no figure"
    assert set(docs_site.example_seconds) == {s.name for s in gallery_scripts()}


def public_api() -> dict[str, list[str]]:
    """``{module: its __all__}`` for ``bpnn`` and every public module directly under it."""
    import bpnn

    modules = ["bpnn", *sorted(f"bpnn.{m.name}" for m in pkgutil.iter_modules(bpnn.__path__)
                                if not m.name.startswith("_"))]
    api = {}
    for name in modules:
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), f"{name} has no __all__: list its public names there"
        api[name] = list(module.__all__)
    return api


def inventory(html: Path) -> dict[str, str]:
    """``{name: page}`` of every Python object in the site's ``objects.inv``."""
    from sphinx.util.inventory import InventoryFile

    with open(html / "objects.inv", "rb") as stream:
        data = InventoryFile.load(stream, "", posixpath.join)
    # Sphinx 8.2+ gives items with a ``uri``; before, (project, version, uri, display name)
    uris = {name: getattr(item, "uri", None) or item[2] for role, items in data.items() if role.startswith("py:")
            for name, item in items.items()}
    return {name: uri.split("#")[0] for name, uri in uris.items()}


def test_every_public_name_has_an_api_entry(docs_site):
    entries = inventory(docs_site.html)
    api = public_api()
    assert sum(len(names) for names in api.values()) > 200
    missing = [m for m in api if m not in entries]
    missing += [f"{m}.{n}" for m, names in api.items() for n in names if f"{m}.{n}" not in entries]
    assert not missing, f"public names without an API entry: {missing}"
    for name in [*api, *(f"{m}.{n}" for m, names in api.items() for n in names)]:
        assert (docs_site.html / entries[name]).is_file(), f"{name}: its page {entries[name]} does not exist"


class _Links(HTMLParser):
    """The ids (anchors) of a page and the URLs it refers to (href and src)."""

    def __init__(self):
        super().__init__()
        self.ids, self.urls = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key):
                self.urls.append(attrs[key])


def broken_links(html: Path) -> list[str]:
    """``page: url (why)`` for each relative href/src of the site's pages whose file, or
    whose ``#anchor`` in that file, does not exist."""
    pages, found = {}, []

    def parsed(path: Path) -> _Links:
        if path not in pages:
            parser = _Links()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            pages[path] = parser
        return pages[path]

    for page in sorted(html.rglob("*.html")):
        for url in parsed(page).urls:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:", "data:")):
                continue  # external links are links, not requests: the browser test guards requests
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if parts.path.endswith("/"):
                target = target / "index.html"
            where = f"{page.relative_to(html)}: {url}"
            if not target.exists():
                found.append(f"{where} (no such file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in parsed(target).ids:
                found.append(f"{where} (no such anchor)")
    return found


def test_every_internal_link_resolves(docs_site):
    pages = list(docs_site.html.rglob("*.html"))
    assert len(pages) > 200, "the API reference's pages are missing"
    broken = broken_links(docs_site.html)
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(broken[:50])


def test_the_link_check_catches_planted_breaks(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.html").write_text('<h1 id="top">A</h1><a href="sub/b.html#here">ok</a> <a href="#top">ok</a>'
                                     '<a href="https://example.org/x">external</a>'
                                     '<a href="sub/b.html#gone">bad anchor</a><img src="missing.png">'
                                     '<a href="nowhere.html">bad file</a>')
    (tmp_path / "sub" / "b.html").write_text('<p id="here">B</p><a href="../a.html#top">ok</a><a name="n"></a>'
                                             '<a href="#n">ok</a>')
    assert broken_links(tmp_path) == ["a.html: sub/b.html#gone (no such anchor)", "a.html: missing.png (no such file)",
                                      "a.html: nowhere.html (no such file)"]


@pytest.mark.parametrize("name", ["bpnn.Dense", "bpnn.nn.Dense", "bpnn.Trainer", "bpnn.optim.L2", "bpnn.backend.xp"])
def test_an_alias_and_its_home_both_resolve(docs_site, name):
    """A name exported by several modules has its page at home and an entry everywhere:
    ``bpnn.Dense`` is listed on the ``bpnn`` page and links to ``bpnn.nn.Dense``'s page."""
    entries = inventory(docs_site.html)
    assert name in entries
    if name == "bpnn.Dense":
        page = (docs_site.html / entries[name]).read_text(encoding="utf-8")
        assert f'href="../generated/{entries["bpnn.nn.Dense"].split("/")[-1]}#bpnn.nn.Dense"' in page


def test_values_are_described_by_their_comments_not_their_types(docs_site):
    """A documented value (``bpnn.io.OPSET``, a registry) shows the ``#:`` comment where it
    is assigned, not the docstring of ``int``, ``list`` or the registry class."""
    generic = ["int([x]) -&gt; integer", "str(object=", "Built-in mutable sequence", "dict() -&gt; new empty",
               "Name → class table for one family"]
    found = [f"{page.name}: {text}" for page in sorted((docs_site.html / "api").rglob("*.html"))
             for text in generic if text in page.read_text(encoding="utf-8")]
    assert not found, "\n".join(found)
