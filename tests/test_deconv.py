"""Tests of the Network Deconvolution layers against explicit re-computations
(docs/method.md#layers).

The references below are written independently of the layer's reshapes: patch coordinates are
assigned to blocks by explicit index lists, whitening is applied to the data patch by patch, and
the convolution is an explicit matmul over unfolded patches.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from runners.deconv import (
    ChannelDeconv,
    Delinear,
    FastDeconv,
    NonFiniteStatisticsError,
    isqrt_exact,
    isqrt_newton_schulz,
    resolve_ns_impl,
)

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _spd(d: int, cond: float, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """A random SPD matrix with eigenvalues spread log-uniformly over [1, cond]."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    evals = torch.logspace(0, math.log10(cond), d, dtype=torch.float64)
    return ((q * evals) @ q.T).to(dtype)


def _correlated_images(n: int, c: int, h: int, seed: int = 0, dtype=torch.float64):
    """Images with correlated channels, spatial smoothing and a non-zero mean."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h + 2, h + 2, generator=g, dtype=dtype)
    mix = torch.randn(c, c, generator=g, dtype=dtype) + 2 * torch.eye(c, dtype=dtype)
    x = torch.einsum("dc,nchw->ndhw", mix, x)
    x = F.avg_pool2d(x, 3, stride=1)  # neighbouring pixels correlated
    return x + torch.linspace(-1, 2, c, dtype=dtype).view(1, c, 1, 1)


def _blocks(layer: FastDeconv) -> list[list[int]]:
    """Patch coordinates (col = c*k^2 + p) of each block, in feature order."""
    n_cols = layer.in_channels // layer.groups * layer.kernel_size**2 * layer.groups
    n_f = layer.num_features
    if layer.groups == 1 and layer.layout == "interleaved":
        g = layer.in_channels // layer.block
        return [[col for col in range(n_cols) if col % g == j] for j in range(g)]
    return [list(range(j * n_f, (j + 1) * n_f)) for j in range(n_cols // n_f)]


def _sampled_rows(layer: FastDeconv, x: torch.Tensor) -> torch.Tensor:
    """All sampled patches as (N', C*k^2) rows, sampled as docs/method.md#sampling says."""
    s = layer.sampling_stride
    if layer.kernel_size > 1:
        u = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, s)
        return u.transpose(1, 2).reshape(-1, u.shape[1])
    flat = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # rows in (n, h, w) order
    return flat[:: s * s]


def _block_stats(layer: FastDeconv, x: torch.Tensor):
    """Per D (one for groups=1, one per group otherwise): the sample matrix X (M, n_f)."""
    rows = _sampled_rows(layer, x)
    per_block = [rows[:, cols] for cols in _blocks(layer)]
    if layer.groups == 1:  # all blocks pooled as extra samples of one shared D
        return [torch.cat(per_block, dim=0)]
    return per_block


def _layer_stats(layer: FastDeconv):
    """The layer's (mean, D) list, one per D, from its running buffers."""
    if layer.groups == 1:
        return [(layer.running_mean, layer.running_deconv)]
    return list(zip(layer.running_mean, layer.running_deconv, strict=True))


def _explicit_conv(layer: FastDeconv, x: torch.Tensor, stats) -> torch.Tensor:
    """conv via unfold: whiten every patch block by block, then matmul with the raw weight."""
    k = layer.kernel_size
    u = F.unfold(x, k, layer.dilation, layer.padding, layer.stride)  # (N, C/groups*k^2*groups, L)
    white = torch.empty_like(u)
    blocks = _blocks(layer)
    for j, cols in enumerate(blocks):
        mean, deconv = stats[0] if layer.groups == 1 else stats[j]
        white[:, cols, :] = torch.einsum("ab,nbl->nal", deconv, u[:, cols, :] - mean[:, None])
    c_out = layer.out_channels
    w = layer.weight.reshape(c_out, -1)
    if layer.groups == 1:
        out = torch.einsum("oc,ncl->nol", w, white)
    else:
        per = c_out // layer.groups
        out = torch.cat(
            [
                torch.einsum("oc,ncl->nol", w[j * per : (j + 1) * per], white[:, cols, :])
                for j, cols in enumerate(blocks)
            ],
            dim=1,
        )
    if layer.bias is not None:
        out = out + layer.bias[:, None]
    h_out = (x.shape[2] + 2 * layer.padding - layer.dilation * (k - 1) - 1) // layer.stride + 1
    return out.view(x.shape[0], c_out, h_out, -1)


LAYER_CASES = {
    "interleaved": dict(in_channels=16, out_channels=6, kernel_size=3, padding=1, block=4),
    "contiguous": dict(
        in_channels=16, out_channels=6, kernel_size=3, padding=1, block=4, layout="contiguous"
    ),
    "grouped": dict(in_channels=8, out_channels=4, kernel_size=3, padding=1, groups=2),
    "first_layer": dict(in_channels=3, out_channels=5, kernel_size=3, padding=1),
    "k1": dict(in_channels=16, out_channels=6, kernel_size=1, block=4),
    "stride2_pad2": dict(in_channels=8, out_channels=4, kernel_size=3, stride=2, padding=2),
    "dilation": dict(in_channels=8, out_channels=4, kernel_size=3, padding=2, dilation=2),
}


# ---------------------------------------------------------------------------------------------
# inverse square roots
# ---------------------------------------------------------------------------------------------


def test_newton_schulz_whitens_when_converged():
    a = _spd(20, cond=50)
    d = isqrt_newton_schulz(a, 20)
    assert torch.allclose(d @ a @ d.T, torch.eye(20, dtype=a.dtype), atol=1e-8)


def test_exact_isqrt_whitens_batched():
    a = torch.stack([_spd(12, cond=1e4, seed=s) for s in range(3)])
    d = isqrt_exact(a)
    assert d.shape == (3, 12, 12)
    assert torch.allclose(d @ a @ d.mT, torch.eye(12, dtype=a.dtype).expand(3, -1, -1), atol=1e-9)


def test_newton_schulz_agrees_with_exact_and_is_partial_at_five_iterations():
    a = torch.stack([_spd(16, cond=3, seed=1), _spd(16, cond=1e4, seed=2)])
    exact = isqrt_exact(a)
    assert torch.allclose(isqrt_newton_schulz(a, 20)[0], exact[0], rtol=1e-8, atol=1e-10)
    # Per-matrix Frobenius scaling: the ill-conditioned one is far from whitened at n=5
    # (docs/method.md#inverse-square-root), the well-conditioned one is close.
    five = isqrt_newton_schulz(a, 5)
    err = torch.linalg.matrix_norm(five - exact) / torch.linalg.matrix_norm(exact)
    assert err[0] < 0.02 and err[1] > 0.3


def test_newton_schulz_matches_unoptimised_coupled_iteration():
    a = _spd(10, cond=100, seed=3)
    norm = a.norm()
    y, z, eye = a / norm, torch.eye(10, dtype=a.dtype), torch.eye(10, dtype=a.dtype)
    for _ in range(4):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    assert torch.allclose(isqrt_newton_schulz(a, 4), z / norm.sqrt(), atol=1e-12)


def _isqrt_value_and_grad(a: torch.Tensor, n_iter: int, impl: str, upstream: torch.Tensor):
    leaf = a.clone().requires_grad_()
    value = isqrt_newton_schulz(leaf, n_iter, impl)
    (value * upstream).sum().backward()
    return value.detach(), leaf.grad


def _low_rank_plus_ridge(d: int, rank: int, seed: int) -> torch.Tensor:
    """eps*I + a rank-deficient Gram: many equal eigenvalues, as in Delinear(512) at N=128."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d, rank, generator=g, dtype=torch.float64)
    return 1e-5 * torch.eye(d, dtype=torch.float64) + v @ v.T


def _relative_error(got: torch.Tensor, reference: torch.Tensor) -> float:
    return float(torch.linalg.norm(got - reference) / torch.linalg.norm(reference))


@pytest.mark.parametrize("impl", ["closed_form", "spectral"])
@pytest.mark.parametrize("n_iter", [1, 5, 15])
@pytest.mark.parametrize(
    "make",
    [
        lambda: _spd(12, cond=50),
        lambda: _spd(12, cond=1e6, seed=3),
        lambda: _low_rank_plus_ridge(12, 3, seed=4),
        lambda: torch.stack([_spd(8, 10, seed=5), _low_rank_plus_ridge(8, 2, seed=6)]),
    ],
    ids=["conditioned", "ill_conditioned", "degenerate", "batched"],
)
def test_newton_schulz_implementations_equal_unrolled_autograd(make, n_iter, impl):
    a = make()
    upstream = torch.randn(a.shape, generator=torch.Generator().manual_seed(9), dtype=a.dtype)
    ref_value, ref_grad = _isqrt_value_and_grad(a, n_iter, "unrolled", upstream)
    value, grad = _isqrt_value_and_grad(a, n_iter, impl, upstream)
    assert _relative_error(value, ref_value) < 1e-9
    assert _relative_error(grad, ref_grad) < 1e-9


def test_newton_schulz_implementations_in_float32_match_float64_reference():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(32, 32, generator=g, dtype=torch.float64)
    samples = torch.randn(2000, 32, generator=g, dtype=torch.float64) @ mix + 1.0
    a = torch.cov(samples.T) + 1e-5 * torch.eye(32, dtype=torch.float64)
    upstream = torch.randn(a.shape, generator=torch.Generator().manual_seed(1), dtype=a.dtype)
    ref_value, ref_grad = _isqrt_value_and_grad(a, 5, "unrolled", upstream)
    for impl in ("unrolled", "closed_form", "spectral"):
        value, grad = _isqrt_value_and_grad(a.float(), 5, impl, upstream.float())
        assert _relative_error(value.double(), ref_value) < 1e-5, impl
        assert _relative_error(grad.double(), ref_grad) < 1e-4, impl


def test_default_forward_is_the_matrix_iteration_bit_for_bit():
    # "auto" on the CPU only changes how the gradient is computed, never the forward value.
    a = _spd(16, cond=1e3, dtype=torch.float32, seed=7).requires_grad_()
    assert torch.equal(isqrt_newton_schulz(a, 5), isqrt_newton_schulz(a, 5, "unrolled"))


def test_auto_resolves_to_closed_form_on_the_cpu_and_unrolled_elsewhere():
    assert resolve_ns_impl("auto", torch.device("cpu")) == "closed_form"
    assert resolve_ns_impl("auto", torch.device("cuda", 0)) == "unrolled"
    assert resolve_ns_impl("spectral", torch.device("cuda")) == "spectral"
    with pytest.raises(ValueError, match="ns_impl"):
        resolve_ns_impl("eigh", torch.device("cpu"))


def test_newton_schulz_keeps_leading_batch_shape_and_rejects_bad_options():
    a = torch.stack([_spd(5, 4, seed=s) for s in range(6)]).view(2, 3, 5, 5)
    d = isqrt_newton_schulz(a, 20, "spectral")
    assert d.shape == (2, 3, 5, 5)
    assert torch.allclose(d[1, 2], isqrt_exact(a[1, 2]), atol=1e-10)
    with pytest.raises(ValueError, match="ns_impl"):
        isqrt_newton_schulz(a, 5, "eigh")
    with pytest.raises(ValueError, match="ns_impl"):
        FastDeconv(4, 4, 3, ns_impl="fast")
    with pytest.raises(ValueError, match="n_iter"):
        isqrt_newton_schulz(a, 0)


def test_isqrt_runs_in_float32_under_bfloat16_autocast():
    a = _spd(24, cond=20, dtype=torch.float32)
    reference = isqrt_exact(a.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = isqrt_newton_schulz(a, 15)
        e = isqrt_exact(a)
    for out in (d, e):
        assert out.dtype == torch.float32
        assert torch.allclose(out.double(), reference, atol=1e-5)
    assert isqrt_newton_schulz(a.bfloat16(), 3).dtype == torch.float32
    assert isqrt_newton_schulz(a.double(), 3).dtype == torch.float64


# ---------------------------------------------------------------------------------------------
# FastDeconv: whitening, folding, running statistics
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "isqrt", "n_iter"),
    [
        ("interleaved", "exact", 5),
        ("interleaved", "newton_schulz", 30),
        ("contiguous", "exact", 5),
        ("grouped", "exact", 5),
        ("first_layer", "newton_schulz", 30),
        ("k1", "exact", 5),
    ],
)
def test_deconvolved_patches_are_white(case, isqrt, n_iter):
    torch.manual_seed(0)
    layer = FastDeconv(**LAYER_CASES[case], isqrt=isqrt, n_iter=n_iter, momentum=1.0).double()
    x = _correlated_images(24, layer.in_channels, 14)
    layer(x)  # momentum 1: the running buffers now hold this batch's statistics
    for samples, (mean, deconv) in zip(_block_stats(layer, x), _layer_stats(layer), strict=True):
        assert samples.shape[0] > 4 * samples.shape[1]  # enough samples for a full-rank Cov
        assert torch.allclose(mean, samples.mean(0), atol=1e-12)
        white = (samples - mean) @ deconv.T
        cov = white.T @ white / samples.shape[0]
        # eps = 1e-5 on unit-scale data leaves ~1e-5 of shrinkage; NS at 30 is converged.
        assert torch.allclose(cov, torch.eye(cov.shape[0], dtype=cov.dtype), atol=2e-3)
    # the raw patches were far from white, so the check above is not vacuous
    raw = _block_stats(layer, x)[0]
    raw_cov = torch.cov(raw.T)
    assert (raw_cov - torch.eye(raw_cov.shape[0], dtype=raw.dtype)).abs().max() > 0.5


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_folded_convolution_equals_explicit_deconvolution(case):
    torch.manual_seed(1)
    layer = FastDeconv(**LAYER_CASES[case], momentum=1.0).double()
    x = _correlated_images(4, layer.in_channels, 9, seed=2)
    out = layer(x)
    expected = _explicit_conv(layer, x, _layer_stats(layer))
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-10, rtol=0)


def test_bias_false_folds_the_mean_only():
    torch.manual_seed(2)
    layer = FastDeconv(8, 4, 3, padding=1, bias=False, momentum=1.0).double()
    x = _correlated_images(3, 8, 8, seed=3)
    out = layer(x)
    assert layer.bias is None
    assert torch.allclose(out, _explicit_conv(layer, x, _layer_stats(layer)), atol=1e-10)


def test_block_selection_rules():
    assert FastDeconv(96, 8, 3, block=64).block == 32  # gcd when not divisible
    assert FastDeconv(224, 8, 3, block=64).block == 32
    assert FastDeconv(16, 8, 3, block=64).block == 16  # block > C
    assert FastDeconv(3, 8, 3).num_features == 27  # first layer: B=3, n_f=27
    assert FastDeconv(128, 128, 3, groups=32, block=64).block == 4  # groups override
    layer = FastDeconv(96, 8, 3, padding=1, block=64)
    assert layer.running_deconv.shape == (288, 288)
    layer(torch.randn(8, 96, 6, 6))
    assert torch.isfinite(layer.running_deconv).all()


def test_first_step_updates_running_buffers_by_ema_of_d():
    torch.manual_seed(3)
    layer = FastDeconv(8, 4, 3, padding=1, block=4).double()
    x = _correlated_images(10, 8, 10, seed=4)
    layer(x)
    (samples,) = _block_stats(layer, x)
    mean = samples.mean(0)
    cov = 1e-5 * torch.eye(36, dtype=x.dtype) + (samples - mean).T @ (samples - mean) / len(samples)
    deconv = isqrt_newton_schulz(cov, 5)
    assert torch.allclose(layer.running_mean, 0.1 * mean, atol=1e-12)
    expected = 0.9 * torch.eye(36, dtype=x.dtype) + 0.1 * deconv
    assert torch.allclose(layer.running_deconv, expected, atol=1e-10)


def test_eval_uses_running_statistics():
    torch.manual_seed(4)
    layer = FastDeconv(8, 4, 3, padding=1, block=4).double()
    for seed in range(3):
        layer(_correlated_images(6, 8, 8, seed=seed))
    layer.eval()
    buffers = [b.clone() for b in layer.buffers()]
    x = _correlated_images(5, 8, 8, seed=10)
    out = layer(x)
    assert torch.allclose(out, _explicit_conv(layer, x, _layer_stats(layer)), atol=1e-10)
    # changing the other samples of the batch does not change sample 0's output
    other = torch.cat([x[:1], 5 * _correlated_images(4, 8, 8, seed=11)])
    assert torch.allclose(layer(other)[0], out[0], atol=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(buffers, layer.buffers(), strict=True))


def test_freeze_cycle_stops_and_resumes_updates():
    torch.manual_seed(5)
    layer = FastDeconv(3, 4, 3, padding=1, freeze=True, freeze_iter=2)
    changed = []
    for step in range(23):
        before = layer.running_deconv.clone()
        layer(torch.randn(4, 3, 8, 8) * (1 + step))
        changed.append(not torch.equal(before, layer.running_deconv))
    # counter 0..2 update, 3..19 frozen, then the cycle (length 10*freeze_iter) restarts
    assert changed == [True] * 3 + [False] * 17 + [True] * 3
    assert int(layer.counter) == 23 % 20


def test_eval_does_not_advance_the_freeze_counter():
    layer = FastDeconv(3, 4, 3, padding=1, freeze=True, freeze_iter=2)
    layer(torch.randn(2, 3, 6, 6))
    layer.eval()
    layer(torch.randn(2, 3, 6, 6))
    assert int(layer.counter) == 1


def test_state_dict_round_trip_keeps_the_freeze_cycle():
    torch.manual_seed(6)
    kwargs = dict(in_channels=3, out_channels=4, kernel_size=3, padding=1, freeze=True)
    layer = FastDeconv(**kwargs, freeze_iter=2)
    for _ in range(3):
        layer(torch.randn(4, 3, 8, 8))
    state = layer.state_dict()
    assert int(state["counter"]) == 3
    restored = FastDeconv(**kwargs, freeze_iter=2)
    restored.load_state_dict(state)
    for name, tensor in layer.state_dict().items():
        assert torch.equal(tensor, restored.state_dict()[name]), name
    # counter 3 > freeze_iter: the restored layer is frozen, as the original would be
    before = restored.running_deconv.clone()
    restored(torch.randn(4, 3, 8, 8))
    assert torch.equal(before, restored.running_deconv)


def test_batch_size_one():
    layer = FastDeconv(16, 8, 3, padding=1, block=8)
    out = layer(torch.randn(1, 16, 7, 7))
    assert out.shape == (1, 8, 7, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_raises_and_keeps_buffers(bad):
    layers_and_inputs = [
        (FastDeconv(8, 4, 3, padding=1, block=4), torch.randn(4, 8, 6, 6)),
        (Delinear(8, 3, block=4), torch.randn(4, 8)),
        (ChannelDeconv(4, sampling_stride=1), torch.randn(4, 8, 3, 3)),
    ]
    for layer, x in layers_and_inputs:
        layer(x)  # one good step, so the buffers hold real values
        before = {k: v.clone() for k, v in layer.state_dict().items()}
        x = x.clone()
        x[0, 0] = bad
        with pytest.raises(NonFiniteStatisticsError, match="learning rate"):
            layer(x)
        for name, value in layer.state_dict().items():
            if name not in ("counter", "num_batches_tracked"):
                assert torch.equal(value, before[name]), (type(layer).__name__, name)
    assert issubclass(NonFiniteStatisticsError, FloatingPointError)


def test_statistics_stay_float32_under_autocast():
    torch.manual_seed(7)
    x = torch.randn(8, 8, 8, 8)
    plain = FastDeconv(8, 4, 3, padding=1, block=4, n_iter=10)
    auto = FastDeconv(8, 4, 3, padding=1, block=4, n_iter=10)
    auto.load_state_dict(plain.state_dict())
    plain(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = auto(x)
    assert out.dtype == torch.bfloat16  # the conv itself follows autocast
    assert auto.running_deconv.dtype == torch.float32
    assert torch.allclose(auto.running_deconv, plain.running_deconv, atol=1e-5)


def test_fast_deconv_gradcheck():
    torch.manual_seed(8)
    layer = FastDeconv(4, 2, 3, padding=1, block=2, n_iter=3).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    w, b = layer.weight, layer.bias
    assert torch.autograd.gradcheck(lambda x, w, b: layer(x), (x, w, b))


@pytest.mark.parametrize("case", ["interleaved", "grouped"])
def test_layer_same_for_every_newton_schulz_implementation(case):
    x = _correlated_images(3, LAYER_CASES[case]["in_channels"], 8, seed=12)
    results = []
    for impl in ("unrolled", "closed_form", "spectral"):
        torch.manual_seed(13)
        layer = FastDeconv(**LAYER_CASES[case], ns_impl=impl).double()
        xg = x.clone().requires_grad_()
        out = layer(xg)
        out.square().sum().backward()
        results.append((out, xg.grad, layer.weight.grad, layer.bias.grad))
    for other in results[1:]:
        for got, reference in zip(other, results[0], strict=True):
            assert torch.allclose(got, reference, rtol=1e-8, atol=1e-12)


def test_rejects_non_int_kernel():
    with pytest.raises(TypeError, match="int"):
        FastDeconv(4, 4, (3, 3))


# ---------------------------------------------------------------------------------------------
# Delinear
# ---------------------------------------------------------------------------------------------


def test_delinear_equals_explicit_whitened_linear_and_eval_uses_running():
    torch.manual_seed(9)
    layer = Delinear(12, 5, block=8, momentum=1.0).double()  # gcd(8, 12) = 4
    assert layer.block == 4
    x = torch.randn(30, 12, dtype=torch.float64) @ torch.randn(12, 12, dtype=torch.float64) + 2
    out = layer(x)
    chunks = x.reshape(-1, 4)
    mean = chunks.mean(0)
    cov = 1e-5 * torch.eye(4, dtype=x.dtype) + torch.cov(chunks.T, correction=0)
    deconv = isqrt_newton_schulz(cov, 5)
    white = ((chunks - mean) @ deconv.T).reshape(30, 12)
    assert torch.allclose(out, white @ layer.weight.T + layer.bias, atol=1e-10)
    layer.eval()
    assert torch.allclose(layer(x[:3]), out[:3], atol=1e-10)  # momentum 1: same statistics


def test_delinear_without_bias_and_gradcheck():
    layer = Delinear(4, 3, bias=False, block=2, n_iter=3).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: layer(x), (x, layer.weight))


# ---------------------------------------------------------------------------------------------
# ChannelDeconv
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["uncentred", "centred"])
def test_channel_deconv_moment(moment):
    torch.manual_seed(10)
    b = 8
    layer = ChannelDeconv(b, eps=1e-5, n_iter=20, moment=moment).double()
    x = torch.randn(4000, b, dtype=torch.float64) + 3.0  # mean 3, identity covariance
    var = layer(x).var(0)
    # Uncentred: D = (I + mu mu^T)^{-1/2} applied to centred data leaves variance
    # 1 - (1 - 1/(1 + 9B))/B per channel (0.877 for B = 8) (docs/method.md#channeldeconv).
    expected = 1 - (1 - 1 / (1 + 9 * b)) / b if moment == "uncentred" else 1.0
    assert torch.allclose(var, torch.full_like(var, expected), atol=0.05)


def test_channel_deconv_strided_grouping_subsampling_and_leftover():
    torch.manual_seed(11)
    layer = ChannelDeconv(4, eps=1e-5, n_iter=20, moment="centred", momentum=0.5).double()
    x = torch.randn(6, 10, 6, 6, dtype=torch.float64) * 2 + 1
    x[:, 4] += x[:, 0]  # channels 0 and 4 share a block row-sample (r*(c/B)+j, c/B=2)
    out = layer(x)
    # explicit: sample (j, n, h, w) has feature r = channel 2r + j; statistics from ::9 columns
    cols = torch.stack([torch.cat([x[:, 2 * r + j].flatten() for j in (0, 1)]) for r in range(4)])
    sample = cols[:, ::9]
    mean = sample.mean(1, keepdim=True)
    cov = 1e-5 * torch.eye(4, dtype=x.dtype) + (sample - mean) @ (sample - mean).T / sample.shape[1]
    white = isqrt_newton_schulz(cov, 20) @ (cols - mean)
    assert torch.allclose(out[:, :8], white.view(8, 6, 6, 6).transpose(0, 1), atol=1e-10)
    rest = torch.cat([x[n, 8:].flatten()[::9] for n in range(6)])  # per sample (6x6: any order)
    expected_rest = (x[:, 8:] - rest.mean()) / (rest.var() + 1e-5).sqrt()
    assert torch.allclose(out[:, 8:], expected_rest, atol=1e-10)
    # first call copies the statistics into the running buffers (no EMA from the initial ones)
    assert torch.allclose(layer.running_mean1, mean, atol=1e-12)
    assert torch.allclose(layer.running_var.squeeze(), rest.var(), atol=1e-12)
    layer(x)  # second call: EMA with momentum 0.5 of identical statistics leaves them unchanged
    assert torch.allclose(layer.running_mean1, mean, atol=1e-12)
    assert int(layer.num_batches_tracked) == 2


def _authors_leftover_statistics(x: torch.Tensor, c: int, s: int) -> tuple[float, float]:
    """Mean and unbiased variance of the authors' leftover sub-sample, by plain float64
    arithmetic: for each sample, its leftover values in (channel, h, w) order, keeping the
    values at positions 0, s^2, 2 s^2, ... of that sample's sequence."""
    values: list[float] = []
    n, channels, h, w = x.shape
    for i in range(n):
        sequence = [
            float(x[i, ch, r, q]) for ch in range(c, channels) for r in range(h) for q in range(w)
        ]
        values += sequence[:: s * s] if h >= s and w >= s else sequence
    mean = math.fsum(values) / len(values)
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, var


@pytest.mark.parametrize(
    ("channels", "block", "size"),
    # H*W not a multiple of s^2 = 9: the MobileNetV2 head's 4x4 map, PNASNetA's 8x8 map (whose
    # 176 channels are all leftover under block 512)
    [(20, 6, 4), (22, 4, 8), (7, 3, 4), (5, 8, 8)],
)
def test_channel_deconv_leftover_channels_follow_the_authors_per_sample_subsampling(
    channels, block, size
):
    torch.manual_seed(12)
    layer = ChannelDeconv(block, eps=1e-5, momentum=0.25).double()
    c = channels // block * block
    assert c < channels and (size * size) % 9 != 0
    x = torch.randn(5, channels, size, size, dtype=torch.float64) * 3
    x[:, c:] += torch.arange(channels - c, dtype=torch.float64).view(1, -1, 1, 1)  # uneven
    x[1] += 2.0  # the samples differ, so which values are sampled matters
    out = layer(x)
    mean, var = _authors_leftover_statistics(x, c, 3)
    assert layer.running_mean2.item() == pytest.approx(mean, rel=1e-12)  # first call: copied
    assert layer.running_var.item() == pytest.approx(var, rel=1e-12)
    expected = (x[:, c:] - mean) / math.sqrt(var + 1e-5)
    assert torch.allclose(out[:, c:], expected, rtol=1e-12, atol=1e-12)
    # the batch-flattened (channel, image, h, w) sub-sample differs on these shapes
    flat = x[:, c:].transpose(0, 1).reshape(-1)[::9]
    assert abs(flat.mean().item() - mean) > 1e-6
    # second call: an EMA (momentum 0.25) towards the new batch's statistics
    y = torch.randn(5, channels, size, size, dtype=torch.float64) + 1.0
    layer(y)
    mean_y, var_y = _authors_leftover_statistics(y, c, 3)
    assert layer.running_mean2.item() == pytest.approx(0.75 * mean + 0.25 * mean_y, rel=1e-12)
    assert layer.running_var.item() == pytest.approx(0.75 * var + 0.25 * var_y, rel=1e-12)
    layer.eval()
    expected = (y[:, c:] - layer.running_mean2) / (layer.running_var + 1e-5).sqrt()
    assert torch.allclose(layer(y)[:, c:], expected, rtol=1e-12, atol=1e-12)


def test_channel_deconv_leftover_below_the_stride_uses_every_value():
    torch.manual_seed(13)
    layer = ChannelDeconv(2, eps=1e-5).double()
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)  # 2x2 < s = 3: no sub-sampling
    layer(x)
    mean, var = _authors_leftover_statistics(x, 2, 3)
    assert layer.running_mean2.item() == pytest.approx(mean, rel=1e-12)
    assert layer.running_var.item() == pytest.approx(var, rel=1e-12)


def test_channel_deconv_eval_before_training_is_identity_and_gradcheck():
    layer = ChannelDeconv(2, n_iter=3).double()
    x = torch.randn(3, 5, 2, 2, dtype=torch.float64)
    layer.eval()
    assert torch.allclose(layer(x), _identity_ref(x, layer), atol=1e-12)
    layer.train()
    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(layer, (xg,))


def _identity_ref(x: torch.Tensor, layer: ChannelDeconv) -> torch.Tensor:
    """Initial buffers: D = I, mean 0 on the whitened channels; var 1 on the leftover ones."""
    out = x.clone()
    c = x.shape[1] // layer.block * layer.block
    out[:, c:] = x[:, c:] / math.sqrt(1 + layer.eps)
    return out
