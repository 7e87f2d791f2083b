"""Random search beside the grid: seeded log-uniform draws, the runs, the report's ranking."""
import math
import re

import numpy as np
import pytest

from bpnn import cli
from bpnn.experiment import StudyResult, StudySpec
from bpnn.experiment import toml_io
from bpnn.experiment.runner import build_optimizer


def search(**kw):
    base = dict(search="random", n_trials=5, lr_range=[1e-6, 1e-2], weight_decay_range=[1e-8, 1e-4], seeds=[0, 1],
                inits=["he_normal", "xavier_uniform"], optimizers=["sgd", "adam"])
    base.update(kw)
    return StudySpec(**base)


def test_trials_are_drawn_log_uniformly_and_seeded():
    spec = search(n_trials=4000, seeds=[0])
    lrs = np.array([r["lr"] for r in spec.runs()])
    wds = np.array([r["weight_decay"] for r in spec.runs()])
    assert lrs.min() >= 1e-6 and lrs.max() < 1e-2 and wds.min() >= 1e-8 and wds.max() < 1e-4
    # log-uniform: each decade of [1e-6, 1e-2) holds a quarter of the draws (binomial sd 0.7 %)
    share = np.histogram(np.log10(lrs), bins=[-6, -5, -4, -3, -2])[0] / len(lrs)
    assert np.allclose(share, 0.25, atol=0.03), share
    assert abs(np.median(np.log10(wds)) - (-6)) < 0.15
    again = [r["lr"] for r in search(n_trials=4000, seeds=[0]).runs()]
    assert again == lrs.tolist()                                               # same seed, same trials
    assert [r["lr"] for r in search(n_trials=4000, seeds=[0], search_seed=1).runs()] != again


def test_each_trial_runs_over_every_seed_with_its_sampled_values():
    spec = search()
    runs = spec.runs()
    assert len(runs) == 5 * 2 and [r["index"] for r in runs] == list(range(10))
    for trial in range(5):
        pair = [r for r in runs if r["trial"] == trial]
        assert [r["seed"] for r in pair] == [0, 1]
        assert pair[0]["lr"] == pair[1]["lr"] and pair[0]["weight_decay"] == pair[1]["weight_decay"]
        assert pair[0]["labels"]["lr"] == f"{pair[0]['lr']:.3g}"
    opt = build_optimizer(runs[0])
    assert opt.lr == runs[0]["lr"] and opt.weight_decay == runs[0]["weight_decay"]
    assert spec.sampled() == ["lr", "weight_decay"] and spec.varying()[0] == "trial"
    # without ranges the lists are sampled instead
    plain = search(lr_range=None, weight_decay_range=None, lrs=[0.1, 0.01]).runs()
    assert {r["lr"] for r in plain} <= {0.1, 0.01} and "weight_decay" not in plain[0]


def test_search_settings_round_trip_through_toml(tmp_path):
    spec = search()
    path = tmp_path / "s.toml"
    path.write_text(spec.to_toml())
    assert toml_io.loads(spec.to_toml())["search"]["lr_range"] == [1e-6, 1e-2]
    assert StudySpec.from_toml(path) == spec


@pytest.mark.parametrize("kw, match", [
    ({"n_trials": 0}, "n_trials: got 0"),
    ({"n_trials": None}, "n_trials: a random search needs"),
    ({"lr_range": [1e-2, 1e-6]}, r"lr_range: got \[0.01, 1e-06\]; the low end must be below the high end"),
    ({"lr_range": [1e-3]}, "lr_range: got"),
    ({"weight_decay_range": [0, 1e-4]}, r"weight_decay_range\[0\]: got 0"),
    ({"optimizers": ["sgd", "rprop"]}, r"weight_decay_range: optimizers\[1\] \(rprop\) takes no weight_decay"),
    ({"search": "bayes"}, "search: got 'bayes'"),
])
def test_bad_search_settings_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        search(**kw)


def test_the_report_ranks_the_trials_and_plots_the_score_against_each_hyperparameter(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="the digits data needs scikit-learn (bpnn[datasets])")
    pytest.importorskip("matplotlib", reason="the report needs matplotlib (bpnn[report])")
    out = tmp_path / "run"
    assert cli.main(["compare", "--search", "random", "--n-trials", "4", "--lr-range", "1e-4", "1e-1",
                     "--weight-decay-range", "1e-8", "1e-4", "--optimizers", "adam", "--inits", "he_normal",
                     "--n-seeds", "1", "--epochs", "2", "--hidden", "16", "--max-samples", "300", "--n-jobs", "1",
                     "--out", str(out), "--quiet", "--no-report"]) == 0
    assert "4 random trials × 1 seeds" in capsys.readouterr().err
    result = StudyResult.load(out)
    from bpnn.report import write_report

    write_report(result, out / "report.html", n_jobs=1)
    assert len(result.runs) == 4 and {r["run"]["trial"] for r in result.runs} == {0, 1, 2, 3}
    page = (out / "report.html").read_text()
    section = page[page.index('<section id="search">'):page.index("</section>", page.index('<section id="search">'))]
    assert "log-uniform in [0.0001, 0.1)" in section
    assert 'alt="Score of each random-search trial against each sampled hyperparameter"' in section
    rows = re.findall(r"<tr[^>]*><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>", section)
    accs = {r["run"]["trial"]: r["test"]["accuracy"] for r in result.runs}
    ranked_trials = [int(t) for _, t in rows]
    assert sorted(ranked_trials) == [0, 1, 2, 3]
    scores = [accs[t] for t in ranked_trials]
    assert scores == sorted(scores, reverse=True)                     # best trial first
    with open(out / "results.csv") as f:
        header = f.readline().strip().split(",")
    assert "trial" in header and "weight_decay" in header
    assert not math.isnan(float(result.summary_rows()[0]["test_accuracy_mean"]))
