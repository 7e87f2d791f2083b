"""Splitting one compiled kernel call over threads, and when to split.

The compiled kernels release the GIL (``nogil=True``), so a call over rows or samples
``[0, n)`` can run as one call per thread over contiguous parts (:func:`in_parts`): a
small pool of Python threads that block, not spin, while idle. One call per thread and
part, so that the threads do not take turns at the GIL.

Handing a part to the pool and getting it back has a fixed cost, so a call splits only
when it is long: :data:`SPLIT_MULTIPLY_ADDS` for the direct convolution and its
gradients (:func:`split_samples`), :data:`SPLIT_ELEMENTS` for batch normalization over
images (:func:`split_rows`). Calls next to OpenBLAS's products (the (N, features)
arrays of MLPs, whose matrix products OpenBLAS threads itself) never split: OpenBLAS's
idle threads spin for a while after each product and take the core a split call needs.
For the same reason numba's own parallel loops (``prange``) are not used: their worker
threads spin while waiting, on the cores that OpenBLAS uses. The measurements behind
these choices are in ``benchmarks/README.md``.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

#: Multiply-adds from which a call of the direct convolution or of its gradients
#: (:mod:`bpnn._kernels.gemm`) over a batch is split between threads: about twice the
#: work that costs as much as the hand-off.
SPLIT_MULTIPLY_ADDS = 30_000_000

#: Elements from which a batch-norm call over images (``split=True``) splits its rows
#: between threads (:mod:`bpnn._kernels.batchnorm`).
SPLIT_ELEMENTS = 1 << 19


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
    t = min(threads(), n)
    if t <= 1 or getattr(_IN_WORKER, "flag", False):
        return [work(0, n)]
    cuts = [n * i // t for i in range(t + 1)]
    pool = _POOL.executor(t - 1)
    futures = [pool.submit(work, cuts[i], cuts[i + 1]) for i in range(1, t)]
    first = work(cuts[0], cuts[1])
    return [first] + [f.result() for f in futures]


def split_samples(n: int, work, multiply_adds: int) -> list:
    """[work(start, stop)] over the samples [0, n): :func:`in_parts` when the call does at
    least :data:`SPLIT_MULTIPLY_ADDS` multiply-adds, else one call. Each part is one call
    per thread, its padding copies included, so that a layer hands work over once per
    forward and once per backward."""
    if multiply_adds < SPLIT_MULTIPLY_ADDS:
        return [work(0, n)]
    return in_parts(n, work)


def split_rows(x2, work, split: bool) -> list:
    """[work(start, stop)] over the rows of the (M, C) array x2: :func:`in_parts` with
    ``split`` when x2 has at least :data:`SPLIT_ELEMENTS` elements, else one call."""
    if not split or x2.size < SPLIT_ELEMENTS:
        return [work(0, x2.shape[0])]
    return in_parts(x2.shape[0], work)


class _Pool:
    """The worker threads, started on first use and grown when more are asked for."""

    def __init__(self):
        self._lock = threading.Lock()
        self._executor = None

    def executor(self, workers: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None or self._executor._max_workers < workers:
                self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bpnn-kernels",
                                                    initializer=_mark_worker)
            return self._executor

    def forget(self) -> None:
        """In a forked child: the parent's pool threads do not exist there (an executor
        that believes it has them would never run a part)."""
        self._lock = threading.Lock()
        self._executor = None


_POOL = _Pool()
_IN_WORKER = threading.local()


def _mark_worker() -> None:
    _IN_WORKER.flag = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.forget)
