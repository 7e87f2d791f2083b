"""Layer-sequential unit-variance initialization (data dependent)."""
from __future__ import annotations

from .. import _checks, backend
from .initializers import Initializer, Orthogonal, registry


@registry.register("lsuv")
class LSUV(Initializer):
    """LSUV (Mishkin & Matas 2016, "All you need is a good init").

    1. Pre-initialize each weight orthogonally (Saxe et al. 2014).
    2. Going from the first layer to the last, forward a batch of data and rescale the
       layer's weight, W ← W / √Var(output), until ``|Var(output) − 1| < tol`` or
       ``max_iter`` rescalings; the output is the layer's own (pre-activation) output.

    As a layer's ``init`` this draws the orthogonal pre-initialization; step 2 needs
    data, so :class:`bpnn.Trainer` runs :func:`lsuv` on the first training batch
    before training (or call it yourself).
    """

    data_dependent = True

    def __init__(self, tol: float = 0.05, max_iter: int = 10, gain: float = 1.0):
        self.tol = float(_checks.positive("tol", tol))
        self.max_iter = _checks.positive("max_iter", max_iter, integer=True)
        self.gain = float(_checks.positive("gain", gain))

    def sample(self, shape, rng):
        return Orthogonal(self.gain).sample(shape, rng)

    def get_config(self):
        return {"tol": self.tol, "max_iter": self.max_iter, "gain": self.gain}


def lsuv(model, x, tol: float | None = None, max_iter: int | None = None, only_lsuv: bool = True):
    """Run the data-dependent step of LSUV on ``model`` with the batch ``x``.

    Applies to the leaf modules that have a ``weight`` parameter — those whose ``init``
    is :class:`LSUV` when ``only_lsuv`` (the default), else all of them. ``tol`` and
    ``max_iter`` default to each layer's LSUV settings (0.05 and 10). Returns a dict
    layer-index → output variance after scaling.
    """
    x = _checks.array("x", x, min_ndim=2)
    if not getattr(model, "built", False):
        model.forward(backend.to_device(x[:1]), training=False)
    targets = [m for m in model.modules()
               if "weight" in m.params and not m.children()
               and (isinstance(getattr(m, "init", None), LSUV) or not only_lsuv)]
    xd = backend.to_device(x)
    result = {}
    for index, layer in enumerate(targets):
        cfg = layer.init if isinstance(getattr(layer, "init", None), LSUV) else LSUV()
        t = cfg.tol if tol is None else tol
        n = cfg.max_iter if max_iter is None else max_iter
        captured = {}
        original = layer.forward

        def capture(inp, training=False, _orig=original):
            out = _orig(inp, training)
            captured["out"] = out
            return out

        layer.forward = capture
        try:
            for i in range(n + 1):
                model.forward(xd, training=False)
                var = float(captured["out"].var())
                if abs(var - 1.0) < t or var == 0.0 or i == n:
                    break
                layer.params["weight"] *= 1.0 / var**0.5
        finally:
            del layer.forward
        result[index] = var
    return result
