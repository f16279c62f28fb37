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

    from runners.specs.nd_options import NDOptions


INPUT_KINDS = {
    "cifar": "3x32x32 CIFAR images",
    "flat": "784-d MNIST-family vectors",
    "imagenet": "3x224x224 ImageNet crops",
}
DATASET_INPUT_KIND = {
    "cifar10": "cifar",
    "cifar100": "cifar",
    "mnist": "flat",
    "fashion-mnist": "flat",
    "imagenet": "imagenet",
}


@dataclass(frozen=True)
class Builder:
    target: str  # "module:function" under runners.models
    norms: tuple[str, ...]  # the norms this build of the architecture supports


@dataclass(frozen=True)
class ArchInfo:
    name: str  # registry name in specs and claims (the authors' --arch, with the depth added
    # where the flag is ambiguous: resnet -> resnet18, resnext -> resnext29)
    paper_name: str  # the name printed in the paper's tables
    builders: dict[str, Builder]  # input kind (INPUT_KINDS) -> the model for those inputs

    @property
    def input_kinds(self) -> tuple[str, ...]:
        return tuple(self.builders)

    @property
    def norms(self) -> tuple[str, ...]:
        """Every norm of any build (use `norms_for` when the dataset is known)."""
        return tuple(dict.fromkeys(n for b in self.builders.values() for n in b.norms))

    def norms_for(self, input_kind: str) -> tuple[str, ...]:
        builder = self.builders.get(input_kind)
        return builder.norms if builder else ()


BN_ND = ("bn", "nd")
# The ImageNet models of the authors' main_imagenet.py (docs/method.md#imagenet-models): the
# same paper names as the CIFAR models, another network (7x7/2 stem, 224-px inputs). VGG-11
# has no CIFAR build.
_IMAGENET = {
    "vgg11": Builder("imagenet_vgg:vgg11", ("none", "bn", "nd")),
    "resnet18": Builder("imagenet_resnet:resnet18", BN_ND),
    "densenet121": Builder("imagenet_densenet:densenet121", BN_ND),
}


def _arch(name: str, paper_name: str, cifar: str | None = None) -> ArchInfo:
    builders = {"cifar": Builder(cifar, BN_ND)} if cifar else {}
    if name in _IMAGENET:
        builders["imagenet"] = _IMAGENET[name]
    return ArchInfo(name, paper_name, builders)


ARCHS: dict[str, ArchInfo] = {
    info.name: info
    for info in (
        _arch("vgg16", "VGG-16", "vgg:vgg16"),
        _arch("resnet18", "ResNet-18", "resnet:resnet18"),
        _arch("densenet121", "DenseNet-121", "densenet:densenet121"),
        _arch("resnext29", "ResNeXt-29", "resnext:resnext29_32x4d"),
        _arch("preact", "Preact-18", "preact:preact_resnet18"),
        _arch("mobilev2", "MobileNet v2", "mobilenetv2:mobilenetv2"),
        _arch("dpn", "DPN-92", "dpn:dpn92"),
        _arch("pnasnetA", "PNASNetA", "pnasnet:pnasnet_a"),
        _arch("senet", "SENet-18", "senet:senet18"),
        _arch("efficient", "EfficientNet", "efficientnet:efficientnet_b0"),
        _arch("vgg11", "VGG-11"),
        ArchInfo("mlp", "MLP", {"flat": Builder("mlp:mlp", ("none", "bn", "nd"))}),
    )
}


def input_kind_of(dataset: str) -> str:
    """The input kind ("cifar", "flat", "imagenet") of a dataset name."""
    try:
        return DATASET_INPUT_KIND[dataset]
    except KeyError:
        raise RunnerInputError(
            f"unknown dataset {dataset!r}; known: {', '.join(DATASET_INPUT_KIND)}"
        ) from None


def arch_info(name: str) -> ArchInfo:
    """The registry entry of `name`, or a RunnerInputError listing the known names."""
    try:
        return ARCHS[name]
    except KeyError:
        raise RunnerInputError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}"
        ) from None


def build_model(
    arch: str,
    norm: str,
    num_classes: int,
    nd: NDOptions | None,
    input_kind: str | None = None,
) -> nn.Module:
    """Build `arch` with `norm` for `num_classes` on `input_kind` inputs (None: the
    architecture's first build, CIFAR for the CNNs); `nd` None means the authors' defaults."""
    info = arch_info(arch)
    kind = input_kind or info.input_kinds[0]
    builder = info.builders.get(kind)
    if builder is None:
        raise RunnerInputError(
            f"architecture {arch!r} has no model for {INPUT_KINDS.get(kind, kind)}; "
            f"it is built for: {', '.join(INPUT_KINDS[k] for k in info.input_kinds)}"
        )
    if norm not in builder.norms:
        raise RunnerInputError(
            f"architecture {arch!r} on {INPUT_KINDS[kind]} supports norm "
            f"{', '.join(builder.norms)}; got {norm!r}"
        )
    module_name, _, func = builder.target.partition(":")
    module = import_module(f"runners.models.{module_name}")
    return getattr(module, func)(norm=norm, num_classes=num_classes, nd=nd)
