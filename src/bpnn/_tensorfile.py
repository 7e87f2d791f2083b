"""safetensors files with checksums, read in bounded memory: model files and checkpoints.

bpnn's model files (:mod:`bpnn.io.serialization`) and training checkpoints
(:mod:`bpnn.train.checkpoint`) are standard safetensors files
(https://huggingface.co/docs/safetensors): 8 bytes, the little-endian length N of a JSON
header; N bytes of header, ``{"<array>": {"dtype": "F32", "shape": [4, 5],
"data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}``; then the arrays' raw
little-endian bytes, back to back, offsets counted from the end of the header.

Integrity
---------
:func:`encode` writes two metadata entries: ``"bpnn"``, the file's JSON document, and
``"bpnn_sha256"``, a JSON object mapping ``"bpnn"`` to the SHA-256 of the document's
UTF-8 bytes and each array's name to the SHA-256 of its data bytes (hex digests, the
same ``sha256sum`` prints for the byte range). :class:`TensorFile` verifies the document
and every array it reads against that table, so a flipped bit anywhere in the file is an
error naming the array (or the document). Files without the table (written before it
existed, or by other tools) are read unverified.

Bounded memory
--------------
Opening a file reads its header only (at most the file's size, and never more than
safetensors' own 100 MB limit on headers) and checks it completely: known dtypes,
each array's byte count equal to its shape times its item size, arrays back to back
from offset 0 to the end of the file. Nothing else is read until :meth:`TensorFile.read`
asks for one array, which allocates exactly that array's bytes. A caller therefore
compares the declared names, shapes and dtypes with what it expects first, and a small
file that declares huge arrays costs nothing. Paths that are not regular files
(directories, FIFOs, devices, symbolic-link loops) are refused before they are opened,
and well-known other formats (pickles, zip archives as ``torch.save`` writes them,
``.npy``, HDF5) are named; nothing is ever unpickled.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass

import numpy as np

DOCUMENT = "bpnn"  # the metadata entry holding the file's JSON document
CHECKSUMS = "bpnn_sha256"  # the metadata entry holding the checksum table
MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header

#: safetensors dtype names NumPy can hold (BF16 and the F8 types it cannot)
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
          "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}


class TensorFileError(ValueError):
    """A file that cannot be read as a (verified) safetensors file.

    ``problem`` says what is wrong (without the path: callers wrap it in their own error,
    which names the file), ``array`` the array concerned or None, and ``kind`` is
    ``"content"`` (the bytes are wrong), ``"missing"`` (no such path) or ``"access"``
    (a directory, a pipe, no permission: ``errno`` says which).
    """

    def __init__(self, problem: str, *, array: str | None = None, kind: str = "content", errno: int | None = None):
        super().__init__(problem)
        self.problem, self.array, self.kind, self.errno = problem, array, kind, errno


@dataclass(frozen=True)
class ArraySpec:
    """An array as the header declares it: ``name``, ``dtype`` (NumPy, native byte order),
    ``shape`` and its data's absolute byte range ``[begin, end)`` in the file."""

    name: str
    dtype: np.dtype
    shape: tuple
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


# =========================================================================== writing
def digest(data) -> str:
    """The SHA-256 hex digest of ``data`` (bytes, or a C-contiguous array's bytes)."""
    return hashlib.sha256(memoryview(data).cast("B") if not isinstance(data, bytes) else data).hexdigest()


def _little_endian(value) -> np.ndarray:
    value = np.ascontiguousarray(value)
    if value.dtype.byteorder == ">" or (value.dtype.byteorder == "=" and not np.little_endian):
        value = value.astype(value.dtype.newbyteorder("<"))
    return value


def encode(arrays: dict, document: str) -> bytes:
    """The bytes of a safetensors file holding ``arrays`` (name -> NumPy array), the JSON
    ``document`` as the ``"bpnn"`` metadata entry and the checksum table (see above)."""
    import safetensors.numpy

    arrays = {name: _little_endian(value) for name, value in arrays.items()}
    table = {DOCUMENT: digest(document.encode("utf-8"))}
    table.update({name: digest(value) for name, value in arrays.items()})
    return safetensors.numpy.save(arrays, metadata={DOCUMENT: document, CHECKSUMS: json.dumps(table)})


# =========================================================================== reading
def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def strict_json(text: str):
    """``json.loads`` without the non-standard NaN / Infinity constants."""
    return json.loads(text, parse_constant=_reject_constant)


def sniff(head: bytes, what: str = "a safetensors file") -> str | None:
    """Name well-known formats that are not safetensors, pickles first (``what``: what
    the file should have been, for the message)."""
    other = f"it is not {what} (bpnn writes safetensors files)"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return (f"it is a Python pickle (protocol {head[1]}), as written by pickle, joblib or old "
                f"torch.save; bpnn never unpickles, because unpickling can run arbitrary code")
    if head[:4] == b"PK\x03\x04":
        return ("it is a zip archive (torch.save and numpy.savez write these, torch's with a pickle "
                "inside); bpnn never unpickles, because unpickling can run arbitrary code")
    if head[:6] == b"\x93NUMPY":
        return "it is a NumPy .npy file; " + other
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "it is an HDF5 file (e.g. Keras .h5); " + other
    return None


def _open_regular(path: str) -> int:
    """A read-only descriptor of ``path``, refusing anything but a regular file before
    opening it (opening a FIFO would block; a directory or a device is no file)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise TensorFileError("no such file (a broken symbolic link)", kind="missing") from None
        raise TensorFileError("no such file", kind="missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TensorFileError("cannot be opened: its symbolic links form a loop", kind="access",
                                  errno=exc.errno) from None
        raise TensorFileError(f"cannot be read ({exc.strerror or exc})", kind="access", errno=exc.errno) from None
    if stat.S_ISDIR(info.st_mode):
        raise TensorFileError("is a directory, not a file", kind="access", errno=errno.EISDIR)
    if not stat.S_ISREG(info.st_mode):
        raise TensorFileError("is not a regular file (a pipe, a socket or a device)", kind="access")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise TensorFileError("no such file", kind="missing") from None
    except OSError as exc:
        raise TensorFileError(f"cannot be read ({exc.strerror or exc})", kind="access", errno=exc.errno) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the two looks
        os.close(fd)
        raise TensorFileError("is not a regular file", kind="access")
    return fd


def _read_at(fd: int, offset: int, out) -> int:
    """Fill the writable buffer ``out`` from ``offset``; the number of bytes read (less at
    the end of the file)."""
    view = memoryview(out).cast("B")
    done = 0
    while done < len(view):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view[done:]], offset + done)
        else:  # pragma: no cover - Windows
            os.lseek(fd, offset + done, os.SEEK_SET)
            chunk = os.read(fd, len(view) - done)
            n = len(chunk)
            view[done:done + n] = chunk
        if n == 0:
            break
        done += n
    return done


class TensorFile:
    """An open safetensors file whose header has been read and checked; arrays are read
    one at a time by :meth:`read`. Use as a context manager (``with TensorFile(path) as
    f``) or call :meth:`close`.

    ``what`` names what the file should be, for messages (``"a bpnn model file"``).
    Attributes: ``path``, ``size`` (bytes), ``metadata`` (str -> str), ``arrays`` (name ->
    :class:`ArraySpec`, in file order), ``checksums`` (name -> hex digest, or None for a
    file without the table). Raises :class:`TensorFileError`.
    """

    def __init__(self, path, what: str = "a safetensors file"):
        self.path, self.what = os.fspath(path), what
        self._fd = _open_regular(self.path)
        try:
            self.size = os.fstat(self._fd).st_size
            self._read_header()
            self.checksums = self._read_checksums()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "TensorFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------------ header
    def _read_header(self) -> None:
        n = self.size
        if n == 0:
            raise TensorFileError("the file is empty")
        head = bytearray(min(n, 16))
        _read_at(self._fd, 0, head)
        head = bytes(head)
        header_len = int.from_bytes(head[:8], "little") if n >= 8 else 0
        looks_like_json = head[8:9] == b"{"
        if not (looks_like_json and 2 <= header_len <= min(n - 8, MAX_HEADER)):
            known = sniff(head, self.what)
            if known:
                raise TensorFileError(known)
            if n < 8:
                raise TensorFileError(f"the file is only {n} bytes long, shorter than the 8-byte header "
                                      f"length a safetensors file starts with: truncated")
            if looks_like_json and n - 8 < header_len <= MAX_HEADER:
                raise TensorFileError(f"the header claims {header_len} bytes but only {n - 8} follow: "
                                      f"the file is truncated")
            raise TensorFileError(f"it is not {self.what} (bpnn writes safetensors files): no safetensors "
                                  f"header (an 8-byte length, then JSON) at its start")
        raw = bytearray(header_len)
        if _read_at(self._fd, 8, raw) != header_len:  # pragma: no cover - the file shrank meanwhile
            raise TensorFileError("the file is truncated (it changed while being read)")
        try:
            header = strict_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise TensorFileError(f"the safetensors header is not valid JSON ({exc}): the file is "
                                  f"truncated or corrupt") from None
        if not isinstance(header, dict):
            raise TensorFileError("the safetensors header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise TensorFileError("the safetensors metadata is not a table of strings")
        self.metadata = metadata
        base, body = 8 + header_len, n - 8 - header_len
        specs = [self._spec(name, entry, base, body) for name, entry in header.items()]
        specs.sort(key=lambda s: (s.begin, s.end))
        expected = base
        for spec in specs:  # back to back, no gaps, no overlaps (as safetensors requires)
            if spec.begin != expected:
                raise TensorFileError(f"the data of array {spec.name!r} starts at byte {spec.begin - base} "
                                      f"of the data, not at {expected - base} where the previous one ends: "
                                      f"the header is corrupt", array=spec.name)
            expected = spec.end
        if expected != n:
            raise TensorFileError(f"the arrays fill {expected - base} bytes but {body} follow the header: "
                                  f"the file is corrupt or has bytes appended")
        self.arrays = {spec.name: spec for spec in specs}

    @staticmethod
    def _spec(name: str, entry, base: int, body: int) -> ArraySpec:
        def bad(what):
            return TensorFileError(f"the header entry of array {name!r} {what}: the header is corrupt", array=name)

        if not isinstance(entry, dict):
            raise bad(f"is malformed ({entry!r:.80})")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in DTYPES:
            raise bad(f"has dtype {dtype!r:.40}; safetensors dtypes NumPy reads are {', '.join(DTYPES)}")
        if not (isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)):
            raise bad(f"has shape {shape!r:.80}; expected a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise bad(f"has data_offsets {offsets!r:.80}; expected [begin, end] with 0 <= begin <= end")
        np_dtype = np.dtype(DTYPES[dtype])
        nbytes = math.prod(shape) * np_dtype.itemsize
        if offsets[1] > body:
            raise TensorFileError(f"array {name!r} needs {offsets[1]} bytes of data but the file holds {body} "
                                  f"after its header: the file is truncated", array=name)
        if offsets[1] - offsets[0] != nbytes:
            raise bad(f"declares {offsets[1] - offsets[0]} bytes for shape {tuple(shape)} of {dtype}, "
                      f"which take {nbytes}")
        return ArraySpec(name, np_dtype.newbyteorder("="), tuple(shape), base + offsets[0], base + offsets[1])

    def _read_checksums(self):
        if CHECKSUMS not in self.metadata:
            return None
        try:
            table = strict_json(self.metadata[CHECKSUMS])
        except (ValueError, RecursionError) as exc:
            raise TensorFileError(f"the checksum table ('{CHECKSUMS}' metadata) is not valid JSON ({exc})") from None
        if not (isinstance(table, dict) and all(isinstance(v, str) and len(v) == 64 for v in table.values())):
            raise TensorFileError(f"the checksum table ('{CHECKSUMS}' metadata) is not a table of SHA-256 digests")
        expected = set(self.arrays) | ({DOCUMENT} if DOCUMENT in self.metadata else set())
        if set(table) != expected:
            missing, unexpected = sorted(expected - set(table)), sorted(set(table) - expected)
            raise TensorFileError(f"the checksum table does not match the file's contents (no checksum for "
                                  f"{missing or 'none'}; checksums of absent entries {unexpected or 'none'}): "
                                  f"the file is corrupt")
        return table

    # ------------------------------------------------------------------ content
    @property
    def verified(self) -> bool:
        """Whether the file carries a checksum table (its reads are verified)."""
        return self.checksums is not None

    def document(self) -> str | None:
        """The ``"bpnn"`` metadata entry (verified against its checksum), or None."""
        text = self.metadata.get(DOCUMENT)
        if text is not None and self.checksums is not None:
            if digest(text.encode("utf-8")) != self.checksums[DOCUMENT]:
                raise TensorFileError(f"the JSON document ('{DOCUMENT}' metadata) does not match its SHA-256 "
                                      f"checksum: the file is corrupt")
        return text

    def read(self, spec: ArraySpec | str, out: np.ndarray | None = None) -> np.ndarray:
        """The array ``spec`` names, read from the file (exactly its bytes) and verified
        against its checksum: a new, writable array in native byte order, or ``out``
        filled in place when given (a C-contiguous NumPy array of the same shape and
        dtype; its content is undefined if this raises)."""
        if isinstance(spec, str):
            spec = self.arrays[spec]
        if out is not None and not (isinstance(out, np.ndarray) and out.flags.c_contiguous and out.flags.writeable
                                    and out.shape == spec.shape and out.dtype == spec.dtype and np.little_endian):
            raise ValueError(f"out: expected a writable C-contiguous array of shape {spec.shape} and dtype "
                             f"{spec.dtype}")
        buf = np.empty(spec.nbytes, dtype=np.uint8) if out is None else out.reshape(-1).view(np.uint8)
        if _read_at(self._fd, spec.begin, buf) != spec.nbytes:  # pragma: no cover - the file shrank meanwhile
            raise TensorFileError(f"array {spec.name!r} is cut short: the file changed while being read",
                                  array=spec.name)
        if self.checksums is not None and digest(buf) != self.checksums[spec.name]:
            raise TensorFileError(f"array {spec.name!r} does not match its SHA-256 checksum: the file is corrupt",
                                  array=spec.name)
        if out is not None:
            return out
        value = buf.view(spec.dtype.newbyteorder("<")).reshape(spec.shape)
        return value if value.dtype.isnative else value.astype(spec.dtype)
