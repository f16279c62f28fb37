"""EfficientNet (B0 widths) for CIFAR (the authors' `--arch efficient`;
docs/method.md#other-cifar-models).

This is the early community CIFAR variant the authors' model matches, not the B0 of the
EfficientNet paper: every depthwise conv is 3x3, activations are ReLU, the squeeze-excitation
gate (C/16) acts on the block output, there is no dropout and no final 1x1 conv, and the
strides (2,1,2,2,1,2,2 after a stride-1 stem) shrink 32x32 to 1x1 before the 320->K classifier.
Its parameter count (2.91M for 10 classes) is the paper's "Net Size"; the paper-B0 layout
(5x5 kernels, swish, SE on the expanded width) would have 3.60M.

Quirk kept for fidelity: a stride-2 block adds its own pre-gate output as the "shortcut"
(out * gate + out), a stride-1 block the (projected) input.

Fidelity: the authors' ND model builds every block without deconvolution, so its "ND" variant is
BN blocks + a FastDeconv stem (frozen, 10 Newton-Schulz steps) + the ND head. This file
replicates that: only the stem and the head follow `norm`; the blocks always use BatchNorm,
also in ND mode (the one documented exception to "no BN in an ND model",
docs/method.md#norm-switch).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions

STEM_ND = {"freeze": True, "n_iter": 10}
# Per stage: (expansion, out_channels, num_blocks, stride)
Stage = tuple[int, int, int, int]
CFG_B0: tuple[Stage, ...] = (
    (1, 16, 1, 2),
    (6, 24, 2, 1),
    (6, 40, 2, 2),
    (6, 80, 3, 2),
    (6, 112, 3, 1),
    (6, 192, 4, 2),
    (6, 320, 1, 2),
)
SE_REDUCTION = 16


class MBConv(nn.Module):
    """1x1 expansion -> 3x3 depthwise -> 1x1 projection, gated by squeeze-excitation."""

    def __init__(
        self, switch: NormSwitch, in_planes: int, out_planes: int, expansion: int, stride: int
    ) -> None:
        super().__init__()
        planes = expansion * in_planes
        self.stride = stride
        self.conv1 = switch.conv_norm(in_planes, planes, 1)
        self.conv2 = switch.conv_norm(planes, planes, 3, stride, padding=1, groups=planes)
        self.conv3 = switch.conv_norm(planes, out_planes, 1)
        self.shortcut: nn.Module = nn.Identity()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = switch.conv_norm(in_planes, out_planes, 1)
        self.fc1 = switch.conv(out_planes, out_planes // SE_REDUCTION, 1, bias=True)
        self.fc2 = switch.conv(out_planes // SE_REDUCTION, out_planes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        shortcut = self.shortcut(x) if self.stride == 1 else out
        gate = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(out, 1)))).sigmoid()
        return out * gate + shortcut


class EfficientNet(nn.Module):
    def __init__(self, switch: NormSwitch, cfg: tuple[Stage, ...], num_classes: int) -> None:
        super().__init__()
        self.stem = switch.conv_norm(3, 32, 3, padding=1, **STEM_ND)
        blocks_switch = NormSwitch("bn", switch.nd)  # the authors' blocks never deconvolve
        blocks, in_planes = [], 32
        for expansion, out_planes, count, stride in cfg:
            for s in [stride] + [1] * (count - 1):
                blocks.append(MBConv(blocks_switch, in_planes, out_planes, expansion, s))
                in_planes = out_planes
        self.layers = nn.Sequential(*blocks)
        # The final map is already 1x1: the classifier flattens it, no pooling.
        self.head = switch.head(in_planes, num_classes, nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(F.relu(self.stem(x))))


def efficientnet_b0(
    norm: str = "bn", num_classes: int = 10, nd: NDOptions | None = None
) -> EfficientNet:
    """EfficientNet (B0 widths, CIFAR variant) for 32x32 inputs; `norm` is "bn" or "nd"."""
    return EfficientNet(NormSwitch(norm, nd), CFG_B0, num_classes)
