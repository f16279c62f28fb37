"""Network Deconvolution layers as the authors' code implements them (docs/method.md#layers).

- `isqrt_newton_schulz` / `isqrt_exact`: inverse square roots of SPD matrices
  (docs/method.md#inverse-square-root).
- `FastDeconv`: the layer that replaces Conv2d + BatchNorm (docs/method.md#fastdeconv,
  #grouped-and-depthwise-convolutions).
- `Delinear`: HEAD's decorrelated linear classifier head (docs/method.md#delinear).
- `ChannelDeconv`: the paper-era `--block-fc` head and the MLP's layer
  (docs/method.md#channeldeconv).

Every open fidelity choice is a constructor option whose default is the authors' code
(docs/method.md#fidelity-options). Departures from that code, all deliberate:

- The statistics (mean, covariance, inverse root) and the weight fold always run in float32 or
  wider with autocast disabled, because half precision destroys the small-eigenvalue
  directions (docs/method.md#precision).
- A non-finite batch covariance raises `NonFiniteStatisticsError` before any running buffer
  is touched, so a diverged step cannot poison the model's statistics.
- `FastDeconv.counter` is a persistent buffer, so a resumed run continues the freeze cycle; the
  authors kept it as a plain attribute, lost on checkpoint and under DataParallel
  (docs/method.md#freeze-cycle).
- `FastDeconv(bias=False)` works (the folded bias is then -W'mu); the authors' code crashes.
- `ChannelDeconv` evaluated before any training step uses its initial buffers (mean 0, D = I,
  variance 1), i.e. the identity transform, where the authors' code fails
  (docs/method.md#channeldeconv).

Implementation choices that change no result beyond rounding (for speed, see
benchmarks/README.md): on the CPU the Newton-Schulz gradient is evaluated in closed form
(`ns_impl`, see `isqrt_newton_schulz`; `ns_impl="unrolled"` is the authors' autograd), the
covariance and mean have a one-GEMM backward, and the iteration skips the 3 matmuls whose
results are known or unused.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runners.catalogue import ND_N_ITER
from runners.specs.nd_options import FC_MOMENTS, ND_LAYOUTS  # the options, named once

ISQRT_METHODS = ("newton_schulz", "exact")
NS_IMPLS = ("auto", "unrolled", "closed_form", "spectral")


class NonFiniteStatisticsError(FloatingPointError):
    """The batch statistics of a deconvolution layer are NaN or infinite."""


# ---------------------------------------------------------------------------------------------
# Inverse square roots
# ---------------------------------------------------------------------------------------------


def _no_autocast(device: torch.device) -> AbstractContextManager:
    # Autocast would run the covariance and Newton-Schulz matmuls in half precision.
    return torch.autocast(device_type=device.type, enabled=False)


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16/float32, float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def isqrt_newton_schulz(a: Tensor, n_iter: int, impl: str = "auto") -> Tensor:
    """A^{-1/2} of SPD matrices `a` (..., d, d) by the coupled Newton-Schulz iteration.

    As the authors' solver (docs/method.md#inverse-square-root): Y0 = A/||A||_F (Frobenius
    norm per matrix), Z0 = I, then n_iter times T = (3I - ZY)/2, Y <- YT, Z <- TZ, and return
    Z/sqrt(||A||_F), with gradients through the norm and the iteration. The n_iter steps
    compute a fixed polynomial p of Y0 (Z_n = p(Y0)); `impl` chooses how p and its gradient
    are evaluated, all equal up to rounding (tests/test_deconv.py):

    - "unrolled": the matrix iteration, differentiated by autograd (the authors' code). It uses
      3 fewer matmuls than theirs (Z0 = I in the first step; the last Y is unused).
    - "closed_form": the matrix iteration forward; the gradient is the Frechet derivative of p
      in closed form (Daleckii-Krein: one eigh of Y0, exact divided differences of p,
      4 matmuls) instead of 2 matmuls per forward matmul.
    - "spectral": p evaluated on the eigenvalues of Y0 (one eigh, 1 matmul), same closed-form
      gradient. The cheapest on a CPU; fp32 rounding differs slightly from the matrix iteration.
    - "auto": "closed_form" on the CPU, "unrolled" elsewhere (GPU eigh is slow and syncs).

    Runs in float32 (float64 stays float64) with autocast disabled; returns that dtype.
    """
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    impl = resolve_ns_impl(impl, a.device)
    with _no_autocast(a.device):
        a = a.to(_stat_dtype(a.dtype))
        shape = a.shape
        a = a.reshape(-1, *shape[-2:]) if a.dim() > 3 else a
        norm = torch.linalg.matrix_norm(a, keepdim=True)  # Frobenius, one per matrix
        y0 = a / norm
        if impl == "spectral":
            z = _NewtonSchulzPolynomial.apply(y0, n_iter, True)
        elif impl == "closed_form" and torch.is_grad_enabled() and y0.requires_grad:
            z = _NewtonSchulzPolynomial.apply(y0, n_iter, False)
        else:
            z = _newton_schulz_iterate(y0, n_iter)
        return (z / norm.sqrt()).reshape(shape)


def _check_ns_impl(impl: str) -> str:
    if impl not in NS_IMPLS:
        raise ValueError(f"ns_impl must be one of {NS_IMPLS}, got {impl!r}")
    return impl


def set_ns_impl(model: nn.Module, impl: str) -> None:
    """Make every ND layer of `model` evaluate the Newton-Schulz inverse root with `impl`."""
    _check_ns_impl(impl)
    for module in model.modules():
        if isinstance(module, FastDeconv | Delinear | ChannelDeconv):
            module.ns_impl = impl


def resolve_ns_impl(impl: str, device: torch.device) -> str:
    """The Newton-Schulz implementation `impl` stands for on `device` ("auto" resolved)."""
    if _check_ns_impl(impl) != "auto":
        return impl
    return "closed_form" if device.type == "cpu" else "unrolled"


def _newton_schulz_iterate(y: Tensor, n_iter: int) -> Tensor:
    """Z_n of the coupled iteration from Y0 = y (already normalised), Z0 = I."""
    eye15 = torch.eye(y.shape[-1], dtype=y.dtype, device=y.device).mul_(1.5).expand_as(y)
    z = eye15 - 0.5 * y  # first iteration with Z0 = I: T = (3I - Y)/2, Z1 = T
    if n_iter > 1:
        y = y @ z
    for i in range(1, n_iter):
        t = _affine_matmul(eye15, z, y, -0.5)  # T = 1.5 I - 0.5 Z Y in one call
        if i < n_iter - 1:
            y = y @ t
        z = t @ z
    return z


def _newton_schulz_scalar(evals: Tensor, n_iter: int) -> Tensor:
    """The scalar map p (z_n as a function of y0) at each eigenvalue."""
    y, z = evals, torch.ones_like(evals)
    for _ in range(n_iter):
        t = 1.5 - 0.5 * z * y
        y, z = y * t, t * z
    return z


def _newton_schulz_divided_differences(evals: Tensor, n_iter: int) -> Tensor:
    """Matrix F[i, j] = p[l_i, l_j] of the scalar Newton-Schulz map p.

    Divided differences are propagated through the recursion by the product rule
    (gh)[x, w] = g[x, w] h(w) + g(x) h[x, w], so there is no cancellation for close or equal
    eigenvalues; the diagonal is p'(l_i).
    """
    y, z = evals, torch.ones_like(evals)
    ydd = torch.ones(*evals.shape, evals.shape[-1], dtype=evals.dtype, device=evals.device)
    zdd = torch.zeros_like(ydd)
    for i in range(n_iter):
        t = 1.5 - 0.5 * z * y
        # t[x,w] = -(z[x,w] y(w) + z(x) y[x,w]) / 2, in place to limit memory traffic
        tdd = torch.mul(zdd, y.unsqueeze(-2)).addcmul_(z.unsqueeze(-1), ydd).mul_(-0.5)
        if i < n_iter - 1:  # the last y is not needed
            ydd.mul_(t.unsqueeze(-2)).addcmul_(y.unsqueeze(-1), tdd)
        zdd.mul_(t.unsqueeze(-1)).addcmul_(tdd, z.unsqueeze(-2))
        y, z = y * t, t * z
    return zdd


class _NewtonSchulzPolynomial(torch.autograd.Function):
    """Z_n = p(Y0) differentiated in closed form (Daleckii-Krein).

    For symmetric Y0 = V diag(l) V^T, the adjoint of the Frechet derivative of p is
    G -> V (F o (V^T G V)) V^T with F the divided differences of p at the eigenvalues.
    With spectral=True the forward is V diag(p(l)) V^T and reuses the eigh in the backward;
    otherwise it is the matrix iteration.
    """

    @staticmethod
    def forward(ctx, y0: Tensor, n_iter: int, spectral: bool) -> Tensor:  # type: ignore[override]
        ctx.n_iter = n_iter
        if not spectral:
            ctx.save_for_backward(y0)
            return _newton_schulz_iterate(y0, n_iter)
        evals, evecs = torch.linalg.eigh(y0)
        ctx.save_for_backward(evals, evecs)
        return (evecs * _newton_schulz_scalar(evals, n_iter).unsqueeze(-2)) @ evecs.mT

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        if len(ctx.saved_tensors) == 2:
            evals, evecs = ctx.saved_tensors
        else:
            (y0,) = ctx.saved_tensors
            try:
                evals, evecs = torch.linalg.eigh(y0)
            except torch.linalg.LinAlgError:
                # eigh did not converge: differentiate the unrolled iteration instead.
                with torch.enable_grad():
                    leaf = y0.detach().requires_grad_()
                    z = _newton_schulz_iterate(leaf, ctx.n_iter)
                    return torch.autograd.grad(z, leaf, grad)[0], None, None
        # No cancellation in the recursion, so the working precision suffices.
        dd = _newton_schulz_divided_differences(evals, ctx.n_iter)
        inner = evecs.mT @ grad @ evecs
        return evecs @ (dd * inner) @ evecs.mT, None, None


def _affine_matmul(c: Tensor, a: Tensor, b: Tensor, alpha: float, beta: float = 1.0) -> Tensor:
    """beta * c + alpha * a @ b for (d, d) or (g, d, d) operands, as one fused BLAS call."""
    if a.dim() == 2:
        return torch.addmm(c, a, b, beta=beta, alpha=alpha)
    return torch.baddbmm(c.expand(*a.shape[:-1], b.shape[-1]), a, b, beta=beta, alpha=alpha)


class _RidgeGram(torch.autograd.Function):
    """eps * I + alpha * X X^T for X (..., n, M), with a one-GEMM backward.

    Autograd would treat X and X^T as two inputs and run two GEMMs of the size of the forward;
    the gradient of a Gram matrix is (G + G^T) X, one GEMM. This halves the backward cost of the
    covariance, the largest statistics GEMM (docs/method.md#cost). The scale is applied to the small
    (n, n) factor, not to the large result.
    """

    @staticmethod
    def forward(ctx, x: Tensor, eps: float, alpha: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        eye = torch.eye(x.shape[-2], dtype=x.dtype, device=x.device)
        return _affine_matmul(eye, x, x.mT, alpha, beta=eps)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return ((grad + grad.mT) * ctx.alpha) @ x, None, None


def ridge_gram(x: Tensor, eps: float, alpha: float) -> Tensor:
    """eps * I + alpha * X X^T for X (n, M) or (g, n, M); gradients flow to X."""
    return _RidgeGram.apply(x, eps, alpha)


class _MeanCovariance(torch.autograd.Function):
    """Row means mu and eps * I + (X - mu)(X - mu)^T / M of X (..., n, M), as one autograd node.

    The backward is dX = (G + G^T) Xc / M + g_mu / M: the covariance's dependence on mu drops
    out exactly because the centred columns sum to zero. Autograd of the plain expressions would
    add a second GEMM and three full passes over X (the mean's and the subtraction's backward).
    Only the centred X is kept for the backward.

    `features` (optional) maps the input to a strided view (*batch, n, *rest) whose trailing
    dimensions are the samples; the centring then writes Xc contiguously in the same pass (no
    separate rearranging copy of the patches), and the backward writes the gradient straight
    back into the input's layout. The sample order does not change the mean or covariance.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: Tensor,
        eps: float,
        features: Callable[[Tensor], Tensor] | None = None,
        batch_dims: int = 0,
    ) -> tuple[Tensor, Tensor]:
        v = x if features is None else features(x)
        rest = tuple(range(batch_dims + 1, v.dim()))
        lead = v.shape[: batch_dims + 1]
        mean = v.mean(dim=rest)
        centred = torch.empty(v.shape, dtype=v.dtype, device=v.device)
        _into(centred, torch.sub, v, mean.view(*lead, *([1] * len(rest))))
        xc = centred.view(*lead, -1)
        ctx.save_for_backward(xc)
        ctx.features, ctx.x_shape = features, x.shape
        return mean, _gram(xc, eps, 1.0 / xc.shape[-1])

    @staticmethod
    def backward(ctx, g_mean: Tensor, g_cov: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        (xc,) = ctx.saved_tensors
        scale = 1.0 / xc.shape[-1]
        dx = ((g_cov + g_cov.mT) * scale) @ xc
        g_mean = (g_mean * scale).unsqueeze(-1)
        if ctx.features is None:
            return dx.add_(g_mean).view(ctx.x_shape), None, None, None
        grad = torch.empty(ctx.x_shape, dtype=dx.dtype, device=dx.device)
        view = ctx.features(grad)  # the input's layout, written through the strided view
        _into(
            view,
            torch.add,
            dx.view(view.shape),
            g_mean.view(*g_mean.shape, *([1] * (view.dim() - dx.dim()))),
        )
        return grad, None, None, None


def _into(out: Tensor, op: Callable[..., Tensor], a: Tensor, b: Tensor) -> None:
    """out[...] = op(a, b) in one pass whatever the strides of `out` (eager: op's out=;
    compiled: a copy, which the compiler fuses, as it does not honour out='s layout)."""
    if torch.compiler.is_compiling():
        out.copy_(op(a, b))
    else:
        op(a, b, out=out)


def mean_covariance(
    x: Tensor,
    eps: float,
    features: Callable[[Tensor], Tensor] | None = None,
    batch_dims: int = 0,
) -> tuple[Tensor, Tensor]:
    """(mu, eps * I + Xc Xc^T / M) for samples in the columns of X (n, M) or (g, n, M).

    With `features`, X is `features(x)` (*batch, n, *rest) flattened over the trailing
    dimensions, and the gradient is returned in the layout of `x` (see `_MeanCovariance`)."""
    return _MeanCovariance.apply(x, eps, features, batch_dims)


# Gram matrices at least this wide are computed by upper block rows on the CPU (below).
_SYMMETRIC_GRAM_MIN = 256
_SYMMETRIC_GRAM_BLOCKS = 4


def _gram(x: Tensor, eps: float, alpha: float) -> Tensor:
    """eps * I + alpha * X X^T for X (n, M) or (g, n, M).

    On the CPU a wide 2-D Gram is computed as its upper block rows only (5/8 of the GEMM work
    with 4 block rows) and mirrored: each computed entry is the same dot product, and the
    result is exactly symmetric, as a covariance is. Elsewhere (and for small n) one GEMM.
    """
    n = x.shape[-2]
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    if x.device.type != "cpu" or x.dim() != 2 or n < _SYMMETRIC_GRAM_MIN:
        return _affine_matmul(eye, x, x.mT, alpha, beta=eps)
    edges = [i * n // _SYMMETRIC_GRAM_BLOCKS for i in range(_SYMMETRIC_GRAM_BLOCKS + 1)]
    out = torch.zeros(n, n, dtype=x.dtype, device=x.device)  # the lower part stays 0
    for start, stop in itertools.pairwise(edges):
        out[start:stop, start:] = torch.addmm(
            eye[start:stop, start:], x[start:stop], x[start:].mT, beta=eps, alpha=alpha
        )
    upper = out.triu_()
    return upper + upper.triu(1).mT


def isqrt_exact(a: Tensor) -> Tensor:
    """A^{-1/2} of SPD matrices `a` (..., d, d) by eigendecomposition (analysis and tests).

    Runs in float32 or wider with autocast disabled; the input is symmetrised first.
    """
    with _no_autocast(a.device):
        a = a.to(_stat_dtype(a.dtype))
        evals, evecs = torch.linalg.eigh(0.5 * (a + a.mT))
        return (evecs * evals.rsqrt().unsqueeze(-2)) @ evecs.mT


def _nonfinite_message(layer: nn.Module) -> str:
    return (
        f"{layer.__class__.__name__}({layer.extra_repr()}): the batch covariance contains "
        "NaN or inf, so the running statistics were left unchanged; the training has "
        "probably diverged (check the learning rate) or the input data contain NaN/inf"
    )


def _check_finite(cov: Tensor, layer: nn.Module) -> Tensor | None:
    """Raise NonFiniteStatisticsError now, or (deferred) record the verdict without a sync.

    Immediate (the default): one host read of a scalar; it runs before any running buffer
    is updated. Deferred (`defer_statistics_checks`, used on GPUs and for compiled steps):
    the verdict is AND-ed into the layer's `statistics_finite` flag and returned, so that
    the buffer update is masked (`_track`: a non-finite step leaves them unchanged, as the
    immediate check does); `nonfinite_statistics` raises the same error at the step's one
    sync point, before the backward.
    """
    finite = torch.isfinite(cov).all()
    if getattr(layer, "defer_checks", False):
        layer.statistics_finite.logical_and_(finite)
        return finite
    if not bool(finite):
        raise NonFiniteStatisticsError(_nonfinite_message(layer))
    return None


def defer_statistics_checks(model: nn.Module, defer: bool = True) -> None:
    """Switch the finiteness check of every FastDeconv/Delinear of `model` (see _check_finite)."""
    for module in model.modules():
        if isinstance(module, FastDeconv | Delinear):
            module.defer_checks = defer
            module.statistics_finite.fill_(True)


def statistics_finite(model: nn.Module) -> Tensor | None:
    """One device boolean: every deferred check since the last reset passed (None: none)."""
    flags = [
        m.statistics_finite
        for m in model.modules()
        if isinstance(m, FastDeconv | Delinear) and m.defer_checks
    ]
    return torch.stack(flags).all() if flags else None


def nonfinite_statistics(model: nn.Module) -> NonFiniteStatisticsError | None:
    """The error for the first layer whose deferred check failed (host reads), flags reset."""
    error = None
    for module in model.modules():
        if isinstance(module, FastDeconv | Delinear) and module.defer_checks:
            if error is None and not bool(module.statistics_finite):
                error = NonFiniteStatisticsError(_nonfinite_message(module))
            module.statistics_finite.fill_(True)
    return error


def _ema_(buffer: Tensor, value: Tensor, momentum: float, finite: Tensor | None = None) -> None:
    """buffer <- (1 - momentum) * buffer + momentum * value, in place, without gradient;
    with `finite` (a deferred check) the buffer keeps its value when it is False."""
    if finite is None:
        buffer.mul_(1.0 - momentum).add_(value.detach().to(buffer.dtype), alpha=momentum)
        return
    updated = buffer.mul(1.0 - momentum).add_(value.detach().to(buffer.dtype), alpha=momentum)
    buffer.copy_(torch.where(finite, updated, buffer))


def _track(
    layer: nn.Module, mean: Tensor, deconv: Tensor, finite: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """EMA of the batch mu and D into the layer's running buffers (FastDeconv, Delinear);
    returns the batch values, which the training forward uses."""
    with torch.no_grad():
        _ema_(layer.running_mean, mean, layer.momentum, finite)
        _ema_(layer.running_deconv, deconv, layer.momentum, finite)
    return mean, deconv


def _init_statistics_check(layer: nn.Module) -> None:
    """Immediate finiteness checks, and the (non-persistent) flag of deferred ones."""
    layer.defer_checks = False
    layer.register_buffer("statistics_finite", torch.ones((), dtype=torch.bool), persistent=False)


def _folded_bias(bias: Tensor | None, shift: Tensor) -> Tensor:
    """b' = bias - W' mu, or -W' mu for a layer without bias (where the authors' code fails)."""
    return -shift if bias is None else bias.to(shift.dtype) - shift


def _select_block(block: int, channels: int) -> int:
    """The authors' block rule: the whole width if block > channels, else gcd if not divisible."""
    if block > channels:
        return channels
    if channels % block:
        return math.gcd(block, channels)
    return block


def _accept_authors_buffers(layer: FastDeconv, state_dict: dict, prefix: str) -> None:
    """Convert, in `state_dict`, a FastDeconv state saved by the authors' code to ours.

    Their grouped layer keeps `running_mean` flat, k^2*C values in the im2col column order
    (channel-major), so group j's mean is entries [j n_f, (j+1) n_f): ours is the same numbers
    viewed as (groups, n_f). Their freeze counter is a plain attribute, absent from the state:
    it starts at 0, as theirs does after a load.
    """
    key = prefix + "running_mean"
    mean = state_dict.get(key)
    flat = layer.groups > 1 and isinstance(mean, Tensor) and mean.dim() == 1
    if flat and mean.numel() == layer.running_mean.numel():  # else the size error names the key
        state_dict[key] = mean.reshape(layer.running_mean.shape)
    if prefix + "running_deconv" in state_dict and prefix + "counter" not in state_dict:
        state_dict[prefix + "counter"] = torch.zeros((), dtype=torch.long)


# ---------------------------------------------------------------------------------------------
# FastDeconv
# ---------------------------------------------------------------------------------------------


def _tiled_patches(x: Tensor, k: int, dilation: int, padding: int, s: int) -> Tensor:
    """F.unfold(x, k, dilation, padding, stride=s) when the patches do not overlap.

    With a sampling stride at least the patch extent (k=3, s=3: the authors' default), the
    sampled patches tile the padded input, so im2col is a view of it: pad (or crop) to whole
    tiles, view as (N, C, Lh, s, Lw, s), keep the k taps of each tile. The values are the same
    as unfold's; the backward is a copy instead of unfold's zero-fill and scatter-add.
    """
    n, c, h, w = x.shape
    extent = dilation * (k - 1) + 1
    lh, lw = (h + 2 * padding - extent) // s + 1, (w + 2 * padding - extent) // s + 1
    padded = F.pad(x, (padding, lw * s - w - padding, padding, lh * s - h - padding))
    taps = slice(0, extent, dilation)
    tiles = padded.reshape(n, c, lh, s, lw, s)[:, :, :, taps, :, taps]
    return tiles.permute(0, 1, 3, 5, 2, 4).reshape(n, c * k * k, lh * lw)


class FastDeconv(nn.Module):
    """Network deconvolution folded into a 2-D convolution; replaces Conv2d + BatchNorm2d.

    In training (not frozen) the layer samples im2col patches of the input with the effective
    stride s = sampling_stride * stride, splits their C*k^2 coordinates into blocks of
    n_f = k^2 * B features, and computes the mean mu and D = (Cov + eps I)^{-1/2} (Newton-Schulz,
    or eigh with isqrt="exact"). D and mu are folded into the weight and bias,
    W' = W D and b' = bias - sum_blocks W' mu, so that conv(x, W', b') = W D (patch - mu) + bias
    at every output position. The data are never multiplied by D. Running EMAs of D itself and of
    mu (starting at I and 0) serve eval and frozen training.

    layout (groups=1 only): "interleaved" (authors' code: block g = patch coordinates
    col = c*k^2 + p with col % G == g, docs/method.md#blocks) or "contiguous" (paper-literal
    ablation: block g = channels [gB, (g+1)B) with their full k x k patch). Both share one D and
    one mean across the G blocks. With groups > 1 each conv group has its own D
    (docs/method.md#grouped-and-depthwise-convolutions).
    ns_impl: how the Newton-Schulz polynomial and its gradient are evaluated ("auto",
    "unrolled" = the authors' autograd through the iteration, "closed_form", "spectral"); the
    same D and gradient up to rounding (see `isqrt_newton_schulz`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        eps: float = 1e-5,
        n_iter: int = ND_N_ITER,
        momentum: float = 0.1,
        block: int = 64,
        sampling_stride: int = 3,
        freeze: bool = False,
        freeze_iter: int = 100,
        layout: str = "interleaved",
        isqrt: str = "newton_schulz",
        ns_impl: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(kernel_size, int):
            raise TypeError(f"FastDeconv kernel_size must be an int, got {kernel_size!r}")
        if layout not in ND_LAYOUTS:
            raise ValueError(f"layout must be one of {ND_LAYOUTS}, got {layout!r}")
        if isqrt not in ISQRT_METHODS:
            raise ValueError(f"isqrt must be one of {ISQRT_METHODS}, got {isqrt!r}")
        _check_ns_impl(ns_impl)
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.groups = dilation, groups
        self.eps, self.n_iter, self.momentum = eps, n_iter, momentum
        self.freeze, self.freeze_iter = freeze, freeze_iter
        self.layout, self.isqrt, self.ns_impl = layout, isqrt, ns_impl
        self.sampling_stride = sampling_stride * stride  # effective s (docs/method.md#sampling)
        # Block rules in the authors' order: a grouped conv overrides whatever was asked.
        self.block = in_channels // groups if groups > 1 else _select_block(block, in_channels)
        self.num_features = kernel_size**2 * self.block  # n_f
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        n_f = self.num_features
        if groups == 1:
            self.register_buffer("running_mean", torch.zeros(n_f))
            self.register_buffer("running_deconv", torch.eye(n_f))
        else:
            self.register_buffer("running_mean", torch.zeros(groups, n_f))
            self.register_buffer("running_deconv", torch.eye(n_f).repeat(groups, 1, 1))
        self.register_buffer("counter", torch.zeros((), dtype=torch.long))
        # A host mirror of `counter`, so the freeze decision never waits for a GPU.
        self._count = 0
        # False reproduces the authors' multi-GPU DataParallel, whose replicas' counter
        # increments were lost (runners/distributed.py, spec field freeze_counter).
        self.advance_counter = True
        _init_statistics_check(self)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default Conv2d initialisation (the authors' CIFAR models keep it)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, block={self.block}, "
            f"n_iter={self.n_iter}, eps={self.eps}, sampling_stride={self.sampling_stride}"
        )
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.freeze:
            s += f", freeze_iter={self.freeze_iter}"
        if self.layout != "interleaved":
            s += f", layout={self.layout}"
        if self.isqrt != "newton_schulz":
            s += f", isqrt={self.isqrt}"
        return s

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        _accept_authors_buffers(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._count = int(self.counter)

    # -- statistics --------------------------------------------------------------------------

    def _sampled_patches(self, x: Tensor) -> Tensor:
        """Sampled im2col as (N', C*k^2, L): column c*k^2 + p, L positions per sample.

        k > 1: unfold with stride s and the layer's padding and dilation (a grid starting at the
        top-left padded position). k == 1: the (n, h, w)-ordered pixels, every s^2-th one,
        gathered directly rather than flattening the whole input channels-last.
        """
        s = self.sampling_stride
        if self.kernel_size > 1:
            if self.dilation * (self.kernel_size - 1) < s:  # patches do not overlap
                return _tiled_patches(x, self.kernel_size, self.dilation, self.padding, s)
            return F.unfold(x, self.kernel_size, self.dilation, self.padding, s)
        n, c, h, w = x.shape
        rows = torch.arange(0, n * h * w, s * s, device=x.device)
        flat = x.reshape(n, c, h * w)
        return flat[rows // (h * w), :, rows % (h * w)].unsqueeze(-1)  # (R, C, 1)

    def _feature_major(self, u: Tensor) -> Tensor:
        """View patches (N', C*k^2, L) as (n_f, ...) [groups=1] or (groups, n_f, ...): feature
        first, the samples in the trailing dimensions (a strided view, no copy)."""
        n, _, length = u.shape
        n_f = self.num_features
        if self.groups > 1:
            return u.reshape(n, self.groups, n_f, length).permute(1, 2, 0, 3)
        g = self.in_channels // self.block
        if self.layout == "interleaved":  # feature f of block g is column f*G + g
            return u.reshape(n, n_f, g, length).permute(1, 0, 2, 3)
        return u.reshape(n, g, n_f, length).permute(2, 0, 1, 3)

    def _batch_statistics(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """The batch mean mu and D = (Cov + eps I)^{-1/2}, in float32 or wider, and the
        deferred finiteness verdict (None when checked immediately)."""
        patches = self._sampled_patches(x.to(_stat_dtype(x.dtype)))
        # Cov = eps*I + Xc Xc^T / M (the keyword form of the authors' addmm); the feature-major
        # rearrangement happens inside, in the centring pass.
        batch_dims = 1 if self.groups > 1 else 0
        mean, cov = mean_covariance(patches, self.eps, self._feature_major, batch_dims)
        finite = _check_finite(cov, self)
        if self.isqrt == "exact":
            return mean, isqrt_exact(cov), finite
        return mean, isqrt_newton_schulz(cov, self.n_iter, self.ns_impl), finite

    # -- forward -----------------------------------------------------------------------------

    def _next_frozen(self) -> bool:
        """The authors' freeze bookkeeping (docs/method.md#freeze-cycle), advancing the counter.

        Only freezing layers need the decision on the host (from the mirror `_count`, never
        from the device); the others advance the buffer with a device op, so their forward has
        no host state that changes per step (a compiled step is not re-specialised)."""
        if not self.freeze:
            if self.training and self.advance_counter:
                self.counter.add_(1).remainder_(10 * self.freeze_iter)
            return False
        return self._next_frozen_on_host()

    @torch.compiler.disable
    def _next_frozen_on_host(self) -> bool:
        frozen = self._count > self.freeze_iter
        if self.training and self.advance_counter:
            self._count = (self._count + 1) % (10 * self.freeze_iter)
            self.counter.fill_(self._count)
        return frozen

    def _fold(self, mean: Tensor, deconv: Tensor) -> tuple[Tensor, Tensor]:
        """W' = W D per block and b' = bias - sum_blocks W' mu (docs/method.md#folding)."""
        w = self.weight.to(deconv.dtype)
        c_out, n_f = self.out_channels, self.num_features
        if self.groups > 1:
            wd = w.view(self.groups, c_out // self.groups, n_f) @ deconv
            shift = (wd @ mean.unsqueeze(-1)).reshape(c_out)
            w_folded = wd.reshape_as(w)
        elif self.layout == "interleaved":
            g = self.in_channels // self.block
            wd = w.view(c_out, n_f, g).transpose(1, 2).reshape(c_out * g, n_f) @ deconv
            shift = (wd @ mean).view(c_out, g).sum(1)
            w_folded = wd.view(c_out, g, n_f).transpose(1, 2).reshape_as(w)
        else:
            wd = w.view(-1, n_f) @ deconv
            shift = (wd @ mean).view(c_out, -1).sum(1)
            w_folded = wd.view_as(w)
        bias = _folded_bias(self.bias, shift)
        return w_folded.to(self.weight.dtype), bias.to(self.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        frozen = self._next_frozen()
        with _no_autocast(x.device):
            if self.training and not frozen:
                mean, deconv = _track(self, *self._batch_statistics(x))
            else:
                mean, deconv = self.running_mean, self.running_deconv
            weight, bias = self._fold(mean, deconv)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


# ---------------------------------------------------------------------------------------------
# Delinear
# ---------------------------------------------------------------------------------------------


class Delinear(nn.Module):
    """A linear layer whose input is decorrelated in contiguous feature chunks
    (docs/method.md#delinear).

    The input (N, in_features) is viewed as rows of `block` features (each sample contributes
    in_features/block rows), centred, and whitened by D = (Cov + eps I)^{-1/2} folded into the
    weight: W' = W.view(-1, block) D, b' = bias - sum_chunks W' mu. Eval uses the running EMAs.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        eps: float = 1e-5,
        n_iter: int = ND_N_ITER,
        momentum: float = 0.1,
        block: int = 512,
        ns_impl: str = "auto",
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.eps, self.n_iter, self.momentum = eps, n_iter, momentum
        self.block = _select_block(block, in_features)
        self.ns_impl = _check_ns_impl(ns_impl)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.register_buffer("running_mean", torch.zeros(self.block))
        self.register_buffer("running_deconv", torch.eye(self.block))
        _init_statistics_check(self)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's default initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"block={self.block}, n_iter={self.n_iter}, eps={self.eps}, "
            f"bias={self.bias is not None}"
        )

    def _batch_statistics(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        rows = x.to(_stat_dtype(x.dtype)).reshape(-1, self.block)
        mean, cov = mean_covariance(rows.mT, self.eps)
        finite = _check_finite(cov, self)
        return mean, isqrt_newton_schulz(cov, self.n_iter, self.ns_impl), finite

    def forward(self, x: Tensor) -> Tensor:
        with _no_autocast(x.device):
            if self.training:
                mean, deconv = _track(self, *self._batch_statistics(x))
            else:
                mean, deconv = self.running_mean, self.running_deconv
            wd = self.weight.to(deconv.dtype).reshape(-1, self.block) @ deconv
            shift = (wd @ mean).view(self.out_features, -1).sum(1)
            bias = _folded_bias(self.bias, shift)
            weight = wd.view_as(self.weight).to(self.weight.dtype)
        return F.linear(x, weight, bias.to(self.weight.dtype))


# ---------------------------------------------------------------------------------------------
# ChannelDeconv
# ---------------------------------------------------------------------------------------------


class ChannelDeconv(nn.Module):
    """Channel decorrelation of a feature map, applied to the data (docs/method.md#channeldeconv).

    The first c = floor(C/B)*B channels are whitened by one shared D (B x B) in a strided
    grouping (feature r of sample (j, n, h, w) is channel r*(c/B) + j); statistics use every
    s^2-th sample when H, W >= s. The leftover channels [c, C) are standardised by one scalar
    mean and unbiased variance, from every s^2-th of each sample's leftover values. The first
    training call copies the batch statistics into the running buffers, later calls update them
    by EMA; eval uses them (before any training step they are mean 0, D = I, variance 1: the
    identity transform).

    moment: "uncentred" (authors' code since ac75711: D from E[x x^T] + eps I, applied to the
    centred data; inputs with mean 3 and identity covariance come out with variance ~0.88) or
    "centred" (the 2019 first upload and the paper's description: D from the covariance).
    """

    def __init__(
        self,
        block: int,
        eps: float = 1e-2,
        n_iter: int = ND_N_ITER,
        momentum: float = 0.1,
        sampling_stride: int = 3,
        moment: str = "uncentred",
        ns_impl: str = "auto",
    ) -> None:
        super().__init__()
        if moment not in FC_MOMENTS:
            raise ValueError(f"moment must be one of {FC_MOMENTS}, got {moment!r}")
        self.block, self.eps, self.n_iter = block, eps, n_iter
        self.momentum, self.sampling_stride, self.moment = momentum, sampling_stride, moment
        self.ns_impl = _check_ns_impl(ns_impl)
        self.register_buffer("running_mean1", torch.zeros(block, 1))
        self.register_buffer("running_deconv", torch.eye(block))
        self.register_buffer("running_mean2", torch.zeros(1, 1))
        self.register_buffer("running_var", torch.ones(1, 1))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"block={self.block}, n_iter={self.n_iter}, eps={self.eps}, "
            f"sampling_stride={self.sampling_stride}, moment={self.moment}"
        )

    def _subsample(self, cols: Tensor, h: int, w: int) -> Tensor:
        s = self.sampling_stride
        return cols[:, :: s * s] if h >= s and w >= s else cols

    def _update(self, buffer: Tensor, value: Tensor) -> None:
        if self.num_batches_tracked == 0:
            buffer.copy_(value.detach())  # first training call: copy, no EMA
        else:
            _ema_(buffer, value, self.momentum)

    def _whiten(self, x1: Tensor, h: int, w: int) -> Tensor:
        n, c = x1.shape[:2]
        b = self.block
        # (c, N, H, W) -> (B, (c/B) N H W): row r concatenates channels r*(c/B) ... .
        cols = x1.transpose(0, 1).reshape(b, -1)
        if self.training:
            sample = self._subsample(cols, h, w)
            if self.moment == "uncentred":  # the authors' code since ac75711
                mean = sample.mean(1, keepdim=True)
                cov = ridge_gram(sample, self.eps, 1.0 / sample.shape[1])
            else:
                mean, cov = mean_covariance(sample, self.eps)
                mean = mean.unsqueeze(1)
            _check_finite(cov, self)
            deconv = isqrt_newton_schulz(cov, self.n_iter, self.ns_impl)
            with torch.no_grad():
                self._update(self.running_mean1, mean)
                self._update(self.running_deconv, deconv)
        else:
            mean, deconv = self.running_mean1, self.running_deconv
        out = deconv @ (cols - mean)
        return out.view(c, n, h, w).transpose(0, 1)

    def _standardise(self, x2: Tensor, h: int, w: int) -> Tensor:
        if self.training:
            # As the authors: every s^2-th value within each sample's (channel, h, w)-ordered
            # leftover values, each sample's sub-sample starting at its first value.
            sample = self._subsample(x2.reshape(x2.shape[0], -1), h, w)
            mean, var = sample.mean(), sample.var()
            if not bool(torch.isfinite(var)):
                raise NonFiniteStatisticsError(
                    f"ChannelDeconv({self.extra_repr()}): the leftover channels' variance is "
                    "NaN or inf; check the learning rate and the input data"
                )
            with torch.no_grad():
                self._update(self.running_mean2, mean.view(1, 1))
                self._update(self.running_var, var.view(1, 1))
        else:
            mean, var = self.running_mean2, self.running_var
        return (x2 - mean) / (var + self.eps).sqrt()

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x4 = x.view(shape[0], shape[1], 1, 1) if x.dim() == 2 else x
        _, channels, h, w = x4.shape
        c = channels // self.block * self.block
        with _no_autocast(x.device):
            x4 = x4.to(_stat_dtype(x.dtype))
            parts = []
            if c > 0:
                parts.append(self._whiten(x4[:, :c], h, w))
            if c < channels:
                parts.append(self._standardise(x4[:, c:], h, w))
            out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        if self.training:
            self.num_batches_tracked += 1
        return out.reshape(shape).to(x.dtype)
