"""DenseNet-121 for ImageNet (docs/method.md#imagenet-models, the authors' `densenet121d`).

torchvision's DenseNet-BC: a 7x7/2 stem conv 3->64 -> norm -> ReLU -> 3x3/2 max-pool, dense
blocks [6, 12, 24, 16] of growth 32 with 4x32-wide bottlenecks, compressing transitions
(1x1 conv, 2x2 average pool) between them, a final norm -> ReLU -> global average pool and one
classifier. In bn mode the network is torchvision's `densenet121()`. In nd mode
(`densenet_imagenet.py` at HEAD) every unit is ReLU -> FastDeconv (L21-27), the stem is a
frozen FastDeconv with 15 Newton-Schulz steps, and the final BatchNorm is dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runners.models.densenet import Transition  # the same [BN]-ReLU-1x1, 2x2 pool as CIFAR's
from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions, protocol_nd_options

# The stem's hard-coded settings. Unlike resnet18d and vgg11d, densenet121d does not pass
# sampling_stride, so the stem samples with the model-wide --stride (3 by default).
STEM_ND = {"freeze": True, "n_iter": 15}
BN_SIZE = 4  # bottleneck width = BN_SIZE * growth


class DenseLayer(nn.Module):
    """[BN]-ReLU-1x1 (4*growth) -> [BN]-ReLU-3x3 (growth), concatenated after the input."""

    def __init__(self, switch: NormSwitch, in_planes: int, growth: int) -> None:
        super().__init__()
        self.conv1 = switch.norm_relu_conv(in_planes, BN_SIZE * growth, 1)
        self.conv2 = switch.norm_relu_conv(BN_SIZE * growth, growth, 3, padding=1)
        # The authors' ND layer opens with an in-place ReLU on its input (L21-22), so the tensor
        # it concatenates is the rectified input. Every later consumer rectifies first, so
        # this only shows where nothing does: a ChannelDeconv head on the final features.
        self.rectify_input = switch.is_nd

    def forward(self, x: Tensor) -> Tensor:
        new = self.conv2(self.conv1(x))
        return torch.cat([F.relu(x) if self.rectify_input else x, new], 1)


class DenseNet(nn.Module):
    def __init__(
        self, switch: NormSwitch, num_blocks: tuple[int, ...], growth: int, num_classes: int
    ) -> None:
        super().__init__()
        planes = 2 * growth
        stem = switch.conv_norm(3, planes, 7, stride=2, padding=3, **STEM_ND)
        self.stem = nn.Sequential(stem, nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1))
        stages: list[nn.Module] = []
        for i, count in enumerate(num_blocks):
            for _ in range(count):
                stages.append(DenseLayer(switch, planes, growth))
                planes += growth
            if i < len(num_blocks) - 1:
                stages.append(Transition(switch, planes, planes // 2))
                planes //= 2
        self.layers = nn.Sequential(*stages)
        head = switch.head(planes, num_classes, nn.AdaptiveAvgPool2d(1))
        # The final norm slot (the authors' `norm5`): BN in bn mode; in nd mode empty, or the
        # paper-era ChannelDeconv head, which the authors put there, before the final ReLU
        # (unlike their CIFAR DenseNet, docs/method.md#channeldeconv).
        self.final = nn.Sequential(
            head.pre if switch.is_nd else nn.BatchNorm2d(planes), nn.ReLU(inplace=True)
        )
        head.pre = nn.Identity()
        self.head = head
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.final(self.layers(self.stem(x))))


def _init_weights(model: nn.Module) -> None:
    """torchvision's DenseNet init, the authors' loop as is (docs/method.md#imagenet-models).

    It matches nn.Conv2d and nn.Linear only, so in nd mode the FastDeconvs and a Delinear head
    keep PyTorch's default init.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def densenet121(norm: str = "bn", num_classes: int = 1000, nd: NDOptions | None = None) -> DenseNet:
    """DenseNet-121 (growth 32) for 224-px inputs; `norm` is "bn" or "nd"."""
    # nd None: the authors' ImageNet defaults (--block-fc 64, not main.py's 512;
    # docs/method.md#imagenet-protocol).
    switch = NormSwitch(norm, nd if nd is not None else protocol_nd_options("imagenet"))
    return DenseNet(switch, (6, 12, 24, 16), 32, num_classes)
