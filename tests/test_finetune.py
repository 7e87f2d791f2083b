"""Fine-tuning: load a trained body into a new model, freeze it, train a new head."""
import numpy as np
import pytest

import bpnn
from bpnn.data import load_digits, train_test_split


def test_finetune_a_new_head_on_a_frozen_pretrained_body():
    X, y = load_digits()
    Xtr, Xte, ytr, yte = train_test_split(X, y, seed=0)
    body = lambda: [bpnn.Dense(64, init="he_normal"), bpnn.ReLU()]  # noqa: E731
    source = bpnn.Sequential([*body(), bpnn.Dense(10)], seed=0)
    bpnn.Trainer(source, optimizer=bpnn.optim.Adam(lr=3e-3)).fit(Xtr, ytr, epochs=15, verbose=False)
    pretrained = {k: v for k, v in source.state_dict().items() if k.startswith("0.")}

    target = bpnn.Sequential([*body(), bpnn.Dense(10)], input_shape=(64,), seed=123)
    target.load_state_dict(pretrained, strict=False)
    target[0].trainable = False
    head_before = target[2].params["weight"].copy()
    bpnn.Trainer(target, optimizer=bpnn.optim.Adam(lr=3e-3)).fit(Xtr, ytr, epochs=5, verbose=False)
    np.testing.assert_array_equal(target[0].params["weight"], pretrained["0.weight"])
    np.testing.assert_array_equal(target[0].params["bias"], pretrained["0.bias"])
    assert not np.array_equal(target[2].params["weight"], head_before)
    acc = bpnn.Trainer(target).evaluate(Xte, yte)["accuracy"]
    assert acc > 0.93


def test_load_state_dict_checks_everything_before_writing():
    model = bpnn.Sequential([bpnn.Dense(3), bpnn.Dense(2)], input_shape=(4,), seed=0)
    before = model.state_dict()
    bad = dict(before)
    bad["1.weight"] = np.zeros((3, 5))
    bad["0.weight"] = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"'1.weight' has shape \(3, 5\), the model's is \(3, 2\)"):
        model.load_state_dict(bad)
    np.testing.assert_array_equal(model[0].params["weight"], before["0.weight"])
    with pytest.raises(ValueError, match="unknown: \\['9.weight'\\]"):
        model.load_state_dict({"9.weight": np.zeros(1)}, strict=False)
    with pytest.raises(ValueError, match="missing"):
        model.load_state_dict({"0.weight": before["0.weight"]})
