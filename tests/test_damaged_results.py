"""`bpnn report` on a damaged results.json: one line `bpnn: error:` naming the file, exit 2."""
from __future__ import annotations

import json

import pytest

from bpnn import cli
from bpnn.experiment import StudyResult, StudySpec, run_study

pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    spec = StudySpec(inits=["he_normal"], seeds=[0], epochs=1, hidden=[4], n_jobs=1, max_samples=200)
    out = tmp_path_factory.mktemp("run")
    run_study(spec, progress=False).save(out)
    return json.loads((out / "results.json").read_text())


def _drop_labels(d):
    del d["runs"][0]["run"]["labels"]


def _set(path, value):
    def change(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


@pytest.mark.parametrize("damage,fragment", [
    (_set(["runs"], "x"), "'runs' is 'x'"),
    (_drop_labels, "run 0: 'labels' is None"),
    (_set(["version"], "1"), "'version' is '1'"),
    (_set(["runs", 0, "run", "labels"], {"init": "he_normal"}), "'labels'"),
    (_set(["runs", 0, "history"], {"loss": 5}), "'history'"),
    (_set(["runs", 0, "verdicts"], ["dead"]), "'verdicts'"),
    (_set(["spec"], {"epochs": "many", "nonsense": 1}), "'spec' is not a valid study"),
    (_set(["meta"], None), "'meta' is None"),
], ids=["runs_string", "no_labels", "string_version", "partial_labels", "history", "verdicts", "spec", "meta"])
def test_report_on_a_damaged_results_file_is_one_line(saved, tmp_path, capsys, damage, fragment):
    data = json.loads(json.dumps(saved))
    damage(data)
    (tmp_path / "results.json").write_text(json.dumps(data))
    assert cli.main(["report", str(tmp_path), "--quiet"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpnn: error: "), captured.err
    assert str(tmp_path / "results.json") in lines[0] and fragment in lines[0], lines[0]
    assert not (tmp_path / "report.html").exists()


def test_the_undamaged_file_still_loads(saved, tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(saved))
    assert len(StudyResult.load(tmp_path).runs) == 1


@pytest.mark.parametrize("text", ["[" * 100_000, "\udcff"], ids=["nesting", "not_utf8"])
def test_report_on_a_file_that_is_not_json(tmp_path, capsys, text):
    (tmp_path / "results.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    assert cli.main(["report", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpnn: error: ") and "results.json" in lines[0], lines


def test_damage_deeper_than_the_layout_check_is_still_one_line(saved, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the report needs matplotlib (bpnn[report])")
    data = json.loads(json.dumps(saved))
    data["runs"][0]["stats"] = {"records": [{"no_epoch": 1}]}
    (tmp_path / "results.json").write_text(json.dumps(data))
    assert cli.main(["report", str(tmp_path), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpnn: error: "), lines
    assert "results.json: damaged" in lines[0], lines[0]
