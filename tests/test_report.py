"""The HTML report: one self-contained file; user strings escaped; re-rendered from results."""
import csv
import re

import numpy as np
import pytest

from bpnn.experiment import StudySpec, run_study
from bpnn.report import make_figures, render, render_run_dir, write_report

pytest.importorskip("matplotlib", reason="the report needs matplotlib (bpnn[report])")
pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")

HOSTILE = "<script>alert(1)</script>"


def _spec(**kw):
    base = dict(seeds=[0, 1], epochs=2, hidden=[12, 12], n_jobs=1, histogram_bins=8)
    base.update(kw)
    return StudySpec(**base)


@pytest.fixture(scope="module")
def digits_result():
    return run_study(_spec(inits=["he_normal", "zeros", "lsuv"]), progress=False)


@pytest.fixture(scope="module")
def figs(digits_result):
    return make_figures(digits_result, n_jobs=1)


@pytest.fixture(scope="module")
def page(digits_result, figs):
    return render(digits_result, figs)


def test_report_is_self_contained(page):
    assert page.startswith("<!DOCTYPE html>")
    # nothing to fetch: every src / href is a data: URI or an in-page anchor
    for attr, value in re.findall(r'\b(src|href)="([^"]*)"', page):
        assert value.startswith(("data:", "#")), (attr, value)
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert "<script" not in page.lower()
    assert "default-src 'none'" in page  # a Content-Security-Policy forbids any fetch anyway
    # every figure and table is there
    n_groups = 3
    assert page.count('<img alt="') == 2 + n_groups
    for section in ("results", "health", "curves", "depth", "inside", "runs", "data", "config"):
        assert f'<section id="{section}">' in page
    assert page.count("<table>") == 3
    assert "he_normal" in page and "unbroken symmetry" in page
    assert "[training]" in page and "epochs = 2" in page  # the exact configuration


def test_results_table_marks_the_best_configuration(digits_result, page):
    best = digits_result.ranked()[0].label
    row = re.search(r'<tr class="best">(.*?)</tr>', page, re.S).group(1)
    assert f"<td>{best}</td>" in row and "±" in row


def test_user_strings_are_escaped(tmp_path):
    # a CSV file whose name, columns and class labels are HTML, and hostile study and run names
    name = tmp_path / "<b>data<b> & 'q'.csv"
    rng = np.random.default_rng(0)
    with open(name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["<img src=x onerror=alert('col')>", "normal", HOSTILE])
        for i in range(40):
            w.writerow([f"{rng.normal():.3f}", f"{i % 2 + rng.normal(0, .1):.3f}", ["<i>a</i>", "b&c"][i % 2]])
    spec = _spec(name=HOSTILE, data=str(name), inits=[{"class_name": "he_normal", "label": f"He {HOSTILE}"},
                                                       {"class_name": "zeros", "label": 'zero "$x$" & co'}])
    result = run_study(spec, progress=False)
    assert all(r["error"] is None for r in result.runs)
    page = render(result)
    for raw in (HOSTILE, "<img src=x", "<b>data<b>", "<i>a</i>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page                 # study name and run label
    assert "&lt;img src=x onerror=alert(&#x27;col&#x27;)&gt;" in page        # a CSV column name
    assert "&lt;b&gt;data&lt;b&gt; &amp; &#x27;q&#x27;.csv" in page          # the file name
    assert "&lt;i&gt;a&lt;/i&gt;, b&amp;c" in page                           # class names
    assert "zero &quot;$x$&quot; &amp; co" in page
    assert "<script" not in page.lower()


def test_report_files_are_written_atomically(digits_result, figs, tmp_path, monkeypatch):
    import bpnn.report as report

    monkeypatch.setattr(report, "render", lambda result, n_jobs=1: render(result, figs))
    digits_result.save(tmp_path)
    path = render_run_dir(str(tmp_path), n_jobs=1)  # `bpnn report RUN_DIR` (the CLI test renders for real)
    assert path == str(tmp_path / "report.html")
    assert open(path, encoding="utf-8").read() == render(digits_result, figs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "report.html", "results.csv",
                                                          "results.json", "summary.csv"]


def test_concurrent_saves_and_reports_into_one_folder_do_not_collide(digits_result, figs, tmp_path, monkeypatch):
    """Each file goes through bpnn._atomic.atomic_write, whose temporary names are unique:
    two processes saving into the same run directory (a re-run, `bpnn report` beside
    `bpnn compare`) each replace whole files and leave nothing behind."""
    import threading

    import bpnn.report as report

    monkeypatch.setattr(report, "render", lambda result, n_jobs=1: render(result, figs))
    # the fixed temporary names of earlier versions, taken: writing through them would fail
    for name in ("results.json.tmp", "summary.csv.tmp", "report.html.tmp"):
        (tmp_path / name).mkdir()
    errors = []

    def save_and_report():
        try:
            for _ in range(5):
                digits_result.save(tmp_path)
                write_report(digits_result, str(tmp_path / "report.html"), n_jobs=1)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=save_and_report) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["config.toml", "report.html", "results.csv", "results.json", "summary.csv",
         "results.json.tmp", "summary.csv.tmp", "report.html.tmp"])
    assert open(tmp_path / "report.html", encoding="utf-8").read() == render(digits_result, figs)
    from bpnn.experiment import StudyResult

    assert StudyResult.load(str(tmp_path)).to_dict() == digits_result.to_dict()


def test_a_failed_save_leaves_the_previous_files_and_no_temporary(digits_result, tmp_path, monkeypatch):
    digits_result.save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    import bpnn.experiment.results as results

    class BrokenWriter(csv.DictWriter):  # fails after the header is written: a torn CSV file
        def writerow(self, row):
            raise RuntimeError("boom")

    monkeypatch.setattr(results.csv, "DictWriter", BrokenWriter)
    with pytest.raises(RuntimeError, match="boom"):
        digits_result.save(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_regression_report_has_no_accuracy(tmp_path):
    path = tmp_path / "r.csv"
    x = np.random.default_rng(1).normal(size=(60, 2))
    np.savetxt(path, np.column_stack([x, x @ [1.0, 2.0]]), delimiter=",", header="a,b,t", comments="")
    page = render(run_study(_spec(data=str(path), inits=["he_normal"]), progress=False))
    assert "held-out loss, mean ± std" in page and "held-out accuracy" not in page
    assert page.count('<img alt="') == 3
