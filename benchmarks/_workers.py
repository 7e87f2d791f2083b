"""What the benchmark scripts' worker processes share: the protocol lines on their
stdout and their memory readings from /proc (Linux; None or False elsewhere).

A worker writes one JSON object per line, prefixed by ``MARK`` so that anything else a
library prints on stdout passes through to the parent's stderr unharmed.
"""
from __future__ import annotations

import json
import sys

MARK = "@@BENCH "


def send(obj) -> None:
    """Worker side: one protocol line."""
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def receive(stream, name: str):
    """Parent side: the next protocol object from a worker's stdout (other lines are
    copied to stderr, prefixed by ``name``), or None when the stream ends."""
    for line in stream:
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
        sys.stderr.write(f"[{name}] {line}")
    return None


def proc_status_kib(field: str):
    """A field of /proc/self/status in KiB (``"VmRSS"``, ``"VmHWM"``), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux: write "5" to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
