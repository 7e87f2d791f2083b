"""A shorter run of benchmarks/kill_resume.py: training killed by SIGKILL at random
moments (some inside checkpoint writes) and resumed ends exactly as an uninterrupted run."""
import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "kill_resume.py")


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="fork and SIGKILL (Linux)")
def test_killed_and_resumed_runs_end_as_the_uninterrupted_run(tmp_path):
    out = tmp_path / "kill.json"
    subprocess.run([sys.executable, SCRIPT, "--trials", "4", "--kills", "2", "--epochs", "6", "--seed", "1",
                    "--json", str(out)], check=True, capture_output=True, text=True, timeout=300)
    summary = json.loads(out.read_text())["summary"]
    assert summary["kills"] == 8
    assert summary["corrupt_checkpoints"] == 0
    assert summary["weights_equal"] == summary["history_equal"] == summary["log_equal"] == 4
    assert summary["temp_files_left"] == 0
