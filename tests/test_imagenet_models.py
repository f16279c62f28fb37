"""The ImageNet models of Table 2 (docs/method.md#imagenet-models): VGG-11, ResNet-18, DenseNet-121.

The BN and unnormalised builds are compared with torchvision's constructors, the authors' BN
baselines, on the meta device (shapes only, no memory). The ND builds are checked against
parameter counts computed here from the architecture, a formula that is first checked against
torchvision's BN models. Forward passes use batches of 2 at 64x64 (the adaptive pools allow it)
on the CPU; one ResNet-18 pass runs at 224x224.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import cache

import pytest
import torch
import torchvision
from torch import nn

from runners.deconv import ChannelDeconv, Delinear, FastDeconv
from runners.errors import RunnerInputError
from runners.models import build_model
from runners.models import imagenet_resnet as resnets
from runners.models.imagenet_densenet import DenseLayer
from runners.models.layers import NormSwitch
from runners.specs.classify import NDOptions, protocol_nd_options

BUILDS = [("vgg11", "none"), ("vgg11", "bn"), ("vgg11", "nd")] + [
    (arch, norm) for arch in ("resnet18", "densenet121") for norm in ("bn", "nd")
]
# The authors' BN baselines are torchvision's models (main_imagenet.py -a ...;
# docs/method.md#imagenet-models).
TORCHVISION = {
    ("vgg11", "none"): torchvision.models.vgg11,
    ("vgg11", "bn"): torchvision.models.vgg11_bn,
    ("resnet18", "bn"): torchvision.models.resnet18,
    ("densenet121", "bn"): torchvision.models.densenet121,
}
# Stem FastDeconvs: frozen, 15 Newton-Schulz steps, sampling stride 3 times the conv stride.
STEMS = {"vgg11": (3, 1, 3), "resnet18": (7, 2, 6), "densenet121": (7, 2, 6)}
FAST_DECONV_LAYERS = {"vgg11": 8, "resnet18": 1 + 16 + 3, "densenet121": 1 + 2 * 58 + 3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True, scope="module")
def free_cached_models() -> Iterator[None]:
    """The cached models (VGG-11 alone holds 133M parameters) are freed after the module."""
    yield
    model.cache_clear()


@cache
def model(arch: str, norm: str, num_classes: int = 1000, **nd: object) -> nn.Module:
    """A real (CPU) build through the registry; building VGG-11 (133M parameters) takes ~3 s."""
    return build_model(arch, norm, num_classes, imagenet_nd(**nd), input_kind="imagenet")


def imagenet_nd(**fields: object) -> NDOptions:
    """The authors' ImageNet ND options (--block-fc 64) with `fields` changed."""
    return replace(protocol_nd_options("imagenet"), **fields)


def meta_model(arch: str, norm: str, num_classes: int = 1000, **nd: object) -> nn.Module:
    """A build on the meta device: shapes and module structure, no memory, no init cost."""
    with torch.device("meta"):
        return build_model(arch, norm, num_classes, imagenet_nd(**nd), input_kind="imagenet")


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def shapes(tensors: Iterator[torch.Tensor]) -> list[tuple[int, ...]]:
    return sorted(tuple(t.shape) for t in tensors)


def modules_of(net: nn.Module, kind: type | tuple[type, ...]) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, kind)]


# -- parameter counts from the architecture --------------------------------------------------


def conv(c_in: int, c_out: int, k: int, bias: bool) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out  # Delinear has nn.Linear's parameters


def vgg11_params(classes: int, bn: bool) -> int:
    """cfg A: 8 biased 3x3 convs (+BN gamma, beta), then 25088-4096-4096-K."""
    total, c_in = 0, 3
    for width in (64, 128, 256, 256, 512, 512, 512, 512):
        total += conv(c_in, width, 3, bias=True) + (2 * width if bn else 0)
        c_in = width
    return total + linear(512 * 7 * 7, 4096) + linear(4096, 4096) + linear(4096, classes)


def resnet18_params(classes: int, nd: bool) -> int:
    """BN: bias-free convs + BN after each. ND: biased convs, BN only in the downsamples."""
    norm = 0 if nd else 2  # BN's gamma and beta per channel after each main-path conv
    total = conv(3, 64, 7, bias=nd) + norm * 64
    c_in = 64
    for width in (64, 128, 256, 512):
        for _ in range(2):
            total += 2 * (norm * width) + conv(c_in, width, 3, nd) + conv(width, width, 3, nd)
            if c_in != width:  # 1x1 stride-2 projection, always followed by a BN
                total += conv(c_in, width, 1, bias=nd) + 2 * width
            c_in = width
    return total + linear(512, classes)


def densenet121_params(classes: int, nd: bool) -> int:
    """Pre-activation units: BN(in) -> 1x1 (128) -> BN -> 3x3 (32); ND: no BN, biased convs."""
    norm = 0 if nd else 2
    total = conv(3, 64, 7, bias=nd) + norm * 64
    channels = 64
    for stage, layers in enumerate((6, 12, 24, 16)):
        for _ in range(layers):
            total += norm * channels + conv(channels, 128, 1, nd) + norm * 128
            total += conv(128, 32, 3, nd)
            channels += 32
        if stage < 3:
            total += norm * channels + conv(channels, channels // 2, 1, nd)
            channels //= 2
    return total + norm * channels + linear(channels, classes)


def expected_params(arch: str, norm: str, classes: int) -> int:
    if arch == "vgg11":
        return vgg11_params(classes, bn=norm == "bn")
    formula = resnet18_params if arch == "resnet18" else densenet121_params
    return formula(classes, nd=norm == "nd")


# -- BN / none builds are torchvision's models ----------------------------------------------


@pytest.mark.parametrize(("arch", "norm"), list(TORCHVISION))
def test_bn_and_plain_builds_match_torchvision(arch: str, norm: str) -> None:
    ours = meta_model(arch, norm)
    with torch.device("meta"):
        reference = TORCHVISION[arch, norm](weights=None)
    assert n_params(ours) == n_params(reference)
    assert shapes(ours.parameters()) == shapes(reference.parameters())
    assert shapes(ours.buffers()) == shapes(reference.buffers())  # BN running statistics
    # The counting formula used for the ND builds below agrees with torchvision too.
    assert n_params(reference) == expected_params(arch, norm, 1000)


@pytest.mark.parametrize(
    ("name", "block"), [("resnet34", "BasicBlock"), ("resnet50", "Bottleneck")]
)
def test_unregistered_resnets_match_torchvision(name: str, block: str) -> None:
    with torch.device("meta"):
        ours = getattr(resnets, name)("bn", 1000)
        reference = getattr(torchvision.models, name)(weights=None)
        nd = getattr(resnets, name)("nd", 1000)
    assert shapes(ours.parameters()) == shapes(reference.parameters())
    assert type(ours.layers[0][0]).__name__ == block
    # ND: the 3 (or 4) downsamples keep their BN, every conv is deconvolved.
    assert modules_of(nd, nn.Conv2d) == []
    assert len(modules_of(nd, nn.BatchNorm2d)) == (3 if name == "resnet34" else 4)


# -- ND builds --------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [1000, 10])
@pytest.mark.parametrize(("arch", "norm"), BUILDS)
def test_parameter_count_from_the_architecture(arch: str, norm: str, classes: int) -> None:
    assert n_params(meta_model(arch, norm, classes)) == expected_params(arch, norm, classes)


def test_nd_counts_against_the_bn_counts() -> None:
    # ND trades BN's gamma and beta for one FastDeconv bias per conv output channel.
    # ResNet-18: 3904 main-path BN channels out, 3904 + 896 (downsample) biases in.
    assert n_params(meta_model("resnet18", "nd")) == 11_689_512 - 2 * 3904 + 3904 + 896
    # VGG-11's convs already have a bias: ND has exactly the plain model's parameters.
    assert n_params(meta_model("vgg11", "nd")) == n_params(meta_model("vgg11", "none"))


@pytest.mark.parametrize("arch", list(STEMS))
def test_nd_stem_is_frozen_with_fifteen_iterations(arch: str) -> None:
    kernel, stride, sampling = STEMS[arch]
    stem = modules_of(meta_model(arch, "nd"), FastDeconv)[0]
    assert (stem.in_channels, stem.kernel_size, stem.stride) == (3, kernel, stride)
    assert (stem.freeze, stem.n_iter, stem.sampling_stride) == (True, 15, sampling)
    assert stem.block == 3 and stem.num_features == 3 * kernel**2  # joint RGB-patch whitening


def test_model_wide_options_reach_every_layer_but_the_stems() -> None:
    nd = {"n_iter": 7, "sampling_stride": 2, "block": 32}
    for arch in STEMS:
        stem, *rest = modules_of(meta_model(arch, "nd", **nd), FastDeconv)
        assert (stem.n_iter, stem.freeze) == (15, True)
        assert all(m.n_iter == 7 and m.sampling_stride == 2 * m.stride for m in rest)
        assert all(m.block == 32 for m in rest)
        # resnet18d and vgg11d hard-code the stem's sampling stride 3; densenet121d leaves it
        # to --stride (densenet_imagenet.py).
        assert stem.sampling_stride == stem.stride * (2 if arch == "densenet121" else 3)


@pytest.mark.parametrize("arch", list(STEMS))
def test_nd_models_deconvolve_every_conv(arch: str) -> None:
    net = meta_model(arch, "nd")
    assert modules_of(net, nn.Conv2d) == []
    assert len(modules_of(net, FastDeconv)) == FAST_DECONV_LAYERS[arch]
    batch_norms = modules_of(net, nn.modules.batchnorm._BatchNorm)
    if arch != "resnet18":
        assert batch_norms == []
        return
    # The authors keep BN after the 1x1 FastDeconv of the three downsample shortcuts only.
    shortcuts = [
        m for m in net.modules() if isinstance(getattr(m, "downsample", None), nn.Sequential)
    ]
    assert len(shortcuts) == len(batch_norms) == 3
    for block in shortcuts:
        projection, norm = block.downsample
        assert isinstance(projection, FastDeconv) and isinstance(norm, nn.BatchNorm2d)
        assert (projection.kernel_size, projection.stride) == (1, 2)
        assert norm in batch_norms


@pytest.mark.parametrize("arch", list(STEMS))
def test_nd_head_is_delinear_with_the_imagenet_block(arch: str) -> None:
    features = {"vgg11": (25088, 4096, 4096), "resnet18": (512,), "densenet121": (1024,)}[arch]
    # nd=None means the authors' ImageNet options: --block-fc 64 (main_imagenet.py).
    with torch.device("meta"):
        net = build_model(arch, "nd", 1000, None, input_kind="imagenet")
    heads = modules_of(net, Delinear)
    assert [h.in_features for h in heads] == list(features)
    assert all(h.block == 64 for h in heads)
    assert heads[-1].out_features == 1000
    assert all(h.block == 128 for h in modules_of(meta_model(arch, "nd", block_fc=128), Delinear))
    bn_fcs = modules_of(meta_model(arch, "bn"), (nn.Linear, Delinear))
    assert all(type(fc) is nn.Linear for fc in bn_fcs) and len(bn_fcs) == len(features)


def test_vgg11_nd_classifier_keeps_relu_and_dropout() -> None:
    layers = list(meta_model("vgg11", "nd").classifier)
    assert [type(m) for m in layers[1:3] + layers[4:6]] == [nn.ReLU, nn.Dropout] * 2
    assert all(isinstance(layers[i].fc, Delinear) for i in (0, 3, 6))


def test_channel_deconv_heads_sit_where_the_authors_put_them() -> None:
    head = {"head": "channel_deconv"}
    # VGG: a ChannelDeconv before each of the three nn.Linear layers.
    vgg = meta_model("vgg11", "nd", **head).classifier
    assert all(
        isinstance(vgg[i].pre, ChannelDeconv) and type(vgg[i].fc) is nn.Linear for i in (0, 3, 6)
    )
    # ResNet: on the last feature map, before the average pool.
    resnet = meta_model("resnet18", "nd", **head).head
    assert isinstance(resnet.pre, ChannelDeconv) and isinstance(resnet.pool, nn.AdaptiveAvgPool2d)
    # DenseNet: in the final norm's slot, before the final ReLU.
    densenet = meta_model("densenet121", "nd", **head)
    assert isinstance(densenet.final[0], ChannelDeconv) and isinstance(densenet.final[1], nn.ReLU)
    assert isinstance(densenet.head.pre, nn.Identity)
    assert [type(m) for m in meta_model("densenet121", "bn").final] == [nn.BatchNorm2d, nn.ReLU]


@pytest.mark.parametrize("norm", ["bn", "nd"])
def test_densenet_layer_concatenates_what_the_authors_do(norm: str) -> None:
    # The authors' ND layer rectifies its input in place before concatenating it; BN first
    # normalises, so torchvision's layer concatenates the raw input.
    layer = DenseLayer(NormSwitch(norm), 64, 32).eval()
    x = torch.randn(2, 64, 4, 4)
    with torch.no_grad():
        out = layer(x)
    assert out.shape == (2, 96, 4, 4)
    assert torch.equal(out[:, :64], torch.relu(x) if norm == "nd" else x)


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "norm"), BUILDS)
def test_forward_shape_in_train_and_eval(arch: str, norm: str) -> None:
    torch.manual_seed(0)
    net = model(arch, norm)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outputs = [net.train()(x), net.eval()(x)]
    for out in outputs:
        assert out.shape == (2, 1000)
        assert torch.isfinite(out).all()


@pytest.mark.slow  # a training run or 224-px forwards of 100M-parameter models
def test_resnet18_nd_forward_at_full_resolution() -> None:
    torch.manual_seed(0)
    net = model("resnet18", "nd")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        for out in (net.train()(x), net.eval()(x)):
            assert out.shape == (2, 1000) and torch.isfinite(out).all()


# -- initialisation ---------------------------------------------------------------------------


def std(t: torch.Tensor) -> float:
    return t.detach().float().std().item()


def kaiming_fan_out_std(weight: torch.Tensor) -> float:
    return (2 / (weight.shape[0] * weight[0, 0].numel())) ** 0.5


def pytorch_default_std(weight: torch.Tensor) -> float:
    return (1 / (3 * weight[0].numel())) ** 0.5  # kaiming_uniform_(a=sqrt(5)): U(+-1/sqrt(fan_in))


def assert_close(value: float, target: float, rel: float = 0.05) -> None:
    assert abs(value - target) <= rel * target, (value, target)


def assert_torchvision_vgg_init(net: nn.Module, conv: type) -> None:
    convs = modules_of(net, conv)
    for layer in convs[2:]:  # enough weights for a 5% std estimate
        assert_close(std(layer.weight), kaiming_fan_out_std(layer.weight))
    assert all(torch.count_nonzero(m.bias) == 0 for m in convs)
    for fc in modules_of(net, nn.Linear):
        assert_close(std(fc.weight), 0.01)
        assert torch.count_nonzero(fc.bias) == 0
    # the authors' loop matches nn.Linear only: a Delinear keeps PyTorch's default init
    for fc in modules_of(net, Delinear):
        assert_close(std(fc.weight), pytorch_default_std(fc.weight))


@pytest.mark.slow  # a training run or 224-px forwards of 100M-parameter models
@pytest.mark.parametrize("norm", ["none", "bn"])
def test_vgg11_baselines_get_torchvision_init(norm: str) -> None:
    net = model("vgg11", norm)
    assert_torchvision_vgg_init(net, nn.Conv2d)
    for bn in modules_of(net, nn.BatchNorm2d):
        assert bool((bn.weight == 1).all()) and torch.count_nonzero(bn.bias) == 0


@pytest.mark.slow  # a training run or 224-px forwards of 100M-parameter models
def test_vgg11_nd_keeps_the_default_init_unless_asked() -> None:
    # The authors' vgg11d call skips the init (docs/method.md#imagenet-models): PyTorch's
    # default everywhere.
    default = model("vgg11", "nd")
    first_fc = default.classifier[0].fc.weight
    assert_close(std(first_fc), pytorch_default_std(first_fc))  # 0.0036, not 0.01
    assert std(first_fc) < 0.5 * 0.01
    for layer in modules_of(default, FastDeconv)[2:]:
        assert_close(std(layer.weight), pytorch_default_std(layer.weight))
    assert all(torch.count_nonzero(m.bias) > 0 for m in modules_of(default, FastDeconv))
    # vgg11_custom_init applies the authors' loop as written: FastDeconv, not Delinear.
    assert_torchvision_vgg_init(
        build_model("vgg11", "nd", 1000, imagenet_nd(vgg11_custom_init=True), "imagenet"),
        FastDeconv,
    )


def test_resnet18_init_is_torchvision_for_conv_and_fast_deconv() -> None:
    for norm, conv_type in (("bn", nn.Conv2d), ("nd", FastDeconv)):
        net = model("resnet18", norm)
        for layer in modules_of(net, conv_type)[1:]:
            assert_close(std(layer.weight), kaiming_fan_out_std(layer.weight), rel=0.1)
        fc = net.head.fc  # the classifier keeps its default init in both codes
        assert_close(std(fc.weight), pytorch_default_std(fc.weight))
        assert torch.count_nonzero(fc.bias) > 0
    # FastDeconv's bias is not touched by the authors' loop.
    nd = model("resnet18", "nd")
    assert all(torch.count_nonzero(m.bias) > 0 for m in modules_of(nd, FastDeconv))


def test_densenet121_init_touches_conv2d_only() -> None:
    bn, nd = model("densenet121", "bn"), model("densenet121", "nd")
    # kaiming_normal_ with its defaults (fan_in) on Conv2d; the Linear bias zeroed.
    for layer in modules_of(bn, nn.Conv2d)[1:]:
        fan_in = layer.weight[0].numel()
        assert_close(std(layer.weight), (2 / fan_in) ** 0.5, rel=0.1)
    assert torch.count_nonzero(bn.head.fc.bias) == 0
    # The loop does not match FastDeconv or Delinear: PyTorch's default init stays.
    for layer in modules_of(nd, FastDeconv)[1:]:
        assert_close(std(layer.weight), pytorch_default_std(layer.weight), rel=0.1)
    assert torch.count_nonzero(nd.head.fc.bias) > 0


# -- registry ---------------------------------------------------------------------------------


def test_registry_keeps_the_cifar_builds_and_adds_imagenet() -> None:
    cifar = build_model("resnet18", "bn", 10, None)
    first = modules_of(cifar, nn.Conv2d)[0]
    assert (first.kernel_size, first.stride) == ((3, 3), (1, 1))
    assert not modules_of(cifar, nn.MaxPool2d)
    imagenet = meta_model("resnet18", "bn")
    first = modules_of(imagenet, nn.Conv2d)[0]
    assert (first.kernel_size, first.stride) == ((7, 7), (2, 2))
    # VGG-11 exists for ImageNet only, so it is its default build.
    with torch.device("meta"):
        assert n_params(build_model("vgg11", "none", 1000, None)) == vgg11_params(1000, bn=False)


@pytest.mark.parametrize(
    ("arch", "norm", "message"),
    [("resnet18", "none", "supports norm"), ("densenet121", "gn", "supports norm")],
)
def test_unsupported_norms_are_input_errors(arch: str, norm: str, message: str) -> None:
    with pytest.raises(RunnerInputError, match=message):
        build_model(arch, norm, 1000, None, input_kind="imagenet")


def test_vgg11_builder_rejects_unknown_norms() -> None:
    from runners.models.imagenet_vgg import vgg11

    with pytest.raises(RunnerInputError, match="norm must be one of"):
        vgg11("gn")
