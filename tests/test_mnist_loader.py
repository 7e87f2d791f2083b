"""The MNIST loader: local IDX folders, and the real download code against a local mirror."""
import functools
import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from bpnn.data import DatasetError, load_mnist
from bpnn.data import mnist as mnist_mod

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
MNIST_DIR = Path(os.environ.get("BPNN_MNIST_DIR", SHARED))
needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                                 reason=f"MNIST IDX files not found in {MNIST_DIR} (set BPNN_MNIST_DIR)")


@needs_mnist
def test_reads_the_official_files_from_a_local_folder():
    Xtr, ytr, Xte, yte = load_mnist(MNIST_DIR, download=False)
    assert Xtr.shape == (60000, 784) and Xte.shape == (10000, 784) and Xtr.dtype == np.float32
    assert 0.0 == Xtr.min() and Xtr.max() == 1.0
    assert np.bincount(ytr).tolist()[:3] == [5923, 6742, 5958] and ytr.dtype == np.int64
    images = load_mnist(MNIST_DIR, download=False, flatten=False)[2]
    assert images.shape == (10000, 1, 28, 28)


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def fake_dataset(monkeypatch, tmp_path):
    """A small IDX dataset served over HTTP on localhost, with its checksums registered."""
    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte": _idx(rng.integers(0, 256, (20, 28, 28))),
             "train-labels-idx1-ubyte": _idx(rng.integers(0, 10, 20)),
             "t10k-images-idx3-ubyte": _idx(rng.integers(0, 256, (5, 28, 28))),
             "t10k-labels-idx1-ubyte": _idx(rng.integers(0, 10, 5))}
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    for name, data in files.items():
        (good / (name + ".gz")).write_bytes(gzip.compress(data))
        (bad / (name + ".gz")).write_bytes(gzip.compress(data[:-1] + b"\x00"))  # corrupted mirror
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    spec = {"mirrors": [base + "missing/", base + "bad/", base + "good/"],
            "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}, "env": "BPNN_TEST_NOPE"}
    monkeypatch.setitem(mnist_mod.DATASETS, "mnist", spec)
    monkeypatch.setenv("BPNN_CACHE_DIR", str(tmp_path / "cache"))
    yield files, spec
    server.shutdown()


def test_downloads_from_the_first_good_mirror_verifies_and_caches(fake_dataset, tmp_path):
    files, _ = fake_dataset
    Xtr, ytr, Xte, yte = load_mnist()
    assert Xtr.shape == (20, 784) and Xte.shape == (5, 784)
    np.testing.assert_array_equal(yte, np.frombuffer(files["t10k-labels-idx1-ubyte"], np.uint8, offset=8))
    cached = sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir())
    assert cached == sorted(n + ".gz" for n in files)
    load_mnist(download=False)  # now served from the cache


def test_all_mirrors_failing_names_each_failure(fake_dataset):
    _, spec = fake_dataset
    spec["mirrors"] = spec["mirrors"][:2]
    with pytest.raises(DatasetError, match=r"missing/.*404.*bad/.*sha256") as err:
        load_mnist()
    # and where it looked, and what to do without a network
    assert "Not found locally either" in str(err.value) and "$BPNN_TEST_NOPE" in str(err.value)
    assert "give data_dir" in str(err.value)


def test_no_files_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("BPNN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("BPNN_MNIST_DIR", raising=False)
    with pytest.raises(DatasetError, match="not found in .* and download=False"):
        load_mnist(tmp_path / "empty", download=False)


def test_a_corrupted_local_file_is_refused(fake_dataset, tmp_path):
    files, _ = fake_dataset
    local = tmp_path / "local"
    local.mkdir()
    for name, data in files.items():
        (local / name).write_bytes(data)
    (local / "t10k-labels-idx1-ubyte").write_bytes(files["t10k-labels-idx1-ubyte"][:-2])
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte: sha256"):
        load_mnist(local, download=False)


def test_unknown_kind():
    with pytest.raises(ValueError, match="kind: got 'emnist'; valid values are 'mnist', 'fashion_mnist'"):
        load_mnist(kind="emnist")
