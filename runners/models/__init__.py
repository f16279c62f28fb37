"""The model registry: architecture names, their paper names, and a lazy builder.

Importing this module does not import torch; `build_model` imports the family module.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

from runners.errors import RunnerInputError

if TYPE_CHECKING:  # annotations only: importing this module must not import torch
    from torch import nn

    from runners.specs.classify import NDOptions


@dataclass(frozen=True)
class ArchInfo:
    name: str  # registry name in specs and claims (the authors' --arch, with the depth added
    # where the flag is ambiguous: resnet -> resnet18, resnext -> resnext29)
    paper_name: str  # the name printed in the paper's Table 1
    builder: str  # "module:function" under runners.models
    norms: tuple[str, ...]  # the norms the architecture supports
    input_kind: str  # "image" (3x32x32) or "flat" (784-d MNIST-family vectors)


BN_ND = ("bn", "nd")

ARCHS: dict[str, ArchInfo] = {
    info.name: info
    for info in (
        ArchInfo("vgg16", "VGG-16", "vgg:vgg16", BN_ND, "image"),
        ArchInfo("resnet18", "ResNet-18", "resnet:resnet18", BN_ND, "image"),
        ArchInfo("densenet121", "DenseNet-121", "densenet:densenet121", BN_ND, "image"),
        ArchInfo("resnext29", "ResNeXt-29", "resnext:resnext29_32x4d", BN_ND, "image"),
        ArchInfo("preact", "Preact-18", "preact:preact_resnet18", BN_ND, "image"),
        ArchInfo("mobilev2", "MobileNet v2", "mobilenetv2:mobilenetv2", BN_ND, "image"),
        ArchInfo("dpn", "DPN-92", "dpn:dpn92", BN_ND, "image"),
        ArchInfo("pnasnetA", "PNASNetA", "pnasnet:pnasnet_a", BN_ND, "image"),
        ArchInfo("senet", "SENet-18", "senet:senet18", BN_ND, "image"),
        ArchInfo("efficient", "EfficientNet", "efficientnet:efficientnet_b0", BN_ND, "image"),
        ArchInfo("mlp", "MLP", "mlp:mlp", ("none", "bn", "nd"), "flat"),
    )
}


def arch_info(name: str) -> ArchInfo:
    """The registry entry of `name`, or a RunnerInputError listing the known names."""
    try:
        return ARCHS[name]
    except KeyError:
        raise RunnerInputError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}"
        ) from None


def build_model(arch: str, norm: str, num_classes: int, nd: NDOptions | None) -> nn.Module:
    """Build `arch` with `norm` for `num_classes`; `nd` None means the authors' ND defaults."""
    info = arch_info(arch)
    if norm not in info.norms:
        raise RunnerInputError(
            f"architecture {arch!r} supports norm {', '.join(info.norms)}; got {norm!r}"
        )
    module_name, _, func = info.builder.partition(":")
    module = import_module(f"runners.models.{module_name}")
    return getattr(module, func)(norm=norm, num_classes=num_classes, nd=nd)
