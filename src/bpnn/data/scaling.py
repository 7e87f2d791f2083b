"""Min-max scaling to [−1, 1] that is undone on the outputs (MATLAB's ``mapminmax``)."""
from __future__ import annotations

import numpy as np

from .. import _checks


class MinMaxScaler:
    r"""Scale every feature (column) linearly to [ymin, ymax], default [−1, 1] — MATLAB's
    ``mapminmax`` with samples in rows (MATLAB puts samples in columns)::

        Fit:        x_min, x_max per column;  gain = (ymax − ymin) / (x_max − x_min).
        Transform:  y = gain · (x − x_min) + ymin.
        Inverse:    x = (y − ymin) / gain + x_min   (applied to a network's outputs, it
                    gives predictions in the targets' units).

    A constant column (x_max = x_min) gets gain 1 and offset ymin, so it passes through
    unchanged, as in MATLAB. Values outside the fitted range map outside [ymin, ymax]
    (no clipping). Fitted attributes: ``data_min_``, ``data_max_``, ``gain_``,
    ``n_features_in_``. Works on the host (NumPy); 1-d input is treated as one feature.

    Parameters
    ----------
    feature_range : (ymin, ymax), default (−1, 1) (MATLAB's default; scikit-learn's
        ``MinMaxScaler`` defaults to (0, 1)).
    """

    def __init__(self, feature_range=(-1.0, 1.0)):
        try:
            ymin, ymax = (float(v) for v in feature_range)
        except (TypeError, ValueError):
            raise ValueError(f"feature_range: got {feature_range!r}; expected a pair (ymin, ymax)") from None
        if not (np.isfinite(ymin) and np.isfinite(ymax) and ymin < ymax):
            raise ValueError(f"feature_range: got {feature_range!r}; expected finite ymin < ymax")
        self.feature_range = (ymin, ymax)

    @staticmethod
    def _2d(name, x):
        x = _checks.array(name, x, min_ndim=1)
        if x.ndim > 2:
            raise ValueError(f"{name}: got an array of shape {x.shape}; expected (samples, features) or (samples,)")
        return x.reshape(-1, 1) if x.ndim == 1 else x, x.ndim == 1

    def fit(self, x) -> "MinMaxScaler":
        x, _ = self._2d("x", x)
        x = x.astype(np.float64)
        ymin, ymax = self.feature_range
        self.data_min_ = x.min(axis=0)
        self.data_max_ = x.max(axis=0)
        span = self.data_max_ - self.data_min_
        const = ~(span > 0)
        self.gain_ = np.where(const, 1.0, (ymax - ymin) / np.where(const, 1.0, span))
        # Constant columns: offset ymin, so y = (x − ymin)·1 + ymin = x (MATLAB).
        self._offset = np.where(const, ymin, self.data_min_)
        self.n_features_in_ = x.shape[1]
        return self

    def _check_fitted(self, x, name):
        if not hasattr(self, "gain_"):
            raise RuntimeError("MinMaxScaler: call fit first")
        x, flat = self._2d(name, x)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"{name}: has {x.shape[1]} features, the scaler was fitted on {self.n_features_in_}")
        return x, flat

    def transform(self, x):
        """y = gain · (x − x_min) + ymin, in the input's float dtype (float64 for integers)."""
        x, flat = self._check_fitted(x, "x")
        dtype = x.dtype if x.dtype.kind == "f" else np.float64
        y = ((x - self._offset) * self.gain_ + self.feature_range[0]).astype(dtype, copy=False)
        return y.ravel() if flat else y

    def inverse_transform(self, y):
        """x = (y − ymin) / gain + x_min: undo the scaling (e.g. on a network's outputs)."""
        y, flat = self._check_fitted(y, "y")
        dtype = y.dtype if y.dtype.kind == "f" else np.float64
        x = ((y - self.feature_range[0]) / self.gain_ + self._offset).astype(dtype, copy=False)
        return x.ravel() if flat else x

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    def __repr__(self):
        return f"MinMaxScaler(feature_range={self.feature_range!r})"


def mapminmax(x, ymin: float = -1.0, ymax: float = 1.0):
    """MATLAB's ``[y, ps] = mapminmax(x)``: returns the scaled array and the fitted scaler.

    ``mapminmax('apply', x2, ps)`` is ``ps.transform(x2)`` and ``mapminmax('reverse', y,
    ps)`` is ``ps.inverse_transform(y)``. Samples are rows here (columns in MATLAB).
    """
    scaler = MinMaxScaler((ymin, ymax)).fit(x)
    return scaler.transform(x), scaler
