"""`bpnn compare` on a real dask.distributed LocalCluster: 2 worker processes on 127.0.0.1,
started and closed here."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")
distributed = pytest.importorskip("distributed", reason="the dask backend needs bpnn[dask]")

from bpnn import cli  # noqa: E402
from bpnn.experiment import StudyData, StudySpec, load_study_data, run_study  # noqa: E402
from bpnn.experiment.results import outcome  # noqa: E402

UNPICKLED = 0  # StudyData copies unpickled in this process (read on the workers)


class CountingData(StudyData):
    """The study's data, counting how often a process unpickles it."""

    def __setstate__(self, state):
        global UNPICKLED
        UNPICKLED += 1
        self.__dict__.update(state)


def unpickled():
    return UNPICKLED


def tiny(**kw):
    base = dict(inits=["he_normal", "zeros"], seeds=[0, 1, 2, 3], epochs=2, hidden=[16], max_samples=300, n_jobs=1)
    base.update(kw)
    return StudySpec(**base)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as c, distributed.Client(c, set_as_default=False) as client:
        yield c, client


@pytest.fixture(scope="module")
def local():
    return run_study(tiny(backend="sequential"), progress=False)


def test_runs_on_the_cluster_equal_the_local_runs_and_the_data_travels_once(cluster, local, tmp_path):
    c, client = cluster
    spec = tiny()
    data = load_study_data(spec)
    counting = CountingData(**{k: getattr(data, k) for k in data.__dataclass_fields__})
    result = run_study(spec, counting, progress=False, backend="dask", address=c.scheduler_address, n_jobs=-1,
                       out=tmp_path / "run")
    assert [outcome(r) for r in result.runs] == [outcome(r) for r in local.runs]  # bit-identical metrics
    assert result.meta["backend"] == "dask" and result.meta["address"] == c.scheduler_address
    assert result.meta["n_workers"] == 2 and result.meta["threads_per_run"] == max(1, os.cpu_count() // 2)
    per_worker = client.run(unpickled)
    assert len(per_worker) == 2 and all(n <= 1 for n in per_worker.values()) and sum(per_worker.values()) >= 1
    places = {r["placement"]["worker"] for r in result.runs}
    assert places <= set(per_worker)
    assert all(r["placement"]["blas_threads"] in (None, result.meta["threads_per_run"]) for r in result.runs)


def test_a_worker_killed_mid_study_leaves_every_run_exactly_once(cluster, local, tmp_path):
    c, client = cluster
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    out = tmp_path / "run"
    state = {}

    def kill_after_the_first_run():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = out / "runs"
            if runs.is_dir() and any(n.startswith("run-") for n in os.listdir(runs)):
                state["done_at_kill"] = len(os.listdir(runs))
                os.kill(victim, signal.SIGKILL)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_after_the_first_run)
    killer.start()
    result = run_study(tiny(epochs=4, hidden=[32, 32]), progress=False, backend="dask",
                       address=c.scheduler_address, n_jobs=-1, out=out)
    killer.join()
    assert state["done_at_kill"] < len(result.runs)  # killed mid-study
    indexes = [r["run"]["index"] for r in result.runs]
    assert indexes == list(range(8))
    assert sorted(os.listdir(out / "runs")) == [f"run-{i:06d}.json" for i in range(8)]
    assert all(r["error"] is None for r in result.runs)
    local4 = run_study(tiny(epochs=4, hidden=[32, 32], backend="sequential"), progress=False)
    assert [outcome(r) for r in result.runs] == [outcome(r) for r in local4.runs]
    client.wait_for_workers(2, timeout=30)  # the nanny restarted it for the tests that follow


def test_without_an_address_a_local_cluster_of_n_jobs_workers_is_started(tmp_path, capsys, local):
    """--n-jobs 1 does not fall back to this process: the backend asked for is the one that runs."""
    out = tmp_path / "run"
    assert cli.main(["compare", "--inits", "he_normal", "zeros", "--seeds", "0", "1", "2", "3", "--epochs", "2",
                     "--hidden", "16", "--max-samples", "300", "--backend", "dask", "--n-jobs", "1", "--out",
                     str(out), "--quiet", "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "dask at tcp://127.0.0.1:" in err and "1 worker;" in err
    from bpnn.experiment import StudyResult

    saved = StudyResult.load(out)
    assert saved.meta["backend"] == "dask" and saved.meta["n_workers"] == 1 and saved.meta["workers_used"] == 1
    assert saved.meta["address"].startswith("tcp://127.0.0.1:")
    assert len({r["placement"]["pid"] for r in saved.runs} - {os.getpid()}) >= 1  # not in this process


LOCAL_CLUSTER_PROBE = """
import json, os
if __name__ == "__main__":
    import dask, distributed
    from bpnn.experiment.backends import local_dask_cluster
    with local_dask_cluster(2) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        workers = client.run(lambda dask_worker: [os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                                                  dask.config.get("distributed.worker.profile.enabled"),
                                                  os.environ.get("OPENBLAS_NUM_THREADS"),
                                                  dask_worker.periodic_callbacks["tick"].callback_time])
        print(json.dumps({"workers": list(workers.values()), "caller": os.environ.get("MALLOC_TRIM_THRESHOLD_")}))
"""


def test_the_local_cluster_runs_without_the_profiler_or_dask_s_malloc_setting(tmp_path):
    """The LocalCluster bpnn starts: no statistical profiler in its workers, no glibc trim
    threshold in them nor left in the calling process (dask's nannies set one by default),
    the workers' event-loop tick every second (dask's default: every 20 ms), and the
    threads of each worker's share of the cores. In a process of its own: a nanny started
    earlier in this process left the variable in its environment."""
    script = tmp_path / "probe.py"
    script.write_text(LOCAL_CLUSTER_PROBE)
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    probe = json.loads(out.stdout.strip().splitlines()[-1])
    share = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert probe == {"workers": [[None, False, share, 1000], [None, False, share, 1000]], "caller": None}


def test_a_cluster_without_workers_fails_within_the_timeout(tmp_path):
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=":0") as empty:
        started = time.monotonic()
        with pytest.raises(ValueError, match=r"has no workers after 1 s; start some with `dask worker tcp://"):
            run_study(tiny(), progress=False, backend="dask", address=empty.scheduler_address, n_jobs=-1, timeout=1.0,
                      out=tmp_path / "run")
        assert time.monotonic() - started < 15
    assert not (tmp_path / "run").exists()  # refused before any run: nothing left behind


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_address_is_one_line_within_the_timeout(tmp_path, capsys):
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code = cli.main(["compare", "--backend", "dask", "--address", address, "--timeout", "2", "--out",
                     str(tmp_path / "run"), "--quiet", "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 15
    assert err.startswith(f"bpnn: error: address: cannot reach the dask scheduler at '{address}' within 2 s")
    assert err.count("\n") == 1
    assert cli.main(["compare", "--backend", "dask", "--address", address, "--n-jobs", "2"]) == 2
    assert "n_jobs: got 2 with address" in capsys.readouterr().err


def test_scheduler_and_worker_started_as_separate_processes(tmp_path, local):
    """The README's multi-machine recipe, on one machine: `dask scheduler`, `dask worker`, --address."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0", "--no-show"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
                                       "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        out = tmp_path / "run"
        assert cli.main(["compare", "--inits", "he_normal", "zeros", "--seeds", "0", "1", "2", "3", "--epochs", "2",
                         "--hidden", "16", "--max-samples", "300", "--backend", "dask",
                         "--address", address, "--timeout", "60", "--out", str(out), "--quiet", "--no-report"]) == 0
        from bpnn.experiment import StudyResult

        saved = StudyResult.load(out)
        assert saved.meta["address"] == address and saved.meta["n_workers"] == 2
        assert [outcome(r) for r in saved.runs] == [outcome(r) for r in local.runs]
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
