"""Committed files of every format version still load and predict what they predicted.

``tests/fixtures/model_v1.safetensors`` was written by ``bpnn.save`` (format 1, with
Adam state); ``model_v0.safetensors`` is the older format 0 laid out by hand (see
``tests/fixtures/make_fixtures.py`` and ``bpnn.io.migrations``), so loading it runs the
0 → 1 migration. Never regenerate these to make a test pass.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from safetensors.numpy import load_file

import bpnn
from bpnn.io import migrations

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _fixture(version):
    model_path = os.path.join(FIXTURES, f"model_v{version}.safetensors")
    expected = load_file(os.path.join(FIXTURES, f"model_v{version}_expected.safetensors"))
    return model_path, expected["x"], expected["y"]


def _walk(config):
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for v in config.values():
            yield from _walk(v)
    elif isinstance(config, list):
        for v in config:
            yield from _walk(v)


def test_there_is_a_fixture_for_every_format_version():
    for version in range(bpnn.io.FORMAT_VERSION + 1):
        assert os.path.exists(os.path.join(FIXTURES, f"model_v{version}.safetensors")), (
            f"commit a fixture written by format version {version} (tests/fixtures/make_fixtures.py)")


@pytest.mark.parametrize("version,dtype,rtol", [(1, np.float32, 1e-5), (0, np.float64, 1e-12)])
def test_an_old_file_loads_and_predicts_what_it_predicted_when_written(version, dtype, rtol):
    path, x, y = _fixture(version)
    model = bpnn.load(path)
    assert model.built and model.dtype == dtype and model.input_shape == (2, 3)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"Dense", "BatchNorm", "Dropout", "Residual", "Flatten", "Softmax", "Softplus"} <= kinds
    # stored outputs came from another run (and maybe another BLAS): near-exact, not bitwise
    np.testing.assert_allclose(model.predict(x), y, rtol=rtol, atol=rtol * 1e-1)
    # the weights themselves are loaded bit for bit
    stored = load_file(path)
    prefix = "model/" if version >= 1 else ""
    for name, value in model.state_dict().items():
        assert value.tobytes() == stored[prefix + name].tobytes(), name


def test_the_v1_fixture_restores_its_optimizer():
    model, opt = bpnn.load(_fixture(1)[0], with_optimizer=True)
    assert isinstance(opt, bpnn.optim.Adam) and opt.step_count == 3 and opt.lr == 3e-3
    state = opt.state_dict()["state"]
    assert any(np.abs(s.get("exp_avg", np.zeros(1))).max() > 0 for s in state)


def test_loading_format_0_runs_the_migration(monkeypatch):
    calls = []
    original = migrations.MIGRATIONS[0]

    def spy(doc, arrays):
        calls.append(doc["format_version"])
        return original(doc, arrays)

    monkeypatch.setitem(migrations.MIGRATIONS, 0, spy)
    path = _fixture(0)[0]
    raw = load_file(path)
    assert "1.weight" in raw and not any(k.startswith("model/") for k in raw)  # the old layout
    doc = bpnn.io.read_document(path)
    assert calls == [0]
    assert doc["format_version"] == 1 and doc["optimizer"] is None
    batch_norms = [c["config"] for c in _walk(doc["model"]) if c["class_name"] == "batch_norm"]
    assert batch_norms and all("epsilon" not in c and c["eps"] == 1e-3 for c in batch_norms)
    assert bpnn.load(path).predict(_fixture(0)[1]).shape == (9, 3)
    assert calls == [0, 0]


def test_a_version_without_a_migration_is_refused(monkeypatch):
    monkeypatch.delitem(migrations.MIGRATIONS, 0)
    with pytest.raises(bpnn.io.InvalidModelFileError, match="format version 0 is no longer readable"):
        bpnn.load(_fixture(0)[0])


def test_a_broken_old_file_names_the_failed_migration(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "v0.safetensors"
    save_file({"0.weight": np.ones((2, 2))}, path, metadata={"bpnn_format_version": "0"})
    with pytest.raises(bpnn.io.InvalidModelFileError, match="could not migrate format version 0 to 1"):
        bpnn.load(path)
