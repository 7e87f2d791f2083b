"""Every public name the README and docs use exists, and each deprecated spelling still
works for a release while it warns.

The names are read from the documents themselves (not a copied list): every
``import`` / ``from ... import`` line of their code blocks, every dotted ``bpnn.x.y``
reference, and the names of the README's "What is in it" table, each looked up in the
namespace its row names (registry keys through that family's ``get``).
"""
from __future__ import annotations

import ast
import importlib
import pathlib
import re
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _code_blocks(text: str):
    """The Python code blocks of a Markdown text (fences ```python / ```py / ```pycon)."""
    blocks, current = [], None
    for line in text.splitlines():
        fence = re.match(r"\s*```(\w*)", line)
        if fence and current is None:
            current = [] if fence.group(1) in ("python", "py", "pycon") else False
        elif fence:
            if current:
                blocks.append("\n".join(current))
            current = None
        elif current is not False and current is not None:
            current.append(line)
    return blocks


def _import_lines():
    lines = set()
    for doc in DOCUMENTS:
        for block in _code_blocks(doc.read_text(encoding="utf-8")):
            for line in block.splitlines():
                line = line.strip().removeprefix(">>> ")
                if re.match(r"(from bpnn[\w.]* import |import bpnn)", line):
                    lines.add(line.split("#")[0].strip())
    return sorted(lines)


def _dotted_names():
    names = set()
    for doc in DOCUMENTS:
        names |= set(re.findall(r"\bbpnn(?:\.[A-Za-z_]\w*)+", doc.read_text(encoding="utf-8")))
    return sorted(names)


def _resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and get the rest as attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as exc:
            if exc.name and not ".".join(parts[:i]).startswith(exc.name):
                raise  # a dependency is missing, not the name
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


# words in the table's backticks that are arguments or values, not names
ARGUMENTS = {"step", "trainable", "unit", "epoch", "lr", "clip_norm", "clip_value", "max_norm", "verbose",
             "validation_data", "validation_split", "History", "mean", "half_mean", "half_sum", "sum", "torch",
             "rate", "p", "bias_correction"}


def _table_names():
    """(namespace, name) for each backticked name in a README table row that names its namespace."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    pairs = []
    for row in re.findall(r"^\| [^|]*\(`(bpnn(?:\.\w+)*)`\) \|([^|]*)\|", text, flags=re.M):
        namespace, cell = row
        for token in re.findall(r"`([^`]+)`", cell):
            for name in token.split("/"):
                if re.fullmatch(r"[A-Za-z_]\w*", name) and name not in ARGUMENTS:
                    pairs.append((namespace, name))
    return pairs


def test_the_documents_name_something():
    assert len(_import_lines()) >= 5 and len(_dotted_names()) >= 20 and len(_table_names()) >= 40


@pytest.mark.parametrize("line", _import_lines())
def test_every_documented_import_runs(line):
    exec(compile(line, "<docs>", "exec"), {})


@pytest.mark.parametrize("dotted", _dotted_names())
def test_every_documented_dotted_name_exists(dotted):
    _resolve(dotted)


def _lookup(namespace: str, name: str):
    module = _resolve(namespace)
    if hasattr(module, name):
        return getattr(module, name)
    if namespace == "bpnn.Trainer":  # the training row names Trainer's own methods and arguments
        import inspect

        if name in inspect.signature(module.fit).parameters or hasattr(module, name):
            return name
    # registry keys (initializer, loss and schedule names) go through the family's get
    for getter in ("get", "get_schedule"):
        if hasattr(module, getter):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                try:
                    return getattr(module, getter)(name)
                except (ValueError, KeyError, TypeError):
                    pass
    for registry in ("schedules", "optimizers", "initializers", "losses", "layers"):
        reg = getattr(module, registry, None)
        if reg is not None and hasattr(reg, "get"):
            try:
                return reg.get(name)
            except (ValueError, KeyError, TypeError):
                pass
    raise AttributeError(f"{namespace} has no {name!r}")


@pytest.mark.parametrize(("namespace", "name"), _table_names())
def test_every_name_in_the_readme_table_exists(namespace, name):
    _lookup(namespace, name)


def _old_conv_bias():
    import bpnn

    return bpnn.Conv2D(4, 3, bias=False)


def _old_init_registry():
    import bpnn.init.initializers as module

    return module.initializers.get("he_normal")


def _old_init_names():
    import bpnn.init.initializers as module

    return module.names()


def _old_metrics_table():
    import bpnn.metrics

    return bpnn.metrics.METRICS["accuracy"]


# every spelling kept for one release: (old use, what it must equal under the new name)
DEPRECATED = {
    "Conv2D(bias=)": (_old_conv_bias, lambda: __import__("bpnn").Conv2D(4, 3, use_bias=False)),
    "bpnn.init.initializers.initializers": (_old_init_registry, lambda: __import__("bpnn").init.get("he_normal")),
    "bpnn.init.initializers.names": (_old_init_names, lambda: __import__("bpnn").init.registry.names()),
    "bpnn.metrics.METRICS": (_old_metrics_table, lambda: __import__("bpnn").metrics.accuracy),
}


@pytest.mark.parametrize("spelling", sorted(DEPRECATED))
def test_each_deprecated_spelling_warns_and_still_works(spelling):
    old, new = DEPRECATED[spelling]
    with pytest.warns(DeprecationWarning, match="deprecated") as record:
        value = old()
    assert record[0].filename == __file__, "the warning points at the user's line"
    expected = new()
    if hasattr(value, "get_config"):
        value, expected = value.get_config(), expected.get_config()
    assert type(value) is type(expected) and (value == expected or repr(value) == repr(expected))
