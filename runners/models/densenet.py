"""DenseNet-121 for CIFAR (docs/method.md#densenet-121, the authors' `--arch densenet121`).

Growth 32, dense blocks [6, 12, 24, 16], compression 0.5, a 3x3 stem 3->64. Units are
pre-activation: BN -> ReLU -> conv in bn mode, ReLU -> FastDeconv in nd mode (the BNs are
dropped, so the deconvolution whitens the rectified input). The ND stem is a plain FastDeconv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions


class Bottleneck(nn.Module):
    """[BN]-ReLU-1x1 (4*growth) -> [BN]-ReLU-3x3 (growth), concatenated before the input."""

    def __init__(self, switch: NormSwitch, in_planes: int, growth: int) -> None:
        super().__init__()
        self.conv1 = switch.norm_relu_conv(in_planes, 4 * growth, 1)
        self.conv2 = switch.norm_relu_conv(4 * growth, growth, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv2(self.conv1(x)), x], 1)


class Transition(nn.Module):
    """[BN]-ReLU-1x1 compression, then 2x2 average pooling."""

    def __init__(self, switch: NormSwitch, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.conv = switch.norm_relu_conv(in_planes, out_planes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv(x), 2)


class DenseNet(nn.Module):
    def __init__(
        self,
        switch: NormSwitch,
        num_blocks: tuple[int, ...],
        growth: int,
        reduction: float,
        num_classes: int,
    ) -> None:
        super().__init__()
        planes = 2 * growth
        self.stem = switch.conv(3, planes, 3, padding=1)
        stages: list[nn.Module] = []
        for i, count in enumerate(num_blocks):
            for _ in range(count):
                stages.append(Bottleneck(switch, planes, growth))
                planes += growth
            if i < len(num_blocks) - 1:
                out_planes = int(planes * reduction)
                stages.append(Transition(switch, planes, out_planes))
                planes = out_planes
        self.layers = nn.Sequential(*stages)
        # The final BN exists in the BN variant only; the ReLU stays in both.
        self.final = nn.Sequential(switch.batch_norm(planes), nn.ReLU())
        self.head = switch.head(planes, num_classes, nn.AvgPool2d(4))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.final(self.layers(self.stem(x))))


def densenet121(norm: str = "bn", num_classes: int = 10, nd: NDOptions | None = None) -> DenseNet:
    """DenseNet-121 (growth 32) for 32x32 inputs; `norm` is "bn" or "nd"."""
    return DenseNet(NormSwitch(norm, nd), (6, 12, 24, 16), 32, 0.5, num_classes)
