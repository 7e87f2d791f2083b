"""The training loop: one loop for full-batch, mini-batch and stochastic descent."""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import _checks, backend, losses
from .. import metrics as metrics_mod
from .. import optim
from ..nn.regularizers import penalties as _penalties
from ..init import lsuv
from ._inputs import check_xy
from .best_weights import BestWeights
from .callbacks import CallbackHost, History


class NonFiniteLossWarning(RuntimeWarning):
    """Training stopped because the loss became NaN or infinite."""


class NonFiniteValidationWarning(RuntimeWarning):
    """The validation loss of an epoch was NaN or infinite (training goes on; monitors
    such as EarlyStopping count the epoch as no improvement)."""


_MODES = {"full": None, "full_batch": None, "batch": None, "stochastic": 1, "online": 1}


class Trainer(CallbackHost):
    """Trains a model with backpropagation.

    Parameters
    ----------
    model : a built or unbuilt :class:`bpnn.nn.Module` (usually ``Sequential``).
    loss : loss name, config, class or instance, default ``"softmax_cross_entropy"``.
    optimizer : optimizer name or instance (``bpnn.optim.Adam(lr=1e-3)``), default ``"adam"``.
    metrics : metric names; default the loss's (accuracy for classification losses).
    seed : int or Generator for shuffling; default the model's generator, so the model's
        one seed drives init, dropout and shuffling.

    Gradient-descent modes are chosen by ``fit``'s ``batch_size``: ``"full"`` (batch
    gradient descent: every step sees the whole training set), ``"stochastic"`` or 1
    (online: one sample per step), or an integer (mini-batch).
    """

    def __init__(self, model, loss="softmax_cross_entropy", optimizer="adam", metrics=None, seed=None):
        self.model = model
        self.loss = losses.get(loss)
        self.optimizer = optim.get(optimizer)
        names = self.loss.default_metrics if metrics is None else tuple(metrics)
        self.metrics = {}
        for m in names:  # a name, config dict, class, instance or callable; reported under its name
            fn = metrics_mod.get(m)
            self.metrics[m if isinstance(m, str) else getattr(fn, "__name__", type(fn).__name__)] = fn
        self.rng = getattr(model, "rng", None) if seed is None else backend.rng(seed)
        if self.rng is None:
            self.rng = backend.rng(None)

    # ------------------------------------------------------------------ data
    def _prepare(self, X, y, name_x="X", name_y="y"):
        X, y_arr = check_xy(self.model, X, y, name_x, name_y)
        model = self.model
        y_arr = self.loss.check_target(y_arr, model.output_shape[-1], name_y)
        if y_arr.dtype.kind == "f" or y_arr.ndim > 1:
            y_arr = y_arr.astype(model.dtype, copy=False)
        return backend.to_device(X.astype(model.dtype, copy=False)), backend.to_device(y_arr)

    @staticmethod
    def _batch_size(batch_size, n):
        if isinstance(batch_size, str):
            if batch_size not in _MODES:
                raise ValueError(f"batch_size: got {batch_size!r}; expected a positive int or one of "
                                 f"{', '.join(map(repr, _MODES))}")
            batch_size = _MODES[batch_size] or n
        _checks.positive("batch_size", batch_size, integer=True)
        return min(int(batch_size), n)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, epochs: int = 1, batch_size=32, validation_data=None,
            validation_split: float = 0.0, shuffle: bool = True, callbacks=(), verbose: bool = True,
            resume_from=None, n_restarts: int = 1, n_jobs: int = 1, augment=None,
            drop_last: bool = False) -> History:
        """Train for ``epochs`` passes over (X, y); return the :class:`History`.

        ``validation_data=(X_val, y_val)`` or ``validation_split`` (the last fraction
        of X, y before shuffling, as Keras) is evaluated after every epoch. ``verbose``
        shows a progress bar (tqdm). If the loss becomes NaN or infinite, training stops,
        a warning names the step and the first layer with a non-finite value or
        gradient (or, when only the loss overflowed, the parameter of largest magnitude),
        the weights of the best epoch so far are restored, and callbacks still get
        ``on_train_end``.

        ``resume_from`` names a checkpoint written by :class:`ModelCheckpoint`: weights,
        optimizer state, random generators, History and callback states are restored
        and training continues with the next epoch up to ``epochs`` — bit-identical to
        an uninterrupted run on CPU.

        The last batch of an epoch holds what is left (n mod ``batch_size`` samples);
        ``drop_last=True`` leaves those samples out of the epoch instead (they are
        different ones every epoch when shuffling). A last batch of one sample, which
        BatchNorm cannot normalize in training mode, is merged into the batch before it
        when the model has a BatchNorm layer (that batch then has ``batch_size + 1``
        samples), so an epoch never ends in that error.

        ``augment`` (optional) is called as ``augment(x_batch, rng)`` on every training batch
        (host NumPy arrays, the trainer's seeded Generator) and returns the batch to train
        on, e.g. a :class:`bpnn.data.ImageAugment` (random shifts, rotations, elastic
        distortion): fresh distortions every step, none in evaluation.

        ``n_restarts=k`` trains k copies of the model from different seeds (drawn from
        the trainer's generator; in parallel with ``n_jobs`` > 1 through joblib) and keeps
        one in ``self.model`` by the rule of ``bpnn.train.restarts``: the lowest loss
        of a run's final weights on the validation data (on the training data without
        validation data); a non-finite loss never wins. Every run's History, score and
        seed are kept in ``self.restart_histories``, ``restart_scores``,
        ``restart_seeds``, and the kept run's index in ``best_restart``.
        """
        if augment is not None and not callable(augment):
            raise ValueError(f"augment: got {augment!r}; expected a callable augment(x_batch, rng) -> x_batch")
        _checks.positive("n_restarts", n_restarts, integer=True)
        if n_restarts > 1:
            if resume_from is not None:
                raise ValueError("resume_from, n_restarts: resuming applies to one run, not to restarts")
            from .restarts import fit_restarts

            return fit_restarts(self, X, y, n_restarts, n_jobs, epochs=epochs, batch_size=batch_size,
                                validation_data=validation_data, validation_split=validation_split,
                                shuffle=shuffle, callbacks=callbacks, verbose=verbose, drop_last=drop_last,
                                **({} if augment is None else {"augment": augment}))
        _checks.positive("epochs", epochs, integer=True, allow_zero=True)
        _checks.in_range("validation_split", validation_split, 0.0, 1.0, high_open=True)
        if validation_split and validation_data is not None:
            raise ValueError("validation_split, validation_data: give one or the other, not both")
        if validation_split:
            n_val = int(math.floor(len(X) * validation_split))
            if n_val < 1 or n_val >= len(X):
                raise ValueError(f"validation_split: {validation_split} of {len(X)} samples leaves no "
                                 f"training or no validation samples")
            X_arr, y_arr = np.asarray(X), np.asarray(y)
            validation_data = (X_arr[-n_val:], y_arr[-n_val:])
            X, y = X_arr[:-n_val], y_arr[:-n_val]
        Xd, yd = self._prepare(X, y)
        val = None
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise ValueError("validation_data: expected a pair (X_val, y_val)")
            val = self._prepare(*validation_data, name_x="validation_data[0]", name_y="validation_data[1]")
        if not isinstance(drop_last, (bool, np.bool_)):
            raise ValueError(f"drop_last: got {drop_last!r}; expected True or False")
        n = len(Xd)
        bs = self._batch_size(batch_size, n)
        batches = self._batches(n, bs, bool(drop_last))
        model, loss, opt = self.model, self.loss, self.optimizer
        if resume_from is None:
            self._run_data_dependent_init(Xd)
        opt.attach(model)
        penalties = _penalties(model)  # L1/L2 terms of the loss; None (no per-step work) without any

        previous = self._run_state()
        cbs = self._start_run(callbacks)
        history = self.history
        start_epoch = 0
        if resume_from is not None:
            from .checkpoint import restore_checkpoint

            try:
                start_epoch = restore_checkpoint(resume_from, self, history, self.callbacks)
            except BaseException:
                self._restore_run_state(previous)  # a refused checkpoint leaves the trainer as it was
                raise
        self.initial_epoch = start_epoch
        # The best epoch by validation loss (training loss without validation data), so
        # that a non-finite loss falls back to it; before any epoch, the starting weights.
        # A resumed run continues the checkpoint's (older files hold none: the resumed weights).
        best = self.best_weights if resume_from is not None else None
        if best is None:
            best = BestWeights()
            best.save(self, None, math.inf)
        self.best_weights = best
        n_batches = len(batches)
        # Keras' `params`: what a callback needs to plan its work (e.g. LayerStats
        # picks the last batch of an epoch; LiveLossPlot leaves the bar to the trainer
        # when it shows its own).
        params = {"epochs": epochs, "steps_per_epoch": n_batches, "batch_size": bs, "samples": n,
                  "verbose": bool(verbose)}
        with cbs.running(params), _ProgressBar(verbose, epochs, n_batches) as progress:
            global_step = opt.step_count if resume_from is not None else 0  # a resumed run counts on
            for epoch in range(start_epoch, epochs):
                if self.stop_training:
                    break  # a callback stopped the run in on_train_begin (a resumed run that had stopped)
                opt.start_epoch(epoch)  # per-epoch schedules
                cbs.on_epoch_begin(epoch, {})
                order = self.rng.permutation(n) if shuffle else None
                sums = {"loss": 0.0, **{k: 0.0 for k in self.metrics}}
                if penalties is not None:
                    sums["penalty"] = 0.0  # History: `loss` is the data loss, `penalty` Σ R(θ)
                lr = opt.current_lr
                n_seen = 0
                for b, (lo, hi) in enumerate(batches):
                    if order is None:
                        xb, yb = Xd[lo:hi], yd[lo:hi]
                    else:
                        idx = backend.to_device(order[lo:hi])
                        xb, yb = Xd[idx], yd[idx]
                    if augment is not None:
                        xb = self._augmented(augment, xb)
                    if cbs.wants_batch_hooks:
                        cbs.on_batch_begin(b, {"size": len(xb)})
                    out = model.forward(xb, training=True)
                    value = float(loss.forward(out, yb))
                    if not math.isfinite(value):
                        model.backward(loss.backward(), input_grad=False)
                        self._stop_nonfinite(value, epoch, b, global_step, best, history, batch_x=xb)
                        self.stop_training = True
                        break
                    try:
                        opt.before_backward(model, loss, out, self.rng, (xb, yb))  # K-FAC; else a no-op
                        model.backward(loss.backward(), input_grad=False)
                        if penalties is not None:
                            sums["penalty"] += penalties.apply() * len(xb)  # adds ∂R/∂θ to the gradients
                        opt.step()
                    except optim.NonFiniteCurvatureError as exc:
                        self._stop_nonfinite(value, epoch, b, global_step, best, history, reason=str(exc))
                        self.stop_training = True
                        break
                    global_step += 1
                    m = len(xb)
                    n_seen += m
                    sums["loss"] += value * m
                    for k, fn in self.metrics.items():
                        sums[k] += float(fn(out, yb)) * m
                    if cbs.wants_batch_hooks:
                        cbs.on_batch_end(b, {"loss": value, "size": m})
                    progress.update(value)
                if history.stopped_reason is not None:
                    break  # non-finite loss: no epoch-end logs for the broken epoch; on_train_end still runs
                logs = {k: v / n_seen for k, v in sums.items()}
                if val is not None:
                    logs.update({f"val_{k}": v for k, v in self._evaluate(*val).items()})
                    if not math.isfinite(logs["val_loss"]):
                        warnings.warn(f"validation loss is {logs['val_loss']} at epoch {epoch} (training loss "
                                      f"{logs['loss']:.6g}); callbacks count it as no improvement",
                                      NonFiniteValidationWarning, stacklevel=2)
                logs["lr"] = lr
                logs.update(opt.epoch_logs())  # K-FAC: damping and update norms
                value = logs.get("val_loss", logs["loss"])
                if math.isfinite(value) and value < best.value:
                    best.save(self, epoch, value)
                cbs.on_epoch_end(epoch, logs)
                progress.epoch_done(epoch, logs)
                if self.stop_training:
                    break
        return history

    def _batches(self, n: int, bs: int, drop_last: bool) -> list:
        """``(start, stop)`` of each batch of an epoch over ``n`` samples (see ``fit``)."""
        stops = list(range(bs, n + 1, bs))
        if n % bs and not drop_last:
            stops.append(n)
            if n % bs == 1 and len(stops) > 1 and self._has_batchnorm():
                del stops[-2]  # one sample left: BatchNorm needs two, so it joins the batch before
        return list(zip([0, *stops[:-1]], stops))

    def _has_batchnorm(self) -> bool:
        from ..nn.batchnorm import BatchNorm

        return any(isinstance(m, BatchNorm) for m in self.model.modules())

    def _augmented(self, augment, xb):
        """``augment(batch, rng)`` on the host, checked and moved back to the backend."""
        out = np.asarray(augment(backend.to_numpy(xb), self.rng))
        if out.shape != tuple(xb.shape):
            raise ValueError(f"augment: returned a batch of shape {out.shape} for one of shape "
                             f"{tuple(xb.shape)}; it must keep the shape")
        return backend.to_device(out.astype(self.model.dtype, copy=False))

    def _run_data_dependent_init(self, Xd) -> None:
        pending = [m for m in self.model.modules() if m.needs_data_init]
        if not pending:
            return
        take = min(len(Xd), 512)
        idx = self.rng.choice(len(Xd), size=take, replace=False)
        lsuv(self.model, backend.to_numpy(Xd[backend.to_device(idx)]))
        for m in pending:
            m.mark_data_initialized()

    def _stop_nonfinite(self, value, epoch, batch, step, best, history, reason=None, batch_x=None) -> None:
        """Stop after a non-finite loss (``reason`` None: find the layer at fault, see
        :meth:`_nonfinite_culprit`) or a non-finite curvature estimate (``reason``: what
        K-FAC said, the loss itself finite): restore the best weights, record and warn."""
        if reason is not None:
            what = f"{reason} (epoch {epoch}, batch {batch}, step {step}; loss {value:.6g})"
        else:
            what = (f"non-finite loss ({value}) at epoch {epoch}, batch {batch} (step {step}); "
                    f"at fault: {self._nonfinite_culprit(batch_x)}")
        best.restore()
        restored = (f"weights restored from epoch {best.epoch} (loss {best.value:.6g})" if best.epoch is not None
                    else "weights restored to their values before training")
        message = f"{what}. Training stopped; {restored}."
        history.stopped_reason = message
        warnings.warn(message, NonFiniteLossWarning, stacklevel=3)

    def _nonfinite_culprit(self, batch_x=None) -> str:
        """Where a non-finite loss came from, in this order:

        1. the first parameter from the input side that is itself non-finite;
        2. else the first layer from the input side whose forward output on the batch
           ``batch_x`` is non-finite while its input is finite (the batch is run again,
           layer by layer, in training mode; random generators and buffers such as
           BatchNorm's running statistics are put back afterwards);
        3. else the first parameter from the output side whose gradient is non-finite;
        4. else the loss itself overflowed (outputs and gradients finite): the largest
           parameter is named.

        Once the loss is NaN every gradient is, so gradients alone would always blame
        the first parameter; the forward pass finds the layer where the values broke.
        """
        xp = backend.xp
        params = list(self.model.named_parameters())
        for name, p, _ in params:
            if not bool(xp.isfinite(p).all()):
                return f"parameter '{name}' is non-finite"
        if batch_x is not None:
            layer = self._first_nonfinite_output(batch_x)
            if layer is not None:
                return layer
        for name, _, g in reversed(params):
            if not bool(xp.isfinite(g).all()):
                return f"the gradient of '{name}' is non-finite (the first such from the output side)"
        largest, largest_abs = None, -1.0
        for name, p, _ in params:
            size = float(xp.abs(p).max()) if p.size else 0.0
            if size > largest_abs:
                largest, largest_abs = name, size
        # Every parameter, output and gradient is finite: the loss itself overflowed (the
        # usual way a too-large learning rate shows in float32).
        culprit = "no parameter, layer output or gradient is non-finite (the loss overflowed on this batch)"
        if largest is not None:
            culprit += f"; largest parameter '{largest}' (max |value| {largest_abs:.3g})"
        return culprit

    def _first_nonfinite_output(self, x):
        """The first layer from the input side whose output on ``x`` is non-finite, as a
        message; None when every output is finite."""
        from ..nn.containers import Sequential

        xp = backend.xp
        model = self.model
        gens = {id(g): (g, g.bit_generator.state) for g in (self.rng, getattr(model, "rng", None)) if g is not None}
        buffers = [(b, b.copy()) for _, b in model.named_buffers()]

        def walk(module, x, prefix):
            if isinstance(module, Sequential):
                x = xp.asarray(x, dtype=module.dtype)
                for name, child in module.children():
                    found, x = walk(child, x, f"{prefix}{name}.")
                    if found is not None:
                        return found, x
                return None, x
            y = module.forward(x, training=True)
            if not bool(xp.isfinite(y).all()):
                name = prefix[:-1] or type(module).__name__
                return f"layer '{name}' ({type(module).__name__}): its output is non-finite, its input finite", y
            return None, y

        try:
            with np.errstate(all="ignore"):
                return walk(model, x, "")[0]
        except Exception:  # a diagnosis must never hide the failure it explains
            return None
        finally:
            for g, state in gens.values():
                g.bit_generator.state = state
            for b, saved in buffers:
                b[...] = saved

    # ------------------------------------------------------------------ inference
    def _evaluate(self, Xd, yd, batch_size: int = 1024) -> dict:
        sums = {"loss": 0.0, **{k: 0.0 for k in self.metrics}}
        n = len(Xd)
        for i in range(0, n, batch_size):
            xb, yb = Xd[i:i + batch_size], yd[i:i + batch_size]
            out = self.model.forward(xb, training=False)
            m = len(xb)
            sums["loss"] += float(self.loss.forward(out, yb)) * m
            for k, fn in self.metrics.items():
                sums[k] += float(fn(out, yb)) * m
        return {k: v / n for k, v in sums.items()}

    def evaluate(self, X, y, batch_size: int = 1024) -> dict:
        """Loss and metrics on (X, y) in evaluation mode, e.g. ``{"loss": .., "accuracy": ..}``."""
        _checks.positive("batch_size", batch_size, integer=True)
        return self._evaluate(*self._prepare(X, y), batch_size=batch_size)

    def predict(self, X, batch_size: int = 1024):
        """The model's outputs for X (logits for the cross-entropy losses), as a NumPy array."""
        X = _checks.array("X", X, min_ndim=2)
        if self.model.built and X.shape[1:] != self.model.input_shape:
            raise ValueError(f"X: samples have shape {X.shape[1:]} but the model expects {self.model.input_shape}")
        return self.model.predict(X, batch_size)


class _ProgressBar:
    """tqdm progress bar over batches, one line per epoch; silent when not verbose. A
    context manager: the bar is closed on leaving, also on an exception."""

    def __init__(self, verbose, epochs, n_batches):
        self.bar = None
        self.verbose = verbose
        self.epochs, self.n_batches = epochs, n_batches
        self._count = 0

    def update(self, loss):
        if not self.verbose:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.n_batches, leave=True, unit="batch", dynamic_ncols=True)
        self.bar.update(1)
        self._count += 1
        if self._count % 16 == 0:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def epoch_done(self, epoch, logs):
        if not self.verbose or self.bar is None:
            return
        self.bar.set_description(f"epoch {epoch + 1}/{self.epochs}")
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
        self.bar.close()
        self.bar = None

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
