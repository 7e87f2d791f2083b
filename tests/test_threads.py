"""Kernel calls split between threads (bpnn._threads) and the kernels that use it."""
import threading

import numpy as np
import pytest

from bpnn import _kernels, _threads


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


@pytest.fixture
def split_everything(monkeypatch):
    """Every batch-norm and ReLU kernel call split between two threads, whatever its size."""
    pytest.importorskip("numba", reason="numba (bpnn[fast]) is not installed")
    before = _kernels.enabled()
    _kernels.set_enabled(True)
    monkeypatch.setattr(_kernels, "_PARALLEL_ELEMENTS", 1)
    monkeypatch.setattr(_threads, "threads", lambda: 2)
    yield
    _kernels.set_enabled(before)


def test_split_batch_norm_and_relu_kernels_equal_numpy(split_everything):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 5)) * 3 + 1
    g = rng.standard_normal((37, 5))
    mean, var = _kernels.bn_rows_stats(x, split=True)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, x.var(axis=0), rtol=1e-12)
    shift, inv, gamma, beta = mean, 1 / np.sqrt(var + 1e-5), rng.random(5), rng.random(5)
    xhat, y = _kernels.bn_rows_apply(x, shift, inv, gamma, beta, split=True)
    np.testing.assert_allclose(xhat, (x - shift) * inv, rtol=1e-12)
    np.testing.assert_allclose(y, xhat * gamma + beta, rtol=1e-12)
    dbeta, dgamma = _kernels.bn_rows_grad_sums(g, xhat, split=True)
    np.testing.assert_allclose(dbeta, g.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(dgamma, (g * xhat).sum(axis=0), rtol=1e-12)
    a, s, sl = rng.random(5), rng.random(5), rng.random(5)
    np.testing.assert_allclose(_kernels.bn_rows_input_grad(g, xhat, a, s, sl, split=True), a * g - s - xhat * sl, rtol=1e-12)
    np.testing.assert_array_equal(_kernels.relu(x, split=True), np.maximum(x, 0))
    np.testing.assert_array_equal(_kernels.relu_backward(g, _kernels.relu(x), split=True), g * (x > 0))


def test_only_arrays_of_images_are_split(split_everything, monkeypatch):
    """MLP activations stay in one call: OpenBLAS threads the products next to them."""
    import bpnn

    calls = []
    real = _threads.in_parts
    monkeypatch.setattr(_threads, "in_parts", lambda n, work, **kw: calls.append(n) or real(n, work, **kw))
    relu = bpnn.nn.ReLU()
    relu.forward(np.ones((4, 3)))
    assert calls == []
    relu.forward(np.ones((4, 3, 2, 2)))
    assert calls == [48]
