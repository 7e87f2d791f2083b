"""MNIST and Fashion-MNIST: download from the public mirrors, or read local IDX files."""
from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .._atomic import atomic_write

_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS = {
    "mnist": {
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
        # sha256 of the *decompressed* files: independent of how a mirror gzipped them.
        "sha256": {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        "env": "BPNN_MNIST_DIR",
    },
    "fashion_mnist": {
        "mirrors": [
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ],
        # Zalando publishes md5 sums of the gzipped files; they are checked on download.
        "md5_gz": {
            "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        "env": "BPNN_FASHION_MNIST_DIR",
    },
}


class DatasetError(OSError):
    """A dataset could not be found, downloaded or verified."""


def default_cache_dir() -> Path:
    """``$BPNN_CACHE_DIR`` or ``$XDG_CACHE_HOME/bpnn`` (``~/.cache/bpnn``)."""
    if os.environ.get("BPNN_CACHE_DIR"):
        return Path(os.environ["BPNN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bpnn"


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{path}: not a valid gzip file ({exc})") from None
    return data


def _parse_idx(data: bytes, path) -> np.ndarray:
    """Parse an IDX file: magic (0, 0, type 0x08 = uint8, ndim), big-endian dims, data."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(dims)):
        raise DatasetError(f"{path}: IDX header announces shape {dims} but the file has "
                           f"{len(data) - header} data bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _verify(spec, name, raw: bytes, data: bytes, path) -> None:
    if "sha256" in spec:
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec["sha256"][name]:
            raise DatasetError(f"{path}: sha256 of the decompressed content is {digest}, "
                               f"expected {spec['sha256'][name]}")
    elif raw is not None and hashlib.md5(raw).hexdigest() != spec["md5_gz"][name]:
        raise DatasetError(f"{path}: md5 of the gzipped file does not match the published sum")


def _download(spec, name: str, cache: Path, timeout: float) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / (name + ".gz")
    errors = []
    for mirror in spec["mirrors"]:
        url = mirror + name + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https/http mirrors
                raw = response.read()
            _verify(spec, name, raw, gzip.decompress(raw), url)
        except (urllib.error.URLError, OSError, EOFError, DatasetError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        with atomic_write(target) as handle:
            handle.write(raw)
        return target
    raise DatasetError(f"could not download {name}: " + "; ".join(errors))


def load_mnist(data_dir=None, kind: str = "mnist", download: bool = True, flatten: bool = True,
               dtype="float32", timeout: float = 30.0):
    """Load MNIST (or ``kind="fashion_mnist"``) as ``(X_train, y_train, X_test, y_test)``.

    Files are looked up, in order, in ``data_dir``, in the folder named by
    ``$BPNN_MNIST_DIR`` (``$BPNN_FASHION_MNIST_DIR``), and in the cache directory
    (:func:`default_cache_dir` / kind); each may hold the IDX files plain or gzipped. If
    they are not found and ``download`` is true they are downloaded from the public
    mirrors into the cache. Contents are verified against published checksums (MNIST:
    sha256 of the decompressed files, so any mirror's gzip works).

    Images are scaled to [0, 1] in ``dtype``; ``flatten`` gives (N, 784), else
    (N, 1, 28, 28) (NCHW). Labels are int64.
    """
    if kind not in DATASETS:
        raise ValueError(f"kind: got {kind!r}; valid values are {', '.join(map(repr, DATASETS))}")
    spec = DATASETS[kind]
    dirs = [Path(d) for d in (data_dir, os.environ.get(spec["env"])) if d]
    cache = default_cache_dir() / kind
    dirs.append(cache)
    arrays = []
    for name in _FILES:
        path = next((p for p in (_find(d, name) for d in dirs) if p is not None), None)
        if path is None:
            if not download:
                raise DatasetError(f"{name}: not found in {', '.join(map(str, dirs))} and download=False")
            try:
                path = _download(spec, name, cache, timeout)
            except DatasetError as exc:
                raise DatasetError(f"{exc}. Not found locally either (looked in {', '.join(map(str, dirs))}): "
                                   f"give data_dir (a folder with the IDX files, plain or .gz) or set "
                                   f"${spec['env']}") from None
        data = _read_bytes(path)
        raw = path.read_bytes() if path.suffix == ".gz" and "md5_gz" in spec else None
        _verify(spec, name, raw, data, path)
        arrays.append(_parse_idx(data, path))
    xtr, ytr, xte, yte = arrays
    scale = np.asarray(1.0 / 255.0, dtype=dtype)

    def images(a):
        a = a.astype(dtype) * scale
        return a.reshape(len(a), -1) if flatten else a.reshape(len(a), 1, *a.shape[1:])

    return images(xtr), ytr.astype(np.int64), images(xte), yte.astype(np.int64)
