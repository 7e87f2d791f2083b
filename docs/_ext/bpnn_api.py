"""The API reference's pages, written from bpnn's public names when the build starts.

The public API is ``bpnn.__all__`` and the ``__all__`` of every public module directly
under ``bpnn`` (``bpnn.nn``, ``bpnn.optim``, ... : the names without a leading
underscore). For each module this extension writes ``api/modules/<module>.rst``, the
module's docstring and an autosummary table of its names, and one page per object into
``api/generated/`` (``autoclass`` with its members, ``autofunction``, ``autodata``).

An object exported by several modules (``bpnn.Dense`` is ``bpnn.nn.Dense``) gets its
page once, at its home: the exporting module that its ``__module__`` lies in
(``bpnn.nn`` for ``bpnn.nn.dense.Dense``), else the first module that exports it. The
other modules list it as an alias, an entry of its own (so ``bpnn.Dense`` resolves as a
cross-reference and is in the objects inventory) that links to the home page. A
reference through an alias (``bpnn.Trainer.fit``) resolves to the home's member; one to a
public object without a page of its own (``bpnn.io.migrations``) links to the nearest
documented module; one to a name that does not exist stays an error.

Pages are rewritten only when their text changes, so an incremental build stays
incremental. Both folders are build products (git-ignored).
"""
from __future__ import annotations

import functools
import importlib
import inspect
import itertools
import pkgutil
import types
from pathlib import Path

PACKAGE = "bpnn"

# values whose identity means nothing (equal small ints are the same object): never aliases
_PLAIN = (int, float, complex, str, bytes, bool, tuple, frozenset, type(None))


def public_modules(package: str = PACKAGE) -> list[str]:
    """``package`` and its public direct submodules, sorted (the package first)."""
    root = importlib.import_module(package)
    names = [f"{package}.{m.name}" for m in pkgutil.iter_modules(root.__path__) if not m.name.startswith("_")]
    return [package, *sorted(names)]


def public_names(modname: str) -> list[str]:
    """The module's ``__all__``; without one, its non-underscore names defined in it."""
    module = importlib.import_module(modname)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", None) == modname]
    return list(names)


def _kind(obj) -> str:
    if isinstance(obj, types.ModuleType):
        return "module"
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isroutine(obj):
        return "function"
    return "data"


def _is_package_module(obj) -> bool:
    return isinstance(obj, types.ModuleType) and obj.__name__.startswith(PACKAGE + ".")


def homes(modules: list[str]) -> dict[tuple[str, str], tuple[str, str]]:
    """(module, name) -> (home module, name there) for every public name."""
    exports: dict[int, list[tuple[str, str]]] = {}
    entries = []
    for modname in modules:
        module = importlib.import_module(modname)
        for name in public_names(modname):
            obj = getattr(module, name)
            entries.append((modname, name, obj))
            if not isinstance(obj, _PLAIN):
                exports.setdefault(id(obj), []).append((modname, name))
    result = {}
    for modname, name, obj in entries:
        if _is_package_module(obj):
            result[modname, name] = (obj.__name__, "")
            continue
        places = exports.get(id(obj), [(modname, name)])
        where = getattr(obj, "__module__", None) or ""
        inside = [p for p in places if where == p[0] or where.startswith(p[0] + ".")]
        # the deepest exporting module that holds the object's source, else the first
        # exporter other than the top-level namespace
        if inside:
            home = max(inside, key=lambda p: p[0].count("."))
        else:
            home = next((p for p in places if p[0] != PACKAGE), places[0])
        result[modname, name] = home
    return result


def module_page(modname: str, home: dict) -> str:
    """The rst text of one module's page."""
    module = importlib.import_module(modname)
    own, values, aliases, submodules = [], [], [], []
    for name in public_names(modname):
        target = home[modname, name]
        obj = getattr(module, name)
        if _is_package_module(obj):
            submodules.append(target[0])
        elif target != (modname, name):
            aliases.append((name, target, obj))
        elif isinstance(obj, types.ModuleType):  # e.g. backend.xp, the array module
            values.append(name)
        else:
            own.append(name)
    title = f"``{modname}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {modname}", "   :no-members:", "",
             f".. currentmodule:: {modname}", ""]
    if submodules:
        lines += ["Modules", "-------", "", ".. autosummary::", "",
                  *[f"   {m.removeprefix(modname + '.')}" for m in submodules], ""]
    if own:
        lines += ["Contents", "--------", "", ".. autosummary::", "   :nosignatures:", "",
                  *[f"   {n}" for n in own], ""]
    for name in values:
        lines += [f".. autodata:: {name}", "   :no-value:", ""]
    if aliases:
        lines += ["Also here", "---------", "",
                  f"Names that ``{modname}`` exports from where they are documented.", ""]
        for name, (where, there), obj in aliases:
            kind = _kind(obj)
            role = {"exception": "exc", "class": "class", "function": "func"}.get(kind, "data")
            directive = {"module": "data"}.get(kind, kind)
            lines += [f".. py:{directive}:: {name}", "   :no-index-entry:", "",
                      f"   The same object as :{role}:`{where}.{there}`.", ""]
    return "\n".join(lines)


def object_page(modname: str, name: str, obj) -> str:
    """The rst text of one object's page. It is an orphan: the module page's table links
    to it, and leaving the ~200 object pages out of the toctree keeps every page's
    navigation (furo renders the whole tree on each page) small."""
    title = f"``{modname}.{name}``"
    kind = _kind(obj)
    lines = [":orphan:", "", title, "=" * len(title), "", f".. currentmodule:: {modname}", "",
             f".. auto{kind}:: {name}"]
    if kind == "class":
        lines += ["   :members:", "   :show-inheritance:"]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _sync(folder: Path, wanted: dict[str, str]) -> None:
    for stale in folder.glob("*.rst") if folder.is_dir() else ():
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        _write(folder / name, text)


def write_pages(srcdir: Path) -> dict[str, str]:
    """Write ``api/modules/<module>.rst`` for every public module and
    ``api/generated/<module>.<name>.rst`` for every object documented there; remove
    stale ones. Returns the aliases: ``{"bpnn.Dense": "bpnn.nn.Dense", ...}``."""
    modules = public_modules()
    home = homes(modules)
    _sync(srcdir / "api" / "modules", {f"{m}.rst": module_page(m, home) for m in modules})
    objects = {}
    for (modname, name), target in home.items():
        obj = getattr(importlib.import_module(modname), name)
        if target == (modname, name) and not isinstance(obj, types.ModuleType):
            objects[f"{modname}.{name}.rst"] = object_page(modname, name, obj)
    _sync(srcdir / "api" / "generated", objects)
    return {f"{m}.{n}": f"{h}.{hn}" for (m, n), (h, hn) in home.items() if hn and (m, n) != (h, hn)}


@functools.lru_cache(maxsize=1)
def _public_ids() -> frozenset:
    return frozenset(id(getattr(importlib.import_module(m), n)) for m in public_modules() for n in public_names(m))


def _documented(obj) -> bool:
    """Whether ``obj`` is one of the public objects the reference documents."""
    return id(obj) in _public_ids()


def _process_bases(app, name, obj, options, bases: list) -> None:
    """A base class that is not public (``Activation`` under ``ReLU``) has no page: show
    its nearest public ancestors instead, so every base named links somewhere."""
    def public(cls):
        if cls is object or not cls.__module__.startswith(PACKAGE + ".") or _documented(cls):
            return [cls] if cls is not object else []
        return [b for base in cls.__bases__ for b in public(base)]

    new = []
    for base in bases:
        for b in (public(base) if inspect.isclass(base) else [base]):
            if b not in new:
                new.append(b)
    bases[:] = new


def _skip_member(app, what, name, obj, skip, options):
    """Leave out members that bpnn does not define (scikit-learn's ``set_*_request``)."""
    module = getattr(obj, "__module__", None)
    if module and not module.startswith(PACKAGE) and inspect.isroutine(obj):
        return True
    return None


@functools.lru_cache(maxsize=None)
def _attribute_docs(modname: str) -> dict:
    from sphinx.pycode import ModuleAnalyzer, PycodeError

    try:
        return ModuleAnalyzer.for_module(modname).find_attr_docs()
    except PycodeError:
        return {}


def _data_docstring(app, what, name, obj, options, lines: list) -> None:
    """A re-exported value (``bpnn.io.OPSET``, a registry) gets the ``#:`` comment written
    where it is assigned (a module of the package that exports it, else the module of
    bpnn that holds it), instead of the docstring of its type (``int``, ``Registry``)."""
    if what != "data":
        return
    modname, _, attr = name.rpartition(".")
    package = importlib.import_module(modname)
    near = [modname, *(f"{modname}.{m.name}" for m in pkgutil.iter_modules(getattr(package, "__path__", [])))]
    # then any module of bpnn that holds this very object under that name
    root = importlib.import_module(PACKAGE)
    anywhere = (m.name for m in pkgutil.walk_packages(root.__path__, PACKAGE + ".")
                if getattr(importlib.import_module(m.name), attr, None) is obj)
    for candidate in itertools.chain(near, anywhere):
        comment = _attribute_docs(candidate).get(("", attr))
        if comment:
            lines[:] = [*comment]
            return
    if getattr(obj, "__doc__", None) == getattr(type(obj), "__doc__", None):
        lines[:] = []  # the type's docstring says nothing about the value


_ALIASES: dict[str, str] = {}


def _config_inited(app, config) -> None:
    _ALIASES.clear()
    _ALIASES.update(write_pages(Path(app.srcdir)))


def _resolve_alias(app, env, node, contnode):
    """``bpnn.Trainer.fit`` where ``bpnn.Trainer`` is an alias of ``bpnn.train.Trainer``:
    resolve it as ``bpnn.train.Trainer.fit``."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    domain = env.domains["py"]
    for alias in sorted(_ALIASES, key=len, reverse=True):
        if target.startswith(alias + "."):
            new = _ALIASES[alias] + target[len(alias):]
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], new, node, contnode)
    # a public object that exists but has no page of its own (a function of a module under
    # a package, ``bpnn.init.nguyen_widrow.nguyen_widrow``): the nearest documented module
    parts = target.split(".")
    if parts[0] == PACKAGE and not any(p.startswith("_") for p in parts) and _exists(target):
        for end in range(len(parts) - 1, 0, -1):
            found = domain.resolve_xref(env, node["refdoc"], app.builder, "mod", ".".join(parts[:end]), node, contnode)
            if found is not None:
                return found
    return None


def _exists(dotted: str) -> bool:
    """Whether ``dotted`` names a module of bpnn or an attribute of one."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        for attr in parts[end:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def setup(app):
    # before Sphinx lists the source files (and autosummary reads them for its pages)
    app.connect("config-inited", _config_inited)
    app.connect("autodoc-process-bases", _process_bases)
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _data_docstring)
    app.connect("missing-reference", _resolve_alias)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
