"""ImageAugment: exact transforms on hand-made images, seeding, shapes, Trainer integration."""
from __future__ import annotations

import numpy as np
import pytest

import bpnn
from bpnn.data import ImageAugment


def _img(H=9, W=9):
    x = np.zeros((1, 1, H, W), dtype=np.float32)
    x[0, 0, 4, 4] = 1.0
    return x


def test_no_distortion_is_the_identity():
    x = np.random.default_rng(0).random((3, 2, 7, 8)).astype(np.float32)
    y = ImageAugment()(x, np.random.default_rng(1))
    np.testing.assert_array_equal(y, x)
    assert y.dtype == np.float32 and y is not x


def _params(n, theta=0.0, scale=1.0, shear=0.0, shift=(0.0, 0.0)):
    return {"theta": np.full(n, np.deg2rad(theta)), "scale": np.full(n, scale), "shear": np.full(n, shear),
            "shift": np.tile(np.asarray(shift, float), (n, 1))}


def test_an_integer_shift_moves_the_image_by_whole_pixels():
    x = np.random.default_rng(0).random((4, 1, 10, 10))
    y = ImageAugment().apply(x, _params(4, shift=(2, -1)), np.random.default_rng(0))
    np.testing.assert_array_equal(y[:, :, 2:, :9], x[:, :, :8, 1:])  # down 2 rows, left 1 column
    assert np.all(y[:, :, :2] == 0) and np.all(y[:, :, :, 9] == 0)  # filled from outside the image


def test_a_quarter_turn_rotates_the_image_counter_clockwise():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 0, 2] = 1.0  # top centre
    y = ImageAugment().apply(x, _params(1, theta=90), np.random.default_rng(0))
    assert y[0, 0, 2, 0] == pytest.approx(1.0)  # → left centre
    assert y.sum() == pytest.approx(1.0)


def test_scaling_up_spreads_a_centred_dot_and_keeps_the_centre():
    y = ImageAugment().apply(_img(), _params(1, scale=1.5), np.random.default_rng(0))
    assert y[0, 0, 4, 4] == 1.0  # output pixel 4 ± d reads source 4 ± d/1.5
    assert y[0, 0, 4, 5] == pytest.approx(1 - 1 / 1.5)
    # bilinear reads of a one-pixel dot: per axis 1 + 2·(1 − 1/1.5), squared
    assert y.sum() == pytest.approx((1 + 2 * (1 - 1 / 1.5)) ** 2)


def test_horizontal_shear_moves_rows_in_proportion_to_their_height():
    x = np.zeros((1, 1, 7, 7))
    x[0, 0, :, 3] = 1.0  # a vertical line through the centre
    y = ImageAugment().apply(x, _params(1, shear=1.0), np.random.default_rng(0))
    # column offset grows by one per row away from the centre: the line becomes a diagonal
    assert [int(np.argmax(y[0, 0, r])) for r in range(1, 6)] == [1, 2, 3, 4, 5]


def test_random_draws_stay_within_the_limits():
    p = ImageAugment(shift=2, rotation=10, scale=0.1, shear=0.3).draw(1000, np.random.default_rng(0))
    assert np.abs(p["shift"]).max() <= 2 and np.abs(np.rad2deg(p["theta"])).max() <= 10
    assert np.abs(p["scale"] - 1).max() <= 0.1 and np.abs(p["shear"]).max() <= 0.3
    assert np.abs(p["shift"]).max() > 1.9  # and use them


def test_same_seed_same_distortions_and_each_image_its_own():
    aug = ImageAugment(shift=2, rotation=15, scale=0.15, shear=0.2, elastic_alpha=8, elastic_sigma=3)
    x = np.repeat(np.random.default_rng(0).random((1, 1, 12, 12)), 3, axis=0)
    a = aug(x, np.random.default_rng(7))
    b = aug(x, np.random.default_rng(7))
    c = aug(x, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a[0], a[1]) and not np.allclose(a[1], a[2])
    np.testing.assert_array_equal(x[0], x[1])  # the input is not modified


def test_elastic_field_is_smooth_and_of_the_requested_size():
    aug = ImageAugment(elastic_alpha=34, elastic_sigma=4)
    rows, cols = aug.coordinates(_params(200), 28, 28, np.random.default_rng(0))
    d = rows - np.arange(28)[None, :, None]
    # neighbouring displacements are strongly correlated (σ = 4 px) ...
    corr = np.corrcoef(d[:, 10:18, 10:17].ravel(), d[:, 10:18, 11:18].ravel())[0, 1]
    assert corr > 0.9
    # ... and their size is α·std(G_σ * U) ≈ 34 · sqrt(1/3) / (2 sqrt(π) σ) ≈ 1.6 px in the interior
    assert 0.8 < d[:, 8:20, 8:20].std() < 3.0


def test_shapes_flat_and_3d_inputs():
    x = np.random.default_rng(0).random((5, 784)).astype(np.float32)
    aug = ImageAugment(shift=2, image_shape=(28, 28))
    y = aug(x, np.random.default_rng(0))
    assert y.shape == (5, 784) and y.dtype == np.float32
    assert ImageAugment(rotation=5)(x.reshape(5, 28, 28), np.random.default_rng(0)).shape == (5, 28, 28)
    with pytest.raises(ValueError, match=r"x: got a batch of shape \(5, 784\); ImageAugment expects images"):
        ImageAugment()(x, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"image_shape=\(20, 20\) needs 400 values per sample"):
        ImageAugment(image_shape=(20, 20))(x, np.random.default_rng(0))


@pytest.mark.parametrize("kw,match", [
    (dict(shift=-1), r"shift: got -1"), (dict(rotation=200), r"rotation: got 200"),
    (dict(scale=1.0), r"scale: got 1.0; expected a number in \[0.0, 1.0\)"),
    (dict(elastic_sigma=0), r"elastic_sigma: got 0"), (dict(image_shape=(28,)), r"image_shape: got \(28,\)"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        ImageAugment(**kw)


def test_config_round_trip():
    aug = ImageAugment(shift=2, rotation=10, elastic_alpha=34, image_shape=(28, 28))
    assert ImageAugment.from_config(aug.get_config()).get_config() == aug.get_config()


def _tiny_cnn(seed):
    return bpnn.Sequential([bpnn.Conv2D(2, 3, padding=1), bpnn.ReLU(), bpnn.MaxPool2D(2), bpnn.Flatten(),
                            bpnn.Dense(2)], seed=seed)


def test_trainer_applies_augment_to_every_training_batch_only():
    rng = np.random.default_rng(0)
    X, y = rng.random((20, 1, 6, 6)).astype(np.float32), rng.integers(0, 2, 20)
    seen = []

    def aug(xb, gen):
        assert isinstance(gen, np.random.Generator)
        seen.append(xb.shape)
        return xb[:, :, ::-1, :]  # a flip: any shape-keeping function

    trainer = bpnn.Trainer(_tiny_cnn(0), optimizer=bpnn.optim.SGD(lr=0.1))
    trainer.fit(X, y, epochs=2, batch_size=8, validation_data=(X, y), augment=aug, verbose=False)
    assert seen == [(8, 1, 6, 6), (8, 1, 6, 6), (4, 1, 6, 6)] * 2  # training batches only


def test_trainer_with_augmentation_is_reproducible_and_differs_from_without():
    rng = np.random.default_rng(0)
    X, y = rng.random((24, 1, 8, 8)).astype(np.float32), rng.integers(0, 2, 24)

    def run(augment):
        model = _tiny_cnn(3)
        bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=1e-2)).fit(X, y, epochs=2, batch_size=8,
                                                                     augment=augment, verbose=False)
        return model.state_dict()

    aug = ImageAugment(shift=1, rotation=10)
    a, b, plain = run(aug), run(aug), run(None)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.allclose(a[k], plain[k]) for k in a)


def test_trainer_rejects_a_bad_augment():
    X, y = np.zeros((4, 1, 4, 4), np.float32), np.array([0, 1, 0, 1])
    trainer = bpnn.Trainer(_tiny_cnn(0))
    with pytest.raises(ValueError, match=r"augment: got 3; expected a callable"):
        trainer.fit(X, y, augment=3, verbose=False)
    with pytest.raises(ValueError, match=r"augment: returned a batch of shape \(2, 1, 4, 4\) for one of shape"):
        trainer.fit(X, y, batch_size=4, augment=lambda xb, g: xb[:2], verbose=False)
