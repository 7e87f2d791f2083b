"""Atomic writes: the old file or the new one, never a torn file — even under SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from bpnn.io import atomic_write, write_bytes_atomic, write_text_atomic


def _leftovers(directory, keep):
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def test_write_bytes_atomic_replaces_the_content(tmp_path):
    path = tmp_path / "f.bin"
    write_bytes_atomic(path, b"first")
    write_bytes_atomic(path, b"second, longer")
    assert path.read_bytes() == b"second, longer"
    assert _leftovers(tmp_path, {"f.bin"}) == []


def test_an_exception_while_writing_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path) as handle:
            handle.write(b"partial new cont")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path, {"f.bin"}) == []


def test_refuses_a_directory_or_a_missing_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        write_bytes_atomic(tmp_path, b"x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_bytes_atomic(tmp_path / "missing" / "f.bin", b"x")


def test_text_mode_is_utf8_whatever_the_locale_and_takes_newline(tmp_path):
    path = tmp_path / "t.txt"
    write_text_atomic(path, "µ ± σ\n")
    assert path.read_bytes() == "µ ± σ\n".encode("utf-8")
    with atomic_write(path, "w", newline="") as handle:  # as the csv module wants it
        handle.write("a,b\r\n")
    assert path.read_bytes() == b"a,b\r\n"
    assert _leftovers(tmp_path, {"t.txt"}) == []
    with pytest.raises(ValueError, match="mode: got 'a'"):
        with atomic_write(path, "a"):
            pass
    with pytest.raises(IsADirectoryError, match="is a directory"):
        write_text_atomic(tmp_path, "x")


def test_concurrent_writers_of_one_path_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "shared.txt"
    (tmp_path / "shared.txt.tmp").mkdir()  # a fixed temporary name would be blocked by this
    contents = [f"writer {i}\n" * 2000 for i in range(6)]
    errors = []

    def write(text):
        try:
            for _ in range(20):
                write_text_atomic(path, text)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(c,)) for c in contents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert path.read_text(encoding="utf-8") in contents  # one writer's whole file, never a mix
    assert _leftovers(tmp_path, {"shared.txt", "shared.txt.tmp"}) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_process_killed_mid_write_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"A" * 4096)
    code = (
        "import os, signal, sys\n"
        "from bpnn.io import atomic_write\n"
        "with atomic_write(sys.argv[1]) as f:\n"
        "    f.write(b'B' * 2048)\n"
        "    f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == b"A" * 4096
    # a SIGKILLed process cannot clean up: its temporary file stays beside the target, hidden
    assert all(name.startswith(".tmp-model.safetensors-") for name in _leftovers(tmp_path, {"model.safetensors"}))
    assert os.path.getsize(path) == 4096
