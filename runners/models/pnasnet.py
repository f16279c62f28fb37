"""PNASNet-A for CIFAR (the authors' `--arch pnasnetA`; docs/method.md#other-cifar-models and
#grouped-and-depthwise-convolutions).

Cell A: a 7x7 depthwise-only "separable" conv (groups = input width) in parallel with a 3x3
max-pool (followed by a 1x1 conv when the cell downsamples), summed and rectified. 44 planes,
6 cells per stage, two downsampling cells, a 3x3 stem, avg_pool 8 and a 176->K linear layer.

ND: every conv is a FastDeconv (the depthwise one whitens each channel's 7x7 patch on its own,
block 1); the stem is frozen with 10 Newton-Schulz steps.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions

STEM_ND = {"freeze": True, "n_iter": 10}


class CellA(nn.Module):
    def __init__(self, switch: NormSwitch, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.sep_conv = switch.conv_norm(
            in_planes, out_planes, 7, stride=stride, padding=3, groups=in_planes
        )
        self.project: nn.Module = nn.Identity()
        if stride == 2:
            self.project = switch.conv_norm(in_planes, out_planes, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.max_pool2d(x, 3, stride=self.stride, padding=1)
        return F.relu(self.sep_conv(x) + self.project(pooled))


class PNASNet(nn.Module):
    def __init__(self, switch: NormSwitch, num_cells: int, planes: int, num_classes: int) -> None:
        super().__init__()
        self.stem = switch.conv_norm(3, planes, 3, padding=1, **STEM_ND)
        cells: list[nn.Module] = []
        width = planes
        for stage in range(3):
            if stage > 0:  # a downsampling cell doubles the width between stages
                cells.append(CellA(switch, width, 2 * width, 2))
                width *= 2
            cells += [CellA(switch, width, width, 1) for _ in range(num_cells)]
        self.layers = nn.Sequential(*cells)
        self.head = switch.head(width, num_classes, nn.AvgPool2d(8))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(F.relu(self.stem(x))))


def pnasnet_a(norm: str = "bn", num_classes: int = 10, nd: NDOptions | None = None) -> PNASNet:
    """PNASNet-A (44 planes, 6 cells per stage) for 32x32 inputs; `norm` is "bn" or "nd"."""
    return PNASNet(NormSwitch(norm, nd), 6, 44, num_classes)
