"""The Python code blocks of README.md, README.zh-CN.md and docs/getting-started.md run, as a reader runs them.

The convention, for every ```python fence of these files:

- the blocks run in the order of the text, the blocks of one file in one namespace (a
  later block uses the names an earlier one defined, as the text reads), in a temporary
  working directory (files they write land there);
- a block that cannot run on a test machine (it needs a download, or trains for minutes)
  has the comment ``<!-- no-run: the reason -->`` on the line before its fence. It is
  skipped with that reason, so pytest's summary (``-ra``) counts and lists every such
  block. A marker without a reason is an error.

One test per block (``README.md:30`` is the block whose fence is on line 30); a block
run on its own (``-k``) first runs the blocks before it.
"""
from __future__ import annotations

import re
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = ["README.md", "README.zh-CN.md", "docs/getting-started.md"]
NO_RUN = re.compile(r"<!--\s*no-run\s*(?::\s*(?P<reason>.*?))?\s*-->")


def code_blocks(text: str):
    """``(fence line, code, no-run reason or None)`` for each ```python block; a
    no-run marker without a reason raises ValueError."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if re.match(r"\s*```python\s*$", lines[i]):
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not re.match(r"\s*```\s*$", lines[i]):
                body.append(lines[i])
                i += 1
            marker = NO_RUN.search(lines[start - 2]) if start >= 2 else None
            if marker and not (marker.group("reason") or "").strip():
                raise ValueError(f"line {start - 1}: a no-run marker needs a reason: <!-- no-run: why -->")
            blocks.append((start, "\n".join(body) + "\n", marker.group("reason").strip() if marker else None))
        i += 1
    return blocks


CASES = [(name, k) for name in FILES for k in range(len(code_blocks((ROOT / name).read_text(encoding="utf-8"))))]


class _FileRun:
    """The namespace and working directory of one file's blocks, and how far they ran."""

    def __init__(self, name: str, cwd: Path):
        self.blocks = code_blocks((ROOT / name).read_text(encoding="utf-8"))
        self.name, self.cwd, self.namespace, self.done, self.failed = name, cwd, {"__name__": "__main__"}, 0, None

    def run_through(self, k: int, monkeypatch):
        monkeypatch.chdir(self.cwd)
        monkeypatch.setenv("MPLBACKEND", "Agg")
        while self.done <= k:
            if self.failed is not None:
                pytest.fail(f"{self.name}:{self.failed} failed before this block", pytrace=False)
            line, code, reason = self.blocks[self.done]
            self.done += 1
            if reason is not None:
                continue
            try:
                exec(compile(code, f"{self.name}:{line}", "exec"), self.namespace)
            except Exception:  # the traceback names the file and the block's line
                self.failed = line
                pytest.fail(f"{self.name}:{line} raised:\n{traceback.format_exc()}", pytrace=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {name: _FileRun(name, tmp_path_factory.mktemp(Path(name).stem)) for name in FILES}


@pytest.mark.parametrize(("name", "k"), CASES,
                         ids=[f"{n}:{code_blocks((ROOT / n).read_text(encoding='utf-8'))[k][0]}" for n, k in CASES])
def test_code_block_runs(runs, name, k, monkeypatch):
    run = runs[name]
    line, _, reason = run.blocks[k]
    if reason is not None:
        run.run_through(k, monkeypatch)
        pytest.skip(f"{name}:{line} no-run: {reason}")
    run.run_through(k, monkeypatch)


def test_the_block_reader(tmp_path):
    """The reader finds the blocks, their lines and markers, and refuses a bare marker."""
    text = "x\n```python\na = 1\n```\n<!-- no-run: downloads -->\n```python\nb = a\n```\n```bash\nls\n```\n"
    assert code_blocks(text) == [(2, "a = 1\n", None), (6, "b = a\n", "downloads")]
    with pytest.raises(ValueError, match="needs a reason"):
        code_blocks("<!-- no-run -->\n```python\npass\n```\n")
    assert len(CASES) >= 10, "README.md and docs/getting-started.md lost their code blocks"
