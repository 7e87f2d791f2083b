"""The optimizer facade: a chain of transforms with a familiar ``step()``."""
from __future__ import annotations

from .. import _checks, backend
from .._kernels import optim as kernels
from .._registry import Configurable, Registry
from .clipping import ClipByGlobalNorm, ClipByValue
from .constraints import MaxNorm
from .schedules import Schedule, schedules
from .transforms import AddDecoupledWeightDecay, AddWeightDecay, Transform, transforms as transform_registry

#: The optimizers by name (``"sgd"``, ``"adam"``, ...); :func:`bpnn.optim.get` looks them up.
optimizers = Registry("optimizer")


class NonFiniteCurvatureError(FloatingPointError):
    """A curvature estimate (a K-FAC factor or its eigendecomposition) became NaN or
    infinite; the message names the layer and the step. The Trainer stops on it as on a
    non-finite loss and keeps the best weights so far."""


def _defined_in(cls, name: str) -> type:
    """The class of ``cls``'s MRO whose body defines ``name``."""
    return next(c for c in cls.__mro__ if name in vars(c))


@optimizers.register("chain", "optimizer")
class Optimizer(Configurable):
    """Applies θ ← θ − η_t · u, u the gradient passed through a chain of transforms.

    There is one way to build an optimizer, in two spellings:

    - a named optimizer — ``bpnn.optim.Adam(lr=1e-3, clip_norm=1.0, max_norm=3.0)`` —
      is a preset chain of transforms; or
    - any chain — ``bpnn.optim.Optimizer([ClipByGlobalNorm(1.0), ScaleByAdam(),
      AddDecoupledWeightDecay(1e-2)], lr=CosineAnnealing(1e-3, T_max=50))`` (that one is
      AdamW with clipping and a cosine schedule). Registered as ``"chain"``; the empty
      chain (the default) is plain gradient descent with lr = 0.01.

    Every optimizer takes the same three optional pieces as keywords:
    ``clip_value`` (:class:`ClipByValue`, first), ``clip_norm``
    (:class:`ClipByGlobalNorm`, after it) — both act on the raw gradient before
    anything else, as torch's ``clip_grad_*_`` called before ``step()`` — and
    ``max_norm`` (:class:`MaxNorm`, applied to the weights after the step). L1/L2
    penalties are not optimizer pieces but part of the loss: give a layer a
    ``regularizer`` (``bpnn.nn.regularizers``).

    The optimizer works on the model's flat parameter and gradient vectors
    (:meth:`bpnn.nn.Module.flat_parameters`), so each transform is a handful of
    vector operations over the whole network.

    ``lr`` is a positive number, a :class:`~bpnn.optim.schedules.Schedule` or any
    callable ``step → learning rate``. A schedule with ``unit="epoch"`` is evaluated at
    the epoch set by :meth:`start_epoch` (the Trainer calls it at every epoch start);
    other callables at the number of steps taken so far (0 for the first step).
    Setting ``optimizer.lr`` replaces it, which is how learning-rate callbacks act. Use::

        opt = bpnn.optim.SGD(lr=0.1, momentum=0.9).attach(model)
        model.forward(x, training=True); model.backward(loss_grad)
        opt.step()
    """

    def __init__(self, transforms=(), lr=0.01, *, clip_norm=None, clip_value=None, max_norm=None):
        chain = []
        if clip_value is not None:
            chain.append(ClipByValue(clip_value))
        if clip_norm is not None:
            chain.append(ClipByGlobalNorm(clip_norm))
        for t in transforms:
            if isinstance(t, (str, dict)):
                t = transform_registry.get(t)
            if not isinstance(t, Transform):
                raise ValueError(f"transforms: got {t!r}; expected bpnn.optim.Transform instances")
            chain.append(t)
        if sum(t.applies_lr for t in chain) > 1:
            raise ValueError(f"transforms: {[type(t).__name__ for t in chain if t.applies_lr]} each "
                             f"apply the learning rate; a chain may hold at most one of them")
        self.transforms = chain
        self._user_transforms = len(chain) - (clip_value is not None) - (clip_norm is not None)
        self.clip_norm, self.clip_value, self.max_norm = clip_norm, clip_value, max_norm
        self.constraints = [MaxNorm(max_norm)] if max_norm is not None else []
        self._lr_inside = any(t.applies_lr for t in chain)
        self.lr = lr
        self._flat = None
        self.state: list[dict] = []
        self.step_count = 0
        self.epoch = 0

    # ------------------------------------------------------------------ lr
    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        if isinstance(value, dict):
            value = schedules.get(value)
        if not callable(value):
            _checks.positive("lr", value)
        self._lr = value

    @property
    def current_lr(self) -> float:
        """The learning rate the next ``step()`` will use."""
        lr = self._lr
        if not callable(lr):
            return float(lr)
        return float(lr(self.epoch if getattr(lr, "unit", "step") == "epoch" else self.step_count))

    def start_epoch(self, epoch: int) -> None:
        """Tell per-epoch schedules which epoch (0-based) the coming steps belong to."""
        self.epoch = int(_checks.positive("epoch", epoch, integer=True, allow_zero=True))

    # ------------------------------------------------------------------ binding
    def attach(self, model) -> "Optimizer":
        """Bind to ``model``'s trainable parameters (a no-op if already bound to the same set)."""
        flat = model.flat_parameters()
        if flat is self._flat:
            return self
        self._flat = flat
        self.state = [t.init(flat.params) for t in self.transforms]
        self._bound_constraints = [c.bind(model) for c in self.constraints]
        self._u = self._tmp = None  # scratch of the transform chain, made on its first use
        self._fused, self._fused_clip = self._fused_step()
        self.step_count = 0
        return self

    def _fused_step(self):
        """The chain as one compiled pass, when it is [ClipByGlobalNorm] +
        [AddWeightDecay(λ)] + one transform with a ``fused`` step +
        [AddDecoupledWeightDecay(λ_d)] (zero decays dropped), the learning rate applied
        here — Adam, AdamW, SGD with torch-form momentum, each with ``clip_norm``. Same
        arithmetic as the chain, without the copy of the gradient and the separate
        update pass (see ``benchmarks/README.md``); clipping
        takes one reading pass for the norm and enters the pass as a factor. Returns
        (step or None, the ClipByGlobalNorm to apply as that factor or None)."""
        pairs = [(t, s) for t, s in zip(self.transforms, self.state)
                 if not (isinstance(t, AddWeightDecay) and not t.weight_decay)]
        clip = pairs.pop(0)[0] if pairs and type(pairs[0][0]) is ClipByGlobalNorm else None
        wd = dwd = 0.0
        if pairs and type(pairs[0][0]) is AddWeightDecay:
            wd = pairs.pop(0)[0].weight_decay
        if pairs and type(pairs[-1][0]) is AddDecoupledWeightDecay:
            dwd = pairs.pop()[0].weight_decay
        if self._lr_inside or len(pairs) > 1:
            return None, None
        if not pairs:  # plain gradient descent
            return (lambda params, grads, t, lr, scale: kernels.sgd_step(params, grads, None, lr, wd, dwd, 0.0,
                                                                         0.0, False, False, scale)), clip
        transform, state = pairs[0]
        if _defined_in(type(transform), "fused") is not _defined_in(type(transform), "update"):
            return None, None  # e.g. a subclass that changes update(): its fused step would not be its arithmetic
        step = transform.fused(state, wd, dwd)
        return step, (clip if step is not None else None)

    @property
    def bound_parameters(self):
        """The model's :class:`~bpnn.nn.FlatParameters` this optimizer steps (set by
        :meth:`attach`), or None before it is attached."""
        return self._flat

    def _bound(self):
        if self._flat is None:
            raise RuntimeError("the optimizer is not attached to a model: call optimizer.attach(model)")
        return self._flat

    def zero_grad(self) -> None:
        self._bound().grads[...] = 0

    def before_backward(self, model, loss, output, rng=None, batch=None) -> None:
        """Called by the Trainer at every step after the loss's forward on ``output`` and
        before ``model.backward``: the place where a curvature optimizer (K-FAC) reads the
        layers' inputs and runs its own backward passes. ``batch`` is the step's (x, y),
        for an optimizer that evaluates the loss again (K-FAC's damping adaptation). A
        no-op for gradient optimizers."""

    def epoch_logs(self) -> dict:
        """Values the Trainer adds to each epoch's logs (and so to ``History``), measured
        over the epoch's steps; reading them starts the next epoch's. None for gradient
        optimizers; K-FAC reports its damping and update norms (:meth:`KFAC.epoch_logs`)."""
        return {}

    def step(self) -> None:
        """One update from the gradients currently stored in the model."""
        flat = self._bound()
        lr = self.current_lr
        if not lr > 0:
            raise ValueError(f"lr: the schedule gave {lr!r} at step {self.step_count}; expected a value > 0")
        self.step_count += 1
        t = self.step_count
        if self._fused is not None and kernels.fusable(flat.params, flat.grads):
            clip = self._fused_clip
            self._fused(flat.params, flat.grads, t, lr, 1.0 if clip is None else clip.scale(flat.grads))
        else:
            self._chain_step(flat, t, lr)
        for constraint, bound in zip(self.constraints, self._bound_constraints):
            constraint.apply(bound)

    def _chain_step(self, flat, t, lr) -> None:
        if self._u is None:
            self._u = backend.xp.empty_like(flat.params)
            self._tmp = backend.xp.empty_like(flat.params)
        u = self._u
        u[...] = flat.grads
        for transform, state in zip(self.transforms, self.state):
            u = transform.update(u, state, flat.params, t, lr)
        kernels.axpy(flat.params, -1.0 if self._lr_inside else -lr, u, self._tmp)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Step count, epoch, the schedule's state (plain JSON data; empty for stateless
        schedules) and every transform's state arrays (copies)."""
        return {
            "step_count": self.step_count,
            "epoch": self.epoch,
            "schedule": self._lr.state_dict() if isinstance(self._lr, Schedule) else {},
            "state": [{k: backend.to_numpy(v).copy() for k, v in s.items() if not k.startswith("_")}
                      for s in self.state],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (``epoch`` and ``schedule`` optional)."""
        self._bound()
        if len(state["state"]) != len(self.state):
            raise ValueError(
                f"state: has {len(state['state'])} transform states, this optimizer has {len(self.state)}"
            )
        for mine, theirs in zip(self.state, state["state"]):
            for k, v in theirs.items():
                if k not in mine or mine[k].shape != v.shape:
                    raise ValueError(f"state: entry {k!r} does not fit this optimizer and model")
        for mine, theirs in zip(self.state, state["state"]):
            for k, v in theirs.items():
                mine[k][...] = backend.to_device(v)
        self.step_count = int(state["step_count"])
        self.epoch = int(state.get("epoch", self.epoch))
        if state.get("schedule") and isinstance(self._lr, Schedule):
            self._lr.load_state_dict(state["schedule"])

    def get_config(self):
        lr = self._lr
        if isinstance(lr, Schedule):
            lr = schedules.serialize(lr)
        elif callable(lr):
            lr = repr(lr)
        cfg = {"lr": lr}
        if type(self) is Optimizer:
            cfg = {"transforms": [transform_registry.serialize(t)
                                  for t in self.transforms[len(self.transforms) - self._user_transforms:]],
                   **cfg}
        for key in ("clip_norm", "clip_value", "max_norm"):
            if getattr(self, key) is not None:
                cfg[key] = getattr(self, key)
        return cfg

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if isinstance(config.get("lr"), dict):
            config["lr"] = schedules.get(config["lr"])
        if "transforms" in config:
            config["transforms"] = [transform_registry.get(t) for t in config["transforms"]]
        return cls(**config)
