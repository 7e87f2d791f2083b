"""The TensorBoard callback's event files, read back by TensorBoard's own reader."""
from __future__ import annotations

import numpy as np
import pytest

import bpnn

pytest.importorskip("tensorboardX", reason="the TensorBoard callback needs bpnn[tensorboard] (tensorboardX)")
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard (the reader) is not installed")


def _read(log_dir):
    acc = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0})
    acc.Reload()
    return acc


def _fit(log_dir, epochs=4, **kwargs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    model = bpnn.Sequential([bpnn.Dense(6), bpnn.Tanh(), bpnn.Dense(2)], input_shape=(5,), seed=0)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=0.1))
    snapshots = []

    class Snapshot(bpnn.Callback):  # the weights the histograms should describe, per epoch
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append({n: (p.copy(), g.copy()) for n, p, g in model.named_parameters()})

    callback = bpnn.io.TensorBoard(log_dir, **kwargs)
    history = trainer.fit(X, y, epochs=epochs, batch_size=20, validation_split=0.25,
                          callbacks=[Snapshot(), callback], verbose=False)
    return history, snapshots, model


def test_scalars_and_histograms_are_read_back_by_tensorboard(tmp_path):
    history, snapshots, model = _fit(tmp_path, epochs=4)
    acc = _read(tmp_path)
    tags = acc.Tags()
    assert {"loss/train", "loss/validation", "accuracy/train", "accuracy/validation", "lr"} <= set(tags["scalars"])
    for key, tag in (("loss", "loss/train"), ("val_loss", "loss/validation"), ("val_accuracy", "accuracy/validation"),
                     ("lr", "lr")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [0, 1, 2, 3]
        np.testing.assert_allclose([e.value for e in events], history[key], rtol=1e-6)  # stored as float32
    names = [n for n, _, _ in model.named_parameters()]
    assert set(tags["histograms"]) == {f"{kind}/{n}" for kind in ("weights", "gradients") for n in names}
    for epoch, snap in enumerate(snapshots):
        for name, (w, g) in snap.items():
            for kind, arr in (("weights", w), ("gradients", g)):
                h = acc.Histograms(f"{kind}/{name}")[epoch]
                assert h.step == epoch
                v = h.histogram_value
                assert v.num == arr.size
                np.testing.assert_allclose([v.min, v.max, v.sum], [arr.min(), arr.max(), arr.sum()],
                                           rtol=1e-5, atol=1e-6)
    assert snapshots[0]["0.weight"][0].tobytes() != snapshots[-1]["0.weight"][0].tobytes()


def test_histogram_frequency_and_batch_losses(tmp_path):
    _, _, model = _fit(tmp_path, epochs=4, histogram_freq=2, update_freq=2)
    acc = _read(tmp_path)
    assert [h.step for h in acc.Histograms("weights/0.weight")] == [1, 3]
    batch = acc.Scalars("batch/loss")
    # 60 training samples / 20 per batch = 3 batches per epoch, 12 in all, every 2nd written
    assert [e.step for e in batch] == [0, 2, 4, 6, 8, 10]
    assert all(np.isfinite(e.value) for e in batch)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="histogram_freq"):
        bpnn.io.TensorBoard("runs", histogram_freq=-1)
    with pytest.raises(ValueError, match="update_freq"):
        bpnn.io.TensorBoard("runs", update_freq="fortnight")
    with pytest.raises(ValueError, match="update_freq"):
        bpnn.io.TensorBoard("runs", update_freq=0)
    assert bpnn.io.TensorBoard("runs", update_freq="batch").update_freq == 1
