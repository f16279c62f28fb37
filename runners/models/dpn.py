"""DPN-92 for CIFAR (docs/method.md#other-cifar-models, the authors' `--arch dpn`).

Dual-path blocks: 1x1 -> grouped 3x3 (32 groups) -> 1x1 producing out_planes + dense_depth
channels; the first out_planes are added to the (projected) input's, the rest are concatenated
to a growing densely connected path. Stages (3, 4, 20, 3) with strides 1/2/2/2, a 3x3 stem,
avg_pool 4 and a linear layer on 2048 + 4 * 128 = 2560 features.

ND: every conv is a FastDeconv; the stem is frozen with 10 Newton-Schulz steps. The grouped 3x3
keeps the model-wide n_iter (the authors name no exception for it, unlike ResNeXt's 3;
docs/method.md#other-cifar-models).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions

STEM_ND = {"freeze": True, "n_iter": 10}
CARDINALITY = 32
# DPN-92: per stage (bottleneck width, residual width, blocks, dense growth, stride)
Stage = tuple[int, int, int, int, int]
CFG_92: tuple[Stage, ...] = (
    (96, 256, 3, 16, 1),
    (192, 512, 4, 32, 2),
    (384, 1024, 20, 24, 2),
    (768, 2048, 3, 128, 2),
)


class DualPathBlock(nn.Module):
    def __init__(
        self,
        switch: NormSwitch,
        last_planes: int,
        in_planes: int,
        out_planes: int,
        dense_depth: int,
        stride: int,
        first: bool,
    ) -> None:
        super().__init__()
        self.out_planes = out_planes
        self.conv1 = switch.conv_norm(last_planes, in_planes, 1)
        self.conv2 = switch.conv_norm(
            in_planes, in_planes, 3, stride=stride, padding=1, groups=CARDINALITY
        )
        self.conv3 = switch.conv_norm(in_planes, out_planes + dense_depth, 1)
        self.shortcut: nn.Module = nn.Identity()
        if first:
            self.shortcut = switch.conv_norm(
                last_planes, out_planes + dense_depth, 1, stride=stride
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        x = self.shortcut(x)
        d = self.out_planes
        merged = [x[:, :d] + out[:, :d], x[:, d:], out[:, d:]]
        return F.relu(torch.cat(merged, 1))


class DPN(nn.Module):
    def __init__(self, switch: NormSwitch, cfg: tuple[Stage, ...], num_classes: int) -> None:
        super().__init__()
        self.stem = switch.conv_norm(3, 64, 3, padding=1, **STEM_ND)
        blocks, last_planes = [], 64
        for in_planes, out_planes, count, dense_depth, stride in cfg:
            for i, s in enumerate([stride] + [1] * (count - 1)):
                blocks.append(
                    DualPathBlock(
                        switch, last_planes, in_planes, out_planes, dense_depth, s, i == 0
                    )
                )
                # The first block's shortcut seeds the dense path with one dense_depth slice.
                last_planes = out_planes + (i + 2) * dense_depth
        self.layers = nn.Sequential(*blocks)
        self.head = switch.head(last_planes, num_classes, nn.AvgPool2d(4))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(F.relu(self.stem(x))))


def dpn92(norm: str = "bn", num_classes: int = 10, nd: NDOptions | None = None) -> DPN:
    """DPN-92 for 32x32 inputs; `norm` is "bn" or "nd"."""
    return DPN(NormSwitch(norm, nd), CFG_92, num_classes)
