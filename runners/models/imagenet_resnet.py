"""ResNet-18/34/50 for ImageNet (docs/method.md#imagenet-models, the authors' `resnet18d`).

torchvision's layout: a 7x7/2 stem conv -> norm -> ReLU -> 3x3/2 max-pool, four stages of
BasicBlocks (18, 34) or Bottlenecks (50) at widths 64-512 with stride 2 from the second stage
on, a global average pool and one classifier. In bn mode the network is torchvision's
`resnet18()` (the authors' BN baseline, `-a resnet18`). In nd mode (`resnet_imagenet.py` at
HEAD) every conv is a FastDeconv, the stem frozen with 15 Newton-Schulz steps, but the 1x1
downsample shortcut keeps a BatchNorm after its FastDeconv (L216-220): the one place the
authors keep BN in an ND ResNet. Only `resnet18` is in the registry (Table 2).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from runners.deconv import FastDeconv
from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions, protocol_nd_options

# The authors' hard-coded stem settings, sampling stride included (resnet_imagenet.py L165-169):
# with the conv stride 2 the statistics sample every 6th patch position.
STEM_ND = {"freeze": True, "n_iter": 15, "sampling_stride": 3}


class BasicBlock(nn.Module):
    """relu(conv3x3-norm) -> conv3x3-norm, plus the (downsampled) input, then relu."""

    expansion = 1

    def __init__(
        self, switch: NormSwitch, in_planes: int, planes: int, stride: int, downsample: nn.Module
    ) -> None:
        super().__init__()
        self.conv1 = switch.conv_norm(in_planes, planes, 3, stride=stride, padding=1)
        self.conv2 = switch.conv_norm(planes, planes, 3, padding=1)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (the stride sits here, as in torchvision) -> 1x1 expanding 4x, plus input."""

    expansion = 4

    def __init__(
        self, switch: NormSwitch, in_planes: int, planes: int, stride: int, downsample: nn.Module
    ) -> None:
        super().__init__()
        self.conv1 = switch.conv_norm(in_planes, planes, 1)
        self.conv2 = switch.conv_norm(planes, planes, 3, stride=stride, padding=1)
        self.conv3 = switch.conv_norm(planes, planes * self.expansion, 1)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return F.relu(out + self.downsample(x))


Block = type[BasicBlock] | type[Bottleneck]


def _downsample(switch: NormSwitch, in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """1x1 conv (FastDeconv in nd) -> BatchNorm2d in both modes (resnet_imagenet.py L216-220)."""
    return nn.Sequential(
        switch.conv(in_planes, out_planes, 1, stride=stride), nn.BatchNorm2d(out_planes)
    )


class ResNet(nn.Module):
    def __init__(
        self, switch: NormSwitch, block: Block, num_blocks: tuple[int, ...], num_classes: int
    ) -> None:
        super().__init__()
        stem = switch.conv_norm(3, 64, 7, stride=2, padding=3, **STEM_ND)
        self.stem = nn.Sequential(stem, nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1))
        stages, in_planes = [], 64
        for i, count in enumerate(num_blocks):
            planes, stride = 64 * 2**i, 1 if i == 0 else 2
            blocks = []
            for _ in range(count):
                out_planes = planes * block.expansion
                downsample: nn.Module = nn.Identity()
                if stride != 1 or in_planes != out_planes:
                    downsample = _downsample(switch, in_planes, out_planes, stride)
                blocks.append(block(switch, in_planes, planes, stride, downsample))
                in_planes, stride = out_planes, 1
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.head = switch.head(in_planes, num_classes, nn.AdaptiveAvgPool2d(1))
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


def _init_weights(model: nn.Module) -> None:
    """torchvision's ResNet init, which the authors extend to FastDeconv (L192-194).

    Only the conv weights are re-drawn: FastDeconv's bias keeps PyTorch's default, and the
    classifier (Linear or Delinear) keeps its default init, as in both codes.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d | FastDeconv):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _switch(norm: str, nd: NDOptions | None) -> NormSwitch:
    # nd None: the authors' ImageNet defaults (--block-fc 64, not main.py's 512;
    # docs/method.md#imagenet-protocol).
    return NormSwitch(norm, nd if nd is not None else protocol_nd_options("imagenet"))


def resnet18(norm: str = "bn", num_classes: int = 1000, nd: NDOptions | None = None) -> ResNet:
    """ResNet-18 with the ImageNet stem; `norm` is "bn" (torchvision's) or "nd" (`resnet18d`)."""
    return ResNet(_switch(norm, nd), BasicBlock, (2, 2, 2, 2), num_classes)


def resnet34(norm: str = "bn", num_classes: int = 1000, nd: NDOptions | None = None) -> ResNet:
    """ResNet-34 (the authors' `resnet34d`); not in the registry."""
    return ResNet(_switch(norm, nd), BasicBlock, (3, 4, 6, 3), num_classes)


def resnet50(norm: str = "bn", num_classes: int = 1000, nd: NDOptions | None = None) -> ResNet:
    """ResNet-50 (the authors' `resnet50d`); not in the registry."""
    return ResNet(_switch(norm, nd), Bottleneck, (3, 4, 6, 3), num_classes)
