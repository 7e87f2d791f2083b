"""Kernel calls split between threads (bpnn._threads)."""
import threading

import numpy as np
import pytest

from bpnn import _threads


@pytest.mark.parametrize("n,threads,min_part", [(10, 2, 1), (1, 2, 1), (7, 3, 1), (5, 4, 2), (64, 2, 1), (3, 1, 1)])
def test_parts_cover_the_range_in_order_the_first_in_the_calling_thread(monkeypatch, n, threads, min_part):
    monkeypatch.setattr(_threads, "threads", lambda: threads)
    seen = _threads.in_parts(n, lambda a, b: (a, b, threading.get_ident()), min_part=min_part)
    bounds = [(a, b) for a, b, _ in seen]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(b0[1] == b1[0] for b0, b1 in zip(bounds, bounds[1:]))
    assert all(b > a for a, b in bounds), "no empty part"
    assert len(seen) == min(threads, max(1, n // min_part))
    assert seen[0][2] == threading.get_ident()


def test_an_exception_in_a_worker_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(_threads, "threads", lambda: 2)

    def work(a, b):
        if a > 0:
            raise ValueError("part failed")

    with pytest.raises(ValueError, match="part failed"):
        _threads.in_parts(4, work)
