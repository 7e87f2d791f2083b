"""Batch normalization over the channel axis (1-d and 2-d inputs share one class)."""
from __future__ import annotations

from .. import backend
from .. import init as initializers
from .._checks import in_range, positive
from .._kernels import batchnorm as kernels
from .module import Module, layers


def _rows(x):
    """x (N, C, ...) as a C-contiguous (M, C) array of its channels-last layout — a view
    when x is stored channels-last (the output of Conv2D, pooling and of this layer) or
    is 2-d, a copy otherwise — and the function mapping such an array back to x's shape
    (as a view of the channels-last layout)."""
    nd = x.ndim
    if nd == 2:
        x2 = x if x.flags.c_contiguous else backend.xp.ascontiguousarray(x)
        return x2, lambda a: a
    xl = x.transpose(0, *range(2, nd), 1)
    if not xl.flags.c_contiguous:
        xl = backend.xp.ascontiguousarray(xl)
    shape, back = xl.shape, (0, nd - 1, *range(1, nd - 1))
    return xl.reshape(-1, x.shape[1]), lambda a: a.reshape(shape).transpose(back)


@layers.register("batch_norm", "batchnorm", "batch_norm1d", "batch_norm2d")
class BatchNorm(Module):
    r"""Batch normalization (Ioffe & Szegedy 2015), as ``torch.nn.BatchNorm1d/2d``.

    Input (N, C) or (N, C, ...): statistics are per channel C, over the batch and any
    trailing axes; m is the number of values per channel.

    Notes
    -----
    ::

      Training:  μ = mean(x), σ² = mean((x − μ)²) (biased), x̂ = (x − μ)/√(σ² + ε),
                 y = γ x̂ + β; running statistics r ← (1 − momentum) r + momentum · s with
                 the unbiased variance σ² m/(m − 1), as PyTorch.
      Evaluation: x̂ = (x − r_mean)/√(r_var + ε).
      Backward (training), G = ∂L/∂y:
          ∂L/∂γ = Σ G x̂,   ∂L/∂β = Σ G,
          ∂L/∂x = γ / (m √(σ² + ε)) · (m G − ∂L/∂β − x̂ ∂L/∂γ).
      Backward (evaluation): ∂L/∂x = G γ / √(r_var + ε).

    Implementation: the layer works on the channels-last (M, C) matrix of its input —
    free for the output of the image layers, which is stored channels-last, and for
    (N, C) inputs; one copy otherwise — with fused one-pass kernels
    (:mod:`bpnn._kernels.batchnorm`) and float64 per-channel sums, several times faster
    than NumPy reductions over the strided 4-d array (``benchmarks/README.md``). Its
    output is stored channels-last too.

    Parameters
    ----------
    momentum : float, default 0.1 (PyTorch's convention; Keras' momentum is 1 − this).
    eps : float, default 1e-5.
    affine : bool, default True: learn γ (init 1) and β (init 0).
    """

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, affine: bool = True,
                 trainable: bool = True):
        super().__init__(trainable)
        self.momentum = float(in_range("momentum", momentum, 0.0, 1.0))
        self.eps = float(positive("eps", eps))
        self.affine = bool(affine)
        self._bshape = None  # (1, C, 1, ...): the per-channel vectors' broadcast shape
        # what forward keeps for backward: x as (M, C) rows (the compiled kernels form x̂ again
        # from it; the NumPy path keeps its x̂ too), the mean it was centred by and 1/σ (in
        # x's dtype), the rows' count m, whether the input was images (channels moved last)
        # and how to move them back, the mode
        self._x2 = self._xhat2 = self._center = self._inv_std = None
        self._m = self._images = self._unrows = self._training = None

    def _build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"x: BatchNorm needs inputs (N, C, ...), got samples of shape {input_shape}")
        c = input_shape[0]
        if self.affine:
            self._add_param("weight", initializers.get("ones"), (c,))
            self._add_param("bias", initializers.get("zeros"), (c,))
        self._add_buffer("running_mean", (c,), 0.0)
        self._add_buffer("running_var", (c,), 1.0)
        self._bshape = (1, c) + (1,) * (len(input_shape) - 1)
        return input_shape

    def forward(self, x, training=False):
        self._check_built(x)
        xp = backend.xp
        c = x.shape[1]
        m = x.size // c
        if training and m < 2:
            raise ValueError(
                f"x: BatchNorm in training mode needs more than one value per channel, got an "
                f"input of shape {tuple(x.shape)}; use a larger batch or evaluation mode"
            )
        x2, unrows = _rows(x)
        dtype = x2.dtype
        self._images = x.ndim > 2  # large batches of images split between threads (bpnn._kernels.parallel)
        if training:
            mean, var = kernels.rows_stats(x2, split=self._images)  # float64
            mom = self.momentum
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            rm *= 1 - mom
            rm += mom * mean
            rv *= 1 - mom
            rv += (mom * m / (m - 1)) * var
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        inv_std = (1.0 / xp.sqrt(var.astype(xp.float64) + self.eps)).astype(dtype)
        if self.affine:
            gamma, beta = self.params["weight"], self.params["bias"]
        else:
            gamma, beta = xp.ones(c, dtype=dtype), xp.zeros(c, dtype=dtype)
        center = mean.astype(dtype)
        y2, self._xhat2 = kernels.rows_apply(x2, center, inv_std, gamma, beta, split=self._images)
        self._x2, self._center, self._unrows = x2, center, unrows
        self._inv_std, self._training, self._m = inv_std, training, m
        return unrows(y2)

    @property
    def _xhat(self):
        """x̂ in the input's (N, C, ...) shape: the NumPy path's kept x̂, or formed again from x."""
        xhat2 = self._xhat2 if self._xhat2 is not None else kernels.rows_xhat(self._x2, self._center, self._inv_std)
        return self._unrows(xhat2)

    def backward(self, grad_out, input_grad=True):
        g2, _ = _rows(grad_out)
        x2, center, inv = self._x2, self._center, self._inv_std
        dbeta, dgamma = kernels.rows_grad_sums(g2, x2, center, inv, split=self._images, xhat2=self._xhat2)
        if self.affine and self._trainable:
            self.grads["weight"][...] = dgamma
            self.grads["bias"][...] = dbeta
        if not input_grad:
            return None
        scale = self._inv_std * (self.params["weight"] if self.affine else 1.0)
        if not self._training:
            return self._unrows(g2 * scale)
        m, s64 = self._m, scale.astype(backend.xp.float64)
        dtype = g2.dtype
        dx2 = kernels.rows_input_grad(g2, x2, center, inv, scale, (s64 * dbeta / m).astype(dtype),
                                       (s64 * dgamma / m).astype(dtype), split=self._images, xhat2=self._xhat2)
        return self._unrows(dx2)

    def backward_per_sample(self, grad_out, sink, prefix="", input_grad=True):
        """Per-sample backward, evaluation mode only (in training mode the batch statistics
        couple the samples). With G (T, N, C, …): ∂/∂γ [n, t] = Σ G_{t,n} x̂_n and
        ∂/∂β [n, t] = Σ G_{t,n} (sums over trailing axes); input cotangents G γ/√(r_var + ε)."""
        if self._training:
            raise NotImplementedError(
                "BatchNorm: the per-sample Jacobian is defined in evaluation mode only (in training "
                "mode the batch statistics couple the samples); run forward with training=False"
            )
        xp = backend.xp
        g = grad_out.transpose(1, 0, *range(2, grad_out.ndim))  # (N, T, C, ...)
        trailing = tuple(range(3, g.ndim))
        if self.affine and self._trainable:
            dgamma = sink(prefix + "weight")
            if dgamma is not None:
                xp.sum(g * self._xhat[:, None], axis=trailing, out=dgamma)
            dbeta = sink(prefix + "bias")
            if dbeta is not None:
                xp.sum(g, axis=trailing, out=dbeta)
        if not input_grad:
            return None
        scale = self._inv_std * (self.params["weight"] if self.affine else 1.0)
        return grad_out * scale.reshape(self._bshape)

    def get_config(self):
        return {"momentum": self.momentum, "eps": self.eps, "affine": self.affine,
                **super().get_config()}
