"""The ND layer's fast paths equal the plain computations, and its step needs no host sync.

The speed itself is measured in benchmarks/bench_nd_step.py, never asserted here.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from runners.deconv import (
    Delinear,
    FastDeconv,
    NonFiniteStatisticsError,
    _gram,
    _tiled_patches,
    defer_statistics_checks,
    mean_covariance,
    nonfinite_statistics,
    statistics_finite,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    ("k", "dilation", "padding", "stride", "size"),
    [
        (3, 1, 1, 3, (32, 32)),  # the authors' default: exact tiling
        (3, 1, 1, 3, (2, 2)),  # one patch, reaching into the padding on both sides
        (3, 1, 1, 3, (7, 10)),  # crop at the end
        (3, 1, 2, 6, (9, 9)),  # stride-2 conv: s = 6, gaps between patches
        (3, 1, 0, 4, (11, 5)),
        (2, 1, 0, 3, (8, 8)),
        (3, 2, 2, 5, (12, 12)),  # dilated taps inside each tile
        (5, 1, 2, 5, (16, 13)),
    ],
)
def test_tiled_patches_equal_unfold_bit_for_bit(k, dilation, padding, stride, size):
    x = torch.randn(3, 4, *size, generator=torch.Generator().manual_seed(0))
    expected = F.unfold(x, k, dilation, padding, stride)
    got = _tiled_patches(x, k, dilation, padding, stride)
    assert got.shape == expected.shape
    assert torch.equal(got, expected)
    # and the gradients (the backward is a copy instead of col2im)
    xg, xu = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1))
    (_tiled_patches(xg, k, dilation, padding, stride) * weights).sum().backward()
    (F.unfold(xu, k, dilation, padding, stride) * weights).sum().backward()
    assert torch.equal(xg.grad, xu.grad)


def test_layer_uses_tiles_exactly_when_patches_do_not_overlap():
    x = torch.randn(2, 8, 9, 9)
    layer = FastDeconv(8, 4, 3, padding=1, block=4)
    assert torch.equal(layer._sampled_patches(x), F.unfold(x, 3, 1, 1, 3))
    overlapping = FastDeconv(8, 4, 3, padding=1, block=4, sampling_stride=2)
    assert torch.equal(overlapping._sampled_patches(x), F.unfold(x, 3, 1, 1, 2))


@pytest.mark.parametrize("batch_dims", [0, 1])
def test_mean_covariance_through_a_strided_view_equals_the_rearranged_matrix(batch_dims):
    g = torch.Generator().manual_seed(2)
    u = torch.randn(5, 24, 7, generator=g, dtype=torch.float64) + 3  # (N, C, L)
    if batch_dims:  # groups: (2, 12, N, L)

        def features(t):
            return t.view(5, 2, 12, 7).permute(1, 2, 0, 3)
    else:  # interleaved-like: (12, N, 2, L)

        def features(t):
            return t.view(5, 12, 2, 7).permute(1, 0, 2, 3)

    ua, ub = u.clone().requires_grad_(), u.clone().requires_grad_()
    mean, cov = mean_covariance(ua, 1e-5, features, batch_dims)
    flat = features(ub).reshape(*features(ub).shape[: batch_dims + 1], -1)
    ref_mean = flat.mean(-1)
    xc = flat - ref_mean.unsqueeze(-1)
    ref_cov = 1e-5 * torch.eye(12, dtype=u.dtype) + xc @ xc.mT / flat.shape[-1]
    assert torch.allclose(mean, ref_mean, atol=1e-13) and torch.allclose(cov, ref_cov, atol=1e-13)
    up_mean = torch.randn(mean.shape, generator=g, dtype=u.dtype)
    up_cov = torch.randn(cov.shape, generator=g, dtype=u.dtype)
    ((mean * up_mean).sum() + (cov * up_cov).sum()).backward()
    ((ref_mean * up_mean).sum() + (ref_cov * up_cov).sum()).backward()
    assert torch.allclose(ua.grad, ub.grad, atol=1e-12)


@pytest.mark.parametrize("n", [8, 300, 577])
def test_gram_by_upper_block_rows_equals_one_gemm_and_is_symmetric(n):
    x = torch.randn(n, 700, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = _gram(x, 1e-5, 1 / 700)
    expected = 1e-5 * torch.eye(n, dtype=x.dtype) + x @ x.T / 700
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-14)
    assert torch.equal(got, got.T)


# ---------------------------------------------------------------------------------------------
# the NaN/inf check without a host sync
# ---------------------------------------------------------------------------------------------


def _nd_model(freeze_iter: int = 100) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        FastDeconv(3, 8, 3, padding=1, freeze=True, freeze_iter=freeze_iter, n_iter=15),
        nn.ReLU(),
        FastDeconv(8, 16, 3, padding=1, block=4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        Delinear(16, 10, block=8),
    )


@pytest.fixture
def no_host_reads(monkeypatch):
    """Every Python-level way of reading a tensor value to the host raises."""

    def refuse(*args, **kwargs):
        raise AssertionError("host read of a tensor value during the step")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


@pytest.mark.parametrize("ns_impl", ["auto", "unrolled"])  # the CPU's and the GPU's default
def test_deferred_step_reads_nothing_back(no_host_reads, ns_impl):
    model = _nd_model()
    for module in model.modules():
        if hasattr(module, "ns_impl"):
            module.ns_impl = ns_impl
    defer_statistics_checks(model)
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,))
    for _ in range(3):  # forward and backward, freeze counter advancing
        F.cross_entropy(model(x), y).backward()
    assert isinstance(statistics_finite(model), torch.Tensor)


def test_deferred_check_matches_the_immediate_one():
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,))
    immediate, deferred = _nd_model(), _nd_model()
    defer_statistics_checks(deferred)
    for model in (immediate, deferred):
        F.cross_entropy(model(x), y).backward()
    for a, b in zip(immediate.state_dict().values(), deferred.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # finite steps: bit-identical buffers
    assert bool(statistics_finite(deferred)) and nonfinite_statistics(deferred) is None
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    before = {k: v.clone() for k, v in deferred.state_dict().items()}
    with pytest.raises(NonFiniteStatisticsError, match="learning rate"):
        immediate(bad)
    deferred(bad)  # no raise here: recorded, and the buffers are left unchanged
    for name, value in deferred.state_dict().items():
        if not name.endswith("counter"):
            assert torch.equal(value, before[name]), name
    assert not bool(statistics_finite(deferred))
    error = nonfinite_statistics(deferred)
    assert isinstance(error, NonFiniteStatisticsError) and "FastDeconv(3, 8" in str(error)
    assert bool(statistics_finite(deferred))  # reset after reporting


# ---------------------------------------------------------------------------------------------
# the compiled step
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_compiled_step_equals_eager_and_does_not_recompile_per_step():
    torch._dynamo.reset()
    eager, compiled = _nd_model().double(), _nd_model().double()
    for model in (eager, compiled):
        defer_statistics_checks(model)
    step_model = torch.compile(compiled)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(8, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (8,), generator=g)
    try:
        _compare_steps(eager, compiled, step_model, x, y)
    finally:
        torch._dynamo.config.error_on_recompile = False


def _compare_steps(eager, compiled, step_model, x, y) -> None:
    for step in range(3):
        losses = []
        for model, call in ((eager, eager), (compiled, step_model)):
            loss = F.cross_entropy(call(x), y)
            loss.backward()
            losses.append(loss.detach())
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
                    p.grad = None
        assert torch.allclose(losses[0], losses[1], rtol=1e-6, atol=1e-6)
        for a, b in zip(eager.state_dict().values(), compiled.state_dict().values(), strict=True):
            assert torch.allclose(a.double(), b.double(), rtol=1e-6, atol=1e-6)
        if step == 0:  # the advancing freeze counters must not force a new graph
            torch._dynamo.config.error_on_recompile = True


def test_runner_reads_loss_and_deferred_verdict_together():
    from runners.classify import loss_and_statistics

    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,))
    immediate = _nd_model()
    loss = F.cross_entropy(immediate(x), y)
    assert loss_and_statistics(loss, immediate) == (loss.item(), True)
    deferred = _nd_model()
    defer_statistics_checks(deferred)
    loss = F.cross_entropy(deferred(x), y)
    assert loss_and_statistics(loss, deferred) == (loss.item(), True)
    bad = x.clone()
    bad[1, 2, 3, 4] = float("inf")
    _, finite = loss_and_statistics(F.cross_entropy(deferred(bad), y), deferred)
    assert not finite


def test_step_model_is_eager_with_immediate_checks_on_the_cpu_by_default():
    from runners.classify import prepare_step_model
    from runners.errors import RunnerInputError

    model = _nd_model()
    assert prepare_step_model(model, torch.device("cpu"), None) is model
    assert not any(getattr(m, "defer_checks", False) for m in model.modules())
    with pytest.raises(RunnerInputError, match="compile mode"):
        prepare_step_model(model, torch.device("cpu"), "fast")


def test_channels_last_input_gives_the_same_step():
    torch.manual_seed(5)
    x = torch.randn(3, 16, 9, 9, dtype=torch.float64)
    results = []
    for variant in (x, x.to(memory_format=torch.channels_last)):
        torch.manual_seed(6)
        layer = FastDeconv(16, 4, 3, padding=1, block=4).double()
        leaf = variant.clone(memory_format=torch.preserve_format).requires_grad_()
        out = layer(leaf)
        out.square().sum().backward()
        results.append((out, leaf.grad, layer.weight.grad, layer.running_deconv))
    for other in results[1:]:
        for got, expected in zip(other, results[0], strict=True):
            assert torch.allclose(got, expected, rtol=1e-12, atol=1e-13)


@pytest.mark.slow  # a training run or 224-px forwards of 100M-parameter models
def test_runner_records_the_newton_schulz_implementation(tmp_path):
    import json

    from runners import classify
    from runners.errors import RunnerInputError
    from tests import fakedata

    data_dir = fakedata.write_cifar10(tmp_path / "data", n_train=8, n_test=4)
    spec = {"kind": "classify", "dataset": "cifar10", "arch": "vgg16", "norm": "nd",
            "epochs": 1, "batch_size": 8}  # fmt: skip
    run_dir = tmp_path / "run"
    result = classify.run(
        spec, run_dir, data_dir=data_dir, device="cpu", verify_data=False, ns_impl="spectral"
    )
    assert result.status == "done"
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["newton_schulz"].startswith("spectral")
    assert provenance["compile_mode"] == "none" and provenance["statistics_check"] == "immediate"
    with pytest.raises(RunnerInputError, match="ns_impl"):
        classify.run(spec, tmp_path / "other", data_dir=data_dir, device="cpu", ns_impl="eigh")
