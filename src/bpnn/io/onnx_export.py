"""ONNX export of trained MLPs and CNNs (inference graph, evaluation mode), built with ``onnx.helper``.

Opset 17 by default (``ai.onnx``, IR version the lowest that carries it: 8), which
onnxruntime ≥ 1.12 runs. The graph has one input ``"input"`` of shape
``("batch", *model.input_shape)`` and one output ``"output"``; weights are float32
initializers named as bpnn names the parameters (``"0.weight"``).

Layer mapping (evaluation mode)
-------------------------------
======================  ============================================================
bpnn                    ONNX
======================  ============================================================
Dense, DropConnect      ``Gemm(x, W, b)`` (W stored (in, out) as bpnn does: transB=0);
                        ``MatMul(x, W)`` without bias (DropConnect drops nothing at
                        inference)
BatchNorm               ``BatchNormalization(x, γ, β, running_mean, running_var, ε)``
                        (γ = 1, β = 0 when ``affine=False``)
Sigmoid, Tanh, ReLU     ``Sigmoid``, ``Tanh``, ``Relu``
LeakyReLU, ELU          ``LeakyRelu(alpha=negative_slope)``, ``Elu(alpha)``
Softplus(β, threshold)  ``Where(βx > threshold, x, Softplus(βx) / β)`` (β = 1: no Mul/Div)
Softmax                 ``Softmax(axis=-1)``
Flatten                 ``Flatten(axis=1)``
Conv2D                  ``Conv(x, W, b)`` (W OIHW as in bpnn and ONNX), explicit pads
                        (``"same"`` as the per-side pads it implies), strides, dilations
MaxPool2D               ``MaxPool`` (pads never win, as bpnn's −∞ padding)
AvgPool2D               ``AveragePool(count_include_pad)``; dilation needs opset ≥ 19
GlobalAvgPool2D         ``GlobalAveragePool`` then ``Flatten(axis=1)``
Residual                block and shortcut subgraphs, ``Add``
Dropout, Identity       removed (identity at inference)
======================  ============================================================

``softmax_output=True`` appends ``Softmax(axis=-1)``, so a classifier trained on logits
with ``softmax_cross_entropy`` exports class probabilities.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .. import backend
from .._checks import missing_dependency
from ..nn.module import Module, layers
from ._image import padding_pairs
from .atomic import write_bytes_atomic

__all__ = ["export_onnx", "OPSET", "ONNX_CONVERTERS"]

#: The ONNX opset of the exported graphs.
OPSET = 17


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise missing_dependency("ONNX export", "the onnx package", "'bpnn[onnx]'", exc) from exc
    return onnx


class _Graph:
    """Nodes and initializers under construction, with unique tensor names."""

    def __init__(self, onnx, dtype, opset):
        self.onnx, self.dtype, self.opset = onnx, np.dtype(dtype), opset
        self.nodes, self.initializers = [], []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, name: str, value) -> str:
        arr = np.ascontiguousarray(np.asarray(value, dtype=self.dtype))
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name=name))
        return name

    def param(self, module: Module, prefix: str, key: str) -> str:
        return self.constant(prefix + key, backend.to_numpy(module.params[key]))

    def buffer(self, module: Module, prefix: str, key: str) -> str:
        return self.constant(prefix + key, backend.to_numpy(module.buffers[key]))

    def op(self, op_type: str, inputs, hint: str, **attrs) -> str:
        out = self.fresh(hint)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out


def _dense(g, m, x, prefix):
    w = g.param(m, prefix, "weight")
    if m.use_bias:
        return g.op("Gemm", [x, w, g.param(m, prefix, "bias")], prefix + "gemm")
    return g.op("MatMul", [x, w], prefix + "matmul")


def _batch_norm(g, m, x, prefix):
    c = m.input_shape[0]
    scale = g.param(m, prefix, "weight") if m.affine else g.constant(prefix + "weight", np.ones(c))
    bias = g.param(m, prefix, "bias") if m.affine else g.constant(prefix + "bias", np.zeros(c))
    mean, var = g.buffer(m, prefix, "running_mean"), g.buffer(m, prefix, "running_var")
    return g.op("BatchNormalization", [x, scale, bias, mean, var], prefix + "batchnorm", epsilon=m.eps)


def _softplus(g, m, x, prefix):
    bx = x if m.beta == 1.0 else g.op("Mul", [x, g.constant(prefix + "beta", m.beta)], prefix + "beta_x")
    sp = g.op("Softplus", [bx], prefix + "softplus")
    if m.beta != 1.0:
        sp = g.op("Div", [sp, g.constant(prefix + "beta_div", m.beta)], prefix + "softplus_over_beta")
    linear = g.op("Greater", [bx, g.constant(prefix + "threshold", m.threshold)], prefix + "linear_regime")
    return g.op("Where", [linear, x, sp], prefix + "softplus_thresholded")


def _conv2d(g, m, x, prefix):
    (pt, pb), (pl, pr) = padding_pairs(m)
    inputs = [x, g.param(m, prefix, "weight")] + ([g.param(m, prefix, "bias")] if m.use_bias else [])
    return g.op("Conv", inputs, prefix + "conv", kernel_shape=list(m.kernel_size), strides=list(m.stride),
                pads=[pt, pl, pb, pr], dilations=list(m.dilation))


def _max_pool2d(g, m, x, prefix):
    (pt, pb), (pl, pr) = padding_pairs(m)
    return g.op("MaxPool", [x], prefix + "maxpool", kernel_shape=list(m.kernel_size), strides=list(m.stride),
                pads=[pt, pl, pb, pr], dilations=list(m.dilation))


def _avg_pool2d(g, m, x, prefix):
    (pt, pb), (pl, pr) = padding_pairs(m)
    attrs = dict(kernel_shape=list(m.kernel_size), strides=list(m.stride), pads=[pt, pl, pb, pr],
                 count_include_pad=int(m.count_include_pad))
    if m.dilation != (1, 1):
        if g.opset < 19:
            raise NotImplementedError(f"AvgPool2D with dilation {m.dilation} needs opset >= 19 "
                                      f"(AveragePool's dilations); export with opset=19")
        attrs["dilations"] = list(m.dilation)
    return g.op("AveragePool", [x], prefix + "avgpool", **attrs)


def _global_avg_pool2d(g, m, x, prefix):
    pooled = g.op("GlobalAveragePool", [x], prefix + "global_avgpool")  # (N, C, 1, 1)
    return g.op("Flatten", [pooled], prefix + "flatten", axis=1)


def _passthrough(g, m, x, prefix):
    return x


#: registry name -> (graph, module, input tensor name, parameter-name prefix) -> output name.
#: Containers (Sequential, Residual) are handled by :func:`_convert`.
ONNX_CONVERTERS = {
    "dense": _dense,
    "drop_connect": _dense,  # the weights are dropped in training only: Dense at inference
    "batch_norm": _batch_norm,
    "identity": _passthrough,
    "dropout": _passthrough,
    "sigmoid": lambda g, m, x, p: g.op("Sigmoid", [x], p + "sigmoid"),
    "tanh": lambda g, m, x, p: g.op("Tanh", [x], p + "tanh"),
    "relu": lambda g, m, x, p: g.op("Relu", [x], p + "relu"),
    "leaky_relu": lambda g, m, x, p: g.op("LeakyRelu", [x], p + "leaky_relu", alpha=m.negative_slope),
    "elu": lambda g, m, x, p: g.op("Elu", [x], p + "elu", alpha=m.alpha),
    "softplus": _softplus,
    "softmax": lambda g, m, x, p: g.op("Softmax", [x], p + "softmax", axis=-1),
    "flatten": lambda g, m, x, p: g.op("Flatten", [x], p + "flatten", axis=1),
    "conv2d": _conv2d,
    "max_pool2d": _max_pool2d,
    "avg_pool2d": _avg_pool2d,
    "global_avg_pool2d": _global_avg_pool2d,
}


def _convert(g: _Graph, m: Module, x: str, prefix: str) -> str:
    from ..nn import Residual, Sequential

    if isinstance(m, Sequential):
        for name, child in m.children():
            x = _convert(g, child, x, f"{prefix}{name}.")
        return x
    if isinstance(m, Residual):
        y = _convert(g, m.block, x, prefix + "block.")
        s = x if m.shortcut is None else _convert(g, m.shortcut, x, prefix + "shortcut.")
        return g.op("Add", [y, s], prefix + "residual_add")
    name = getattr(type(m), "registry_name", None)
    if name not in ONNX_CONVERTERS:
        raise NotImplementedError(f"{type(m).__name__} has no ONNX export yet; add a converter for {name!r} "
                                  f"to bpnn.io.onnx_export.ONNX_CONVERTERS")
    return ONNX_CONVERTERS[name](g, m, x, prefix)


def export_onnx(model: Module, path=None, *, softmax_output: bool = False, opset: int = OPSET,
                check: bool = True):
    """Export a built model's inference graph to ONNX; return the ``onnx.ModelProto``.

    Parameters
    ----------
    model : a built bpnn module (usually a trained ``Sequential``).
    path : where to write the ``.onnx`` file (atomically); None writes nothing.
    softmax_output : append ``Softmax(axis=-1)`` to turn logits into probabilities.
    opset : ONNX opset of the default domain, default :data:`OPSET` (17); ≥ 13 is needed
        (``Softmax`` over one axis).
    check : run ``onnx.checker.check_model`` (with full shape inference) before returning.
    """
    onnx = _onnx()
    from .. import __version__

    if not isinstance(model, Module):
        raise ValueError(f"model: got {type(model).__name__}; expected a bpnn Module")
    if not model.built:
        raise ValueError("model: is not built; build or train it before exporting")
    if not (isinstance(opset, int) and 13 <= opset <= onnx.defs.onnx_opset_version()):
        raise ValueError(f"opset: got {opset!r}; expected an integer from 13 to "
                         f"{onnx.defs.onnx_opset_version()} (this onnx package's newest)")
    helper = onnx.helper
    g = _Graph(onnx, np.float32, opset)
    out = _convert(g, model, "input", "")
    if softmax_output:
        out = g.op("Softmax", [out], "probabilities", axis=-1)
    if out == "input":  # the model is the identity at inference
        out = g.op("Identity", ["input"], "identity")
    for node in g.nodes:  # the final tensor is called "output"
        node.output[:] = ["output" if o == out else o for o in node.output]
        node.input[:] = ["output" if i == out else i for i in node.input]
    elem = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes, "bpnn_model",
        inputs=[helper.make_tensor_value_info("input", elem, ["batch", *model.input_shape])],
        outputs=[helper.make_tensor_value_info("output", elem, ["batch", *model.output_shape])],
        initializer=g.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="bpnn", producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    proto.doc_string = f"bpnn {__version__} model, inference graph (evaluation mode)"
    helper.set_model_props(proto, {"bpnn_architecture": json.dumps(layers.serialize(model))})
    if check:
        onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        write_bytes_atomic(os.fspath(path), proto.SerializeToString())
    return proto
