"""Bad input gets a clear error that names the argument, the value and what is valid."""
import numpy as np
import pytest

import bpnn


def _model(n_in=8, n_out=3, **kw):
    return bpnn.Sequential([bpnn.Dense(5), bpnn.Tanh(), bpnn.Dense(n_out)], input_shape=(n_in,), seed=0, **kw)


def _data(rng, n=20, n_in=8, n_out=3):
    return rng.normal(size=(n, n_in)).astype(np.float32), rng.integers(0, n_out, size=n)


def _fit(X, y, model=None, **kw):
    trainer = bpnn.Trainer(model or _model(), optimizer=bpnn.optim.SGD(lr=0.1))
    return trainer.fit(X, y, epochs=1, verbose=False, **kw)


def test_feature_count_mismatch_names_X_and_both_shapes(rng):
    X, y = _data(rng, n_in=7)
    with pytest.raises(ValueError, match=r"X: samples have shape \(7,\) but the model expects \(8,\)"):
        _fit(X, y)


def test_forward_with_wrong_shape_names_the_layer_and_shapes(rng):
    model = _model()
    with pytest.raises(ValueError, match=r"Sequential was built for samples of shape \(8,\).*\(4, 6\)"):
        model.forward(rng.normal(size=(4, 6)))
    dense = bpnn.Dense(3)
    dense.build((5,), 0)
    with pytest.raises(ValueError, match=r"x: Dense was built for samples of shape \(5,\)"):
        dense.forward(np.zeros((2, 4)))


def test_dense_on_images_asks_for_flatten():
    with pytest.raises(ValueError, match="Flatten"):
        bpnn.Sequential([bpnn.Dense(3)], input_shape=(2, 4))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_X_is_refused(rng, bad):
    X, y = _data(rng)
    X[3, 2] = bad
    with pytest.raises(ValueError, match=r"X: contains NaN or inf \(first at index \(3, 2\)\)"):
        _fit(X, y)


def test_nan_in_regression_targets_is_refused(rng):
    X, _ = _data(rng)
    y = rng.normal(size=(20, 3))
    y[5, 1] = np.nan
    trainer = bpnn.Trainer(_model(), loss="mse", optimizer="sgd")
    with pytest.raises(ValueError, match=r"y: contains NaN or inf"):
        trainer.fit(X, y, verbose=False)


@pytest.mark.parametrize("label", [3, -1, 17])
def test_labels_out_of_range(rng, label):
    X, y = _data(rng)
    y[4] = label
    with pytest.raises(ValueError, match=rf"y: label {label} is out of range; the model has 3 outputs, so labels must be in 0..2"):
        _fit(X, y)


def test_fractional_labels_are_refused(rng):
    X, _ = _data(rng)
    with pytest.raises(ValueError, match="y: class labels must be whole numbers"):
        _fit(X, np.full(20, 0.5))


def test_one_hot_of_wrong_width(rng):
    X, _ = _data(rng)
    with pytest.raises(ValueError, match=r"y: got targets of shape \(20, 4\); the model has 3 output"):
        _fit(X, np.eye(4)[rng.integers(0, 4, 20)])


def test_binary_targets_outside_unit_interval(rng):
    X, _ = _data(rng)
    trainer = bpnn.Trainer(_model(n_out=1), loss="bce_with_logits", optimizer="sgd")
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        trainer.fit(X, rng.normal(size=20) * 3, verbose=False)


def test_empty_data():
    with pytest.raises(ValueError, match=r"X: got an empty array of shape \(0, 8\)"):
        _fit(np.zeros((0, 8)), np.zeros(0, dtype=int))


def test_X_and_y_of_different_lengths(rng):
    X, y = _data(rng)
    with pytest.raises(ValueError, match="X, y: X has 20 samples but y has 19"):
        _fit(X, y[:-1])


def test_validation_data_is_checked_with_its_own_name(rng):
    X, y = _data(rng)
    Xv, yv = _data(rng, n=5)
    yv[0] = 9
    with pytest.raises(ValueError, match=r"validation_data\[1\]: label 9 is out of range"):
        _fit(X, y, validation_data=(Xv, yv))


def test_non_numeric_X(rng):
    with pytest.raises(ValueError, match="X: got an array of dtype"):
        _fit(np.array([["a"] * 8] * 3), np.zeros(3, dtype=int))


@pytest.mark.parametrize("make, expected", [
    (lambda: bpnn.Dense(3, init="he_normall"), "unknown initializer 'he_normall'; did you mean 'he_normal'"),
    (lambda: bpnn.Dense(3, init="xavier"), "unknown initializer 'xavier'; did you mean 'xavier_normal', 'xavier_uniform'"),
    (lambda: bpnn.Sequential([bpnn.Dense(3), "rellu"]), "unknown layer 'rellu'; did you mean 'relu'"),
    (lambda: bpnn.Trainer(_model(), loss="softmax_crossentropy"), "unknown loss 'softmax_crossentropy'; did you mean 'softmax_cross_entropy'"),
    (lambda: bpnn.Trainer(_model(), optimizer="adm"), "unknown optimizer 'adm'; did you mean 'adam'"),
])
def test_unknown_names_get_the_closest_valid_names(make, expected):
    with pytest.raises(ValueError) as info:
        make()
    assert expected in str(info.value)
    assert "Valid names:" in str(info.value)


@pytest.mark.parametrize("make, arg", [
    (lambda: bpnn.optim.Adam(lr=0), "lr: got 0"),
    (lambda: bpnn.optim.SGD(lr=-0.1), "lr: got -0.1"),
    (lambda: bpnn.optim.SGD(lr=float("nan")), "lr: got nan"),
    (lambda: bpnn.optim.SGD(lr=0.1, momentum=1.5), "momentum: got 1.5; expected a number in [0.0, 1.0]"),
    (lambda: bpnn.optim.SGD(lr=0.1, nesterov=True), "nesterov: Nesterov momentum needs momentum > 0"),
    (lambda: bpnn.optim.Adam(betas=(0.9, 1.0)), "betas[1]: got 1.0"),
    (lambda: bpnn.Dense(0), "units: got 0; expected a finite integer > 0"),
    (lambda: bpnn.Dropout(1.0), "rate: got 1.0; expected a number in [0.0, 1.0)"),
    (lambda: bpnn.DropConnect(3, p=0.0), "p: got 0.0; expected a number in (0.0, 1.0]"),
    (lambda: bpnn.DropConnect(3, p=1.5), "p: got 1.5"),
    (lambda: bpnn.optim.Adam(bias_correction="no"), "bias_correction: got 'no'; expected True or False"),
    (lambda: bpnn.MSE(reduction="avg"), "reduction: got 'avg'; valid values are 'mean', 'half_mean', 'half_sum', 'sum'"),
    (lambda: bpnn.Sequential([], dtype="float16"), "dtype: got 'float16'; valid dtypes are float32, float64"),
])
def test_bad_hyperparameters(make, arg):
    with pytest.raises(ValueError) as info:
        make()
    assert arg in str(info.value)


def test_setting_a_bad_learning_rate_later_is_refused():
    opt = bpnn.optim.SGD(lr=0.1)
    with pytest.raises(ValueError, match="lr: got -1"):
        opt.lr = -1


@pytest.mark.parametrize("batch_size, expected", [
    (0, "batch_size: got 0; expected a finite integer > 0"),
    (-8, "batch_size: got -8"),
    (2.5, "batch_size: got 2.5"),
    ("huge", "batch_size: got 'huge'; expected a positive int or one of 'full'"),
])
def test_bad_batch_size(rng, batch_size, expected):
    X, y = _data(rng)
    with pytest.raises(ValueError) as info:
        _fit(X, y, batch_size=batch_size)
    assert expected in str(info.value)


def test_bad_epochs_and_validation_split(rng):
    X, y = _data(rng)
    trainer = bpnn.Trainer(_model(), optimizer="sgd")
    with pytest.raises(ValueError, match="epochs: got -1"):
        trainer.fit(X, y, epochs=-1, verbose=False)
    with pytest.raises(ValueError, match=r"validation_split: got 1.0; expected a number in \[0.0, 1.0\)"):
        trainer.fit(X, y, validation_split=1.0, verbose=False)


def test_a_schedule_giving_a_bad_rate_is_caught_at_the_step(rng):
    X, y = _data(rng)
    trainer = bpnn.Trainer(_model(), optimizer=bpnn.optim.SGD(lr=lambda step: 0.1 if step < 2 else 0.0))
    with pytest.raises(ValueError, match="lr: the schedule gave 0.0 at step 2"):
        trainer.fit(X, y, batch_size=5, verbose=False)
