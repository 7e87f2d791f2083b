"""Kernels compiled by numba on first use: the ``@kernel`` decorator.

A kernel is a plain Python function over NumPy arrays and scalars, decorated with
``@kernel(**options)``. Its first call imports numba and compiles it with
``numba.njit(nogil=True, cache=True, **options)`` (``nogil`` so that
:mod:`bpnn._kernels.parallel` can run it in several threads at once); numba compiles one
machine-code version per argument signature and keeps it in its on-disk cache, so a
later process loads it instead of compiling again. ``import bpnn`` never imports numba.

A kernel may call other kernels of its module by their names: when it is compiled,
those names resolve to the compiled callees (the module itself is left as it is).
numba's cache index is keyed by a function's code and closure, and a compiled helper
held in a closure pickles differently in every process, so kernels are module-level
functions without closures; the test suite checks that every kernel is cached.

The one module written against numba's own API, :mod:`bpnn._kernels.gemm_tiles` (its
register tiles are numba intrinsics, which need numba to be defined at all), is
imported on first use by :func:`bpnn._kernels.gemm.tiles` instead.
"""
from __future__ import annotations

import functools
import types

_REGISTERED: list["Kernel"] = []


class Kernel:
    """A plain function (``py_func``) and the numba options it is compiled with; calling
    the kernel calls its compiled form (:attr:`dispatcher`)."""

    def __init__(self, func, options: dict):
        functools.update_wrapper(self, func)
        self.py_func = func
        self.options = {"nogil": True, "cache": True, **options}
        self._dispatcher = None

    @property
    def dispatcher(self):
        """numba's dispatcher of this kernel, made on first use (it compiles each new
        argument signature on its first call, or loads it from the cache)."""
        if self._dispatcher is None:
            import numba

            self._dispatcher = numba.njit(**self.options)(self._with_compiled_callees())
        return self._dispatcher

    def __call__(self, *args):
        dispatcher = self._dispatcher
        if dispatcher is None:
            dispatcher = self.dispatcher
        return dispatcher(*args)

    def _with_compiled_callees(self):
        """``py_func``, or when it calls other kernels, the same code over a copy of its
        module's namespace in which those names are their dispatchers."""
        f = self.py_func
        callees = {name: value.dispatcher for name in f.__code__.co_names
                   if isinstance(value := f.__globals__.get(name), Kernel) and value is not self}
        if not callees:
            return f
        g = types.FunctionType(f.__code__, {**f.__globals__, **callees}, f.__name__, f.__defaults__, f.__closure__)
        g.__qualname__, g.__module__, g.__doc__ = f.__qualname__, f.__module__, f.__doc__
        return g

    def __repr__(self) -> str:
        return f"<kernel {self.py_func.__module__}.{self.py_func.__qualname__}>"


def kernel(**options):
    """Decorator: the function as a :class:`Kernel` compiled on first use with
    ``numba.njit(nogil=True, cache=True, **options)``."""

    def decorate(func) -> Kernel:
        k = Kernel(func, options)
        _REGISTERED.append(k)
        return k

    return decorate


def registered() -> list[Kernel]:
    """Every kernel defined so far (of the kernel modules imported)."""
    return list(_REGISTERED)
