"""MobileNetV2 for CIFAR (the authors' `--arch mobilev2`; docs/method.md#other-cifar-models and
#grouped-and-depthwise-convolutions).

Inverted residual blocks: 1x1 expansion -> 3x3 depthwise -> 1x1 linear projection, with a
residual (projected by a 1x1 conv when the width changes) on stride-1 blocks only. CIFAR
changes: stem stride 1 and the second stage's stride 1, so the final map is 4x4.

ND settings the authors hard-code (mobilenetv2.py L21-23): the depthwise conv uses 1 Newton-Schulz
step (its block is one channel, a per-channel 3x3 pixel whitening); the projection uses 1 step
with block = the block's input width; the stem is frozen with 10 steps.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions

STEM_ND = {"freeze": True, "n_iter": 10}
# (expansion, out_planes, num_blocks, stride)
CFG = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 2 in the ImageNet model
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    def __init__(
        self, switch: NormSwitch, in_planes: int, out_planes: int, expansion: int, stride: int
    ) -> None:
        super().__init__()
        planes = expansion * in_planes
        self.stride = stride
        self.conv1 = switch.conv_norm(in_planes, planes, 1)
        self.conv2 = switch.conv_norm(
            planes, planes, 3, stride=stride, padding=1, groups=planes, n_iter=1
        )
        self.conv3 = switch.conv_norm(planes, out_planes, 1, n_iter=1, block=in_planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = switch.conv_norm(in_planes, out_planes, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    def __init__(self, switch: NormSwitch, num_classes: int) -> None:
        super().__init__()
        self.stem = switch.conv_norm(3, 32, 3, padding=1, **STEM_ND)
        blocks, in_planes = [], 32
        for expansion, out_planes, count, stride in CFG:
            for s in [stride] + [1] * (count - 1):
                blocks.append(InvertedResidual(switch, in_planes, out_planes, expansion, s))
                in_planes = out_planes
        self.layers = nn.Sequential(*blocks)
        self.last = switch.conv_norm(in_planes, 1280, 1)
        self.head = switch.head(1280, num_classes, nn.AvgPool2d(4))

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(F.relu(self.stem(x)))
        return self.head(F.relu(self.last(out)))


def mobilenetv2(
    norm: str = "bn", num_classes: int = 10, nd: NDOptions | None = None
) -> MobileNetV2:
    """MobileNetV2 (CIFAR strides) for 32x32 inputs; `norm` is "bn" or "nd"."""
    return MobileNetV2(NormSwitch(norm, nd), num_classes)
