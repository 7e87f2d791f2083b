"""HTML pieces shared by the report and the notebook views (``_repr_html_``).

Every string that can come from a user goes through :func:`esc`; tables take cells
already escaped. Nothing here loads a style sheet or a script: what it builds works in a
file opened offline and in a notebook cell.
"""
from __future__ import annotations

import html
import math


def esc(value) -> str:
    """HTML-escape any value (quotes too: safe in text and in attribute values)."""
    return html.escape(str(value), quote=True)


def num(v, pct: bool = False, digits: int = 4) -> str:
    """A number as a table cell shows it: ``"—"`` for None or a non-finite float, a
    percentage with one decimal for ``pct``, else ``digits`` significant digits."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{100 * v:.1f} %" if pct else f"{v:.{digits}g}"


def img(alt, b64: str) -> str:
    """An ``<img>`` of a base64 PNG, embedded as a ``data:`` URI."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{b64}">'


def table(head, rows, classes=None) -> str:
    """A table: ``head`` plain strings (escaped here); ``rows`` lists of (already escaped
    html, is_numeric) cells; ``classes`` an optional CSS class per row."""
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f'<td class="num">{c}</td>' if is_num else f"<td>{c}</td>" for c, is_num in row)
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
