"""Renamed public names: the old spelling keeps working for one release and says so."""
from __future__ import annotations

import warnings


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Emit the ``DeprecationWarning`` of a renamed name, pointing at the caller's line
    (``stacklevel`` 3: the caller of the module ``__getattr__`` that calls this)."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                  DeprecationWarning, stacklevel=stacklevel)
