"""Image augmentation on the fly: random shifts, rotations, scalings, shears and elastic
distortion, drawn anew for every training batch.

More data is the first remedy for overfitting; for images, distorted copies of the
training set are nearly as good (LeCun et al. 1998 report 0.95 % → 0.8 % test error for
LeNet-5 on MNIST with random affine distortions; Simard, Steinkraus & Platt 2003 add
elastic distortions). Use it with :meth:`bpnn.Trainer.fit`::

    aug = bpnn.data.ImageAugment(shift=2, rotation=10, scale=0.1, elastic_alpha=34, elastic_sigma=4)
    trainer.fit(X, y, epochs=20, augment=aug)   # X of shape (N, 1, 28, 28)

The trainer calls ``aug(x_batch, rng)`` with its own seeded Generator (the model's by
default), so a seeded run is reproducible. Written with NumPy only (no SciPy).
"""
from __future__ import annotations

import math

import numpy as np

from .._checks import in_range, positive
from .._registry import Configurable


class ImageAugment(Configurable):
    r"""Random affine and elastic distortion of a batch of images, as a callable
    ``aug(x, rng) -> x_distorted`` (same shape and dtype; the input is not modified).

    Every image gets its own random transformation. With (i, j) the output pixel
    relative to the image centre, the pixel is read (bilinear interpolation, ``fill``
    outside the image) at

        (i', j') = A⁻¹ (i − t_i, j − t_j) + (Δ_i, Δ_j),

    A = R(θ) · diag(s, s) · [[1, 0], [λ, 1]] (rotation by θ ~ U(−rotation, rotation)
    degrees, isotropic scale s ~ U(1 − scale, 1 + scale), horizontal shear
    λ ~ U(−shear, shear)), a shift t ~ U(−shift, shift) pixels per axis, and the elastic
    displacement Δ = α · (G_σ * U) with U uniform in [−1, 1] per pixel and axis and G_σ a
    Gaussian blur of standard deviation σ (Simard et al. 2003, §2: α = 34, σ = 4 for MNIST;
    the blur is truncated at 4σ with zeros beyond the border).

    Parameters
    ----------
    shift : float, default 0 — largest shift in pixels along each axis.
    rotation : float, default 0 — largest rotation in degrees.
    scale : float in [0, 1), default 0 — largest relative change of size.
    shear : float, default 0 — largest horizontal shear factor.
    elastic_alpha : float, default 0 (off) — scale α of the elastic displacement, in pixels.
    elastic_sigma : float, default 4 — smoothness σ of the elastic displacement, in pixels.
    fill : float, default 0 — value read outside the image (MNIST's background).
    image_shape : (H, W) or (C, H, W), optional — for flat inputs (N, C·H·W), e.g. MNIST
        loaded with ``flatten=True``; images (N, H, W) and (N, C, H, W) need none.
    """

    def __init__(self, shift: float = 0.0, rotation: float = 0.0, scale: float = 0.0, shear: float = 0.0,
                 elastic_alpha: float = 0.0, elastic_sigma: float = 4.0, fill: float = 0.0, image_shape=None):
        self.shift = float(positive("shift", shift, allow_zero=True))
        self.rotation = float(in_range("rotation", rotation, 0.0, 180.0))
        self.scale = float(in_range("scale", scale, 0.0, 1.0, high_open=True))
        self.shear = float(positive("shear", shear, allow_zero=True))
        self.elastic_alpha = float(positive("elastic_alpha", elastic_alpha, allow_zero=True))
        self.elastic_sigma = float(positive("elastic_sigma", elastic_sigma))
        self.fill = float(in_range("fill", fill, -math.inf, math.inf, True, True))
        if image_shape is not None:
            image_shape = tuple(image_shape)
            if len(image_shape) not in (2, 3) or not all(isinstance(v, (int, np.integer)) and v > 0
                                                         for v in image_shape):
                raise ValueError(f"image_shape: got {image_shape!r}; expected (H, W) or (C, H, W) of positive ints")
        self.image_shape = image_shape
        self._blur_cache: dict = {}

    # ------------------------------------------------------------------ shapes
    def _as_images(self, x):
        """x as (N, C, H, W) and the function that restores the caller's shape."""
        if self.image_shape is not None:
            shape = self.image_shape if len(self.image_shape) == 3 else (1, *self.image_shape)
            if x.ndim < 2 or math.prod(x.shape[1:]) != math.prod(shape):
                raise ValueError(f"x: got a batch of shape {x.shape}; image_shape={self.image_shape} needs "
                                 f"{math.prod(shape)} values per sample")
            return x.reshape(len(x), *shape), (lambda y: y.reshape(x.shape))
        if x.ndim == 3:
            return x[:, None], (lambda y: y[:, 0])
        if x.ndim == 4:
            return x, (lambda y: y)
        raise ValueError(f"x: got a batch of shape {x.shape}; ImageAugment expects images (N, H, W) or "
                         f"(N, C, H, W), or flat samples with image_shape=(H, W)")

    def _blur(self, n: int) -> np.ndarray:
        """(n, n) matrix of the 1-d Gaussian blur (σ = elastic_sigma, truncated at 4σ)."""
        if n not in self._blur_cache:
            s = self.elastic_sigma
            d = np.arange(n)[:, None] - np.arange(n)[None, :]
            k = np.exp(-0.5 * (d / s) ** 2) * (np.abs(d) <= 4 * s)
            # normalized as the full (untruncated-by-border) kernel, as a zero-padded filter
            full = np.arange(-int(4 * s), int(4 * s) + 1)
            self._blur_cache[n] = k / np.exp(-0.5 * (full / s) ** 2).sum()
        return self._blur_cache[n]

    # ------------------------------------------------------------------ the transform
    def draw(self, n: int, rng: np.random.Generator) -> dict:
        """Random affine parameters of ``n`` images: θ (radians), s, λ and t (n, 2)."""
        return {"theta": np.deg2rad(rng.uniform(-self.rotation, self.rotation, n)),
                "scale": rng.uniform(1.0 - self.scale, 1.0 + self.scale, n),
                "shear": rng.uniform(-self.shear, self.shear, n),
                "shift": rng.uniform(-self.shift, self.shift, (n, 2))}

    def coordinates(self, params: dict, H: int, W: int, rng: np.random.Generator):
        """Source coordinates (rows, cols), each (n, H, W) float32, of the output pixels for the
        affine ``params`` of :meth:`draw` (plus elastic displacement drawn from ``rng``).
        A positive θ turns the image counter-clockwise as displayed (rows going down)."""
        theta, s, lam, t = params["theta"], params["scale"], params["shear"], params["shift"]
        n = len(theta)
        ci, cj = (H - 1) / 2.0, (W - 1) / 2.0
        f32 = np.float32
        i, j = np.meshgrid(np.arange(H, dtype=f32) - f32(ci), np.arange(W, dtype=f32) - f32(cj), indexing="ij")
        # A = R(θ) S(s) Sh(λ) acts on (row, col) offsets; its inverse maps output to source
        c, si = np.cos(theta), np.sin(theta)
        a = np.empty((n, 2, 2))
        a[:, 0, 0], a[:, 0, 1] = c * s, -si * s
        a[:, 1, 0], a[:, 1, 1] = si * s, c * s
        a = a @ np.stack([np.stack([np.ones(n), np.zeros(n)], -1), np.stack([lam, np.ones(n)], -1)], 1)
        inv = np.linalg.inv(a).astype(f32)
        t = t.astype(f32)
        di = i[None] - t[:, 0, None, None]
        dj = j[None] - t[:, 1, None, None]
        rows = inv[:, 0, 0, None, None] * di + inv[:, 0, 1, None, None] * dj + f32(ci)
        cols = inv[:, 1, 0, None, None] * di + inv[:, 1, 1, None, None] * dj + f32(cj)
        if self.elastic_alpha > 0:
            gh, gw = (self._blur(H).astype(f32), self._blur(W).astype(f32))
            for target in (rows, cols):
                u = rng.random((n, H, W), dtype=f32) * f32(2) - f32(1)  # U(−1, 1)
                target += f32(self.elastic_alpha) * (gh @ u @ gw.T)
        return rows, cols

    def apply(self, x, params: dict, rng: np.random.Generator):
        """Distort the batch ``x`` with the given affine ``params`` (see :meth:`draw`)."""
        x = np.asarray(x)
        images, restore = self._as_images(x)
        n, _, H, W = images.shape
        rows, cols = self.coordinates(params, H, W, rng)
        return restore(_bilinear(images, rows, cols, self.fill).astype(x.dtype, copy=False))

    def __call__(self, x, rng: np.random.Generator):
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng: got {rng!r}; expected a numpy.random.Generator (the trainer passes its own)")
        x = np.asarray(x)
        images, _ = self._as_images(x)
        return self.apply(x, self.draw(len(images), rng), rng)

    def get_config(self):
        cfg = {"shift": self.shift, "rotation": self.rotation, "scale": self.scale, "shear": self.shear,
               "elastic_alpha": self.elastic_alpha, "elastic_sigma": self.elastic_sigma, "fill": self.fill}
        if self.image_shape is not None:
            cfg["image_shape"] = list(self.image_shape)
        return cfg


def _bilinear(images, rows, cols, fill):
    """Sample (N, C, H, W) images at fractional (rows, cols) (N, H, W); ``fill`` outside.

    v = Σ over the 4 neighbours of w · (pixel if inside the image else fill), computed as
    one gather from clipped indices, in float32 (float64 for float64 images).
    """
    n, ch, H, W = images.shape
    dt = np.result_type(images.dtype, np.float32)
    rows, cols = rows.astype(dt, copy=False), cols.astype(dt, copy=False)
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = rows - r0, cols - c0
    r0, c0 = r0.astype(np.intp), c0.astype(np.intp)
    flat = images.reshape(-1)
    base = (np.arange(n) * (ch * H * W))[:, None, None]
    out = np.zeros((n, ch, H, W), dtype=dt)
    outside = np.zeros((n, H, W), dtype=dt)
    for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
        w = (fr if dr else 1 - fr) * (fc if dc else 1 - fc)
        r, c = r0 + dr, c0 + dc
        inside = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        idx = base + np.where(inside, r * W + c, 0)
        w_in = np.where(inside, w, 0)
        outside += w - w_in
        for k in range(ch):
            out[:, k] += w_in * flat[idx + k * H * W]
    if fill != 0:
        out += fill * outside[:, None]
    return out
