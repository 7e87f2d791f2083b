"""Where the runs of a study execute: this process, local processes, a Dask or a Ray cluster.

bpnn writes no scheduler of its own: local processes go through joblib, a cluster through
its own client (Dask's ``Client.submit``, Ray's remote tasks), each of which hands back a
run's result the moment it ends, so the run folder records it at once and the progress
bar moves on every backend. (Not through joblib's Dask and Ray backends: joblib runs a
backend of one worker in the calling process, so ``--backend dask --n-jobs 1`` would
quietly run here, and Ray's joblib pool can neither stream results nor survive a worker's
death.) :func:`open_backend` connects before the first run starts, so an unreachable
address or a cluster without workers fails first, within ``spec.timeout`` seconds, with
a message that says what to do.

- ``sequential``: this process, one run after the other (also ``loky`` with ``n_jobs=1``,
  and recorded as ``sequential`` then).
- ``loky`` (default), ``multiprocessing``, ``threading``: joblib's local workers,
  ``n_jobs`` of them; joblib limits each worker's BLAS and numba threads to its share.
- ``dask``: a ``dask.distributed`` Client, to ``address`` or, without one, to a
  LocalCluster of ``n_jobs`` single-threaded worker processes on 127.0.0.1
  (:func:`local_dask_cluster`; ``-1``: one per core; 1 is one worker process, not this
  process). The data and the spec are
  scattered to every worker once; a worker that dies has its runs rescheduled elsewhere
  by the scheduler (a run that kills ``distributed.scheduler.allowed-failures`` + 1
  workers, 4 by default, stops the study); ``n_jobs`` with an address is refused (the
  cluster's workers decide).
- ``ray``: ``ray.init(address)`` or a local Ray with ``n_jobs`` CPUs; one remote task
  per run on 1 CPU, the data and the spec in Ray's object store once (per node); a task
  whose worker died goes again, up to :data:`RAY_RETRIES` times.

Each run pins its process's BLAS (threadpoolctl) and numba threads to its worker's share
of the host's cores — cores ÷ concurrent runs on that host — before it trains
(:func:`pin_threads`), and reports where it ran and with how many threads.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import socket
import sys
import time
from urllib.parse import urlsplit

from .._checks import missing_dependency

#: Environment variables that set a process's BLAS / OpenMP / numba threads at start-up.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")

#: Ray: how many times a run goes again after the worker running it died.
RAY_RETRIES = 3
_PINNED = None          # threads this process was pinned to
_PINNED_COUNTS = None   # thread_counts() once pinned (they do not change after that)


def cores() -> int:
    """Cores this process may use (its CPU affinity where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def pin_threads(n: int) -> int:
    """Limit this process's BLAS and numba threads to ``n``; return the limit in force.

    BLAS through threadpoolctl (when installed: it comes with scikit-learn and with the
    ``dask`` and ``ray`` extras). numba reads ``NUMBA_NUM_THREADS`` when it is first
    imported, so that is set if numba is not loaded yet; a process that loaded numba
    keeps what it has (a worker started by bpnn has the variable set at start-up).
    """
    global _PINNED, _PINNED_COUNTS
    n = max(1, int(n))
    if _PINNED == n:
        return n
    _PINNED_COUNTS = None
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - without scikit-learn and the extras
        pass
    else:
        threadpool_limits(limits=n)  # kept: this process runs nothing else
    _PINNED = n
    return n


def thread_counts() -> dict:
    """BLAS threads and numba threads in force in this process (None where unknown).

    A process pinned by :func:`pin_threads` asks once and keeps the answer: threadpoolctl
    scans the loaded libraries on every call (paid per run otherwise)."""
    global _PINNED_COUNTS
    if _PINNED is not None:
        if _PINNED_COUNTS is None:
            _PINNED_COUNTS = _thread_counts()
        return dict(_PINNED_COUNTS)
    return _thread_counts()


def _thread_counts() -> dict:
    blas = numba = None
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_info

        blas_pools = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        blas = max(blas_pools) if blas_pools else None
    if "numba" in sys.modules:
        from .._kernels import parallel

        numba = parallel.threads()
    elif os.environ.get("NUMBA_NUM_THREADS", "").isdigit():
        numba = int(os.environ["NUMBA_NUM_THREADS"])
    return {"blas_threads": blas, "numba_threads": numba}


def run_task_pickled(run: dict, data, spec, threads) -> bytes:
    """:func:`run_task`, its result pickled: Dask weighs every task result with ``sizeof``,
    which walks a nested dict (a run's statistics, at a cost per run); bytes it weighs at once.
    Unpickled by the client that submitted it (the same trust as Dask's own pickling)."""
    return pickle.dumps(run_task(run, data, spec, threads), protocol=pickle.HIGHEST_PROTOCOL)


def run_task(run: dict, data, spec, threads):
    """One run on a worker: pin the threads, train, and say where it ran.

    ``threads``: an int, or a dict of worker address → threads (dask), looked up here.
    """
    from .runner import run_one

    where = {"host": socket.gethostname(), "pid": os.getpid()}
    if isinstance(threads, dict):
        n = None
        with contextlib.suppress(ImportError, ValueError):
            from distributed import get_worker

            worker = get_worker()
            where["worker"] = worker.address
            n = threads.get(worker.address)
            if n is None:  # a worker that joined (or restarted) after the study started
                n = cores() // max(1, getattr(worker, "nthreads", 1))
        threads = n or 1
    elif threads == "ray":
        import ray

        assigned = ray.get_runtime_context().get_assigned_resources().get("CPU") or 1
        threads = max(1, int(assigned))
    if threads is not None:
        pin_threads(threads)
    result = run_one(run, data, spec)
    result["placement"] = {**where, **thread_counts()}
    return result


def _check_reachable(address: str, backend: str, timeout: float, default_port: int) -> None:
    """Fail after ``timeout`` seconds, in words, when nothing listens at ``address``."""
    if address == "auto":
        return
    text = address if "://" in address else f"tcp://{address}"
    parts = urlsplit(text)
    try:
        host, port = parts.hostname, parts.port or default_port
    except ValueError:
        host = port = None
    if not host:
        raise ValueError(f"address: got {address!r}; expected HOST:PORT or tcp://HOST:PORT")
    deadline = time.monotonic() + timeout
    while True:  # a scheduler that is still starting refuses connections: try until the deadline
        try:
            with socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())):
                return
        except OSError as exc:
            if time.monotonic() + 0.25 >= deadline:
                reason = exc.strerror or exc
                break
        time.sleep(0.25)
    start = ("`dask scheduler` (then `dask worker ADDRESS` on each machine)" if backend == "dask"
             else "`ray start --head`")
    raise ValueError(f"address: cannot reach the {backend} {'scheduler' if backend == 'dask' else 'cluster'} "
                     f"at {address!r} within {timeout:g} s ({reason}); start one with {start}, "
                     f"or leave --address out to start a local one")


#: dask config under which :func:`local_dask_cluster` starts its workers.
LOCAL_DASK_CONFIG = {
    # the statistical profiler samples the running task's stack many times a second, under the GIL
    "distributed.worker.profile.enabled": False,
    # dask's nannies set glibc's trim threshold in every worker (and in the calling process,
    # so in processes it spawns later); any such setting also fixes glibc's mmap threshold,
    # so every NumPy temporary above 128 KiB is mapped and its pages faulted in afresh
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # every server (scheduler, nanny, worker) wakes its event loop each tick to measure its
    # latency; in a worker each wake takes the GIL from the run's thread, so tick rarely
    "distributed.admin.tick.interval": "1s",
}


def local_dask_cluster(n_workers: int):
    """A ``dask.distributed`` LocalCluster for the runs of a study on this machine:
    ``n_workers`` single-threaded worker processes on 127.0.0.1, each started with its
    BLAS, OpenMP and numba threads at cores ÷ ``n_workers``, under
    :data:`LOCAL_DASK_CONFIG` (a run trains as fast there as in a process of its own:
    ``benchmarks/README.md``, "bench_study.py"). The caller closes it."""
    try:
        import dask
        from dask.distributed import LocalCluster
    except ImportError as exc:
        raise missing_dependency("backend 'dask'", "dask.distributed", "'bpnn[dask]'", exc) from exc
    per_worker = str(max(1, cores() // n_workers))
    with dask.config.set(LOCAL_DASK_CONFIG):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address=":0", env={v: per_worker for v in THREAD_VARIABLES})


class Backend:
    """Runs of a study on one backend (see the module docstring): a context manager
    whose :meth:`map` yields results in the order they end."""

    def __init__(self, spec, n_runs: int):
        self.spec = spec
        self.n_runs = n_runs
        self.name = spec.backend
        self.address = None
        self.n_workers = 1
        self.threads = None
        self._stack = contextlib.ExitStack()

    def info(self) -> dict:
        """What ran, for results.json."""
        threads = self.threads
        if self.name == "dask":  # workers may have joined or left since the start
            with contextlib.suppress(Exception):
                self.n_workers = len(self.client.scheduler_info(**_all_workers(self.client))["workers"])
        if isinstance(threads, dict):  # dask: per worker; one number where they agree
            threads = next(iter(set(threads.values()))) if len(set(threads.values())) == 1 else threads
        return {"backend": self.name, "backend_requested": self.spec.backend, "address": self.address,
                "n_workers": self.n_workers, "threads_per_run": threads if threads != "ray" else 1,
                "n_jobs": self.spec.n_jobs}

    def __enter__(self):
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        self._stack.close()

    # ------------------------------------------------------------------ per backend
    def _open(self):
        spec = self.spec
        n_jobs = spec.n_jobs if spec.n_jobs > 0 else cores()
        if spec.backend == "dask":
            self._open_dask(n_jobs)
        elif spec.backend == "ray":
            self._open_ray(n_jobs)
        elif spec.backend == "sequential" or n_jobs == 1 or self.n_runs <= 1:
            self.name, self.n_workers = "sequential", 1
        else:
            self.n_workers = min(n_jobs, self.n_runs)
            self.threads = max(1, cores() // self.n_workers)

    def _open_dask(self, n_jobs):
        try:
            from dask.distributed import Client
        except ImportError as exc:
            raise missing_dependency("backend 'dask'", "dask.distributed", "'bpnn[dask]'", exc) from exc
        spec, timeout = self.spec, self.spec.timeout
        if spec.address:
            if spec.n_jobs != -1:
                raise ValueError(f"n_jobs: got {spec.n_jobs} with address {spec.address!r}; the cluster's workers "
                                 f"decide how many runs go at once: leave --n-jobs out (or start fewer workers)")
            _check_reachable(spec.address, "dask", timeout, 8786)
            try:
                client = Client(spec.address, timeout=f"{timeout}s", set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ValueError(f"address: cannot connect to the dask scheduler at {spec.address!r} within "
                                 f"{timeout:g} s ({exc})") from None
        else:
            cluster = local_dask_cluster(n_jobs)
            self._stack.callback(cluster.close)
            client = Client(cluster, set_as_default=False)
        self._stack.callback(client.close)
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, OSError):
            raise ValueError(f"address: the dask scheduler at {client.scheduler.address} has no workers after "
                             f"{timeout:g} s; start some with `dask worker {client.scheduler.address}`") from None
        self.client = client
        self.address = client.scheduler.address
        workers = client.scheduler_info(**_all_workers(client))["workers"]
        host_cores = client.run(cores)
        slots = {}
        for addr, w in workers.items():
            slots[w["host"]] = slots.get(w["host"], 0) + w["nthreads"]
        self.threads = {addr: max(1, host_cores.get(addr, 1) // slots[w["host"]]) for addr, w in workers.items()}
        self.n_workers = len(workers)

    def _open_ray(self, n_jobs):
        try:
            import ray
        except ImportError as exc:
            raise missing_dependency("backend 'ray'", "ray", "'bpnn[ray]'", exc) from exc
        spec, timeout = self.spec, self.spec.timeout
        if spec.address:
            if spec.n_jobs != -1:
                raise ValueError(f"n_jobs: got {spec.n_jobs} with address {spec.address!r}; the cluster's CPUs "
                                 f"decide how many runs go at once: leave --n-jobs out")
            if not spec.address.startswith("ray://"):
                _check_reachable(spec.address, "ray", timeout, 6379)
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if spec.address:
                try:
                    ray.init(address=spec.address, **kwargs)
                except (ConnectionError, RuntimeError, ValueError) as exc:  # e.g. a token it lacks
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise ValueError(f"address: cannot join the ray cluster at {spec.address!r} ({reason})") from None
            else:
                env = {v: "1" for v in THREAD_VARIABLES}
                ray.init(address="local", num_cpus=n_jobs, runtime_env={"env_vars": env}, **kwargs)
            self._stack.callback(ray.shutdown)
        deadline = time.monotonic() + timeout
        while not ray.cluster_resources().get("CPU"):
            if time.monotonic() > deadline:
                raise ValueError(f"address: the ray cluster at {spec.address or 'this machine'} has no CPUs "
                                 f"(no workers) after {timeout:g} s; start some with `ray start --address=...`")
            time.sleep(0.2)
        self.address = spec.address or ray.get_runtime_context().gcs_address
        self.n_workers = int(ray.cluster_resources().get("CPU", 0))
        self.threads = "ray"

    # ------------------------------------------------------------------ running
    def map(self, runs: list, data, spec):
        """Yield the result of every run, each as soon as it ends."""
        if self.name == "sequential":
            for run in runs:
                yield run_task(run, data, spec, None)
        elif self.name == "dask":
            yield from self._map_dask(runs, data, spec)
        elif self.name == "ray":
            yield from self._map_ray(runs, data, spec)
        else:
            import joblib

            with joblib.parallel_config(backend=self.name, n_jobs=self.n_workers):
                parallel = joblib.Parallel(return_as="generator_unordered")
                yield from parallel(joblib.delayed(run_task)(run, data, spec, None) for run in runs)

    def _map_dask(self, runs, data, spec):
        from distributed import as_completed

        client = self.client
        data_f, spec_f = client.scatter([data, spec], broadcast=True)  # to every worker, once
        # one map: the runs reach the scheduler as one graph, not one message per run
        futures = client.map(run_task_pickled, runs, data=data_f, spec=spec_f, threads=self.threads, pure=False)
        try:
            for future in as_completed(futures, loop=client.loop):
                result = future.result()  # KilledWorker once a run took down too many workers
                future.release()
                yield pickle.loads(result)  # noqa: S301 - from this study's own workers
        finally:
            client.cancel(futures)  # a study stopped early leaves nothing queued

    def _map_ray(self, runs, data, spec):
        import ray

        task = ray.remote(run_task).options(num_cpus=1, max_retries=RAY_RETRIES)
        data_ref, spec_ref = ray.put(data), ray.put(spec)  # into the object store, once
        pending = [task.remote(run, data_ref, spec_ref, "ray") for run in runs]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref)


def _all_workers(client) -> dict:
    """The argument that makes ``Client.scheduler_info`` list every worker (newer dask lists 5)."""
    import inspect

    return {"n_workers": -1} if "n_workers" in inspect.signature(client.scheduler_info).parameters else {}


def open_backend(spec, n_runs: int) -> Backend:
    """The backend of ``spec`` for ``n_runs`` runs (enter it to connect)."""
    return Backend(spec, n_runs)
