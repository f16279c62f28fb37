"""ResNeXt-29 32x4d for CIFAR (docs/method.md#resnext-29, the authors' `--arch resnext`).

A 1x1 stem 3->64 (no 3x3 stem), 3 stages x 3 bottleneck blocks whose grouped width doubles per
stage (128/256/512, outputs 256/512/1024), avg_pool 8 and a 1024->K classifier. In ND mode the
stem is a frozen colour whitening with 10 Newton-Schulz steps, and the grouped 3x3 convs use
3 steps with one D per group; the other 1x1 convs use the model-wide settings.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions

# The authors' hard-coded per-layer ND settings (resnext.py L37, L68-72).
STEM_ND = {"freeze": True, "n_iter": 10}
GROUPED_ND = {"n_iter": 3}


class Block(nn.Module):
    """1x1 -> grouped 3x3 (stride) -> 1x1 (x2 width), plus a projected shortcut."""

    expansion = 2

    def __init__(
        self, switch: NormSwitch, in_planes: int, cardinality: int, width: int, stride: int
    ) -> None:
        super().__init__()
        group_width = cardinality * width
        out_planes = self.expansion * group_width
        self.conv1 = switch.conv_norm(in_planes, group_width, 1)
        self.conv2 = switch.conv_norm(
            group_width,
            group_width,
            3,
            stride=stride,
            padding=1,
            groups=cardinality,
            **GROUPED_ND,
        )
        self.conv3 = switch.conv_norm(group_width, out_planes, 1)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = switch.conv_norm(in_planes, out_planes, 1, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.relu(self.conv3(out) + self.shortcut(x))


class ResNeXt(nn.Module):
    def __init__(
        self,
        switch: NormSwitch,
        num_blocks: tuple[int, ...],
        cardinality: int,
        width: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.stem = switch.conv_norm(3, 64, 1, **STEM_ND)
        stages, in_planes, stage_width = [], 64, width
        for i, count in enumerate(num_blocks):
            for stride in [1 if i == 0 else 2] + [1] * (count - 1):
                stages.append(Block(switch, in_planes, cardinality, stage_width, stride))
                in_planes = Block.expansion * cardinality * stage_width
            stage_width *= 2
        self.layers = nn.Sequential(*stages)
        self.head = switch.head(in_planes, num_classes, nn.AvgPool2d(8))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(F.relu(self.stem(x))))


def resnext29_32x4d(
    norm: str = "bn", num_classes: int = 10, nd: NDOptions | None = None
) -> ResNeXt:
    """ResNeXt-29 with cardinality 32 and bottleneck width 4; `norm` is "bn" or "nd"."""
    return ResNeXt(NormSwitch(norm, nd), (3, 3, 3), 32, 4, num_classes)
