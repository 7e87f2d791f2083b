"""Kernel calls split between threads (bpnn._kernels.parallel)."""
import os
import threading
import time

import numpy as np
import pytest

from bpnn._kernels import parallel


@pytest.mark.parametrize("n,threads", [(10, 2), (1, 2), (7, 3), (3, 4), (64, 2), (3, 1)])
def test_parts_cover_the_range_in_order_the_first_in_the_calling_thread(monkeypatch, n, threads):
    monkeypatch.setattr(parallel, "threads", lambda: threads)
    seen = parallel.in_parts(n, lambda a, b: (a, b, threading.get_ident()))
    bounds = [(a, b) for a, b, _ in seen]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(b0[1] == b1[0] for b0, b1 in zip(bounds, bounds[1:]))
    assert all(b > a for a, b in bounds), "no empty part"
    assert len(seen) == min(threads, n)
    assert seen[0][2] == threading.get_ident()


def test_an_exception_in_a_worker_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(parallel, "threads", lambda: 2)

    def work(a, b):
        if a > 0:
            raise ValueError("part failed")

    with pytest.raises(ValueError, match="part failed"):
        parallel.in_parts(4, work)


@pytest.fixture
def split_batch_norm(monkeypatch):
    """Every batch-norm kernel call over images split between three threads."""
    from bpnn import _kernels
    from bpnn._kernels import batchnorm

    pytest.importorskip("numba", reason="numba (bpnn[fast]) is not installed")
    before = _kernels.enabled()
    _kernels.set_enabled(True)
    monkeypatch.setattr(parallel, "SPLIT_ELEMENTS", 1)
    monkeypatch.setattr(parallel, "threads", lambda: 3)
    yield batchnorm
    _kernels.set_enabled(before)


def test_batch_norm_kernels_split_between_threads_equal_numpy(split_batch_norm):
    """Parts of the rows: the statistics combine as Chan et al. (1979)."""
    k = split_batch_norm
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 5)) * 3 + 100  # a large mean: the combination must not lose the variance
    g = rng.standard_normal((37, 5))
    mean, var = k.rows_stats(x, split=True)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(var, x.var(axis=0), rtol=1e-11)
    center, inv, gamma, beta = mean, 1 / np.sqrt(var + 1e-5), rng.random(5), rng.random(5)
    xhat = (x - center) * inv
    y, _ = k.rows_apply(x, center, inv, gamma, beta, split=True)
    np.testing.assert_allclose(y, xhat * gamma + beta, rtol=1e-12)
    dbeta, dgamma = k.rows_grad_sums(g, x, center, inv, split=True)
    np.testing.assert_allclose(dbeta, g.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(dgamma, (g * xhat).sum(axis=0), rtol=1e-12)
    a, s, sl = rng.random(5), rng.random(5), rng.random(5)
    np.testing.assert_allclose(k.rows_input_grad(g, x, center, inv, a, s, sl, split=True), a * g - s - xhat * sl,
                               rtol=1e-12)


def test_batch_norm_splits_images_only(split_batch_norm, monkeypatch):
    """(N, features) batches stay in one call: OpenBLAS threads the products next to them."""
    import bpnn

    calls = []
    real = parallel.in_parts
    monkeypatch.setattr(parallel, "in_parts", lambda n, work, **kw: calls.append(n) or real(n, work, **kw))
    bn = bpnn.nn.BatchNorm()
    bn.build((3,), 0, np.float64)
    bn.backward(bn.forward(np.random.default_rng(0).random((8, 3)), training=True))
    assert calls == []
    bn2 = bpnn.nn.BatchNorm()
    bn2.build((3, 2, 2), 0, np.float64)
    bn2.backward(bn2.forward(np.random.default_rng(0).random((8, 3, 2, 2)), training=True))
    assert calls == [32] * 4  # statistics, normalization, gradient sums, input gradient


def test_a_part_that_splits_again_runs_whole_in_its_thread(monkeypatch):
    """Nested splits would make the pool's worker wait for itself."""
    monkeypatch.setattr(parallel, "threads", lambda: 2)
    out = parallel.in_parts(4, lambda a, b: parallel.in_parts(b - a, lambda i, j: (a + i, a + j)))
    assert out == [[(0, 1), (1, 2)], [(2, 4)]]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_pool_of_its_own(monkeypatch):
    """The parent's pool threads do not exist in a forked child (multiprocessing's fork
    start method): the child must not hand parts to them and wait forever."""
    monkeypatch.setattr(parallel, "threads", lambda: 2)
    assert parallel.in_parts(4, lambda a, b: b - a) == [2, 2]  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # child: exit 0 only if the split call completes
        try:
            ok = parallel.in_parts(4, lambda a, b: b - a) == [2, 2]
        finally:
            os._exit(0 if ok else 1)
    deadline = time.time() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in in_parts")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
