"""The "From the formulas to the API" page (docs/formulas.md) runs as a doctest.

Every entry of the page computes a formula by hand with NumPy and with bpnn and prints
whether they agree; the page is run with the standard library's doctest, once with the
compiled kernels and once with the NumPy fallbacks (the optimizers' fused steps and the
batch-norm kernels differ between the two). A second test reads the page's headings
and checks that each topic it must cover is there and that every section has an
example, so a page that loses an entry or its examples fails.
"""
from __future__ import annotations

import doctest
import pathlib
import re

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "formulas.md"

# the topics the page covers, by heading (case-insensitive, exact)
REQUIRED = [
    "the forward pass",
    "activations and their derivatives",
    "output delta: squared error and sigmoid",
    "output delta: softmax and cross-entropy",
    "delta backwards through w and f′",
    "weight gradients",
    "residual connections",
    "the articles' numpy network",
    "gradient descent",
    "momentum, in both forms",
    "nesterov momentum",
    "adagrad",
    "rmsprop",
    "adam",
    "adam without bias correction",
    "adamw",
    "gradient clipping",
    "zero and constant",
    "small random numbers",
    "xavier / glorot",
    "he / kaiming",
    "lecun",
    "orthogonal",
    "lsuv",
    "step decay",
    "exponential decay",
    "inverse-time decay",
    "cosine annealing",
    "warm restarts (sgdr)",
    "l2 penalty",
    "l1 penalty",
    "weight decay against l2 with adam",
    "dropout and dropconnect",
    "squared error and its conventions",
    "cross-entropy",
    "batch normalization",
]


def _sections(text: str):
    """(level, title, body) for each heading of the page, the body running to the next
    heading of any level (headings inside code fences are not headings)."""
    sections, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"(#{1,6}) (.+)", line)
        if heading:
            sections.append([len(heading.group(1)), heading.group(2).strip(), []])
        elif sections:
            sections[-1][2].append(line)
    return [(level, title, "\n".join(body)) for level, title, body in sections]


def _examples(body: str) -> int:
    """The number of doctest examples (``>>>`` lines) inside ```pycon fences of ``body``."""
    count, fence = 0, None
    for line in body.splitlines():
        opening = re.match(r"\s*```(\w*)", line)
        if opening and fence is None:
            fence = opening.group(1)
        elif opening:
            fence = None
        elif fence == "pycon" and line.startswith(">>> "):
            count += 1
    return count


def test_the_page_runs_as_a_doctest(kernels):
    result = doctest.testfile(str(PAGE), module_relative=False, report=True,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of the page's examples failed (see the report above)"
    assert result.attempted >= 180, f"the page runs only {result.attempted} examples"


def test_every_topic_has_its_section_and_every_section_an_example():
    text = PAGE.read_text(encoding="utf-8")
    sections = _sections(text)
    titles = [title.lower() for _, title, _ in sections]
    missing = [t for t in REQUIRED if t not in titles]
    assert not missing, f"docs/formulas.md has no section {missing}"
    assert len(set(titles)) == len(titles), "two sections share a title"
    # a section whose subsections hold the examples may have none of its own
    without = [title for i, (level, title, body) in enumerate(sections)
               if level > 1 and _examples(body) == 0
               and not (i + 1 < len(sections) and sections[i + 1][0] > level)]
    assert not without, f"sections without a doctest: {without}"
    # every >>> line is inside a ```pycon fence, so what runs is what the page shows
    assert _examples(text) == sum(line.startswith(">>> ") for line in text.splitlines())


def test_the_section_parser_sees_a_missing_example():
    page = "# T\n\n## A\n\ntext\n\n```pycon\n>>> 1\n1\n\n```\n\n## B\n\nno example\n\n```python\n# ## C\n```\n"
    found = {title: _examples(body) for _, title, body in _sections(page)}
    assert found == {"T": 0, "A": 1, "B": 0}
