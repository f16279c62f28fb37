"""The CIFAR model zoo: architectures, the BN/ND switch and the heads (docs/method.md#models).

Parameter counts are compared with the counts in docs/method.md#models, verified against the
authors' code, and with the paper's "Net Size" column. Forward passes use batches of 2 on the CPU.
Every model is built through the registry (`build_model`), under the authors' --arch names
for the six Table-1 models beyond the four main ones.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
import torch
from torch import nn

from runners.deconv import ChannelDeconv, Delinear, FastDeconv
from runners.errors import RunnerInputError
from runners.models import build_model
from runners.models.layers import NormSwitch
from runners.specs.classify import NDOptions

ARCHS = ("vgg16", "resnet18", "densenet121", "resnext29")
EXTRA_ARCHS = ("preact", "mobilev2", "dpn", "pnasnetA", "senet", "efficient")
ALL_ARCHS = ARCHS + EXTRA_ARCHS
NORMS = ("bn", "nd")

# docs/method.md#models, counted on the authors' models (10 classes): (BN, ND).
AUTHORS_PARAMS = {
    "vgg16": (14_728_266, 14_719_818),
    "resnet18": (11_173_962, 11_169_162),
    "densenet121": (6_956_298, 6_883_018),
    "resnext29": (4_774_218, 4_761_610),
}
# The paper's Table 1 "Net Size", in millions.
PAPER_NET_SIZE = {
    **{"vgg16": 14.71, "resnet18": 11.17, "densenet121": 6.88, "resnext29": 4.76},
    **{"preact": 11.17, "mobilev2": 2.28, "dpn": 34.18, "pnasnetA": 0.13, "senet": 11.26},
    "efficient": 2.91,
}
FAST_DECONV_LAYERS = {"vgg16": 13, "resnet18": 20, "densenet121": 120, "resnext29": 31}
HEAD_FEATURES = {
    **{"vgg16": 512, "resnet18": 512, "densenet121": 1024, "resnext29": 1024},
    **{"preact": 512, "mobilev2": 1280, "dpn": 2560, "pnasnetA": 176, "senet": 512},
    "efficient": 320,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@cache
def model(arch: str, norm: str, num_classes: int = 10, head: str = "delinear") -> nn.Module:
    """Models are built once per test session: building DenseNet-121 ND is not free."""
    return build_model(arch, norm, num_classes, NDOptions(head=head))


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def modules_of(net: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("norm", NORMS)
def test_parameter_count_matches_the_authors_models(arch: str, norm: str) -> None:
    assert n_params(model(arch, norm)) == AUTHORS_PARAMS[arch][NORMS.index(norm)]


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_parameter_count_matches_the_paper_net_size(arch: str) -> None:
    paper = PAPER_NET_SIZE[arch]
    # The paper prints the ND model's size to 0.01M (VGG-16's truncated, the others rounded).
    assert abs(n_params(model(arch, "nd")) / 1e6 - paper) <= 0.01
    # BN's affine parameters (2 per channel against FastDeconv's 1 bias) add up to 1.1%
    # (DenseNet-121) to the single size the paper prints.
    assert abs(n_params(model(arch, "bn")) / 1e6 - paper) / paper < 0.012


@pytest.mark.parametrize("arch", ARCHS)
def test_nd_variant_has_no_batchnorm_and_all_convs_deconvolved(arch: str) -> None:
    bn, nd = model(arch, "bn"), model(arch, "nd")
    assert modules_of(nd, nn.modules.batchnorm._BatchNorm) == []
    assert len(modules_of(nd, FastDeconv)) == FAST_DECONV_LAYERS[arch]
    assert modules_of(nd, nn.Conv2d) == []
    # The BN variant is the same network: one conv and one BN where ND has a FastDeconv.
    assert modules_of(bn, FastDeconv) == []
    assert len(modules_of(bn, nn.Conv2d)) == FAST_DECONV_LAYERS[arch]
    assert len(modules_of(bn, nn.BatchNorm2d)) == FAST_DECONV_LAYERS[arch]


@pytest.mark.parametrize("arch", [a for a in EXTRA_ARCHS if a != "efficient"])
def test_extra_nd_variants_replace_every_conv_and_drop_every_batchnorm(arch: str) -> None:
    bn, nd = model(arch, "bn"), model(arch, "nd")
    assert modules_of(nd, nn.modules.batchnorm._BatchNorm) == []
    assert modules_of(nd, nn.Conv2d) == []
    assert len(modules_of(nd, FastDeconv)) == len(modules_of(bn, nn.Conv2d)) > 0


def test_efficientnet_nd_keeps_the_authors_batchnorm_blocks() -> None:
    bn, nd = model("efficient", "bn"), model("efficient", "nd")
    # Only the stem is deconvolved (and its BN dropped); every block stays Conv2d + BN.
    assert modules_of(nd, FastDeconv) == [first_fast_deconv("efficient")]
    assert len(modules_of(nd, nn.Conv2d)) == len(modules_of(bn, nn.Conv2d)) - 1
    assert len(modules_of(nd, nn.BatchNorm2d)) == len(modules_of(bn, nn.BatchNorm2d)) - 1
    assert isinstance(nd.head.fc, Delinear)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("norm", NORMS)
def test_forward_shape_in_train_and_eval(arch: str, norm: str) -> None:
    torch.manual_seed(0)
    net = model(arch, norm)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out_train = net.train()(x)
        out_eval = net.eval()(x)
    for out in (out_train, out_eval):
        assert out.shape == (2, 10)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ["resnext29", "pnasnetA"])
def test_nd_training_step_reaches_every_parameter(arch: str) -> None:
    # Grouped, depthwise, 1x1 and frozen-stem FastDeconvs all sit on the gradient path.
    torch.manual_seed(0)
    net = build_model(arch, "nd", 10, NDOptions()).train()
    loss = nn.functional.cross_entropy(net(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def first_fast_deconv(arch: str) -> FastDeconv:
    return modules_of(model(arch, "nd"), FastDeconv)[0]


@pytest.mark.parametrize(
    ("arch", "kernel", "freeze", "n_iter"),
    [
        ("vgg16", 3, True, 15),
        ("resnet18", 3, False, 5),
        ("densenet121", 3, False, 5),
        ("resnext29", 1, True, 10),
        ("preact", 3, True, 10),
        ("mobilev2", 3, True, 10),
        ("dpn", 3, True, 10),
        ("pnasnetA", 3, True, 10),
        ("senet", 3, True, 15),
        ("efficient", 3, True, 10),
    ],
)
def test_stem_settings_are_the_authors(arch: str, kernel: int, freeze: bool, n_iter: int) -> None:
    stem = first_fast_deconv(arch)
    assert (stem.in_channels, stem.kernel_size) == (3, kernel)
    assert (stem.freeze, stem.n_iter) == (freeze, n_iter)


def test_resnext_grouped_convs_use_three_iterations_and_per_group_whitening() -> None:
    grouped = [m for m in modules_of(model("resnext29", "nd"), FastDeconv) if m.groups > 1]
    assert len(grouped) == 9
    assert all(m.groups == 32 and m.n_iter == 3 for m in grouped)
    assert [m.block for m in grouped[::3]] == [4, 8, 16]  # B = C / groups per stage
    assert grouped[0].running_deconv.shape == (32, 36, 36)  # one D per group


def test_mobilenetv2_depthwise_and_projection_use_one_iteration() -> None:
    blocks = [m for m in model("mobilev2", "nd").modules() if hasattr(m, "conv3")]
    assert len(blocks) == 17
    for block in blocks:
        depthwise, expand = block.conv2, block.conv1
        assert depthwise.groups == depthwise.in_channels and depthwise.block == 1
        assert (depthwise.n_iter, depthwise.kernel_size) == (1, 3)
        # The projection whitens in blocks of the block's input width.
        assert (block.conv3.n_iter, block.conv3.block) == (1, expand.in_channels)
        assert expand.n_iter == 5


def test_densenet_nd_units_are_relu_then_deconvolution() -> None:
    units = [
        m
        for m in model("densenet121", "nd").modules()
        if isinstance(m, nn.Sequential) and any(isinstance(c, FastDeconv) for c in m)
    ]
    assert len(units) == 119  # every FastDeconv but the stem
    assert all(isinstance(u[0], nn.ReLU) and isinstance(u[1], FastDeconv) for u in units)


def test_model_wide_nd_options_reach_every_layer_but_the_hard_coded_ones() -> None:
    nd = NDOptions(
        block=32, sampling_stride=2, n_iter=7, eps=1e-3, layout="contiguous", block_fc=256
    )
    net = build_model("resnext29", "nd", 10, nd)
    layers = modules_of(net, FastDeconv)
    plain = [m for m in layers[1:] if m.groups == 1]
    assert all(m.n_iter == 7 and m.eps == 1e-3 and m.layout == "contiguous" for m in plain)
    assert all(m.block == 32 and m.sampling_stride == 2 * m.stride for m in plain)
    assert (layers[0].n_iter, layers[0].freeze) == (10, True)
    head = net.head.fc
    assert isinstance(head, Delinear) and (head.n_iter, head.eps, head.block) == (7, 1e-3, 256)
    # The paper-era head gets --eps, --deconv-iter and --stride too (the authors' main.py).
    pre = build_model("resnext29", "nd", 10, replace(nd, head="channel_deconv")).head.pre
    assert isinstance(pre, ChannelDeconv)
    assert (pre.n_iter, pre.eps, pre.block, pre.sampling_stride) == (7, 1e-3, 256, 2)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_head_follows_nd_options_and_bn_uses_linear(arch: str) -> None:
    features = HEAD_FEATURES[arch]
    bn_head = model(arch, "bn").head
    assert type(bn_head.fc) is nn.Linear and isinstance(bn_head.pre, nn.Identity)
    delinear = model(arch, "nd").head
    assert isinstance(delinear.fc, Delinear) and delinear.fc.in_features == features
    assert delinear.fc.block <= 512 and features % delinear.fc.block == 0  # --block-fc 512
    channel = model(arch, "nd", head="channel_deconv").head
    assert isinstance(channel.pre, ChannelDeconv) and type(channel.fc) is nn.Linear
    linear = model(arch, "nd", head="linear").head
    assert type(linear.fc) is nn.Linear and isinstance(linear.pre, nn.Identity)
    # The parameter-free ChannelDeconv head leaves the count of a plain head.
    assert n_params(model(arch, "nd", head="channel_deconv")) == n_params(model(arch, "nd"))


def test_channel_deconv_head_whitens_before_the_pool() -> None:
    nd = NDOptions(head="channel_deconv", block_fc=8, fc_moment="centred")
    head = NormSwitch("nd", nd).head(8, 3, nn.AvgPool2d(2))
    assert (head.pre.block, head.pre.moment) == (8, "centred")
    seen: list[torch.Tensor] = []
    head.fc.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    torch.manual_seed(0)
    head.train()(torch.randn(64, 8, 2, 2) * 3 + 1)
    # Whitening the 2x2 map position by position (unit variance), then averaging 4 independent
    # positions, leaves variance 1/4 at the classifier; pooling first would leave 1.
    variance = seen[0].var(0).mean().item()
    assert 0.15 < variance < 0.4


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_hundred_classes(arch: str) -> None:
    gained = n_params(model(arch, "nd", 100)) - n_params(model(arch, "nd"))
    assert gained == 90 * (HEAD_FEATURES[arch] + 1)  # one more weight row and bias per class
    assert model(arch, "nd", 100).head.fc.out_features == 100


def test_hundred_class_forward() -> None:
    net = model("resnext29", "bn", 100).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_unknown_arch_or_norm_is_a_runner_input_error() -> None:
    with pytest.raises(RunnerInputError, match="unknown architecture"):
        build_model("vgg19", "bn", 10, NDOptions())
    with pytest.raises(RunnerInputError, match="supports norm"):
        build_model("resnet18", "none", 10, NDOptions())
    with pytest.raises(RunnerInputError, match="norm must be one of"):
        NormSwitch("gn")
