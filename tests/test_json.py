"""bpnn._json.json_safe: the one helper that turns bpnn's state into strict JSON, with
each file format's convention for non-finite numbers."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bpnn._json import json_safe


def _dumps(obj):
    return json.dumps(obj, allow_nan=False)  # as bpnn writes every file


def test_numpy_values_tuples_and_keys_become_plain_json():
    state = {"a": (1, np.int64(2), np.float32(0.5)), np.int64(3): np.arange(3), "flag": np.bool_(True),
             4: [np.float64(1.25)], None: "none", (1, 2): "tuple key"}
    out = json_safe(state)
    assert out == {"a": [1, 2, 0.5], 3: [0, 1, 2], "flag": True, 4: [1.25], None: "none", "(1, 2)": "tuple key"}
    assert type(out["a"][1]) is int and type(out["a"][2]) is float and type(out["flag"]) is bool
    # keys JSON writes itself are left to it, so the text is what json.dumps always wrote
    assert _dumps(out) == ('{"a": [1, 2, 0.5], "3": [0, 1, 2], "flag": true, "4": [1.25], "null": "none", '
                           '"(1, 2)": "tuple key"}')


def test_non_finite_numbers_follow_the_chosen_convention():
    values = [1.5, math.inf, -math.inf, math.nan, np.float32("nan"), np.float64("-inf"), np.array([np.inf, 2.0])]
    assert json_safe(values) == [1.5, None, None, None, None, None, [None, 2.0]]
    as_strings = json_safe(values, nonfinite="string")
    assert as_strings == [1.5, "inf", "-inf", "nan", "nan", "-inf", ["inf", 2.0]]
    back = [float(v) if isinstance(v, str) else v for v in as_strings[:6]]   # float() reads them back
    assert back[1] == math.inf and back[2] == -math.inf and math.isnan(back[3])
    for convention in ("null", "string"):
        _dumps(json_safe(values, nonfinite=convention))
    with pytest.raises(ValueError, match="nonfinite: got 'nan'; expected one of 'null', 'string'"):
        json_safe(values, nonfinite="nan")


def test_digits_round_floats_only():
    out = json_safe({"x": 0.123456789, "n": 123456789, "big": 98765.4321, "bad": math.nan}, digits=5)
    assert out == {"x": 0.12346, "n": 123456789, "big": 98765.0, "bad": None}


def test_what_json_cannot_write_is_left_for_json_to_name():
    marker = object()
    assert json_safe({"k": marker})["k"] is marker


def test_the_checkpoint_and_results_conventions_are_unchanged():
    """The outputs of the helpers this one replaced, for the same inputs."""
    schedule = {"lr": 0.1, "best": math.inf, "num_bad_epochs": 0, "milestones": (3, 5)}
    assert _dumps(json_safe(schedule, nonfinite="string")) == (
        '{"lr": 0.1, "best": "inf", "num_bad_epochs": 0, "milestones": [3, 5]}')
    history = {"loss": [0.5, math.nan], "accuracy": [0.25, 0.5]}
    assert _dumps(json_safe(history)) == '{"loss": [0.5, null], "accuracy": [0.25, 0.5]}'
    rng_state = np.random.default_rng(0).bit_generator.state
    assert json_safe(rng_state) == rng_state and _dumps(json_safe(rng_state)) == _dumps(rng_state)
