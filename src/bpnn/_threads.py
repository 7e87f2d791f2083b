"""Splitting one compiled kernel call over threads.

The compiled kernels (numba, ``nogil=True``) release the GIL, so a call over rows or
samples ``[0, n)`` can run as one call per thread over contiguous parts
(:func:`in_parts`): a small pool of Python threads that block, not spin, while idle.
One call per thread and part, so that the threads do not take turns at the GIL.
Measured on the development machine (2 cores), a 16-channel 3×3 convolution over 64
images of 28×28 (``bpnn._gemm.conv``): 1.9 → 0.9 ms forward, 2.2 → 1.1 ms for the
weight gradient. Handing a part to the pool and getting it back costs 70-90 µs there,
so short calls stay in one thread: ReLU over 10⁶ floats took 98 µs in one thread and
115 µs in two, and splitting the row-tile product, batch norm and ReLU of LeNet-5 made
its epoch 1.15-1.25x slower. When OpenBLAS's threads run products in the same step
(Dense layers), its idle threads spin for a while after each product and take the
core a split call needs.

A pool whose workers spin for their next part (reading a flag without the GIL)
instead of sleeping handed over in 60 µs instead of 72: the GIL's own hand-over between
the two threads is most of the cost, and the epoch did not get faster, so the plain
``concurrent.futures`` pool stays.

numba's own parallel loops (``prange``) were not used: their worker threads spin while
waiting, on the same cores as OpenBLAS's, and made the matrix products of a step
slower (see :mod:`bpnn._conv_kernels`).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_POOL = None
_POOL_LOCK = threading.Lock()


def threads() -> int:
    """Threads for one kernel call: ``NUMBA_NUM_THREADS`` (numba's setting; all cores
    by default). Read from numba's configuration: ``numba.get_num_threads()`` would
    start numba's own thread pool, which these calls do not use."""
    from numba.core import config

    return config.NUMBA_NUM_THREADS


def in_parts(n: int, work) -> list:
    """[work(start, stop) for contiguous parts of range(n)], one part per thread
    (:func:`threads`; at most n), the first in the calling thread. A part that splits
    again runs whole in its thread (the pool's worker must not wait for itself)."""
    global _POOL
    t = min(threads(), n)
    if t <= 1 or getattr(_IN_WORKER, "flag", False):
        return [work(0, n)]
    cuts = [n * i // t for i in range(t + 1)]
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < t - 1:
            _POOL = ThreadPoolExecutor(max_workers=t - 1, thread_name_prefix="bpnn-kernels",
                                       initializer=_mark_worker)
        pool = _POOL
    futures = [pool.submit(work, cuts[i], cuts[i + 1]) for i in range(1, t)]
    first = work(cuts[0], cuts[1])
    return [first] + [f.result() for f in futures]


_IN_WORKER = threading.local()


def _mark_worker() -> None:
    _IN_WORKER.flag = True


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there (an executor that
    believes it has them would never run a part)."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
