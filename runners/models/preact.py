"""Pre-activation ResNet-18 for CIFAR (the authors' `--arch preact`;
docs/method.md#other-cifar-models).

Units are [BN] -> ReLU -> conv; the projection shortcut (a bare 1x1 conv) reads the
pre-activated input, the identity shortcut the raw one. There is no final BN-ReLU before the
pool, as in the authors' file. In ND mode the BNs are dropped, every conv (shortcuts included)
is a FastDeconv and the stem is a frozen FastDeconv with 10 Newton-Schulz steps.

`PreActResNet` also serves SENet-18 (senet.py): an optional gate on the residual branch and an
optional norm-ReLU after the stem are the only differences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions

# The authors' hard-coded stem settings (preact_resnet.py L112).
STEM_ND = {"freeze": True, "n_iter": 10}

# A gate builder: (switch, planes) -> module applied to the residual branch before the sum.
Gate = Callable[[NormSwitch, int], nn.Module]


def no_gate(switch: NormSwitch, planes: int) -> nn.Module:
    return nn.Identity()


class PreActBlock(nn.Module):
    def __init__(
        self, switch: NormSwitch, in_planes: int, planes: int, stride: int, gate: Gate
    ) -> None:
        super().__init__()
        self.bn1 = switch.batch_norm(in_planes)
        self.conv1 = switch.conv(in_planes, planes, 3, stride=stride, padding=1)
        self.bn2 = switch.batch_norm(planes)
        self.conv2 = switch.conv(planes, planes, 3, padding=1)
        self.gate = gate(switch, planes)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = switch.conv(in_planes, planes, 1, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return self.gate(out) + shortcut


class PreActResNet(nn.Module):
    def __init__(
        self,
        switch: NormSwitch,
        num_blocks: tuple[int, ...],
        num_classes: int,
        stem_nd: dict[str, Any],
        stem_norm_relu: bool = False,
        gate: Gate = no_gate,
    ) -> None:
        super().__init__()
        self.stem = switch.conv(3, 64, 3, padding=1, **stem_nd)
        self.stem_act: nn.Module = nn.Identity()
        if stem_norm_relu:
            self.stem_act = nn.Sequential(switch.batch_norm(64), nn.ReLU())
        stages, in_planes = [], 64
        for i, count in enumerate(num_blocks):
            planes = 64 * 2**i
            for stride in [1 if i == 0 else 2] + [1] * (count - 1):
                stages.append(PreActBlock(switch, in_planes, planes, stride, gate))
                in_planes = planes
        self.layers = nn.Sequential(*stages)
        self.head = switch.head(in_planes, num_classes, nn.AvgPool2d(4))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem_act(self.stem(x))))


def preact_resnet18(
    norm: str = "bn", num_classes: int = 10, nd: NDOptions | None = None
) -> PreActResNet:
    """Pre-activation ResNet-18 for 32x32 inputs; `norm` is "bn" or "nd"."""
    return PreActResNet(NormSwitch(norm, nd), (2, 2, 2, 2), num_classes, STEM_ND)
