"""The optimizer facade: a chain of transforms with a familiar ``step()``."""
from __future__ import annotations

from .. import _checks, _kernels, backend
from .._registry import Configurable, Registry

optimizers = Registry("optimizer")


class Optimizer(Configurable):
    """Applies θ ← θ − η_t · u, u the gradient passed through a chain of transforms.

    The optimizer works on the model's flat parameter and gradient vectors
    (:meth:`bpnn.nn.Module.flat_parameters`), so each transform is a handful of
    vector operations over the whole network.

    ``lr`` is a positive number or a schedule: a callable ``step → learning rate``
    (``step`` counts from 0). Setting ``optimizer.lr`` replaces it, which is how
    learning-rate callbacks act. Use::

        opt = bpnn.optim.SGD(lr=0.1, momentum=0.9).attach(model)
        model.forward(x, training=True); model.backward(loss_grad)
        opt.step()
    """

    def __init__(self, transforms, lr):
        self.transforms = list(transforms)
        self.lr = lr
        self._flat = None
        self.state: list[dict] = []
        self.step_count = 0

    # ------------------------------------------------------------------ lr
    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        if not callable(value):
            _checks.positive("lr", value)
        self._lr = value

    @property
    def current_lr(self) -> float:
        """The learning rate the next ``step()`` will use."""
        return float(self._lr(self.step_count)) if callable(self._lr) else float(self._lr)

    # ------------------------------------------------------------------ binding
    def attach(self, model) -> "Optimizer":
        """Bind to ``model``'s trainable parameters (a no-op if already bound to the same set)."""
        flat = model.flat_parameters()
        if flat is self._flat:
            return self
        self._flat = flat
        self.state = [t.init(flat.params) for t in self.transforms]
        self._u = backend.xp.empty_like(flat.params)
        self._tmp = backend.xp.empty_like(flat.params)
        self.step_count = 0
        return self

    def _bound(self):
        if self._flat is None:
            raise RuntimeError("the optimizer is not attached to a model: call optimizer.attach(model)")
        return self._flat

    def zero_grad(self) -> None:
        self._bound().grads[...] = 0

    def step(self) -> None:
        """One update from the gradients currently stored in the model."""
        flat = self._bound()
        lr = self.current_lr
        if not lr > 0:
            raise ValueError(f"lr: the schedule gave {lr!r} at step {self.step_count}; expected a value > 0")
        self.step_count += 1
        u = self._u
        u[...] = flat.grads
        for transform, state in zip(self.transforms, self.state):
            u = transform.update(u, state, flat.params, self.step_count)
        _kernels.axpy(flat.params, -lr, u, self._tmp)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Step count and every transform's state arrays (copies, plain data)."""
        return {
            "step_count": self.step_count,
            "state": [{k: backend.to_numpy(v).copy() for k, v in s.items() if not k.startswith("_")}
                      for s in self.state],
        }

    def load_state_dict(self, state: dict) -> None:
        self._bound()
        if len(state["state"]) != len(self.state):
            raise ValueError(
                f"state: has {len(state['state'])} transform states, this optimizer has {len(self.state)}"
            )
        for mine, theirs in zip(self.state, state["state"]):
            for k, v in theirs.items():
                if k not in mine or mine[k].shape != v.shape:
                    raise ValueError(f"state: entry {k!r} does not fit this optimizer and model")
                mine[k][...] = backend.to_device(v)
        self.step_count = int(state["step_count"])

    def get_config(self):
        return {"lr": self._lr if not callable(self._lr) else repr(self._lr)}
