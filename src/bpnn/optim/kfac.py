"""K-FAC: natural-gradient descent with a Kronecker-factored Fisher (Martens & Grosse 2015)."""
from __future__ import annotations

import math

import numpy as np

from .. import _checks, backend
from ..nn.conv import Conv2D
from ..nn.dense import Dense
from .optimizer import NonFiniteCurvatureError, Optimizer, optimizers
from .transforms import AddWeightDecay, Momentum

#: ``fisher=`` values: the true Fisher (targets sampled from the model) or the empirical one.
FISHERS = ("true", "empirical")
#: ``damping_form=`` values (see :class:`KFAC`).
DAMPING_FORMS = ("tikhonov_factored", "eigen")

#: MSE reductions: c in ∂L/∂z = c·(z − y) (N samples, K outputs), and whether the loss
#: averages over samples. An unknown reduction is refused by name.
_MSE_SCALE = {"mean": (lambda n, k: 2.0 / (n * k), True), "half_mean": (lambda n, k: 1.0 / (n * k), True),
              "half_sum": (lambda n, k: 1.0, False), "sum": (lambda n, k: 2.0, False)}


def _loss_kind(loss) -> str:
    name = type(loss).__name__
    if name == "SoftmaxCrossEntropy":
        return "softmax"
    if name == "BinaryCrossEntropyWithLogits":
        return "bernoulli"
    if name == "MSE":
        if getattr(loss, "reduction", None) not in _MSE_SCALE:
            raise ValueError(f"loss: K-FAC does not know MSE(reduction={getattr(loss, 'reduction', None)!r}); "
                             f"known reductions: {', '.join(map(repr, _MSE_SCALE))}")
        return "gaussian"
    raise ValueError(f"loss: K-FAC cannot sample targets from the model's predictive distribution for "
                     f"{name}; fisher='true' supports softmax_cross_entropy, "
                     f"binary_cross_entropy_with_logits and mse; use fisher='empirical' for other losses")


def averages_over_samples(loss) -> bool:
    """Whether ``loss`` is a mean over the samples of the batch (False: a sum)."""
    if type(loss).__name__ == "MSE":
        _loss_kind(loss)
        return _MSE_SCALE[loss.reduction][1]
    return getattr(loss, "reduction", "mean") not in ("sum", "half_sum")


def sampled_output_grad(loss, z, rng):
    """∂L/∂z of the batch loss ``loss`` at outputs ``z`` (N, K) for targets y drawn from the
    model's predictive distribution p(y | z) — the distribution whose negative
    log-likelihood is the per-sample loss — so that E_y[g_n g_nᵀ] = (1/s) ∂²L/∂z_n² with
    s = N for losses that average over samples and s = 1 for sums:

    - softmax cross-entropy: y ~ Categorical(softmax(z)), g = (softmax(z) − e_y)/N;
    - binary cross-entropy with logits (a mean over N·K entries, ∂²L/∂z_n² =
      diag(σ(1 − σ))/(N K)): y ~ Bernoulli(σ(z)), g = (σ(z) − y)/(N √K) — the loss's own
      gradient (σ − y)/(N K) times √K, as curvlinops scales it;
    - MSE with ∂L/∂z = c (z − y): y ~ N(z, σ² I) with σ² = 1/(c s), g = −c σ ε.
    """
    xp = backend.xp
    kind = _loss_kind(loss)
    n, k = z.shape[0], int(np.prod(z.shape[1:]))
    if kind == "softmax":
        p = xp.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        u = backend.to_device(rng.random((n, 1)))
        y = (xp.cumsum(p, axis=1) < u).sum(axis=1)
        y = xp.minimum(y, z.shape[1] - 1)
        g = p
        g[xp.arange(n), y] -= 1
        return g / n
    if kind == "bernoulli":
        sig = 0.5 * (1 + xp.tanh(0.5 * z))
        y = (backend.to_device(rng.random(z.shape)) < sig).astype(z.dtype)
        return (sig - y) / (n * math.sqrt(k))
    scale, mean = _MSE_SCALE[loss.reduction]
    c = scale(n, k)
    s = n if mean else 1
    eps = backend.to_device(rng.standard_normal(z.shape)).astype(z.dtype)
    return (-c / math.sqrt(c * s)) * eps


def _spd_inverse(m):
    """The inverse of a symmetric positive definite float64 matrix on the host: Cholesky
    and its inverse through LAPACK (``potrf`` + ``potri``, n³ flops against an LU
    inverse's 8n³/3) when SciPy is there, else (and on CuPy) ``linalg.inv``. Raises
    LinAlgError when m is not positive definite."""
    xp = backend.xp
    if xp is np:
        try:
            from scipy.linalg import lapack
        except ImportError:
            lapack = None
        if lapack is not None:
            c, info = lapack.dpotrf(m, lower=False, clean=False, overwrite_a=True)
            if info == 0:
                c, info = lapack.dpotri(c, lower=False, overwrite_c=True)
            if info != 0:
                raise np.linalg.LinAlgError(f"the matrix is not positive definite (LAPACK info {info})")
            inverse = np.triu(c)  # potri fills the upper triangle; mirror it
            inverse += np.triu(c, 1).T
            return inverse
    return xp.linalg.inv(m)


class _DampedFactor:
    """(F + shift·I)⁻¹ of one Kronecker factor F, applied from either side by a matrix
    product in the model's dtype.

    The inverse is formed once per inverse update and change of λ, in float64 from F's
    Cholesky factor (:func:`_spd_inverse`). The products go through NumPy's own BLAS:
    SciPy brings a second OpenBLAS with its own thread pool, whose calls each step would
    compete with NumPy's threads (see ``benchmarks/README.md``), so SciPy is used only
    for the factorization. A factor that is not positive definite after
    the shift, or a non-finite inverse, stops training with the layer and step named."""

    def __init__(self, m64, shift, dtype, what):
        xp = backend.xp
        damped = m64.copy()
        damped[xp.diag_indices(len(damped))] += shift
        try:
            inverse = _spd_inverse(damped)
            problem = None if bool(xp.isfinite(inverse).all()) else "non-finite entries"
        except (np.linalg.LinAlgError, ValueError) as exc:
            problem = str(exc)
        if problem is not None:
            raise NonFiniteCurvatureError(f"K-FAC: the damped inverse of {what} failed: {problem}")
        self.inverse = inverse.astype(dtype)

    def right(self, m):
        """m (F + shift·I)⁻¹ for m (k, n)."""
        return m @ self.inverse

    def left(self, m):
        """(F + shift·I)⁻¹ m for m (n, k)."""
        return self.inverse @ m


class _Block:
    """One Dense or Conv2D layer under K-FAC: where its weight and bias sit in the flat
    vectors, and W̄ as a matrix (rows: fan-in then the bias, columns: outputs)."""

    def __init__(self, name, layer, w_slice, b_slice):
        self.name, self.layer, self.w_slice, self.b_slice = name, layer, w_slice, b_slice
        self.conv = isinstance(layer, Conv2D)
        w = layer.params["weight"]
        self.w_shape = tuple(w.shape)
        if self.conv:
            o, c, kh, kw = w.shape
            self.fan_in, self.n_out = kh * kw * c, o
        else:
            self.fan_in, self.n_out = w.shape
        self.dim_a = self.fan_in + (b_slice is not None)
        self._probe = None

    def low_rank_pays(self, rows: int) -> bool:
        """Whether ΔW̄ = (Ā A⁻¹)ᵀ (G_out G⁻¹) from the batch's ``rows`` input rows Ā and
        output gradients G_out costs fewer multiply-adds, rows·(a² + g² + a·g), than
        A⁻¹ ∇W̄ G⁻¹ from the gradient matrix, a·g·(a + g) (a = dim_a, g = n_out). Dense
        layers only: a convolution's rows are samples × output positions."""
        a, g = self.dim_a, self.n_out
        return not self.conv and rows * (a * a + g * g + a * g) < a * g * (a + g)

    def rows_with_ones(self, x):
        """Ā = [x, 1] (rows, dim_a): the inputs with the bias's 1 appended (x itself when
        the layer has no bias)."""
        if self.b_slice is None:
            return x
        abar = backend.xp.empty((x.shape[0], self.dim_a), dtype=x.dtype)
        abar[:, :-1] = x
        abar[:, -1] = 1
        return abar

    def is_outer_product(self, grad, abar, g_out) -> bool:
        """Whether the gradient matrix ∇W̄ is Āᵀ G_out, the batch loss's own gradient, checked
        with one fixed random probe r: ∇W̄ r = Āᵀ (G_out r) to √ε of |Ā|ᵀ(|G_out| |r|). It is
        not when anything else reached the gradient (a regularizer's term, a DropConnect
        mask, a hand-written change between backward and step)."""
        xp = backend.xp
        if self._probe is None or self._probe.dtype != grad.dtype:
            self._probe = xp.asarray(np.random.default_rng(0).standard_normal(self.n_out), dtype=grad.dtype)
        r = self._probe
        gap = xp.abs(grad @ r - abar.T @ (g_out @ r))
        bound = xp.abs(abar).T @ (xp.abs(g_out) @ xp.abs(r))
        return bool((gap <= math.sqrt(float(np.finfo(grad.dtype).eps)) * bound).all())

    def matrix(self, flat_vector):
        """W̄ (dim_a, n_out) of a flat vector (parameters or gradients)."""
        xp = backend.xp
        w = flat_vector[self.w_slice].reshape(self.w_shape)
        if self.conv:
            w = w.transpose(2, 3, 1, 0).reshape(self.fan_in, self.n_out)
        if self.b_slice is None:
            return w
        return xp.concatenate([w, flat_vector[self.b_slice][None, :]], axis=0)

    def write(self, flat_vector, mat) -> None:
        """Write W̄ (dim_a, n_out) back into the layer's slices of a flat vector."""
        w = mat[:self.fan_in]
        if self.conv:
            o, c, kh, kw = self.w_shape
            w = w.reshape(kh, kw, c, o).transpose(3, 2, 0, 1)
        flat_vector[self.w_slice] = w.reshape(-1)
        if self.b_slice is not None:
            flat_vector[self.b_slice] = mat[self.fan_in]


@optimizers.register("kfac", "k_fac")
class KFAC(Optimizer):
    r"""K-FAC: θ ← θ − η · (momentum of) F̂⁻¹ ∇L, F̂ block-diagonal over layers, each block
    a Kronecker product A ⊗ G (Martens & Grosse 2015; convolution layers as KFC, Grosse &
    Martens 2016; names and defaults of kfac-pytorch (gpauloski) and KFAC-Pytorch).

    **Blocks.** Each trainable Dense and Conv2D layer is one block with W̄ = [W; b]
    ((fan_in + 1, n_out): bpnn's Dense weight is (n_in, n_out), y = x W + b; a Conv2D
    kernel is taken as W_mat = W.transpose(2, 3, 1, 0).reshape(kh·kw·C, O), the im2col
    layout), bias folded in as an appended 1 in the inputs ā = [a; 1]. Every other
    parameter (BatchNorm, ...) takes the same lr, momentum and weight decay on its plain
    gradient. With N samples in the batch, ``|T|`` output positions per sample (1 for Dense;
    H_out·W_out for Conv2D, one row of X_col per position) and g the gradient of the
    batch loss L w.r.t. the layer's pre-activation outputs::

        A = (1/N) Σ_{n,t} ā_{n,t} ā_{n,t}ᵀ,      G = (s/|T|) Σ_{n,t} g_{n,t} g_{n,t}ᵀ,

    with s = N when L averages over samples (``reduction="mean"``, cross-entropies) and
    s = 1 when it sums. For a mean loss G = (1/N) Σ_n (N g_n)(N g_n)ᵀ: N g_n is the
    gradient of the n-th sample's own loss, so A ⊗ G approximates the Fisher of the *mean*
    loss, E_n[∇ℓ_n ∇ℓ_nᵀ] — KFAC-Pytorch's convention (``batch_averaged=True``) and
    curvlinops' ``KFACLinearOperator`` for a loss with ``reduction="mean"`` (the tests
    match its factors for cross-entropy, and for MSE with ``reduction="sum"``; for a mean
    MSE or binary CE over K outputs curvlinops' *empirical* G is K times ours, as it
    counts each output as a loss term; the true-Fisher sampling below matches its MC
    Fisher's scaling). For the true Fisher, E[G] is the per-sample loss's Hessian
    w.r.t. the outputs averaged over samples (the GGN). For Conv2D the
    product A ⊗ G equals KFC's Ω ⊗ Γ (and KFAC-Pytorch's); the split is KFC's (A sums over
    positions, G averages), which only matters for π below. With vec the row-major
    flattening of W̄, vec(∇W̄) = Σ ā ⊗ g, so the block is ``np.kron(A, G)``.

    **Fisher.** ``fisher="true"`` (default): g comes from a second backward pass through
    the layers' own backward, of the loss at targets sampled from the model's predictive
    distribution (:func:`sampled_output_grad`: softmax → categorical, binary CE →
    Bernoulli, MSE → Gaussian); then the Trainer's usual backward gives ∇L. Cost: one
    extra backward per factor-update step, in which Dense and Conv2D skip their weight
    gradients (``Module.output_grad_only``). ``fisher="empirical"``: g are the output
    gradients of the real backward (no extra pass; biased: it is the gradients' second
    moment, not the curvature).

    **Statistics.** Every ``factor_update_steps`` steps (from the first): A ← ε A + (1 − ε)
    A_batch, G alike, ε = ``factor_decay``; the first update sets A = A_batch. Every
    ``inv_update_steps`` steps the inverses are updated from the factors of that moment:
    the factored form inverts A + π√λ I and G + √λ/π I (float64, once per update or
    change of λ) and preconditions each step with two products; the eigen form
    eigendecomposes A = Q_A diag(d_A) Q_Aᵀ, G = Q_G diag(d_G) Q_Gᵀ (negative
    rounding-level eigenvalues clipped to 0) and goes through the eigenbases each step.

    **Preconditioning** with λ = ``damping``, V = Q_Aᵀ ∇W̄ Q_G:

    - ``damping_form="tikhonov_factored"`` (default; Martens & Grosse §6.3, tensorflow/kfac):
      ΔW̄ = (A + π√λ I)⁻¹ ∇W̄ (G + √λ/π I)⁻¹ = Q_A [V / ((d_A + π√λ)(d_G + √λ/π)ᵀ)] Q_Gᵀ,
      π = √((tr A / dim A) / (tr G / dim G)) (π = 1 if either trace is 0);
    - ``damping_form="eigen"``: exactly vec(ΔW̄) = (A ⊗ G + λ I)⁻¹ vec(∇W̄),
      ΔW̄ = Q_A [V / (d_A d_Gᵀ + λ)] Q_Gᵀ (as kfac-pytorch's eigen method and EKFAC).

    How the factored form is computed: the damped factors are inverted in float64 at each
    inverse update (through their Cholesky factors when SciPy is installed) and applied by
    products in the model's dtype. For a
    Dense layer whose batch has fewer rows than its widths make worthwhile, ∇W̄ = Āᵀ G_out
    (Ā the N input rows with their 1, G_out the output gradients of the real backward), so
    ΔW̄ = (Ā (A + π√λ I)⁻¹)ᵀ (G_out (G + √λ/π I)⁻¹): N·(a² + g² + a·g) multiply-adds
    instead of a·g·(a + g) (a = fan_in + 1, g = n_out). This form is used only where one
    random probe confirms that the stored gradient is that product (no regularizer term,
    DropConnect mask or hand-made change in it); otherwise the gradient matrix is used.

    **Update** (KFAC-Pytorch's order): KL clipping scales every block's ΔW̄ by
    ν = min(1, √(κ / (η² Σ_blocks ⟨ΔW̄, ∇W̄⟩))), κ = ``kl_clip`` (None: no clipping); then
    on the whole vector u (ΔW̄ for the blocks, ∇θ elsewhere): u ← u + w θ
    (w = ``weight_decay``), b ← μ b + u (torch form, b₁ = u; μ = ``momentum``), θ ← θ − η b.

    **Adaptive damping** (``adapt_damping=True``; off by default): every ``adapt_interval``
    steps T₁, λ follows the Levenberg–Marquardt rule of Martens & Grosse §6.5 from the
    reduction ratio ρ of the step on its own batch (see :meth:`_adapt`; two extra
    forwards in evaluation mode, the Trainer passes the batch). The quadratic model uses
    the K-FAC blocks, not the exact Fisher.

    Parameters (defaults): ``lr`` 0.01 (a number or schedule), ``damping`` 1e-3,
    ``momentum`` 0.9, ``factor_decay`` 0.95 (``stat_decay``), ``factor_update_steps`` 1
    (T_cov), ``inv_update_steps`` 10 (T_inv), ``kl_clip`` 1e-3, ``weight_decay`` 0,
    ``fisher`` ``"true"``, ``damping_form`` ``"tikhonov_factored"``, ``adapt_damping`` False,
    ``adapt_interval`` 5, ``min_damping`` 1e-8.

    **Use.** ``Trainer(model, loss=..., optimizer=bpnn.optim.KFAC(...))``. In a hand-written
    loop, call :meth:`before_backward` between the loss's forward and the model's backward::

        out = model.forward(x, training=True); loss.forward(out, y)
        opt.before_backward(model, loss, out, rng, batch=(x, y))
        model.backward(loss.backward()); opt.step()

    Factors, the factors or eigendecompositions of the last inverse update, damping and
    counters are part of :meth:`state_dict`, so
    checkpoints resume exactly. A model with a module used at several places (weight
    sharing) is refused. A non-finite factor raises :class:`NonFiniteCurvatureError` naming the
    layer and step.
    """

    def __init__(self, lr=0.01, damping: float = 1e-3, momentum: float = 0.9, factor_decay: float = 0.95,
                 factor_update_steps: int = 1, inv_update_steps: int = 10, kl_clip=1e-3,
                 weight_decay: float = 0.0, fisher: str = "true", damping_form: str = "tikhonov_factored",
                 adapt_damping: bool = False, adapt_interval: int = 5, min_damping: float = 1e-8):
        self._damping = float(_checks.positive("damping", damping))
        self.momentum = float(_checks.in_range("momentum", momentum, 0.0, 1.0, high_open=True))
        self.factor_decay = float(_checks.in_range("factor_decay", factor_decay, 0.0, 1.0, high_open=True))
        self.factor_update_steps = int(_checks.positive("factor_update_steps", factor_update_steps, integer=True))
        self.inv_update_steps = int(_checks.positive("inv_update_steps", inv_update_steps, integer=True))
        self.kl_clip = None if kl_clip is None else float(_checks.positive("kl_clip", kl_clip))
        self.weight_decay = float(_checks.positive("weight_decay", weight_decay, allow_zero=True))
        self.fisher = _checks.one_of("fisher", fisher, FISHERS)
        self.damping_form = _checks.one_of("damping_form", damping_form, DAMPING_FORMS)
        if not isinstance(adapt_damping, bool):
            raise ValueError(f"adapt_damping: got {adapt_damping!r}; expected True or False")
        self.adapt_damping = adapt_damping
        self.adapt_interval = int(_checks.positive("adapt_interval", adapt_interval, integer=True))
        self.min_damping = float(_checks.positive("min_damping", min_damping))
        super().__init__([AddWeightDecay(self.weight_decay), Momentum(self.momentum)], lr)
        self._blocks: list[_Block] = []
        self._pending = None  # (N, s) while a factor update waits for the real gradients' G
        self._batch = None  # (model, x, y, loss) of this step, for the damping adaptation
        self._inverses: dict = {}  # block -> (key, damped inverses): derived, see _damped_inverses
        #: ρ of the last damping adaptation (None before the first)
        self.last_reduction_ratio = None
        self._sums = [0, 0.0, 0.0, 0.0]  # steps, Σ ‖η b‖, Σ ‖ΔW̄‖ (natural gradient), Σ ν since epoch_logs

    # ------------------------------------------------------------------ binding
    def attach(self, model) -> "KFAC":
        """Bind to ``model`` and find its K-FAC blocks (trainable Dense and Conv2D layers);
        a model without one is refused."""
        flat = model.flat_parameters()
        if flat is self._flat:
            return self
        shared = [m for m in model.modules() if m.uses > 1]
        if shared:
            # one kept input and output gradient per layer object, and one backward per forward
            # for a shared module's saved state: K-FAC would read another use's statistics
            raise ValueError(f"model: K-FAC does not support a module used at several places (weight "
                             f"sharing); {type(shared[0]).__name__} occurs {shared[0].uses} times")
        names = {id(p): name for name, p, _ in model.named_parameters(trainable_only=True)}
        blocks, seen = [], set()
        for m in model.modules():
            if not isinstance(m, (Dense, Conv2D)) or not m.trainable or id(m) in seen:
                continue
            seen.add(id(m))
            wname = names[id(m.params["weight"])]
            bname = names[id(m.params["bias"])] if "bias" in m.params else None
            blocks.append(_Block(wname[:-len("weight")].rstrip(".") or type(m).__name__, m,
                                 flat.slices[wname], flat.slices[bname] if bname else None))
        if not blocks:
            raise ValueError(f"model: K-FAC needs at least one trainable Dense or Conv2D layer; "
                             f"{type(model).__name__} has none (layers: "
                             f"{sorted({type(m).__name__ for m in model.modules()})})")
        super().attach(model)
        self._blocks = blocks
        xp = backend.xp
        for b in blocks:
            da, dg = b.dim_a, b.n_out
            st = {"A": xp.zeros((da, da), dtype=flat.params.dtype), "G": xp.zeros((dg, dg), dtype=flat.params.dtype)}
            if self.damping_form == "eigen":  # the eigendecompositions of the last inverse update
                st.update(QA=xp.zeros((da, da)), dA=xp.zeros(da), QG=xp.zeros((dg, dg)), dG=xp.zeros(dg))
            else:  # the factors as they were at the last inverse update
                st.update(A_last=xp.zeros_like(st["A"]), G_last=xp.zeros_like(st["G"]))
            self.state.append(st)
        # counters: factor updates so far, eigendecompositions so far; the damping in use
        self.state.append({"counters": xp.zeros(2), "damping": xp.full(1, self._damping)})
        self._pending = None
        self._inverses = {}
        return self

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._inverses = {}  # derived from the state just replaced

    @property
    def damping(self) -> float:
        """λ in use (the state's value once attached, so a checkpoint restores it); setting
        it acts from the next step."""
        if self._flat is not None:
            return float(self._kfac_state["damping"][0])
        return self._damping

    @damping.setter
    def damping(self, value) -> None:
        self._damping = float(_checks.positive("damping", value))
        if self._flat is not None:
            self._kfac_state["damping"][0] = self._damping

    @property
    def _kfac_state(self):
        return self.state[-1]

    def _block_state(self, i):
        return self.state[len(self.transforms) + i]

    # ------------------------------------------------------------------ statistics
    def before_backward(self, model, loss, output, rng=None, batch=None) -> None:
        """Collect the factors when this step updates them (every ``factor_update_steps``):
        A from the layers' inputs of this forward and, for ``fisher="true"``, G from one
        backward of targets sampled from the model (``rng``: a NumPy Generator; default
        the model's). For ``fisher="empirical"`` G is read in :meth:`step` from the real
        backward, which keeps the layers' output gradients for it. With ``adapt_damping``,
        ``batch`` = (x, y) of this step is kept for the reduction ratio (the Trainer passes it)."""
        self._bound()
        self._batch = None
        if self.adapt_damping and self.step_count % self.adapt_interval == 0:
            if batch is None:
                raise ValueError("batch: adapt_damping=True needs this step's (x, y): call "
                                 "optimizer.before_backward(model, loss, output, rng, batch=(x, y))")
            self._batch = (model, batch[0], batch[1], loss)
        n = int(output.shape[0])
        if self.step_count % self.factor_update_steps == 0:
            s = n if averages_over_samples(loss) else 1
            if self.fisher == "true":
                rng = rng if rng is not None else (getattr(model, "rng", None) or backend.rng(None))
                g = sampled_output_grad(loss, output, rng)
                for b in self._blocks:
                    b.layer.keep_output_grad = b.layer.output_grad_only = True
                try:
                    model.backward(g, input_grad=False)
                    self._update_factors(n, s)
                finally:
                    self._release()
            else:
                for b in self._blocks:
                    b.layer.keep_output_grad = True
                self._pending = (n, s)
        if self.damping_form != "eigen":  # the real backward keeps G_out where the low-rank form pays
            for b in self._blocks:
                if b.low_rank_pays(n):
                    b.layer.keep_output_grad = True

    def _release(self) -> None:
        for b in self._blocks:
            b.layer.keep_output_grad = b.layer.output_grad_only = False
            b.layer.output_grad = None

    def _update_factors(self, n, s) -> None:
        xp = backend.xp
        first = self._kfac_state["counters"][0] == 0
        eps = self.factor_decay
        for i, b in enumerate(self._blocks):
            st = self._block_state(i)
            x = b.layer.input_rows()
            g = b.layer.output_grad
            if g is None:
                raise RuntimeError(f"KFAC: layer '{b.name}' kept no output gradient; was it used in the "
                                   f"forward of this step?")
            positions = g.shape[0] // n
            with np.errstate(over="ignore", invalid="ignore"):  # checked below, with the layer named
                if b.b_slice is None:
                    a_new = x.T @ x
                else:  # ā = [a; 1]: Σ ā āᵀ = [[Σ a aᵀ, Σ a], [Σ aᵀ, rows]]
                    a_new = xp.empty((b.dim_a, b.dim_a), dtype=x.dtype)
                    a_new[:-1, :-1] = x.T @ x
                    a_new[:-1, -1] = a_new[-1, :-1] = x.sum(axis=0)
                    a_new[-1, -1] = x.shape[0]
                a_new /= n
                g_new = (g.T @ g) * (s / positions)
            for key, new in (("A", a_new), ("G", g_new)):
                if not bool(xp.isfinite(new).all()):
                    raise NonFiniteCurvatureError(
                        f"K-FAC factor {key} of layer '{b.name}' is non-finite at step {self.step_count}")
                if first:
                    st[key][...] = new
                else:
                    st[key] *= eps
                    st[key] += (1 - eps) * new
        self._kfac_state["counters"][0] += 1

    def _update_inverses(self) -> None:
        """The inverse update: the eigen form eigendecomposes A and G; the factored form
        keeps A and G as they are now, and its damped inverses are formed from them on
        their first use (:meth:`_damped_inverses`)."""
        xp = backend.xp
        for i, b in enumerate(self._blocks):
            st = self._block_state(i)
            if self.damping_form != "eigen":
                st["A_last"][...] = st["A"]
                st["G_last"][...] = st["G"]
                continue
            for f, q, d in (("A", "QA", "dA"), ("G", "QG", "dG")):
                try:
                    evals, evecs = xp.linalg.eigh(st[f].astype(xp.float64))
                except (np.linalg.LinAlgError, ValueError) as exc:
                    raise NonFiniteCurvatureError(f"K-FAC: the eigendecomposition of factor {f} of layer "
                                                  f"'{b.name}' failed at step {self.step_count}: {exc}") from None
                if not (bool(xp.isfinite(evals).all()) and bool(xp.isfinite(evecs).all())):
                    raise NonFiniteCurvatureError(f"K-FAC: the eigendecomposition of factor {f} of layer "
                                                  f"'{b.name}' is non-finite at step {self.step_count}")
                st[q][...] = evecs
                st[d][...] = xp.maximum(evals, 0.0)
        self._kfac_state["counters"][1] += 1
        self._inverses = {}

    def precondition(self, i: int, grad):
        """ΔW̄ for block ``i`` from its gradient matrix ∇W̄ (dim_a, n_out) with the factors of
        the last inverse update and the current damping (see the class docstring).

        The factored form is two products with the damped inverses (A + π√λ I)⁻¹ and
        (G + √λ/π I)⁻¹ in the gradient's dtype (:meth:`_damped_inverses`); the eigen form
        goes through the eigenbases each step, as its division is not a product of two
        factors."""
        if self.damping_form != "eigen":
            a_inv, g_inv = self._damped_inverses(i, grad.dtype)
            return g_inv.right(a_inv.left(grad))
        st = self._block_state(i)
        lam = float(self._kfac_state["damping"][0])
        qa, da, qg, dg = st["QA"], st["dA"], st["QG"], st["dG"]
        v = qa.T @ grad.astype(qa.dtype) @ qg
        v /= da[:, None] * dg[None, :] + lam
        return qa @ v @ qg.T

    def _damped_inverses(self, i: int, dtype):
        """The damped factors (A + π√λ I)⁻¹ and (G + √λ/π I)⁻¹ of block ``i`` as
        :class:`_DampedFactor`, A and G as of the last inverse update, factored in float64
        and kept in ``dtype`` while those factors and λ stay."""
        xp = backend.xp
        st = self._block_state(i)
        lam = float(self._kfac_state["damping"][0])
        key = (int(self._kfac_state["counters"][1]), lam, dtype)
        cached = self._inverses.get(i)
        if cached is not None and cached[0] == key:
            return cached[1]
        a, g = st["A_last"].astype(xp.float64), st["G_last"].astype(xp.float64)
        ta, tg = float(xp.trace(a)) / len(a), float(xp.trace(g)) / len(g)
        pi = math.sqrt(ta / tg) if ta > 0 and tg > 0 else 1.0
        root = math.sqrt(lam)
        where = f"layer '{self._blocks[i].name}' at step {self.step_count}"
        pair = (_DampedFactor(a, pi * root, dtype, f"factor A of {where}"),
                _DampedFactor(g, root / pi, dtype, f"factor G of {where}"))
        self._inverses[i] = (key, pair)
        return pair

    # ------------------------------------------------------------------ step
    def step(self) -> None:
        """One K-FAC update from the gradients stored in the model (see the class docstring)."""
        flat = self._bound()
        lr = self.current_lr
        if not lr > 0:
            raise ValueError(f"lr: the schedule gave {lr!r} at step {self.step_count}; expected a value > 0")
        try:
            self._step(flat, lr)
        finally:
            self._pending = None
            self._release()

    def _step(self, flat, lr) -> None:
        counters = self._kfac_state["counters"]
        if self._pending is not None:
            self._update_factors(*self._pending)
        if counters[0] == 0:
            raise RuntimeError("KFAC.step: no curvature statistics yet; call optimizer.before_backward(model, "
                               "loss, output) after the loss's forward and before model.backward, as the "
                               "Trainer does")
        if self.step_count % self.inv_update_steps == 0 or counters[1] == 0:
            self._update_inverses()
        self.step_count += 1
        t = self.step_count
        xp = backend.xp
        if self._u is None:
            self._u = xp.empty_like(flat.params)
            self._tmp = xp.empty_like(flat.params)
        adapt, self._batch = self._batch, None
        u = self._u
        u[...] = flat.grads
        vg = natural2 = 0.0  # ⟨ΔW̄, ∇W̄⟩ and ‖ΔW̄‖² summed over the blocks (dot products: no temporaries)
        for i, b in enumerate(self._blocks):
            grad = b.matrix(flat.grads)
            delta = self._low_rank(i, grad)
            if delta is None:
                delta = self.precondition(i, grad)
            vg += float(xp.vdot(delta, grad))
            natural2 += float(xp.vdot(delta, delta))
            b.write(u, delta)
        if adapt is not None:  # after the blocks: its forward replaces the layers' kept inputs
            h_before = self._eval_loss(adapt)
            before = flat.params.copy()
        natural = math.sqrt(natural2)
        nu = 1.0
        if self.kl_clip is not None and vg * lr * lr > 0:
            nu = min(1.0, math.sqrt(self.kl_clip / (vg * lr * lr)))
            if nu < 1.0:
                for b in self._blocks:
                    u[b.w_slice] *= nu
                    if b.b_slice is not None:
                        u[b.b_slice] *= nu
        for transform, state in zip(self.transforms, self.state):
            u = transform.update(u, state, flat.params, t, lr)
        u *= lr
        flat.params -= u
        sums = self._sums
        sums[0] += 1
        sums[1] += float(backend.xp.sqrt(u @ u))
        sums[2] += natural
        sums[3] += nu
        if adapt is not None:
            self._adapt(flat, before, h_before, self._eval_loss(adapt))

    def _low_rank(self, i: int, grad):
        """ΔW̄ of block ``i`` as (Ā (A + π√λ I)⁻¹)ᵀ (G_out (G + √λ/π I)⁻¹): equal to
        :meth:`precondition` of ∇W̄ = Āᵀ G_out, in rows·(a² + g² + a·g) multiply-adds
        instead of a·g·(a + g) (784-800 at batch 128: a quarter). None where the
        layer kept no G_out this step, the dense form is cheaper, or the gradient is not
        that product (:meth:`_Block.is_outer_product`)."""
        b = self._blocks[i]
        g_out = b.layer.output_grad
        if self.damping_form == "eigen" or g_out is None or not b.low_rank_pays(g_out.shape[0]):
            return None
        abar = b.rows_with_ones(b.layer.input_rows())
        if abar.shape[0] != g_out.shape[0] or not b.is_outer_product(grad, abar, g_out):
            return None
        a_inv, g_inv = self._damped_inverses(i, grad.dtype)
        return a_inv.right(abar).T @ g_inv.right(g_out)

    def epoch_logs(self) -> dict:
        """The epoch's curvature record for ``History``: ``damping`` (λ at its end),
        ``update_norm`` (mean over its steps of ‖θ_after − θ_before‖₂, the step taken),
        ``natural_grad_norm`` (mean ‖ΔW̄‖₂ over the K-FAC blocks, the preconditioned
        gradient before clipping and momentum) and ``kl_scale`` (mean KL-clipping factor
        ν, 1 when unclipped). Empty when no step was taken since the last call."""
        steps, update, natural, nu = self._sums
        self._sums = [0, 0.0, 0.0, 0.0]
        if not steps:
            return {}
        return {"damping": self.damping, "update_norm": update / steps, "natural_grad_norm": natural / steps,
                "kl_scale": nu / steps}

    def _eval_loss(self, batch) -> float:
        """The loss of the batch kept by :meth:`before_backward`, in evaluation mode (no
        BatchNorm statistics updated, no dropout drawn, so training is not disturbed)."""
        model, x, y, loss = batch
        return float(loss.forward(model.forward(x, training=False), y))

    def _adapt(self, flat, before, h_before, h_after) -> None:
        """Levenberg–Marquardt rule (Martens & Grosse 2015, §6.5): ρ = (h(θ + δ) − h(θ)) /
        (M(δ) − M(0)), M(δ) − M(0) = ∇hᵀδ + ½ δᵀ(F̂ + λI)δ with δ the step taken and F̂ the
        K-FAC blocks (Σ ⟨D, A D G⟩ over the blocks, D = δ as W̄; no curvature for the other
        parameters); λ ← ωλ if ρ > 3/4, λ ← λ/ω if ρ < 1/4, ω = (19/20)^T₁, T₁ =
        ``adapt_interval``; λ ≥ ``min_damping``. A step the model itself predicts to raise
        the loss (M(δ) ≥ M(0)), or a non-finite loss after it, counts as ρ = −∞."""
        delta = flat.params - before
        lam = self.damping
        q = float((flat.grads * delta).sum()) + 0.5 * lam * float((delta * delta).sum())
        for i, b in enumerate(self._blocks):
            st = self._block_state(i)
            d = b.matrix(delta)
            q += 0.5 * float((d * (st["A"] @ d @ st["G"])).sum())
        rho = (h_after - h_before) / q if q < 0 else -math.inf
        omega = (19 / 20) ** self.adapt_interval
        if not math.isfinite(h_after) or rho < 0.25:
            lam /= omega
        elif rho > 0.75:
            lam *= omega
        self._kfac_state["damping"][0] = max(lam, self.min_damping)
        self.last_reduction_ratio = rho

    # ------------------------------------------------------------------ config
    def get_config(self):
        cfg = {**super().get_config(), "damping": self.damping, "momentum": self.momentum,
               "factor_decay": self.factor_decay, "factor_update_steps": self.factor_update_steps,
               "inv_update_steps": self.inv_update_steps, "kl_clip": self.kl_clip,
               "weight_decay": self.weight_decay, "fisher": self.fisher}
        if self.damping_form != "tikhonov_factored":
            cfg["damping_form"] = self.damping_form
        if self.adapt_damping:
            cfg.update(adapt_damping=True, adapt_interval=self.adapt_interval, min_damping=self.min_damping)
        return cfg
