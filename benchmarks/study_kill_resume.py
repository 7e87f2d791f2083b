"""A study killed with SIGKILL at random moments, resumed each time, against an uninterrupted one.

    PYTHONPATH=src python benchmarks/study_kill_resume.py               # 20 kills
    PYTHONPATH=src python benchmarks/study_kill_resume.py --kills 5 --seed 3 --backend loky --n-jobs 2

``bpnn compare`` runs in a child process on a small study (digits, 120 runs of tiny MLPs,
two epochs each); the parent kills it with SIGKILL at a random moment — while Python
starts, while the data loads, in the first run, between runs, in a run, in the middle of
writing a run file (see :func:`kill_and_resume`) — and starts it again with ``--resume RUN_DIR``, until
``--kills`` kills have landed; then it lets the study finish. The same study runs once
more, uninterrupted, into another folder. It prints and checks:

- duplicate runs: run indexes recorded more than once (in ``runs/`` and in results.json);
- missing runs: run indexes of the study with no record;
- unequal runs: runs whose outcome (everything but the timing and where it ran, see
  :func:`bpnn.experiment.results.outcome`) differs from the uninterrupted study's;
- results.csv and summary.csv equal to the uninterrupted study's, but for the seconds.

Exit status 0 when all four are clean. :func:`kill_and_resume` is the loop; the test
suite runs it with a few kills.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
STUDY = ["--inits", "he_normal", "xavier_uniform", "zeros", "lecun_normal", "--n-seeds", "5",
         "--lrs", "0.01", "0.03", "0.1", "--depths", "1", "2", "--width", "16", "--epochs", "2", "--batch-size", "64",
         "--max-samples", "400", "--no-report", "--quiet"]


def compare_command(args) -> list:
    return [sys.executable, "-c", "import sys; from bpnn.cli import main; sys.exit(main())", "compare", *args]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _wait_for_start(proc, timeout: float) -> bool:
    """Wait until the child says its runs start (its first line on stderr); False if it
    ended or said nothing within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stderr.readline() if ready else b""
        if not line:
            return False
        if line.startswith(b"bpnn compare: "):
            return True


def _count_runs(out: str) -> int:
    runs = os.path.join(out, "runs")
    return sum(n.startswith("run-") for n in os.listdir(runs)) if os.path.isdir(runs) else 0


def _wait_for_runs(proc, out: str, n: int, timeout: float) -> bool:
    """Wait until ``out`` holds ``n`` run files; False if the child ended first."""
    deadline = time.monotonic() + timeout
    while _count_runs(out) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def kill_and_resume(out: str, study: list, kills: int, rng: random.Random, max_delay: float = 0.05,
                    execution: list = ()) -> dict:
    """Run ``bpnn compare STUDY --out OUT``, SIGKILL it ``kills`` times at random moments,
    resume with ``--resume OUT`` after each kill, and let the last one finish (a study that
    ends before its kill ends the loop). Where a kill lands is drawn for each start, in
    runs rather than seconds, so that it lands inside the study on a fast or a slow machine:

    - 1 in 5: uniformly within the first second (Python starting, the data loading, the
      folder being locked);
    - otherwise: once the child has announced its first run and written 0 to 3 new run
      files, uniformly within ``max_delay`` s more (the first run, which also loads the
      compiled kernels; between runs; in a run; while a run file is written).

    Returns the starts, the kills that landed and the runs on disk at each kill."""
    env = _env()
    landed = starts = 0
    on_disk = []
    first = True
    while True:
        args = [*study, "--out", out] if first else ["--resume", out, "--quiet", "--no-report"]
        before = _count_runs(out)
        proc = subprocess.Popen(compare_command([*args, *execution]), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        starts += 1
        if landed < kills:
            if rng.random() < 0.2:
                delay = rng.uniform(0, 1.0)
            else:
                delay = rng.uniform(0, max_delay)
                new_runs = rng.randint(0, 3)
                if not (_wait_for_start(proc, 120) and _wait_for_runs(proc, out, before + new_runs, 120)):
                    delay = 0.0  # it ended: fall through to its exit status
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                proc.stderr.close()
                # Its worker processes (loky's wait for work until their idle timeout) go too, after it:
                # the kill itself hit the study's process alone.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                landed += 1
                on_disk.append(_count_runs(out))
                first = first and not os.path.exists(os.path.join(out, "config.toml"))
                continue
        proc.wait()
        err = proc.stderr.read().decode()
        proc.stderr.close()
        if proc.returncode != 0:
            raise RuntimeError(f"bpnn compare exited {proc.returncode}: {err.strip()[-2000:]}")
        return {"starts": starts, "kills": landed, "runs_on_disk_at_each_kill": on_disk}


def _rows(path, drop):
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if not any(d in k for d in drop)} for row in csv.DictReader(f)]


def compare_folders(resumed: str, reference: str) -> dict:
    """Duplicate, missing and unequal runs of ``resumed`` against ``reference``; whether
    the CSV files agree (timings aside)."""
    sys.path.insert(0, SRC)
    from bpnn.experiment import StudyResult
    from bpnn.experiment.results import outcome

    a, b = StudyResult.load(resumed), StudyResult.load(reference)
    indexes = [r["run"]["index"] for r in a.runs]
    files = sorted(os.listdir(os.path.join(resumed, "runs")))
    file_indexes = [int(name[4:-5]) for name in files if name.startswith("run-") and name.endswith(".json")]
    expected = {r["index"] for r in b.spec.runs()}
    dup = (len(indexes) - len(set(indexes))) + (len(file_indexes) - len(set(file_indexes)))
    missing = len(expected - set(indexes)) + len(expected - set(file_indexes))
    ref = {r["run"]["index"]: outcome(r) for r in b.runs}
    unequal = sum(1 for r in a.runs if outcome(r) != ref.get(r["run"]["index"]))
    csv_equal = all(_rows(os.path.join(resumed, name), ["seconds"]) == _rows(os.path.join(reference, name),
                                                                             ["seconds"])
                    for name in ("results.csv", "summary.csv"))
    leftovers = [n for n in os.listdir(resumed) + files if n.startswith(".tmp-") or n == "study.lock"]
    return {"runs": len(expected), "duplicates": dup, "missing": missing, "unequal": unequal,
            "csv_equal": csv_equal, "leftovers": leftovers}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--max-delay", type=float, default=0.05,
                        help="kill within this many seconds of the moment drawn (see kill_and_resume)")
    parser.add_argument("--backend", default="sequential")
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args(argv)
    execution = ["--backend", args.backend, "--n-jobs", str(args.n_jobs)]
    with tempfile.TemporaryDirectory(prefix="bpnn-kill-") as tmp:
        t0 = time.perf_counter()
        counts = kill_and_resume(os.path.join(tmp, "killed"), STUDY, args.kills, random.Random(args.seed),
                                 args.max_delay, execution)
        t1 = time.perf_counter()
        subprocess.run(compare_command([*STUDY, *execution, "--out", os.path.join(tmp, "whole")]), env=_env(),
                       check=True, stdout=subprocess.DEVNULL)
        t2 = time.perf_counter()
        report = compare_folders(os.path.join(tmp, "killed"), os.path.join(tmp, "whole"))
    report.update(counts, killed_seconds=round(t1 - t0, 1), whole_seconds=round(t2 - t1, 1),
                  backend=args.backend, n_jobs=args.n_jobs, seed=args.seed)
    print(json.dumps(report, indent=1))
    ok = (report["duplicates"] == report["missing"] == report["unequal"] == 0 and report["csv_equal"]
          and not report["leftovers"])
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
