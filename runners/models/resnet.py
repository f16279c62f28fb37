"""ResNet-18 for CIFAR (docs/method.md#resnet-18, the authors' `--arch resnet`).

The CIFAR stem (3x3, stride 1, no max-pool), BasicBlocks [2, 2, 2, 2] at widths 64-512 and a
1x1 projection shortcut where the shape changes. Not the ImageNet-stem `resnet18d` that one
reproduction ran on CIFAR. In ND mode every conv, the stem and the shortcuts included, is a
plain FastDeconv (the authors do not freeze this stem).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions


class BasicBlock(nn.Module):
    """relu(conv-norm) -> conv-norm, plus the (projected) input, then relu."""

    expansion = 1

    def __init__(self, switch: NormSwitch, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = switch.conv_norm(in_planes, planes, 3, stride=stride, padding=1)
        self.conv2 = switch.conv_norm(planes, planes, 3, padding=1)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = switch.conv_norm(in_planes, planes, 1, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, switch: NormSwitch, num_blocks: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.stem = switch.conv_norm(3, 64, 3, padding=1)
        stages, in_planes = [], 64
        for i, count in enumerate(num_blocks):
            planes = 64 * 2**i
            for stride in [1 if i == 0 else 2] + [1] * (count - 1):
                stages.append(BasicBlock(switch, in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*stages)
        # avg_pool 4 on the final 4x4 map, as the authors write it.
        self.head = switch.head(in_planes, num_classes, nn.AvgPool2d(4))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(F.relu(self.stem(x))))


def resnet18(norm: str = "bn", num_classes: int = 10, nd: NDOptions | None = None) -> ResNet:
    """ResNet-18 with the CIFAR stem; `norm` is "bn" or "nd"."""
    return ResNet(NormSwitch(norm, nd), (2, 2, 2, 2), num_classes)
