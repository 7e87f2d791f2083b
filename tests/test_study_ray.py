"""`bpnn compare` on a local Ray (2 CPUs), started and shut down here."""
import json
import os
import signal
import threading
import time

import pytest

pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")
ray = pytest.importorskip("ray", reason="the ray backend needs bpnn[ray] (ray's wheel did not install here)")

from bpnn.experiment import StudySpec, run_study  # noqa: E402
from bpnn.experiment.results import outcome  # noqa: E402


def tiny(**kw):
    base = dict(inits=["he_normal", "zeros"], seeds=[0, 1, 2, 3], epochs=2, hidden=[16], max_samples=300, n_jobs=2)
    base.update(kw)
    return StudySpec(**base)


def test_a_ray_head_started_apart_is_joined_by_address(tmp_path, monkeypatch):
    """The README's recipe on one machine: `ray start --head`, then --address. Runs before
    the in-process Ray of the other tests starts; token authentication is switched off on
    both sides (a cluster that uses it needs its token where the study runs)."""
    import socket
    import subprocess
    import sys

    from bpnn import cli
    from bpnn.experiment import StudyResult

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--port", str(port),
                             "--num-cpus", "2", "--include-dashboard=false", "--block"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
        out = tmp_path / "run"
        assert cli.main(["compare", "--inits", "he_normal", "zeros", "--seeds", "0", "1", "--epochs", "2", "--hidden",
                         "16", "--max-samples", "300", "--backend", "ray", "--address", f"127.0.0.1:{port}",
                         "--timeout", "60", "--out", str(out), "--quiet", "--no-report"]) == 0
        saved = StudyResult.load(out)
        assert saved.meta["backend"] == "ray" and saved.meta["n_workers"] == 2
        local = run_study(tiny(seeds=[0, 1], backend="sequential"), progress=False)
        assert [outcome(r) for r in saved.runs] == [outcome(r) for r in local.runs]
        assert not ray.is_initialized()  # joined for the study only
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head and everything it started
        head.wait()


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_runs_on_ray_equal_the_local_runs(local_ray, tmp_path):
    local = run_study(tiny(backend="sequential"), progress=False)
    result = run_study(tiny(), progress=False, backend="ray", out=tmp_path / "run")
    assert [outcome(r) for r in result.runs] == [outcome(r) for r in local.runs]
    assert result.meta["backend"] == "ray" and result.meta["n_workers"] == 2
    assert os.getpid() not in {r["placement"]["pid"] for r in result.runs}
    assert all(r["placement"]["blas_threads"] in (None, 1) for r in result.runs)


def test_a_ray_worker_killed_mid_study_leaves_every_run_exactly_once(local_ray, tmp_path):
    out = tmp_path / "run"
    state = {}

    def kill_a_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = out / "runs"
            names = sorted(n for n in os.listdir(runs) if n.startswith("run-")) if runs.is_dir() else []
            if names:
                first = json.loads((runs / names[0]).read_text())["result"]
                state["pid"], state["done_at_kill"] = first["placement"]["pid"], len(names)
                os.kill(state["pid"], signal.SIGKILL)
                return
            time.sleep(0.005)

    spec = tiny(epochs=4, hidden=[32, 32], seeds=[0, 1, 2, 3, 4, 5])
    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    result = run_study(spec, progress=False, backend="ray", out=out)
    killer.join()
    assert state["done_at_kill"] < len(result.runs)
    assert [r["run"]["index"] for r in result.runs] == list(range(12))
    assert sorted(os.listdir(out / "runs")) == [f"run-{i:06d}.json" for i in range(12)]
    local = run_study(spec.replace(backend="sequential"), progress=False)
    assert [outcome(r) for r in result.runs] == [outcome(r) for r in local.runs]


def test_an_unreachable_ray_address_fails_within_the_timeout(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ValueError, match=f"cannot reach the ray cluster at '127.0.0.1:{port}' within 1 s"):
        run_study(tiny(n_jobs=-1), progress=False, backend="ray", address=f"127.0.0.1:{port}", timeout=1.0,
                  out=tmp_path / "run")
    assert time.monotonic() - started < 10 and not (tmp_path / "run").exists()


def test_a_ray_cluster_without_cpus_fails_within_the_timeout(local_ray, tmp_path, monkeypatch):
    """What a head started with --num-cpus 0 and no worker nodes reports (Ray's own answer faked)."""
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"memory": 1e9})
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"has no CPUs \(no workers\) after 0.5 s"):
        run_study(tiny(), progress=False, backend="ray", timeout=0.5, out=tmp_path / "run")
    assert time.monotonic() - started < 5 and not (tmp_path / "run").exists()
