"""VGG-16 for CIFAR (docs/method.md#vgg-16, the authors' `--arch vgg16`).

Configuration D: 13 3x3 convs with 2x2 max-pools, then one 512->K classifier (no 4096 layers).
The BN variant keeps the conv bias; in the ND variant every conv is a FastDeconv and the first
one, a joint pixel-and-colour whitening of RGB patches, is frozen with 15 Newton-Schulz steps.
"""

from __future__ import annotations

from torch import Tensor, nn

from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions

CFG_D: tuple[int | str, ...] = (
    *(64, 64, "M", 128, 128, "M"),
    *(256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
)
# The authors' hard-coded stem settings (vgg.py L57-58).
STEM_ND = {"freeze": True, "n_iter": 15}


class VGG(nn.Module):
    def __init__(self, cfg: tuple[int | str, ...], switch: NormSwitch, num_classes: int) -> None:
        super().__init__()
        self.features = _features(cfg, switch)
        # AvgPool2d(1, 1) is the authors' identity "pool" on the final 1x1 map.
        self.head = switch.head(512, num_classes, nn.AvgPool2d(kernel_size=1, stride=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _features(cfg: tuple[int | str, ...], switch: NormSwitch) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        overrides = STEM_ND if in_ch == 3 else {}
        layers.append(switch.conv_norm(in_ch, int(item), 3, padding=1, bias=True, **overrides))
        layers.append(nn.ReLU(inplace=True))
        in_ch = int(item)
    return nn.Sequential(*layers)


def vgg16(norm: str = "bn", num_classes: int = 10, nd: NDOptions | None = None) -> VGG:
    """VGG-16 (cfg D) for 32x32 inputs; `norm` is "bn" or "nd"."""
    return VGG(CFG_D, NormSwitch(norm, nd), num_classes)
