"""What every benchmark script shares: worker processes and their protocol, thread
settings, the machine's load from /proc, quiet-machine waits, paired timings, machine
information and the JSON results file.

The method (benchmarks/README.md, "The harness") in one paragraph: each measured
party, a framework or a source tree of bpnn, runs in its own worker process started by
:class:`Worker` with the same thread settings; the parent asks the workers for one
measurement at a time, alternating between them and rotating their order from repeat
to repeat (:func:`rotation`), so that both see the same machine noise; before each
measurement it waits for the machine to be quiet and repeats a measurement during
which other processes were busy (:func:`least_disturbed`); two parties are compared by
the ratio of their medians and the median of the per-repeat ratios
(:func:`paired_ratios`).

Linux readings (/proc) are None or False elsewhere. Scripts import this module from
beside them (``from _harness import ...``): ``python benchmarks/bench_x.py`` puts the
script's folder on ``sys.path``.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

# ============================================================================ workers
MARK = "@@BENCH "
WORKER_FLAG = "--_worker"  # the hidden option that makes a script a worker; its value: the spec as JSON


def send(obj) -> None:
    """Worker side: one protocol line on stdout, prefixed by ``MARK`` so that anything
    else a library prints there passes through to the parent's stderr unharmed."""
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


def commands():
    """Worker side: the parent's commands (``{"cmd": ..., ...}``), one per stdin line,
    until ``{"cmd": "quit"}`` or the end of input."""
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            return
        yield cmd


class Worker:
    """Parent side of one worker process: ``python SCRIPT --_worker SPEC`` (the script
    reads ``spec``, a JSON object, and answers :meth:`ask` through :func:`send`).

    The process inherits this process's environment at construction, with the thread
    variables set to ``threads`` (:func:`thread_env`) and ``env`` on top. That is how
    a paired comparison of two source trees of bpnn runs: one worker per tree,
    ``env={"PYTHONPATH": "/path/to/tree/src"}`` (or the variable set before the worker
    is started), alternating as any two frameworks do.
    """

    def __init__(self, script, spec: dict, *, name: str, threads: int, env: dict | None = None):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(script), WORKER_FLAG, json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=thread_env(threads, env))

    def recv(self) -> dict:
        """The worker's next protocol object; a worker that exits instead is an error."""
        msg = receive(self.proc.stdout, self.name)
        if msg is not None:
            return msg
        rc = self.proc.wait()
        raise RuntimeError(f"{self.name} worker exited (rc={rc}) without answering")

    def ask(self, cmd: str, **args) -> dict:
        """Send ``{"cmd": cmd, **args}`` and return the answer."""
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        return self.recv()

    def close(self):
        """Tell the worker to quit; return what it sent last (None if nothing), wait for it."""
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        last = receive(self.proc.stdout, self.name)
        self.proc.wait(timeout=60)
        return last


# ============================================================================ threads
#: Every thread-count variable of the libraries the benchmarks load: OpenMP, OpenBLAS,
#: MKL, BLIS, Apple Accelerate, numexpr, and numba (bpnn's kernels and its thread pool).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")


def thread_env(threads: int, env: dict | None = None) -> dict:
    """This process's environment with every :data:`THREAD_VARS` set to ``threads``, and
    ``env`` on top: the environment of a worker process."""
    out = dict(os.environ)
    out.update({var: str(threads) for var in THREAD_VARS})
    out.update(env or {})
    return out


def set_thread_env(threads: int) -> None:
    """Set :data:`THREAD_VARS` in this process, for benchmarks without workers: it must
    run before NumPy (its BLAS) and numba are imported to take effect."""
    os.environ.update({var: str(threads) for var in THREAD_VARS})


def threads_from_argv(argv) -> int | None:
    """For a script whose ``--threads T`` must also reach numba (which reads
    ``NUMBA_NUM_THREADS`` once, when it loads): find the option in ``argv`` before the
    script imports NumPy or bpnn and :func:`set_thread_env` it; return T, or None when
    the option is absent or malformed (argparse reports that later)."""
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else (
            argv[i + 1] if arg == "--threads" and i + 1 < len(argv) else None)
        if value is not None:
            try:
                threads = int(value)
            except ValueError:
                return None
            if threads > 0:
                set_thread_env(threads)
                return threads
    return None


def limit_threads(threads: int):
    """Cap every thread pool loaded so far (BLAS, OpenMP) with threadpoolctl, on top of
    the variables; call it after the imports. Keep the returned limiter alive; None
    without threadpoolctl."""
    try:
        import numpy  # noqa: F401 - load numpy's BLAS first so threadpoolctl sees it
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(threads)


def thread_info(threads: int) -> dict:
    """The requested thread count and the thread pools threadpoolctl finds loaded."""
    info = {"requested": threads}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return info
    info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "prefix", "num_threads", "version", "architecture")}
                           for p in threadpool_info()]
    return info


# ============================================================================ load and memory
def cpu_ticks():
    """(busy, steal) clock ticks of the whole machine since boot, from /proc/stat; None
    elsewhere. busy = user + nice + system + irq + softirq (iowait and idle are not)."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (vals + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def foreign_cores(c0, c1, own_cpu_s: float, wall_s: float):
    """Average number of cores that other processes (and the hypervisor, as steal) used
    between the readings ``c0`` and ``c1`` of :func:`cpu_ticks`:
    (Δbusy + Δsteal) / CLK_TCK − own CPU seconds, over the wall time; None without readings."""
    if c0 is None or c1 is None or wall_s <= 0:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = (c1[0] - c0[0]) / hz
    steal = (c1[1] - c0[1]) / hz
    return max(0.0, busy - own_cpu_s + steal) / wall_s


def wait_quiet(threshold: float, max_wait: float, window: float = 0.5) -> float:
    """Wait (at most ``max_wait`` s) until other processes use at most ``threshold``
    cores, judged over ``window`` s; return the seconds waited (0 when ``max_wait`` ≤ 0)."""
    if max_wait <= 0:
        return 0.0
    t0 = time.perf_counter()
    while True:
        c0 = cpu_ticks()
        time.sleep(window)
        load = foreign_cores(c0, cpu_ticks(), 0.0, window)
        waited = time.perf_counter() - t0
        if load is None or load <= threshold or waited >= max_wait:
            return waited


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


class Usage:
    """What one measured piece of work used: ``with Usage() as u: work()``.

    Attributes after the block: ``wall_s``; ``cpu_s`` (this process, all threads);
    ``foreign_cores`` (:func:`foreign_cores` over the block); ``rss_before_kib``;
    ``hwm_reset`` (whether the high-water mark could be reset at the start),
    ``hwm_before_kib`` (right after the reset), ``hwm_kib`` (at the end) and
    ``peak_increase_kib`` = hwm_kib − rss_before_kib (None without a reset).
    """

    def __enter__(self):
        self.rss_before_kib = proc_status_kib("VmRSS")
        self.hwm_reset = reset_hwm()
        self.hwm_before_kib = proc_status_kib("VmHWM")
        self._ticks, self._cpu, self._wall = cpu_ticks(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall, cpu, ticks = time.perf_counter(), time.process_time(), cpu_ticks()
        self.wall_s, self.cpu_s = wall - self._wall, cpu - self._cpu
        self.foreign_cores = foreign_cores(self._ticks, ticks, self.cpu_s, self.wall_s)
        self.hwm_kib = proc_status_kib("VmHWM")
        known = self.hwm_reset and self.hwm_kib is not None and self.rss_before_kib is not None
        self.peak_increase_kib = self.hwm_kib - self.rss_before_kib if known else None
        return False


# ============================================================================ paired measurements
def rotation(order: list, rep: int) -> list:
    """``order`` rotated by ``rep``: who goes first changes from repeat to repeat."""
    k = rep % len(order)
    return list(order[k:]) + list(order[:k])


def least_disturbed(measure, *, threshold: float, max_retries: int, max_wait: float, report=None):
    """Run ``measure()`` (it returns a dict with ``"foreign_cores"``) after
    :func:`wait_quiet`, and again, up to ``max_retries`` times, while other processes
    used more than ``threshold`` cores during it.

    Each attempt gets ``"waited_s"``, ``"noisy"`` and ``"attempt"`` (0, 1, ...);
    ``report(attempt, retrying)`` is called after each. Returns ``(k, attempts)``: the
    index of the least disturbed attempt (the first of equals) and all of them.
    """
    attempts = []
    while True:
        waited = wait_quiet(threshold, max_wait)
        r = measure()
        r.update(waited_s=waited, attempt=len(attempts),
                 noisy=r["foreign_cores"] is not None and r["foreign_cores"] > threshold)
        attempts.append(r)
        retrying = r["noisy"] and len(attempts) <= max_retries
        if report is not None:
            report(r, retrying)
        if not retrying:
            break
    k = min(range(len(attempts)), key=lambda i: attempts[i]["foreign_cores"] or 0.0)
    return k, attempts


def paired_ratios(a: list, b: list) -> dict:
    """Times of two parties measured in alternation (``a[i]`` beside ``b[i]``): the ratio
    of their medians, the median of the per-repeat ratios a[i] / b[i] (the figure least
    moved by a machine whose speed drifts) and those ratios."""
    paired = [x / y for x, y in zip(a, b)]
    return {"ratio_of_medians": statistics.median(a) / statistics.median(b),
            "median_paired_ratio": statistics.median(paired), "paired": paired}


# ============================================================================ data and the record
#: The official MNIST IDX files: ``$BPNN_MNIST_DIR``, or ../shared/data/mnist beside the repository.
MNIST_DIR = os.environ.get("BPNN_MNIST_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "data", "mnist")


def vector_isa() -> str:
    """The widest vector extension the CPU reports (Linux /proc/cpuinfo), e.g.
    ``"AVX512F with FMA"``."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith(("flags", "Features"))), [])
    except OSError:
        return "unknown vector extensions"
    for isa in ("avx512f", "avx2", "neon", "asimd"):
        if isa in flags:
            return isa.upper() + (" with FMA" if "fma" in flags else "")
    return "no AVX2"


def machine_info() -> dict:
    """Platform, Python, CPUs (model, widest vector extension, count, affinity), memory
    and the git commit of this checkout (with whether ``src/`` has uncommitted changes)."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "processor": platform.processor(), "vector_isa": vector_isa()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_kib"] = int(f.readline().split()[1])
    except OSError:
        pass
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        info["git_commit"] = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, timeout=10).stdout
        info["git_src_dirty"] = bool(dirty.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


#: Environment variables that make numba, OpenBLAS and PyTorch generate or pick code for
#: another CPU than the one they run on (``benchmarks/avx2_env.sh`` sets them to run as
#: on an AVX2 CPU on an AVX-512 machine).
EMULATION_VARS = ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "OPENBLAS_CORETYPE", "ATEN_CPU_CAPABILITY",
                  "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def kernel_info() -> dict:
    """In a process that imports bpnn: its BLAS (threadpoolctl: library, version, the core
    type OpenBLAS picked, threads), the CPU numba compiles for, the vector width of its
    tile kernels and their path (``bpnn._kernels.gemm.path``), and the emulation variables
    set (:data:`EMULATION_VARS`)."""
    import numpy as np  # noqa: F401 - loads the BLAS that threadpoolctl reports

    info = {"emulation": {k: os.environ[k] for k in EMULATION_VARS if k in os.environ}}
    try:
        from threadpoolctl import threadpool_info

        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            b = blas[0]
            info["blas"] = {"library": b.get("internal_api"), "version": b.get("version"),
                            "core_type": b.get("architecture"), "threads": b.get("num_threads")}
    except ImportError:
        pass
    try:
        from bpnn import _kernels
        from bpnn._kernels import gemm

        info["numba_kernels"] = _kernels.enabled()
        if hasattr(gemm, "path"):
            info["kernel_path"] = gemm.path()
            info["vector_bits"] = gemm.vector_bits() if _kernels.enabled() else 0
        else:  # a tree from before the tiles of every width: 512-bit tiles on AVX-512 CPUs only
            info["kernel_path"] = "tiles 512-bit (AVX-512)" if gemm.enabled() else "BLAS (NumPy)"
        if _kernels.enabled():
            from numba.core.registry import cpu_target

            info["numba_cpu"] = cpu_target.target_context.codegen()._get_host_cpu_name()
    except Exception as exc:  # noqa: BLE001 - an older tree without these: say so
        info["kernel_path"] = f"unknown ({type(exc).__name__})"
    return info


def kernel_line(k: dict) -> str:
    """One line of :func:`kernel_info`: BLAS and its core type and threads, the tile
    kernels, and whether the instruction set is emulated."""
    blas = k.get("blas") or {}
    emu = k.get("emulation") or {}
    text = (f"BLAS {blas.get('library', '?')} {blas.get('version', '')} core {blas.get('core_type', '?')}, "
            f"{blas.get('threads', '?')} threads; kernels {k.get('kernel_path', '?')}"
            f"{', numba target ' + k['numba_cpu'] if k.get('numba_cpu') else ''}")
    if emu:
        text += "; EMULATED by " + " ".join(f"{key}={val!r}" for key, val in emu.items())
    return text


def layer_paths(layer) -> str:
    """Which computation a layer of a trained model took in its last step: for Conv2D
    its strategy (Direct, Im2col, RowTiles, Pointwise) and the tile width of its products,
    for Dense the BLAS product; containers list their layers' paths."""
    kids = layer.children() if hasattr(layer, "children") else []
    if kids:
        inner = [layer_paths(k[1] if isinstance(k, tuple) else k) for k in kids]
        return ", ".join(p for p in inner if p)
    name = type(layer).__name__
    if name == "Conv2D":
        strategy = type(getattr(layer, "_strategy", None)).__name__
        try:
            from bpnn._kernels import gemm

            bits = gemm.vector_bits() if gemm.enabled() else 0
            products = getattr(gemm, "PRODUCT_TILES", {}).get(bits, bits == 512)
            if strategy == "Direct":
                width = f"{bits}-bit tiles"
            else:
                width = f"products on {bits}-bit tiles" if bits and products else "products on BLAS"
        except Exception:  # noqa: BLE001 - a tree without these: say so
            width = "?"
        return f"{strategy} ({width})"
    if name in ("Dense", "DropConnect"):
        return "BLAS"
    return ""


def write_json(path, results, indent: int = 1) -> None:
    """Write ``results`` to ``path`` (its folder created if needed) and say so; nothing
    when ``path`` is None (a script's ``--json`` not given)."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=indent)
    print(f"results written to {path}")


def machine_header(threads=None) -> dict:
    """Print the lines a results log starts with: the CPU model and its widest vector
    extension, the CPU count and affinity, the git commit, and the thread pools loaded
    so far (threadpoolctl: BLAS, OpenMP) with numba's thread count; return
    :func:`machine_info` with ``"threads"`` (:func:`thread_info`) added, for the JSON.
    Call it after the imports, so that the pools are loaded."""
    info = machine_info()
    info["threads"] = thread_info(threads if threads is not None else os.cpu_count())
    pools = ", ".join(f"{p.get('internal_api')} {p.get('num_threads')}" for p in info["threads"].get("threadpools", []))
    numba = os.environ.get("NUMBA_NUM_THREADS")
    if "numba" in sys.modules:
        try:
            numba = sys.modules["numba"].get_num_threads()
        except Exception:  # noqa: BLE001 - no threading layer yet: report the variable
            pass
    dirty = " (src/ modified)" if info.get("git_src_dirty") else ""
    print(f"# cpu: {info.get('cpu_model', info['processor'])}, {info['vector_isa']}; {info['cpu_count']} CPUs "
          f"(affinity {info.get('affinity')}); commit {str(info.get('git_commit'))[:10]}{dirty}")
    info["kernels"] = kernel_info()
    print(f"# {kernel_line(info['kernels'])}")
    print(f"# threads: requested {info['threads']['requested']}; pools: {pools or 'none found'}; "
          f"numba {numba if numba is not None else 'default'}", flush=True)
    return info
