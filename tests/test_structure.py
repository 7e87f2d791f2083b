"""The package's shape, checked from its source with ``ast``.

- Imports go one way (docs/architecture.md): a module never imports a higher layer,
  lazy imports inside functions included.
- Only ``bpnn/_kernels/`` imports numba.
- No module reads another package's underscore attributes: neither a private name
  imported from a module of another package, nor ``obj._name`` where ``_name`` is an
  attribute that only another package defines.
- Every package that docs/architecture.md names exists.
"""
from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "bpnn"

# The layers from the bottom up (docs/architecture.md). A module may import its own layer
# and the layers below it. Root helper modules (backend, _checks, _registry, _atomic, ...)
# form the bottom layer; ``bpnn/__init__.py`` re-exports the public API and is exempt.
LAYERS = [
    {"backend", "_checks", "_registry", "_atomic", "_json", "_tensorfile", "_geometry", "_deprecation", "_html",
     "_figures"},
    {"_kernels"},
    {"init", "losses", "data", "metrics"},
    {"nn"},
    {"optim"},
    {"train"},
    {"diagnostics", "io", "sklearn"},
    {"experiment"},
    {"report", "plotting"},
    {"cli", "__main__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts)


MODULES = dict((name, path) for path, name in _modules())


def _is_package(modname: str) -> bool:
    return MODULES.get(modname, pathlib.Path()).name == "__init__.py"


def _resolve(modname: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = modname.split(".")
    if not _is_package(modname):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_nodes(tree):
    """Import nodes under ``if TYPE_CHECKING:`` (never run)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(id(n) for n in ast.walk(sub))
    return skip


def _imports(path: pathlib.Path, modname: str):
    """Every module ``path`` imports, at any depth: (lineno, absolute module, names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(modname, node)
            names = [a.name for a in node.names]
            if target == "bpnn":
                # ``from .. import backend``: a module of its own; else a name of the package
                for n in names:
                    if f"bpnn.{n}" in MODULES:
                        yield node.lineno, f"bpnn.{n}", []
                    else:
                        yield node.lineno, "bpnn", [n]
            else:
                yield node.lineno, target, names


def _component(modname: str) -> str | None:
    parts = modname.split(".")
    return parts[1] if parts[0] == "bpnn" and len(parts) > 1 else None


def _package(modname: str, modules) -> str:
    """The package a module belongs to: ``bpnn.nn.conv`` -> ``bpnn.nn``; root modules -> ``bpnn``."""
    path = modules.get(modname)
    if path is not None:
        return modname if path.name == "__init__.py" else modname.rsplit(".", 1)[0]
    return modname.rsplit(".", 1)[0]


def _where(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def upward_imports(modules) -> list:
    """``path:line (layer) imports module (higher layer)`` for each import against the order."""
    found = []
    for modname, path in modules.items():
        own = _component(modname)
        if own is None:  # bpnn/__init__.py re-exports the public API
            continue
        for lineno, target, names in _imports(path, modname):
            if target == "bpnn":
                # the package's __init__ re-exports every layer: only the top layer may use
                # it (dunder metadata such as __version__ is fine anywhere)
                if LEVEL[own] < len(LAYERS) - 1 and not all(n.startswith("__") for n in names):
                    found.append(f"{_where(path)}:{lineno} ({own}) imports the bpnn package itself")
                continue
            other = _component(target)
            if other is None or other == own:
                continue
            if LEVEL.get(other, len(LAYERS)) > LEVEL[own]:
                found.append(f"{_where(path)}:{lineno} ({own}) imports {target} ({other})")
    return found


def numba_imports(modules) -> list:
    """Each place outside ``bpnn/_kernels/`` that imports numba."""
    found = []
    for modname, path in modules.items():
        if _component(modname) == "_kernels":
            continue
        for lineno, target, _ in _imports(path, modname):
            if target.split(".")[0] == "numba":
                found.append(f"{_where(path)}:{lineno}")
        if re.search(r"import_module\(\s*['\"]numba", path.read_text(encoding="utf-8")):
            found.append(f"{_where(path)}: import_module('numba')")
    return found


def _own_attributes(tree) -> set:
    """Underscore names a module owns: ``self._x = ...`` / ``cls._x = ...``, module- and
    class-level ``_x = ...``, ``def _x`` and ``class _X``. (``other._x = ...`` is a write
    into someone else's state, not ownership.)"""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if (isinstance(sub, ast.Attribute) and _private(sub.attr)
                            and isinstance(sub.value, ast.Name) and sub.value.id in ("self", "cls")):
                        names.add(sub.attr)
                    if isinstance(sub, ast.Name) and _private(sub.id):
                        names.add(sub.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _private(node.name):
            names.add(node.name)
    return names


def _attribute_access(node):
    """(object, attribute name) for ``obj.name`` and ``getattr/setattr/hasattr(obj, "name")``."""
    if isinstance(node, ast.Attribute):
        return node.value, node.attr
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
        return node.args[0], node.args[1].value
    return None, None


def private_reads(modules) -> list:
    """Private names imported from another package's modules, and ``obj._attr`` reads of
    an underscore attribute that only other packages define."""
    trees = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in modules.items()}
    defined_by, written_by = {}, {}
    for modname, tree in trees.items():
        for name in _own_attributes(tree):
            defined_by.setdefault(name, set()).add(_package(modname, modules))
        for node in ast.walk(tree):
            obj, attr = _attribute_access(node)
            if attr and _private(attr) and (isinstance(node, ast.Call) and node.func.id == "setattr"
                                            or isinstance(getattr(node, "ctx", None), ast.Store)):
                written_by.setdefault(attr, set()).add(_package(modname, modules))
    # an attribute no class declares belongs to the one package that sets it on objects;
    # set from several packages, it belongs to none of them
    for name, packages in written_by.items():
        if name not in defined_by and len(packages) == 1:
            defined_by[name] = packages
    found = []
    for modname, tree in trees.items():
        pkg = _package(modname, modules)
        where = _where(modules[modname])
        for lineno, target, names in _imports(modules[modname], modname):
            if target.split(".")[0] != "bpnn" or _package(target, modules) == pkg:
                continue
            found += [f"{where}:{lineno} imports {n} from {target}" for n in names if _private(n)]
        for node in ast.walk(tree):
            obj, attr = _attribute_access(node)
            if attr is None or not _private(attr):
                continue
            if isinstance(obj, ast.Name) and obj.id in ("self", "cls"):
                continue
            owners = defined_by.get(attr, set())
            if pkg not in owners and (owners or attr in written_by):
                found.append(f"{where}:{node.lineno} reads .{attr} (defined in {', '.join(sorted(owners)) or 'no package'})")
    return sorted(set(found))


def test_every_package_and_root_module_has_a_layer():
    components = {_component(m) for m in MODULES} - {None}
    assert components <= set(LEVEL), f"not in LAYERS (add to docs/architecture.md too): {components - set(LEVEL)}"


def test_imports_go_one_way():
    found = upward_imports(MODULES)
    assert not found, "imports against the layer order:\n" + "\n".join(found)


def test_only_the_kernels_package_imports_numba():
    found = numba_imports(MODULES)
    assert not found, "numba imported outside bpnn/_kernels/:\n" + "\n".join(found)


def test_no_module_reads_another_packages_underscore_attributes():
    found = private_reads(MODULES)
    assert not found, "private state read across packages:\n" + "\n".join(found)


@pytest.mark.parametrize("rule", ["upward", "lazy_upward", "numba", "private_import", "private_attr",
                                  "private_getattr"])
def test_the_checks_catch_a_planted_violation(tmp_path, rule):
    """The checkers can fail: each finds one planted violation of its kind in a copy."""
    sources = {
        "upward": {"bpnn.nn._planted": "from ..cli import main\n"},
        "lazy_upward": {"bpnn.optim._planted": "def f():\n    from ..experiment import spec\n"},
        "numba": {"bpnn.nn._planted": "def f():\n    import numba\n"},
        "private_import": {"bpnn.io._planted": "from ..nn._owner import _helper\n",
                           "bpnn.nn._owner": "def _helper():\n    pass\n"},
        "private_attr": {"bpnn.io._planted": "def f(layer):\n    return layer._planted_state\n",
                         "bpnn.nn._owner": "class A:\n    def __init__(self):\n        self._planted_state = 1\n"},
        "private_getattr": {"bpnn.io._planted": "def f(m):\n    setattr(m, '_planted_flag', True)\n",
                            "bpnn.train._planted": "def g(m):\n    return getattr(m, '_planted_flag', 0)\n"},
    }[rule]
    modules = dict(MODULES)
    for modname, text in sources.items():
        path = tmp_path.joinpath(*modname.split(".")[1:]).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        modules[modname] = path
    check = {"upward": upward_imports, "lazy_upward": upward_imports, "numba": numba_imports,
             "private_import": private_reads, "private_attr": private_reads,
             "private_getattr": private_reads}[rule]
    found = check(modules)
    assert [f for f in found if "_planted" in f], found


def test_architecture_page_names_only_what_exists():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(?:src/)?bpnn/([A-Za-z_][A-Za-z0-9_/.]*?)/?`", page))
    assert len(named) >= 10, f"docs/architecture.md names too few folders: {named}"
    missing = [n for n in sorted(named) if not ((SRC / n).is_dir() or (SRC / n).exists()
                                                  or (SRC / n).with_suffix(".py").exists())]
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"
    packages = {p.parent.relative_to(SRC).as_posix() for p in SRC.rglob("__init__.py")} - {"."}
    undescribed = sorted(p for p in packages if p not in {n.rstrip("/") for n in named})
    assert not undescribed, f"packages docs/architecture.md does not describe: {undescribed}"
    for layer in LAYERS:
        for name in layer:
            if name in {_component(m) for m in MODULES}:
                assert name in page, f"docs/architecture.md does not mention the layer member {name}"


def undeclared_cache_slots(paths) -> list:
    """``Class.attr (method)`` for each ``self._attr`` a class of ``paths`` first sets
    outside ``__init__`` without declaring it in ``__init__`` or at class level (its own
    or a base class's in the same files)."""
    classes = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = node

    def declared(cls, seen=()):
        names = set()
        for item in cls.body:
            if isinstance(item, (ast.Assign, ast.AnnAssign)):
                targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                names |= {n.attr for n in ast.walk(item) if isinstance(n, ast.Attribute)
                          and isinstance(n.ctx, ast.Store) and isinstance(n.value, ast.Name) and n.value.id == "self"}
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in classes and base.id not in seen:
                names |= declared(classes[base.id], seen + (cls.name,))
        return names

    found = []
    for name, cls in classes.items():
        have = declared(cls)
        for item in cls.body:
            if not isinstance(item, ast.FunctionDef) or item.name == "__init__":
                continue
            for n in ast.walk(item):
                if (isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and isinstance(n.value, ast.Name)
                        and n.value.id == "self" and _private(n.attr) and n.attr not in have):
                    found.append(f"{name}.{n.attr} ({item.name})")
    return sorted(set(found))


def test_layers_declare_their_cache_slots():
    """What forward keeps for backward is declared where a reader looks first: in
    ``__init__`` or at class level (``_y = None  # the output, for backward``)."""
    found = undeclared_cache_slots(sorted((SRC / "nn").glob("*.py")))
    assert not found, "set outside __init__ without a declaration:\n" + "\n".join(found)


def test_the_cache_slot_check_catches_a_planted_one(tmp_path):
    path = tmp_path / "layer.py"
    path.write_text("class A:\n    _kept = None\n\n    def forward(self, x):\n        self._kept = x\n"
                    "        self._planted = x\n")
    assert undeclared_cache_slots([path]) == ["A._planted (forward)"]


def test_classes_are_capwords():
    """Class names are CapWords nouns (a leading underscore for private ones), as the
    style guide asks: no ``class _progress``."""
    bad = []
    for modname, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not re.fullmatch(r"_?[A-Z][A-Za-z0-9]*", node.name):
                bad.append(f"{_where(path)}:{node.lineno} class {node.name}")
    assert not bad, "\n".join(bad)
