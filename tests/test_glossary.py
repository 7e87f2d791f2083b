"""The Chinese glossary (docs/zh_CN/glossary.md) maps every BP term of the Chinese texts to
bpnn's API: each term the readers use has its row, and every name in the API column exists
(``pkg.obj.attr`` is imported and looked up; ``f(arg)`` also needs ``arg`` in f's signature).
"""
from __future__ import annotations

import importlib
import inspect
import pathlib
import re

import pytest

GLOSSARY = pathlib.Path(__file__).resolve().parents[1] / "docs" / "zh_CN" / "glossary.md"

# The BP vocabulary the Chinese documentation must map to the API.
TERMS = ["反向传播", "前向传播", "链式法则", "权重初始化", "对称性", "梯度消失/梯度爆炸", "激活函数",
         "损失函数", "批量/随机/小批量梯度下降", "动量", "自适应学习率", "学习率衰减", "热重启", "正则化",
         "丢弃法", "早停", "批归一化", "残差连接", "梯度裁剪", "数据增强", "权值共享", "迁移学习/微调",
         "局部最小值", "多次重启", "二阶方法"]

NAME = re.compile(r"`(bpnn(?:\.\w+)+)(?:\((\w+)\))?`")


def _rows():
    rows = {}
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("术语", "---"):
            rows[cells[0]] = cells
    return rows


def resolve(dotted: str):
    """The object named ``bpnn.a.b.c``: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_term_has_a_row():
    rows = _rows()
    assert [t for t in TERMS if t not in rows] == []


@pytest.mark.parametrize("term", sorted(_rows()))
def test_every_api_name_of_a_row_exists(term):
    row = _rows()[term]
    names = NAME.findall(row[2])
    assert names, f"{term}: no bpnn name in the API column"
    for dotted, arg in names:
        obj = resolve(dotted)                     # AttributeError/ImportError names what is missing
        if arg:
            target = obj.__init__ if inspect.isclass(obj) else obj
            params = inspect.signature(target).parameters
            assert arg in params, f"{term}: {dotted} has no parameter {arg!r} (has {list(params)})"


def test_the_checker_catches_a_wrong_name():
    with pytest.raises(AttributeError):
        resolve("bpnn.optim.AdamZ")
    assert NAME.findall("`bpnn.Trainer.fit(batch_sizes)`") == [("bpnn.Trainer.fit", "batch_sizes")]
    assert "batch_sizes" not in inspect.signature(resolve("bpnn.Trainer.fit")).parameters
