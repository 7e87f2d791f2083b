"""A study's output folder: checked and locked before the first run, written run by run,
resumed after a kill; bad input refused with one line before any run."""
import json
import os
import random
import subprocess
import sys
import threading

import pytest

from bpnn import cli
from bpnn.experiment import StudyResult, StudySpec, run_study
from bpnn.experiment.results import outcome
from bpnn.experiment.rundir import FolderLockedError, RunFolder

pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import study_kill_resume  # noqa: E402

TINY = ["--inits", "he_normal", "zeros", "--seeds", "0", "1", "--epochs", "1", "--hidden", "8",
        "--max-samples", "200", "--n-jobs", "1", "--quiet", "--no-report"]


def tiny(**kw):
    base = dict(inits=["he_normal", "zeros"], seeds=[0, 1], epochs=1, hidden=[8], n_jobs=1, max_samples=200,
                histogram_bins=8)
    base.update(kw)
    return StudySpec(**base)


def refused(capsys, argv, match):
    """`bpnn compare ARGV` exits 2 with one line `bpnn: error: ...` and nothing else."""
    code = cli.main(["compare", *argv])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("bpnn: error: ") and captured.err.count("\n") == 1, captured.err
    assert match in captured.err, captured.err
    assert captured.out == ""  # no table: no run started
    return captured.err


# ----------------------------------------------------------------------------- bad input, before any run
@pytest.mark.parametrize("argv, match", [
    (["--backend", "spark"], "backend: got 'spark'; valid values are 'loky', 'sequential'"),
    (["--n-seeds", "0"], "--n-seeds: got 0; expected a positive number"),
    (["--search", "random", "--n-trials", "0"], "n_trials: got 0"),
    (["--search", "random"], "n_trials: a random search needs"),
    (["--n-trials", "3"], "n_trials: got 3, which only a random search reads"),
    (["--search", "random", "--n-trials", "2", "--lr-range", "1e-2", "1e-6"],
     "lr_range: got [0.01, 1e-06]; the low end must be below the high end"),
    (["--search", "random", "--n-trials", "2", "--weight-decay-range", "1e-4", "1e-4"],
     "weight_decay_range: got [0.0001, 0.0001]; the low end must be below"),
    (["--search", "random", "--n-trials", "2", "--lr-range", "0", "1e-2"], "lr_range[0]: got 0.0"),
    (["--address", "tcp://127.0.0.1:1"], "address: got 'tcp://127.0.0.1:1' with backend 'loky'"),
])
def test_bad_study_flags_get_one_line_and_exit_2(capsys, tmp_path, argv, match):
    refused(capsys, [*TINY, *argv, "--out", str(tmp_path / "run")], match)
    assert not (tmp_path / "run").exists()


def test_a_one_class_csv_is_refused_as_the_estimators_refuse_it(capsys, tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i % 3},yes\n" for i in range(30)))
    refused(capsys, [*TINY, "--data", str(path), "--out", str(tmp_path / "run")],
            "a classifier needs samples of at least 2 classes; column 'label' holds only one class, 'yes'")
    assert not (tmp_path / "run").exists()


def test_an_existing_file_or_an_unwritable_place_as_out_is_refused(capsys, tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    refused(capsys, [*TINY, "--out", str(a_file)], "is a file; give a folder")
    refused(capsys, [*TINY, "--out", str(a_file / "below")], "is a file")
    assert a_file.read_text() == "mine"
    # /proc refuses new folders even to root, so this holds on any Linux test machine
    if sys.platform.startswith("linux"):
        refused(capsys, [*TINY, "--out", "/proc/bpnn-study"], "out: cannot create '/proc/bpnn-study'")


def test_another_studys_folder_is_refused_unless_resumed(capsys, tmp_path):
    out = tmp_path / "run"
    assert cli.main(["compare", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    before = (out / "results.json").read_bytes()
    refused(capsys, [*TINY, "--out", str(out)], "already holds a study; give a new folder, or continue")
    assert (out / "results.json").read_bytes() == before
    refused(capsys, ["--resume", str(tmp_path / "nothing")], "holds no study")
    refused(capsys, ["--resume", str(out), "--epochs", "3"], "--epochs cannot change it")


def test_a_locked_folder_is_refused_naming_the_holder(capsys, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bpnn.experiment.rundir import RunFolder; "
         "f = RunFolder(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": study_kill_resume.SRC})
    try:
        assert holder.stdout.readline().strip() == b"locked"
        err = refused(capsys, [*TINY, "--out", str(out)], "is locked by another study")
        assert f"pid {holder.pid} on " in err
        with pytest.raises(FolderLockedError, match=f"pid {holder.pid}"):
            RunFolder(out).acquire()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # the lock died with its holder (killed: no clean-up ran): the folder is usable again
    assert cli.main(["compare", *TINY, "--out", str(out)]) == 0


def test_the_lock_also_holds_within_one_process(tmp_path):
    with RunFolder(tmp_path / "run"):
        with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}"):
            RunFolder(tmp_path / "run").acquire()
    assert not (tmp_path / "run" / "study.lock").exists()


# ----------------------------------------------------------------------------- run by run, resume
def test_each_run_is_on_disk_when_the_next_starts(tmp_path, monkeypatch):
    from bpnn.experiment import runner

    seen = []
    real = runner.run_one

    def spy(run, data, spec):
        seen.append(sorted(os.listdir(tmp_path / "run" / "runs")))
        return real(run, data, spec)

    monkeypatch.setattr(runner, "run_one", spy)
    result = run_study(tiny(), progress=False, out=tmp_path / "run")
    assert seen == [[], ["run-000000.json"], ["run-000000.json", "run-000001.json"],
                    ["run-000000.json", "run-000001.json", "run-000002.json"]]
    on_disk = json.loads((tmp_path / "run" / "runs" / "run-000002.json").read_text())["result"]
    assert on_disk == json.loads(json.dumps(result.runs[2]))
    assert result.meta["backend"] == "sequential" and result.meta["n_workers"] == 1


def test_resume_runs_only_what_is_missing_and_rebuilds_the_files(tmp_path, monkeypatch):
    from bpnn.experiment import runner

    whole = run_study(tiny(), progress=False, out=tmp_path / "whole")
    out = tmp_path / "run"
    run_study(tiny(), progress=False, out=out)
    for name in ("run-000001.json", "run-000003.json"):
        (out / "runs" / name).unlink()
    for name in ("results.json", "results.csv", "summary.csv"):
        (out / name).unlink()
    ran = []
    real = runner.run_one
    monkeypatch.setattr(runner, "run_one", lambda run, data, spec: ran.append(run["index"]) or real(run, data, spec))
    resumed = run_study(None, progress=False, out=out, resume=True)
    assert ran == [1, 3] and resumed.meta["runs_resumed"] == 2
    assert [outcome(r) for r in resumed.runs] == [outcome(r) for r in whole.runs]
    assert [outcome(r) for r in StudyResult.load(out).runs] == [outcome(r) for r in whole.runs]
    for name in ("results.csv", "summary.csv"):
        assert (out / name).is_file()


def test_resume_removes_what_a_killed_writer_left_in_the_folder_and_in_runs(tmp_path):
    """A study killed during an atomic write leaves that write's temporary file; the resumed
    study removes it, whether it was a run file's (runs/) or a table's (the folder itself,
    e.g. results.csv being rewritten after a run)."""
    out = tmp_path / "run"
    run_study(tiny(), progress=False, out=out)
    stale = [out / ".tmp-results.csv-999999-abcd_123", out / "runs" / ".tmp-run-000001.json-999999-abcd_123"]
    for path in stale:
        path.write_text("half of a file")
    run_study(None, progress=False, out=out, resume=True)
    assert not [p for p in stale if p.exists()]
    assert not [n for n in os.listdir(out) + os.listdir(out / "runs") if n.startswith(".tmp-")]


def test_resume_refuses_run_files_of_another_study(tmp_path):
    out = tmp_path / "run"
    run_study(tiny(), progress=False, out=out)
    (out / "config.toml").write_text(tiny(epochs=2, out=str(out)).to_toml())
    with pytest.raises(ValueError, match="run-000000.json is not run 0 of the study"):
        run_study(None, progress=False, out=out, resume=True)
    # what only says how the study runs may change on resume
    (out / "config.toml").write_text(tiny(n_jobs=2, name="renamed", out=str(out)).to_toml())
    assert run_study(None, progress=False, out=out, resume=True).meta["runs_resumed"] == 4


def test_a_study_killed_a_few_times_resumes_to_the_uninterrupted_result(tmp_path):
    """The test-sized version of benchmarks/study_kill_resume.py (20 kills there)."""
    study = ["--inits", "he_normal", "zeros", "lecun_normal", "--seeds", "0", "1", "2", "3", "--epochs", "2",
             "--hidden", "8", "--max-samples", "200", "--no-report", "--quiet"]
    counts = study_kill_resume.kill_and_resume(str(tmp_path / "killed"), study, kills=3, rng=random.Random(1),
                                               execution=["--backend", "sequential"])
    assert counts["kills"] + 1 == counts["starts"] and counts["kills"] >= 1
    assert cli.main(["compare", *study, "--backend", "sequential", "--out", str(tmp_path / "whole")]) == 0
    report = study_kill_resume.compare_folders(str(tmp_path / "killed"), str(tmp_path / "whole"))
    assert report == {"runs": 12, "duplicates": 0, "missing": 0, "unequal": 0, "csv_equal": True, "leftovers": []}


def test_concurrent_saves_of_one_folder_do_not_fail(tmp_path):
    result = run_study(tiny(seeds=[0]), progress=False)
    errors = []

    def save():
        try:
            for _ in range(5):
                result.save(tmp_path)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert StudyResult.load(tmp_path).runs == result.runs
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_the_progress_bar_counts_the_runs_resumed_ones_included(tmp_path, capsys):
    out = tmp_path / "run"
    run_study(tiny(), progress=True, out=out)
    first = capsys.readouterr().err
    assert "bpnn compare" in first and "4/4" in first
    (out / "runs" / "run-000003.json").unlink()
    run_study(None, progress=True, out=out, resume=True)
    again = capsys.readouterr().err
    assert "3/4" in again and "4/4" in again and "0/4" not in again
