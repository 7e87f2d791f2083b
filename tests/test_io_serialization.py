"""save → load → predict is bit-identical, for every registered layer (one test over the registry).

Each case builds a small model around the layer, moves every parameter and buffer away
from its initial value, and checks that the loaded model has the same configuration,
the same arrays bit for bit, the same evaluation-mode outputs bit for bit and — with the
generator state restored — the same training-mode outputs (dropout masks) too.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

import bpnn
from bpnn.nn import (
    ELU, AvgPool2D, BatchNorm, Conv2D, Dense, DropConnect, Dropout, Flatten, GlobalAvgPool2D, Identity, LeakyReLU,
    MaxPool2D, ReLU, Residual, Sequential, Sigmoid, Softmax, Softplus, Tanh,
)
from bpnn.nn import layers as layer_registry

THIS_FILE = os.path.basename(__file__)


def _in_seq(make, *before):
    """The layer inside a Sequential (after ``before``), and the layer as the root module."""
    return [lambda: Sequential([*[b() for b in before], make(), Dense(2)]), make]


#: registry name -> (module factory, sample shape) examples. Every entry of ``bpnn.nn.layers``
#: needs one: the test below fails for a registered layer that has none.
IO_CASES: dict[str, list[tuple]] = {
    "dense": [(f, (4,)) for f in _in_seq(lambda: Dense(3))]
    + [(lambda: Dense(3, use_bias=False, init="orthogonal", regularizer="l2"), (5,)),
       (lambda: Dense(2, init="lsuv", regularizer={"class_name": "l1_l2", "config": {"l1": 1e-3, "l2": 1e-4}}),
        (3,))],
    "batch_norm": [(f, (4,)) for f in _in_seq(lambda: BatchNorm(momentum=0.3, eps=1e-3), lambda: Dense(4))]
    + [(lambda: BatchNorm(affine=False), (3, 5)), (lambda: BatchNorm(), (2, 3, 3))],
    "identity": [(f, (4,)) for f in _in_seq(Identity)],
    "sigmoid": [(f, (4,)) for f in _in_seq(Sigmoid)],
    "tanh": [(f, (4,)) for f in _in_seq(Tanh)],
    "relu": [(f, (4,)) for f in _in_seq(ReLU)],
    "leaky_relu": [(f, (4,)) for f in _in_seq(lambda: LeakyReLU(0.3))],
    "elu": [(f, (4,)) for f in _in_seq(lambda: ELU(alpha=0.7))],
    "softplus": [(f, (4,)) for f in _in_seq(lambda: Softplus(beta=2.0, threshold=1.0))],
    "softmax": [(f, (4,)) for f in _in_seq(Softmax)],
    "dropout": [(f, (4,)) for f in _in_seq(lambda: Dropout(0.4))],
    "drop_connect": [(f, (4,)) for f in _in_seq(lambda: DropConnect(3, p=0.6))]
    + [(lambda: DropConnect(2, p=0.8, use_bias=False, init="he_normal", regularizer="l2"), (5,))],
    "flatten": [(lambda: Sequential([Flatten(), Dense(3)]), (2, 3)), (Flatten, (2, 2, 3))],
    "sequential": [
        (lambda: Sequential([Dense(5), BatchNorm(), Tanh(), Dropout(0.3),
                             Sequential([Dense(4), ReLU()]), Dense(2)]), (3,)),
    ],
    "conv2d": [
        (lambda: Sequential([Conv2D(3, 3, padding="same"), BatchNorm(), ReLU(), Flatten(), Dense(2)]), (2, 5, 5)),
        (lambda: Conv2D(2, (2, 3), stride=2, padding=1, dilation=(1, 2), use_bias=False), (3, 6, 7)),
    ],
    "max_pool2d": [
        (lambda: Sequential([Conv2D(2, 3), MaxPool2D(2), Flatten(), Dense(2)]), (1, 6, 6)),
        (lambda: MaxPool2D(3, stride=2, padding=1), (2, 5, 5)),
    ],
    "avg_pool2d": [
        (lambda: Sequential([Conv2D(2, 1), AvgPool2D(2, stride=1, padding=1, count_include_pad=False),
                             GlobalAvgPool2D(), Dense(2)]), (2, 4, 4)),
        (lambda: AvgPool2D((2, 3)), (2, 4, 6)),
    ],
    "global_avg_pool2d": [
        (lambda: Sequential([Conv2D(3, 2), GlobalAvgPool2D(), Dense(2)]), (2, 4, 4)),
        (GlobalAvgPool2D, (3, 2, 5)),
    ],
    "residual": [
        (lambda: Sequential([Residual([Dense(4), BatchNorm(), ReLU(), Dense(3)], shortcut=Dense(3)),
                             Residual(Tanh()), Dense(2)]), (5,)),
        (lambda: Residual([Dense(4), Sigmoid(), Dense(4)]), (4,)),
    ],
}


def _perturb(model, seed):
    """Move every parameter and buffer off its initial value (BatchNorm's are 1/0)."""
    rng = np.random.default_rng(seed)
    for _, p, _ in model.named_parameters():
        p[...] += rng.normal(0.0, 0.3, size=p.shape).astype(p.dtype)
    for name, b in model.named_buffers():
        b[...] = (rng.uniform(0.5, 2.0, size=b.shape) if name.endswith("running_var")
                  else rng.normal(size=b.shape)).astype(b.dtype)


def _build(make, shape, dtype, seed):
    model = make()
    model.build(shape, seed, dtype)
    _perturb(model, seed)
    return model


def _assert_same_model(a, b):
    assert type(a) is type(b)
    assert layer_registry.serialize(a) == layer_registry.serialize(b)
    assert (a.input_shape, a.output_shape, a.dtype) == (b.input_shape, b.output_shape, b.dtype)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert sa[name].tobytes() == sb[name].tobytes(), f"{name} differs after loading"


@pytest.mark.parametrize("name", layer_registry.names())
def test_every_registered_layer_round_trips_bit_identically(name, tmp_path):
    cls = layer_registry.lookup(name)
    if name not in IO_CASES:
        pytest.fail(f"layer registry entry {name!r} ({cls.__module__}.{cls.__qualname__}) has no "
                    f"save/load case: add one to IO_CASES in {THIS_FILE}")
    checked = 0
    for k, (make, shape) in enumerate(IO_CASES[name]):
        for dtype in ("float32", "float64"):
            model = _build(make, shape, dtype, seed=10 * k + 1)
            assert any(isinstance(m, cls) for m in model.modules()), f"IO_CASES[{name!r}][{k}] has no {cls.__name__}"
            path = tmp_path / f"{name}_{k}_{dtype}.safetensors"
            x = np.random.default_rng(k).normal(size=(5, *shape)).astype(dtype)
            before = model.predict(x)
            bpnn.save(model, path)
            loaded = bpnn.load(path)
            _assert_same_model(model, loaded)
            after = loaded.predict(x)
            assert after.dtype == before.dtype and after.tobytes() == before.tobytes(), (
                f"{name}: predictions differ after save/load (max |diff| {np.abs(after - before).max()})")
            # the generator state travels too: the same dropout masks, the same running-stat updates
            y1, y2 = model.forward(x, training=True), loaded.forward(x, training=True)
            assert np.asarray(y1).tobytes() == np.asarray(y2).tobytes(), f"{name}: training-mode outputs differ"
            checked += 1
    assert checked >= 2


def test_io_cases_only_name_registered_layers():
    stale = sorted(set(IO_CASES) - set(layer_registry.names()))
    assert not stale, f"IO_CASES has entries for unregistered layers {stale}"


def test_a_frozen_residual_block_round_trips(tmp_path):
    model = Sequential([Residual([Dense(3), Tanh(), Dense(4)], trainable=False), Dense(2)], input_shape=(4,))
    bpnn.save(model, tmp_path / "m.safetensors")
    loaded = bpnn.load(tmp_path / "m.safetensors")
    assert not loaded[0].trainable and loaded[1].trainable


def test_frozen_dense_layers_stay_frozen(tmp_path):
    model = Sequential([Dense(3, trainable=False), ReLU(), Dense(2)], input_shape=(4,), seed=0)
    bpnn.save(model, tmp_path / "m.safetensors")
    loaded = bpnn.load(tmp_path / "m.safetensors")
    assert [n for n, _, _ in loaded.named_parameters(trainable_only=True)] == ["2.weight", "2.bias"]


# --------------------------------------------------------------------------- trained models
def _data(n=96, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    return X, y


def _net(seed=0):
    return Sequential([Dense(16, init="he_normal"), BatchNorm(), ReLU(), Dropout(0.2),
                       Residual([Dense(8), Tanh(), Dense(16)]), Dense(3)], input_shape=(6,), seed=seed)


@pytest.mark.parametrize("optimizer", [
    lambda: bpnn.optim.Adam(lr=5e-3),
    lambda: bpnn.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
], ids=["adam", "sgd_nesterov"])
def test_resuming_from_a_file_continues_exactly_like_uninterrupted_training(optimizer, tmp_path):
    X, y = _data()
    a = _net()
    opt_a = optimizer()
    trainer_a = bpnn.Trainer(a, optimizer=opt_a)
    trainer_a.fit(X, y, epochs=2, batch_size=16, verbose=False)
    bpnn.save(a, tmp_path / "ckpt.safetensors", optimizer=opt_a)
    trainer_a.fit(X, y, epochs=2, batch_size=16, verbose=False)  # uninterrupted: 2 more epochs

    b, opt_b = bpnn.load(tmp_path / "ckpt.safetensors", with_optimizer=True)
    assert type(opt_b) is type(opt_a) and opt_b.step_count == 2 * 6
    bpnn.Trainer(b, optimizer=opt_b).fit(X, y, epochs=2, batch_size=16, verbose=False)
    assert opt_b.step_count == opt_a.step_count
    for (name, pa, _), (_, pb, _) in zip(a.named_parameters(), b.named_parameters()):
        assert pa.tobytes() == pb.tobytes(), f"{name} differs after resuming"
    for (name, ba), (_, bb) in zip(a.named_buffers(), b.named_buffers()):
        assert ba.tobytes() == bb.tobytes(), name
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


def test_a_trained_model_predicts_bit_identically_after_loading(tmp_path):
    X, y = _data()
    model = _net(seed=3)
    bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=1e-2)).fit(X, y, epochs=3, verbose=False)
    bpnn.save(model, tmp_path / "m.safetensors")
    loaded = bpnn.load(tmp_path / "m.safetensors")
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()


def test_load_without_optimizer_state_and_a_never_attached_optimizer(tmp_path):
    model = _net()
    bpnn.save(model, tmp_path / "a.safetensors")
    loaded, opt = bpnn.load(tmp_path / "a.safetensors", with_optimizer=True)
    assert opt is None and loaded.built
    bpnn.save(model, tmp_path / "b.safetensors", optimizer=bpnn.optim.SGD(lr=0.3, momentum=0.5))
    _, opt = bpnn.load(tmp_path / "b.safetensors", with_optimizer=True)
    assert isinstance(opt, bpnn.optim.SGD) and opt.lr == 0.3 and opt.momentum == 0.5 and opt.step_count == 0


def test_an_unbuilt_model_saves_its_architecture_only(tmp_path):
    model = Sequential([Dense(4), ReLU(), Dense(2)])
    bpnn.save(model, tmp_path / "arch.safetensors")
    assert load_file(tmp_path / "arch.safetensors") == {}
    loaded = bpnn.load(tmp_path / "arch.safetensors")
    assert not loaded.built and layer_registry.serialize(loaded) == layer_registry.serialize(model)
    assert loaded.predict(np.ones((2, 3))).shape == (2, 2)  # builds lazily like any new model


def test_a_data_dependent_initializer_is_not_rerun_on_loaded_weights(tmp_path):
    X, y = _data()
    model = Sequential([Dense(8, init="lsuv"), Tanh(), Dense(3, init="lsuv")], input_shape=(6,), seed=0)
    bpnn.Trainer(model, optimizer=bpnn.optim.SGD(lr=1e-9)).fit(X, y, epochs=1, verbose=False)
    bpnn.save(model, tmp_path / "m.safetensors")
    loaded = bpnn.load(tmp_path / "m.safetensors")
    w = loaded[0].params["weight"].copy()
    bpnn.Trainer(loaded, optimizer=bpnn.optim.SGD(lr=1e-12)).fit(X, y, epochs=1, verbose=False)
    # LSUV would rescale the weights by orders of magnitude more than a 1e-12 step
    np.testing.assert_allclose(loaded[0].params["weight"], w, rtol=1e-6)


def test_the_file_is_a_plain_safetensors_file_with_a_json_document(tmp_path):
    model = _net()
    path = bpnn.save(model, tmp_path / "m.safetensors", optimizer=bpnn.optim.Adam().attach(model))
    arrays = load_file(path)
    assert set(arrays) == ({"model/" + n for n in model.state_dict()}
                           | {"optimizer/1/exp_avg", "optimizer/1/exp_avg_sq"})
    doc = bpnn.io.read_document(path)
    assert doc["format_version"] == bpnn.io.FORMAT_VERSION == 1
    assert doc["model"] == json.loads(json.dumps(layer_registry.serialize(model)))
    assert doc["input_shape"] == [6] and doc["dtype"] == "float32" and doc["built"] is True
    assert doc["optimizer"]["class_name"] == "adam"


def test_a_fresh_plateau_schedule_with_infinite_best_saves_and_loads(tmp_path):
    """The optimizer state is written as checkpoints write it: ±inf as "inf" strings
    (standard JSON), read back by the schedule's float()."""
    model = _net()
    opt = bpnn.optim.SGD(lr=bpnn.optim.ReduceOnPlateau(0.1)).attach(model)
    path = bpnn.save(model, tmp_path / "m.safetensors", optimizer=opt)
    assert bpnn.io.read_document(path)["optimizer"]["state"]["schedule"]["best"] == "inf"
    _, loaded = bpnn.load(path, with_optimizer=True)
    assert loaded.lr.best == float("inf") and loaded.lr.state_dict() == opt.lr.state_dict()


def test_save_refuses_what_it_cannot_write(tmp_path):
    class Custom(Dense):  # not registered
        pass

    with pytest.raises(ValueError, match="Custom is not a registered layer"):
        bpnn.save(Sequential([Dense(3), Residual([Custom(3)])], input_shape=(3,)), tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="expected a bpnn Module"):
        bpnn.save({"weight": np.ones(3)}, tmp_path / "x.safetensors")
    model = _net()
    opt = bpnn.optim.SGD(lr=lambda step: 0.1)
    with pytest.raises(ValueError, match="plain callable"):
        bpnn.save(model, tmp_path / "x.safetensors", optimizer=opt)
    other = bpnn.optim.SGD(lr=0.1).attach(_net(seed=1))
    with pytest.raises(ValueError, match="attached to a different model"):
        bpnn.save(model, tmp_path / "x.safetensors", optimizer=other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bpnn.save(model, tmp_path / "no" / "such" / "dir.safetensors")
    assert not os.path.exists(tmp_path / "x.safetensors")


def _shared_model():
    shared = bpnn.Dense(4, init="he_normal")
    conv = bpnn.Conv2D(2, 3, padding=1)
    return bpnn.Sequential([conv, bpnn.ReLU(), conv, bpnn.Flatten(), bpnn.Dense(4), bpnn.Tanh(), shared, bpnn.Tanh(),
                            bpnn.Residual([shared, bpnn.Tanh()], shortcut=shared), shared],
                           input_shape=(2, 4, 4), seed=0, dtype="float64")


def test_a_layer_used_at_several_places_stays_one_layer_after_loading(tmp_path):
    model = _shared_model()
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 2, 4, 4)), rng.integers(0, 4, 8)
    trainer = bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=0.01))
    trainer.fit(x, y, epochs=2, batch_size=4, verbose=False)
    cfg = layer_registry.serialize(model)["config"]["layers"]
    assert cfg[2] == {"class_name": "shared", "config": {"index": 0}}  # written once, then referenced
    path = bpnn.io.save(model, tmp_path / "shared.bpnn", optimizer=trainer.optimizer)
    loaded, opt = bpnn.io.load(path, with_optimizer=True)
    L = loaded.layers
    assert L[0] is L[2] and L[6] is L[8].block.layers[0] is L[8].shortcut is L[9]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # and training goes on as one set of weights in both models
    bpnn.Trainer(model, optimizer=trainer.optimizer).fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=False)
    bpnn.Trainer(loaded, optimizer=opt).fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=False)
    for (n1, p1, _), (n2, p2, _) in zip(model.named_parameters(), loaded.named_parameters()):
        assert n1 == n2
        np.testing.assert_array_equal(p1, p2)


def test_a_shared_reference_to_nothing_is_an_invalid_file(tmp_path):
    model = bpnn.Sequential([bpnn.Dense(3), bpnn.Tanh()], input_shape=(2,), seed=0)
    path = bpnn.io.save(model, tmp_path / "m.bpnn")
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        doc = json.loads(f.metadata()["bpnn"])
    doc["model"]["config"]["layers"][1] = {"class_name": "shared", "config": {"index": 7}}
    save_file(load_file(path), path, metadata={"bpnn": json.dumps(doc)})
    with pytest.raises(bpnn.io.InvalidModelFileError, match="names no layer written before it"):
        bpnn.io.load(path)
