"""ONNX export: the graph passes onnx.checker and onnxruntime reproduces bpnn to 1e-5 (float32).

Random MLPs cover every exportable layer: Dense with and without bias, BatchNorm in
evaluation mode (random running statistics, with and without affine), every activation
(Softplus with β ≠ 1 and a threshold that some inputs cross), Dropout (removed), Flatten,
Softmax, and residual blocks with identity and projection shortcuts.
"""
from __future__ import annotations

import numpy as np
import pytest

import bpnn
from bpnn.nn import (
    ELU, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, Identity, LeakyReLU,
    MaxPool2D, ReLU, Residual, Sequential, Sigmoid, Softmax, Softplus, Tanh,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-5
ACTIVATIONS = [Sigmoid, Tanh, ReLU, lambda: LeakyReLU(0.15), lambda: ELU(alpha=0.7), Identity, Softplus,
               lambda: Softplus(beta=2.0, threshold=1.0), lambda: Softplus(beta=0.5)]


def random_mlp(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(2, 4)), int(rng.integers(2, 4))) if rng.random() < 0.4 else (int(rng.integers(3, 9)),)
    layers = [Flatten()] if len(shape) > 1 else []
    for i in range(int(rng.integers(1, 5))):
        width = int(rng.integers(3, 12))
        layers.append(Dense(width, use_bias=bool(rng.random() < 0.8)))
        if rng.random() < 0.6:
            layers.append(BatchNorm(eps=float(rng.choice([1e-5, 1e-3])), affine=bool(rng.random() < 0.8)))
        layers.append(ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]())
        if rng.random() < 0.4:
            layers.append(Dropout(0.3))
        if rng.random() < 0.4:
            inner = [Dense(int(rng.integers(2, 6))), ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))](), Dense(width)]
            layers.append(Residual(inner) if rng.random() < 0.5 else
                          Residual(inner[:2], shortcut=Dense(inner[0].units, use_bias=False)))
    layers.append(Dense(int(rng.integers(2, 6))))
    if rng.random() < 0.3:
        layers.append(Softmax())
    model = Sequential(layers, input_shape=shape, seed=seed)
    for name, p, _ in model.named_parameters():
        if p.ndim == 1:
            p[...] = rng.normal(0.0, 0.5, size=p.shape) + (1.0 if name.endswith("weight") else 0.0)
    for name, b in model.named_buffers():
        b[...] = rng.uniform(0.3, 2.5, size=b.shape) if name.endswith("running_var") else rng.normal(size=b.shape)
    x = rng.normal(0.0, 1.5, size=(int(rng.integers(1, 17)), *shape)).astype(np.float32)
    return model, x


def random_cnn(seed):
    """Conv2D (kernel sizes, strides, explicit / "same" / "valid" padding, dilation, with and
    without bias), BatchNorm over channels, activations, max / average / global pooling,
    Dropout, residual blocks of convolutions, then Flatten and Dense."""
    rng = np.random.default_rng(1000 + seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(7, 12)), int(rng.integers(7, 12))
    layers = []
    for _ in range(int(rng.integers(1, 3))):
        k = int(rng.integers(1, 4))
        stride = int(rng.integers(1, 3))
        padding = rng.choice(["same", "valid", "one", "asym"])
        padding = {"one": 1, "asym": (1, 0)}.get(padding, padding)
        dilation = 2 if rng.random() < 0.25 else 1
        oc = int(rng.integers(2, 5))
        layers.append(Conv2D(oc, k, stride=stride, padding=padding, dilation=dilation, use_bias=bool(rng.random() < 0.8)))
        if rng.random() < 0.6:
            layers.append(BatchNorm(eps=float(rng.choice([1e-5, 1e-3]))))
        layers.append(ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]())
        if rng.random() < 0.5:  # identity or 1×1 projection shortcut
            layers.append(Residual([Conv2D(oc, 3, padding="same"), Tanh()]) if rng.random() < 0.5 else
                          Residual([Conv2D(2, 3, padding="same"), Tanh()], shortcut=Conv2D(2, 1, use_bias=False)))
        pool = rng.choice(["max", "avg", "avg_nopad", "none"])
        if pool == "max":
            layers.append(MaxPool2D(2, stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 2))))
        elif pool.startswith("avg"):
            layers.append(AvgPool2D(2, stride=1, padding=int(rng.integers(0, 2)),
                                    count_include_pad=pool == "avg"))
        if rng.random() < 0.3:
            layers.append(Dropout(0.4))
    layers += [GlobalAvgPool2D()] if rng.random() < 0.5 else [Flatten()]
    layers.append(Dense(int(rng.integers(2, 5))))
    model = Sequential(layers, input_shape=(c, h, w), seed=seed)
    for name, p, _ in model.named_parameters():
        if p.ndim == 1:
            p[...] = rng.normal(0.0, 0.5, size=p.shape) + (1.0 if name.endswith("weight") else 0.0)
    for name, b in model.named_buffers():
        b[...] = rng.uniform(0.3, 2.5, size=b.shape) if name.endswith("running_var") else rng.normal(size=b.shape)
    x = rng.normal(0.0, 1.0, size=(int(rng.integers(1, 6)), c, h, w)).astype(np.float32)
    return model, x


def _run(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


@pytest.mark.parametrize("seed", range(25))
def test_onnxruntime_matches_bpnn_for_random_mlps(seed, tmp_path):
    model, x = random_mlp(seed)
    path = tmp_path / "model.onnx"
    proto = bpnn.io.export_onnx(model, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert [o.version for o in proto.opset_import if o.domain == ""] == [bpnn.io.OPSET] == [17]
    ops = {node.op_type for node in proto.graph.node}
    assert "Dropout" not in ops
    expected = model.predict(x)
    got = _run(proto, x)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL)
    # a batch size the graph was not traced with: the batch axis is symbolic
    x2 = np.concatenate([x, x[:1] * 0.5])
    np.testing.assert_allclose(_run(proto, x2), model.predict(x2), rtol=TOL, atol=TOL)


@pytest.mark.parametrize("seed", range(12))
def test_onnxruntime_matches_bpnn_for_random_cnns(seed):
    model, x = random_cnn(seed)
    proto = bpnn.io.export_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    ops = {node.op_type for node in proto.graph.node}
    assert "Conv" in ops and "Dropout" not in ops
    np.testing.assert_allclose(_run(proto, x), model.predict(x), rtol=TOL, atol=TOL)


def test_average_pooling_with_dilation_needs_opset_19():
    model = Sequential([Conv2D(2, 3), AvgPool2D(2, stride=1, dilation=2), Flatten(), Dense(2)],
                       input_shape=(1, 8, 8), seed=0)
    with pytest.raises(NotImplementedError, match="opset >= 19"):
        bpnn.io.export_onnx(model)
    if onnx.defs.onnx_opset_version() < 19:
        pytest.skip("this onnx package predates opset 19")
    try:
        proto = bpnn.io.export_onnx(model, opset=19)
        x = np.random.default_rng(0).normal(size=(3, 1, 8, 8)).astype(np.float32)
        got = _run(proto, x)
    except Exception as exc:  # onnxruntime without opset-19 AveragePool dilations
        if "Opset 19" in str(exc) or "not implemented" in str(exc).lower():
            pytest.skip(f"onnxruntime cannot run it: {exc}")
        raise
    np.testing.assert_allclose(got, model.predict(x), rtol=TOL, atol=TOL)


def test_every_layer_kind_is_exported_and_a_softmax_output_can_be_added():
    model = Sequential([Flatten(), Dense(8), BatchNorm(), Sigmoid(), Dense(8, use_bias=False),
                        BatchNorm(affine=False), Tanh(), Dropout(0.5), ReLU(), LeakyReLU(0.2), ELU(),
                        Softplus(beta=3.0, threshold=2.0), Identity(),
                        Residual([Dense(4), ReLU(), Dense(8)]), Residual(Tanh(), shortcut=Dense(8)),
                        Dense(5)], input_shape=(2, 4), seed=1)
    x = np.random.default_rng(1).normal(size=(6, 2, 4)).astype(np.float32)
    proto = bpnn.io.export_onnx(model, softmax_output=True)
    ops = [node.op_type for node in proto.graph.node]
    for op in ("Flatten", "Gemm", "MatMul", "BatchNormalization", "Sigmoid", "Tanh", "Relu", "LeakyRelu",
               "Elu", "Softplus", "Where", "Add", "Softmax"):
        assert op in ops, op
    assert ops[-1] == "Softmax" and "Dropout" not in ops and "Identity" not in ops
    logits = model.predict(x)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    got = _run(proto, x)
    np.testing.assert_allclose(got, probs, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)


def test_a_trained_float64_model_exports_in_float32():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = Sequential([Dense(16), BatchNorm(), ReLU(), Dropout(0.2), Dense(2)], input_shape=(5,), seed=0,
                       dtype="float64")
    bpnn.Trainer(model, optimizer=bpnn.optim.Adam(lr=1e-2)).fit(X, y, epochs=5, batch_size=16, verbose=False)
    proto = bpnn.io.export_onnx(model)
    x = X[:20].astype(np.float32)
    np.testing.assert_allclose(_run(proto, x), model.predict(X[:20]), rtol=1e-4, atol=1e-5)


def test_an_identity_model_still_has_a_graph():
    proto = bpnn.io.export_onnx(Sequential([Dropout(0.3), Identity()], input_shape=(3,)))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(_run(proto, x), x)


def test_export_refuses_what_it_cannot_export():
    with pytest.raises(ValueError, match="not built"):
        bpnn.io.export_onnx(Sequential([Dense(2)]))
    with pytest.raises(ValueError, match="opset: got 9"):
        bpnn.io.export_onnx(Sequential([Dense(2)], input_shape=(3,)), opset=9)

    class Custom(ReLU):
        registry_name = "custom_relu"

    with pytest.raises(NotImplementedError, match="Custom has no ONNX export"):
        bpnn.io.export_onnx(Sequential([Dense(2), Custom()], input_shape=(3,)))


def test_the_command_line_exports_a_saved_model(tmp_path, capsys):
    from bpnn.cli import main

    model, x = random_mlp(3)
    bpnn.save(model, tmp_path / "m.safetensors")
    rc = main(["export", str(tmp_path / "m.safetensors"), "--onnx", str(tmp_path / "m.onnx"),
               "--torch", str(tmp_path / "m_torch.safetensors")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ONNX opset 17" in out and "m_torch.safetensors" in out
    proto = onnx.load(str(tmp_path / "m.onnx"))
    np.testing.assert_allclose(_run(proto, x), model.predict(x), rtol=TOL, atol=TOL)
    from safetensors.numpy import load_file

    assert set(load_file(tmp_path / "m_torch.safetensors")) == set(bpnn.io.to_torch_state_dict(model))
    assert main(["export", str(tmp_path / "missing.safetensors"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "missing.safetensors: no such file" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "m.safetensors")]) == 2
    assert "--onnx" in capsys.readouterr().err


def test_drop_connect_exports_as_the_dense_it_is_at_inference():
    model = Sequential([bpnn.nn.DropConnect(5, p=0.5), bpnn.nn.Tanh(), bpnn.nn.DropConnect(3, p=0.7, use_bias=False)],
                       input_shape=(4,), seed=2)
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(bpnn.io.export_onnx(model), x), model.predict(x), rtol=1e-5, atol=1e-6)
