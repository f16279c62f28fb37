"""SENet-18 for CIFAR (docs/method.md#other-cifar-models, the authors' `--arch senet`).

Pre-activation ResNet-18 blocks (preact.py) whose residual branch is rescaled by a
squeeze-and-excitation gate (global pool -> 1x1 conv C/16 -> ReLU -> 1x1 conv C -> sigmoid),
and a conv-BN-ReLU stem. In ND mode the gate's two 1x1 convs are FastDeconvs too (the authors
replace every conv) and the stem is frozen with 15 Newton-Schulz steps.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from runners.models.layers import NormSwitch
from runners.models.preact import PreActResNet
from runners.specs.nd_options import NDOptions

STEM_ND = {"freeze": True, "n_iter": 15}
REDUCTION = 16


class SqueezeExcite(nn.Module):
    def __init__(self, switch: NormSwitch, planes: int) -> None:
        super().__init__()
        self.fc1 = switch.conv(planes, planes // REDUCTION, 1, bias=True)
        self.fc2 = switch.conv(planes // REDUCTION, planes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        w = F.adaptive_avg_pool2d(x, 1)
        w = self.fc2(F.relu(self.fc1(w))).sigmoid()
        return x * w


def senet18(norm: str = "bn", num_classes: int = 10, nd: NDOptions | None = None) -> nn.Module:
    """SENet-18 (pre-activation blocks) for 32x32 inputs; `norm` is "bn" or "nd"."""
    switch = NormSwitch(norm, nd)
    return PreActResNet(
        switch, (2, 2, 2, 2), num_classes, STEM_ND, stem_norm_relu=True, gate=SqueezeExcite
    )
