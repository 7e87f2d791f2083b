"""Registries: one per family (initializers, layers, losses, optimizers, ...).

``get`` accepts what users write — a name, a config dict, a class or an instance — and
an unknown name is answered with the closest valid names. ``repr`` and serialization
come from each object's ``get_config()``, so the three cannot drift apart.
"""
from __future__ import annotations

import difflib


class Registry:
    """Name → class table for one family of objects (e.g. ``"initializer"``)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, type] = {}
        self._names: dict[type, str] = {}

    def register(self, name: str, *aliases: str):
        """Class decorator: register under ``name`` (its canonical key) and ``aliases``."""

        def decorate(cls):
            for key in (name, *aliases):
                if key in self._classes and self._classes[key] is not cls:
                    raise KeyError(f"{self.kind} name {key!r} is already registered")
                self._classes[key] = cls
            self._names[cls] = name
            cls.registry_name = name
            return cls

        return decorate

    def names(self, aliases: bool = False) -> list[str]:
        """Canonical names (and aliases too when ``aliases``) in registration order."""
        return list(self._classes) if aliases else list(self._names.values())

    def classes(self) -> list[type]:
        return list(self._names)

    def __contains__(self, name) -> bool:
        return name in self._classes

    def lookup(self, name: str) -> type:
        """The class registered under ``name``; unknown names get the closest valid ones."""
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            close = difflib.get_close_matches(str(name), list(self._classes), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"unknown {self.kind} {name!r}{hint} Valid names: {', '.join(sorted(self._classes))}"
            ) from None

    def get(self, identifier, **defaults):
        """Resolve a name, ``{"class_name": ..., "config": {...}}``, class or instance."""
        if isinstance(identifier, str):
            return self.lookup(identifier)(**defaults)
        if isinstance(identifier, dict):
            if "class_name" not in identifier:
                raise ValueError(
                    f"{self.kind} config must have a 'class_name' key, got keys {sorted(identifier)}"
                )
            cls = self.lookup(identifier["class_name"])
            return cls.from_config(identifier.get("config", {}))
        if isinstance(identifier, type) and identifier in self._names:
            return identifier(**defaults)
        if type(identifier) in self._names or _is_instance_of_any(identifier, self._names):
            return identifier
        raise ValueError(
            f"{self.kind}: got {identifier!r}; expected a name ({', '.join(self.names())}), "
            f"a config dict, a registered class or an instance"
        )

    def serialize(self, obj) -> dict:
        """``{"class_name": name, "config": obj.get_config()}``."""
        return {"class_name": self._names[type(obj)], "config": obj.get_config()}


def _is_instance_of_any(obj, classes) -> bool:
    return any(isinstance(obj, c) for c in classes)


class Configurable:
    """Mixin: ``repr`` and ``from_config`` both built from ``get_config()``."""

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
