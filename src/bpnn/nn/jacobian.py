"""The per-sample Jacobian of a model's outputs, built by backpropagation.

Levenberg–Marquardt and Bayesian regularization linearize the outputs around the
current weights: y(θ + δ) ≈ y(θ) + J δ, with one row of J per sample and output. J is
built the way the BP texts build it — by back-propagating, for every output unit k, the
cotangent e_k through the network — but all K cotangents go back in one vectorized
pass (:meth:`bpnn.nn.Module.backward_per_sample`), and each layer writes the gradient
of every sample straight into its columns of J (for a Dense layer,
∂y_{n,k}/∂W = x_n ⊗ g_{k,n}).
"""
from __future__ import annotations

import math

from .. import backend


def jacobian(model, x, out=None):
    """Outputs and per-sample Jacobian of ``model`` at input ``x`` (evaluation mode).

    Parameters
    ----------
    model : a :class:`~bpnn.nn.Module` whose layers implement ``backward_per_sample``
        (Dense, Conv2D, the pooling layers, activations, Dropout, Flatten, BatchNorm in
        evaluation mode, Sequential, Residual).
    x : array ``(N, *input_shape)`` on the active backend.
    out : optional array of N·K·P entries to fill (reused between calls).

    Returns
    -------
    y : ``(N, *output_shape)``, the outputs ``model.forward(x, training=False)``.
    J : (N·K, P) with K = prod(output_shape) and P the number of trainable parameters:
        J[n·K + k, j] = ∂y_{n,k}/∂θ_j, the columns in the order of
        ``model.flat_parameters()`` (so J δ changes ``flat.params`` by δ), the rows in
        the C order of ``y.reshape(N, K)``.
    """
    xp = backend.xp
    y = model.forward(x, training=False)
    n = y.shape[0]
    out_shape = tuple(y.shape[1:])
    k = math.prod(out_shape)
    flat = model.flat_parameters()
    p = len(flat)
    if out is None:
        J = xp.empty((n, k, p), dtype=flat.params.dtype)
    else:
        if out.size != n * k * p:
            raise ValueError(f"out: has {out.size} entries, the Jacobian needs {n}·{k}·{p} = {n * k * p}")
        J = out.reshape(n, k, p)
    shapes = {name: tuple(v.shape) for name, v, _ in model.named_parameters(trainable_only=True)}
    filled = set()

    def sink(name):
        sl = flat.slices.get(name)
        if sl is None:
            return None
        view = J[:, :, sl].reshape((n, k) + shapes[name])
        assert xp.may_share_memory(view, J), "a Jacobian block must be a view into J"
        filled.add(name)
        return view

    cot = xp.zeros((k, n, k), dtype=y.dtype)
    idx = xp.arange(k)
    cot[idx, :, idx] = 1
    model.backward_per_sample(cot.reshape((k, n) + out_shape), sink, "", input_grad=False)
    missing = [name for name in flat.names if name not in filled]
    if missing:
        raise RuntimeError(f"jacobian: no layer wrote the columns of {missing}; a backward_per_sample "
                           f"implementation skips them")
    return y, J.reshape(n * k, p)
