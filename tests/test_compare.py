"""`bpnn compare`: the study specification, TOML, data sources, running, results files, CLI."""
import csv
import json
import os

import numpy as np
import pytest

from bpnn import cli
from bpnn.experiment import DEFAULT_INITS, StudyResult, StudySpec, read_csv, run_study
from bpnn.experiment import toml_io
from bpnn.experiment.datasets import load_study_data

pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")


def tiny(**kw):
    base = dict(inits=["he_normal", "zeros"], seeds=[0, 1], epochs=2, hidden=[16, 16], n_jobs=1,
                histogram_bins=8)
    base.update(kw)
    return StudySpec(**base)


# ----------------------------------------------------------------------------- the spec
def test_default_study_is_the_initialization_study():
    spec = StudySpec()
    assert spec.inits == DEFAULT_INITS == ["zeros", "small_normal", "xavier_uniform", "he_normal",
                                           "lecun_normal", "orthogonal", "lsuv"]
    assert spec.data == "digits" and len(spec.seeds) >= 3 and spec.depths == [10]
    runs = spec.runs()
    assert len(runs) == 7 * len(spec.seeds)
    assert runs[0]["hidden"] == [64] * 10 and runs[0]["labels"]["init"] == "zeros"
    assert spec.varying() == ["init"]


def test_runs_are_the_product_of_the_factors():
    spec = StudySpec(inits=["he_normal", "xavier_uniform"], optimizers=["sgd", "adam"], lrs=[0.1, 0.01],
                     depths=[2, 3], activations=["relu", "tanh"], seeds=[0, 1, 2])
    runs = spec.runs()
    assert len(runs) == 2 * 2 * 2 * 2 * 2 * 3
    assert [r["index"] for r in runs] == list(range(len(runs)))
    assert set(spec.varying()) == {"init", "optimizer", "activation", "depth", "lr"}
    assert len({(r["labels"]["init"], r["labels"]["optimizer"], r["labels"]["depth"], r["labels"]["lr"],
                 r["labels"]["activation"], r["seed"]) for r in runs}) == len(runs)


@pytest.mark.parametrize("kw, match", [
    ({"inits": ["he_normall"]}, r"inits\[0\].*he_normal"),
    ({"optimizers": ["adamm"]}, r"optimizers\[0\].*adam"),
    ({"activations": ["rellu"]}, r"activations\[0\].*relu"),
    ({"data": "digit"}, r"data: got 'digit'; did you mean 'digits'"),
    ({"epochs": 0}, "epochs"),
    ({"seeds": [1, 1]}, "distinct"),
    ({"seeds": []}, "seeds"),
    ({"lrs": [-0.1]}, r"lrs\[0\]"),
    ({"batch_size": "huge"}, "batch_size"),
    ({"backend": "spark"}, "backend"),
    ({"test_size": 1.5}, "test_size"),
    ({"n_jobs": 0}, "n_jobs"),
    ({"inits": ["he_normal", {"class_name": "he_normal"}]}, "labels"),
])
def test_bad_specs_are_refused_with_the_field_named(kw, match):
    with pytest.raises(ValueError, match=match):
        StudySpec(**kw)


def test_toml_round_trip_and_reading_back(tmp_path):
    spec = StudySpec(name='quotes " and \\ backslash, ünïcode, \n newline', inits=[
        "he_normal", {"class_name": "normal", "config": {"std": 0.1}, "label": "N(0, 0.1²)"}],
        optimizers=[{"class_name": "sgd", "config": {"momentum": 0.9, "nesterov": True}}, "adam"],
        lrs=[0.01, 1e-5], seeds=[3, 4], hidden=[32, 16], batch_size="full", max_samples=500)
    text = spec.to_toml()
    parsed = toml_io.loads(text)
    assert parsed["study"]["lrs"] == [0.01, 1e-5] and parsed["data"]["max_samples"] == 500
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    assert StudySpec.from_toml(path) == spec


def test_toml_errors_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[training]\nepochz = 3\n")
    with pytest.raises(ValueError, match=r"s.toml.*epochz.*did you mean 'epochs'"):
        StudySpec.from_toml(path)
    path.write_text("[training\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        StudySpec.from_toml(path)


def test_cli_flags_override_the_config_file(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(StudySpec(epochs=7, seeds=[5, 6, 7], lrs=[0.5]).to_toml())
    assert cli.main(["compare", "--config", str(path), "--epochs", "3", "--inits", "he_normal",
                     '{"class_name": "normal", "config": {"std": 0.2}}', "--dry-run"]) == 0
    out = capsys.readouterr().out
    spec = StudySpec.from_dict(toml_io.loads(out))
    assert spec.epochs == 3 and spec.seeds == [5, 6, 7] and spec.lrs == [0.5]
    assert spec.inits == ["he_normal", {"class_name": "normal", "config": {"std": 0.2}}]
    assert out.rstrip().endswith("# 6 runs")


def test_cli_reports_bad_values_without_a_traceback(capsys):
    assert cli.main(["compare", "--inits", "xavier_unifrom", "--dry-run"]) == 2
    assert "xavier_uniform" in capsys.readouterr().err


# ----------------------------------------------------------------------------- data
def test_cli_reports_a_dataset_it_cannot_get_without_a_traceback(tmp_path, monkeypatch, capsys):
    from bpnn.data import mnist

    monkeypatch.setitem(mnist.DATASETS, "mnist", {**mnist.DATASETS["mnist"], "mirrors": ["http://127.0.0.1:9/"]})
    monkeypatch.setenv("BPNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BPNN_MNIST_DIR", raising=False)
    code = cli.main(["compare", "--data", "mnist", "--data-dir", str(tmp_path / "empty"), "--epochs", "1",
                     "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("bpnn: error: could not download train-images-idx3-ubyte")  # before any run
    assert err.count("\n") == 1 and not (tmp_path / "runs").exists()
    assert "give data_dir" in err and "Traceback" not in err


def test_csv_classification_with_text_labels(tmp_path):
    path = tmp_path / "flowers.csv"
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["petal length", "petal width", "species"])
        for i in range(60):
            k = i % 3
            w.writerow([f"{k + rng.normal(0, 0.1):.3f}", f"{2 * k + rng.normal(0, 0.1):.3f}", ["a", "b", "c"][k]])
    X, y_raw, features, target = read_csv(str(path))
    assert X.shape == (60, 2) and features == ["petal length", "petal width"] and target == "species"
    data = load_study_data(tiny(data=str(path), test_size=0.25))
    assert data.task == "classification" and data.n_outputs == 3 and data.class_names == ["a", "b", "c"]
    assert len(data.X_test) == 15
    assert abs(float(data.X_train.mean())) < 1e-5  # standardized with the training statistics


def test_csv_regression_and_target_by_name(tmp_path):
    path = tmp_path / "r.csv"
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 3))
    t = x @ [1.0, -2.0, 0.5] + 0.37
    np.savetxt(path, np.column_stack([t, x]), delimiter=",", header="y,a,b,c", comments="")
    data = load_study_data(tiny(data=str(path), target="y"))
    assert data.task == "regression" and data.n_outputs == 1 and data.feature_names == ["a", "b", "c"]
    result = run_study(tiny(data=str(path), target="y", epochs=3), progress=False)
    assert all(r["error"] is None for r in result.runs)
    assert "test loss" in result.table()


def test_csv_errors_name_row_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n1,2,x\n3,oops,y\n")
    with pytest.raises(ValueError, match=r"line 3, column 'b'.*'oops'"):
        read_csv(str(path))
    with pytest.raises(ValueError, match="no column named 'nope'"):
        read_csv(str(path), target="nope")
    with pytest.raises(ValueError, match="no such file"):
        read_csv(str(tmp_path / "missing.csv"))


def test_mnist_source_reads_the_local_idx_files():
    folder = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
    if not os.path.isdir(folder):
        pytest.skip("the MNIST IDX files are not in ../shared/data/mnist")
    pytest.importorskip("bpnn.data.mnist", reason="bpnn.data.load_mnist is not available")
    data = load_study_data(tiny(data="mnist", data_dir=folder, max_samples=300))
    assert data.X_train.shape == (300, 784) and data.X_test.shape == (10000, 784) and data.n_outputs == 10


# ----------------------------------------------------------------------------- running
@pytest.fixture(scope="module")
def result():
    return run_study(tiny(inits=["he_normal", "zeros", "identity"]), progress=False)


def test_study_results_aggregate_over_seeds(result):
    assert len(result.runs) == 6
    failed = [r for r in result.runs if r["error"]]
    assert len(failed) == 2 and all("identity init needs a square" in r["error"] for r in failed)
    rows = result.summary_rows()
    assert [r["group"] for r in rows][:2] == ["he_normal", "zeros"]     # ranked by held-out accuracy
    he = rows[0]
    accs = [r["test"]["accuracy"] for r in result.runs if r["run"]["labels"]["init"] == "he_normal"]
    assert he["test_accuracy_mean"] == pytest.approx(np.mean(accs))
    assert he["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert he["test_accuracy_best"] == max(accs)
    assert rows[2]["failed"] == 2
    zeros = next(g for g in result.groups() if g.label == "zeros")
    assert "unbroken_symmetry" in zeros.verdict_summary()
    text = result.table()
    assert "he_normal" in text and "2 failed" in text and "±" in text


def test_results_files_round_trip(result, tmp_path):
    paths = result.save(tmp_path)
    loaded = StudyResult.load(tmp_path)
    assert loaded.spec == result.spec and loaded.runs == result.runs
    with open(paths["results.csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and rows[0]["init"] == "he_normal" and rows[0]["seed"] == "0"
    assert float(rows[0]["test_accuracy"]) == pytest.approx(result.runs[0]["test"]["accuracy"])
    assert rows[4]["error"].startswith("ValueError")
    with open(paths["summary.csv"], newline="") as f:
        assert len(list(csv.DictReader(f))) == 3
    assert StudySpec.from_toml(paths["config.toml"]) == result.spec
    data = json.loads(open(paths["results.json"]).read())
    assert data["format"] == "bpnn-compare-results" and len(data["runs"]) == 6


def test_parallel_runs_equal_sequential_runs(result):
    pytest.importorskip("joblib")
    par = run_study(tiny(inits=["he_normal", "zeros", "identity"], n_jobs=2), progress=False)
    for a, b in zip(result.runs, par.runs):
        assert a["run"] == b["run"]
        assert a.get("history") == b.get("history")  # same seed, same numbers, in another process


def test_a_diverged_run_is_saved_with_its_verdict(tmp_path):
    """A divergence's verdict measures NaN; results.json is strict JSON, so it is null there."""
    diverged = run_study(tiny(inits=["he_normal"], seeds=[0], optimizers=["sgd"], lrs=[1e8], epochs=3),
                         progress=False)
    verdicts = diverged.runs[0]["verdicts"]
    assert [v["kind"] for v in verdicts] == ["non_finite_loss"] and verdicts[0]["value"] is None
    diverged.save(tmp_path)
    assert StudyResult.load(tmp_path).runs == diverged.runs


def test_load_refuses_foreign_files(tmp_path):
    with pytest.raises(ValueError, match="no results.json"):
        StudyResult.load(tmp_path)
    (tmp_path / "results.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a bpnn compare results file"):
        StudyResult.load(tmp_path)


def test_cli_compare_writes_everything(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the report needs matplotlib (bpnn[report])")
    out = tmp_path / "run"
    code = cli.main(["compare", "--inits", "he_normal", "small_normal", "--seeds", "0", "1", "--epochs", "2",
                     "--hidden", "12", "--n-jobs", "1", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "he_normal" in printed and "report.html" in printed
    for name in ("report.html", "results.csv", "results.json", "summary.csv", "config.toml"):
        assert (out / name).is_file()
    first = (out / "report.html").read_text()
    (out / "report.html").unlink()
    assert cli.main(["report", str(out), "--quiet"]) == 0
    assert (out / "report.html").read_text() == first  # rendered again from results.json alone
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
