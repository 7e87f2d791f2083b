"""Reading the HTML that bpnn builds, for the tests: its tables, images and tags
(``html.parser``, no dependency), and the size of a PNG."""
from __future__ import annotations

import base64
import struct
from html.parser import HTMLParser

PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The tables (header cells, body rows of cell texts), images and tags of an HTML text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tables, self.images, self.tags, self.text = [], [], [], []
        self._row = self._cell = self._section = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "table":
            self.tables.append({"head": [], "rows": []})
        elif tag in ("thead", "tbody"):
            self._section = tag
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr":
            table = self.tables[-1]
            if self._section == "thead":
                table["head"] = self._row
            else:
                table["rows"].append(self._row)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        self.text.append(data)


def png_size(data: bytes) -> tuple:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    assert data[:8] == PNG, data[:16]
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def image_bytes(img: dict) -> bytes:
    """The PNG an ``<img>`` (its attributes, as :class:`Page` keeps them) embeds as a data URI."""
    prefix = "data:image/png;base64,"
    assert img["src"].startswith(prefix), img["src"][:40]
    return base64.b64decode(img["src"][len(prefix):], validate=True)
