"""README.zh-CN.md is the Chinese README: the two link to each other, and its code is the
English README's code (comments aside), so that the code tested there is the code shown here
and a change to one without the other fails."""
from __future__ import annotations

import io
import pathlib
import re
import tokenize

ROOT = pathlib.Path(__file__).resolve().parents[1]
EN, ZH = ROOT / "README.md", ROOT / "README.zh-CN.md"


def code_blocks(text: str):
    """(language, code) of every fenced block, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def without_comments(language: str, code: str) -> str:
    """The code with comments and trailing blanks removed (Python by its tokens, shell by '#')."""
    if language == "python":
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type != tokenize.COMMENT]
        code = tokenize.untokenize(tokens)
    elif language == "bash":
        code = "\n".join(line.split(" #")[0] if not line.lstrip().startswith("#") else "" for line in code.splitlines())
    else:  # the layout block: its paths are the code, the rest is description
        code = "\n".join(line.split()[0] for line in code.splitlines() if line.startswith("src/"))
    return "\n".join(line.rstrip() for line in code.splitlines() if line.strip())


def test_the_readmes_link_to_each_other():
    assert "(README.zh-CN.md)" in EN.read_text(encoding="utf-8")
    assert "(README.md)" in ZH.read_text(encoding="utf-8")


def test_the_chinese_readme_shows_the_same_code():
    en, zh = code_blocks(EN.read_text(encoding="utf-8")), code_blocks(ZH.read_text(encoding="utf-8"))
    assert [lang for lang, _ in zh] == [lang for lang, _ in en]
    for (lang, a), (_, b) in zip(en, zh):
        assert without_comments(lang, b) == without_comments(lang, a)


def test_the_comparison_sees_a_changed_line():
    assert without_comments("python", "x = 1  # 一\n") == without_comments("python", "x = 1  # one\n")
    assert without_comments("python", "x = 2\n") != without_comments("python", "x = 1\n")
