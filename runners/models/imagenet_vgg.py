"""VGG-11 for ImageNet (the authors' `vgg11d`; Table 2's VGG-11 rows;
docs/method.md#imagenet-models).

Configuration A: 8 3x3 convs with 5 2x2 max-pools, a 7x7 adaptive average pool and torchvision's
classifier Linear(25088, 4096)-ReLU-Dropout-Linear(4096, 4096)-ReLU-Dropout-Linear(4096, K).
Three norms, as the paper compares three rows:
- none: torchvision's `vgg11()` (conv with bias -> ReLU);
- bn: torchvision's `vgg11_bn()` (conv with bias -> BN -> ReLU);
- nd: every conv a FastDeconv (the first frozen, 15 Newton-Schulz steps, sampling stride 3) and
  each of the three Linear layers replaced per the ND head option, dropout kept
  (`vgg_imagenet.py` L33-61, L101-115).
Init: none and bn get torchvision's VGG init. The authors' nd model keeps PyTorch's default
init everywhere, because `main_imagenet.py` L220 passes 'VGG11d' as `pretrained`, which turns
`init_weights` off (docs/method.md#imagenet-models); `NDOptions.vgg11_custom_init` applies
the intended init.
"""

from __future__ import annotations

from torch import Tensor, nn

from runners.deconv import FastDeconv
from runners.errors import RunnerInputError
from runners.models.layers import NormSwitch
from runners.specs.nd_options import NDOptions, protocol_nd_options

NORMS = ("none", "bn", "nd")
CFG_A: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
# The authors' hard-coded first-layer settings, sampling stride included (vgg_imagenet.py
# L101-115).
STEM_ND = {"freeze": True, "n_iter": 15, "sampling_stride": 3}
POOLED = (7, 7)  # the adaptive pool's output: the classifier sees 512 * 7 * 7 features


class VGG(nn.Module):
    def __init__(
        self, cfg: tuple[int | str, ...], norm: str, nd: NDOptions, num_classes: int
    ) -> None:
        super().__init__()
        # NormSwitch knows bn and nd; "none" is bn's plain conv with the BN left out.
        switch = NormSwitch("nd" if norm == "nd" else "bn", nd)
        self.features = _features(cfg, switch, batch_norm=norm == "bn")
        self.avgpool = nn.AdaptiveAvgPool2d(POOLED)
        self.classifier = _classifier(switch, 512 * POOLED[0] * POOLED[1], num_classes)
        if norm != "nd" or nd.vgg11_custom_init:
            _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _features(cfg: tuple[int | str, ...], switch: NormSwitch, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        overrides = STEM_ND if in_ch == 3 else {}
        layers.append(switch.conv(in_ch, int(item), 3, padding=1, bias=True, **overrides))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(item)))
        layers.append(nn.ReLU(inplace=True))
        in_ch = int(item)
    return nn.Sequential(*layers)


def _classifier(switch: NormSwitch, features: int, num_classes: int) -> nn.Sequential:
    """Three linear layers with ReLU and dropout between them.

    Each linear layer is what the head option makes of one (the authors' `Linear = delinear`,
    or a ChannelDeconv before each nn.Linear): exactly `NormSwitch.head` with no pooling.
    """

    def linear(n_in: int, n_out: int) -> nn.Module:
        return switch.head(n_in, n_out, nn.Identity())

    return nn.Sequential(
        *(linear(features, 4096), nn.ReLU(inplace=True), nn.Dropout()),
        *(linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout()),
        linear(4096, num_classes),
    )


def _init_weights(model: nn.Module) -> None:
    """torchvision's VGG init, extended to FastDeconv as the authors' `_initialize_weights`
    is; their loop matches `nn.Linear` only, so a Delinear head keeps its default init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | FastDeconv):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def vgg11(norm: str = "bn", num_classes: int = 1000, nd: NDOptions | None = None) -> VGG:
    """VGG-11 (cfg A) for 224-px inputs; `norm` is "none", "bn" or "nd"."""
    if norm not in NORMS:
        raise RunnerInputError(f"norm must be one of {', '.join(NORMS)} for VGG-11, got {norm!r}")
    # nd None: the authors' ImageNet defaults (--block-fc 64, not main.py's 512;
    # docs/method.md#imagenet-protocol).
    return VGG(CFG_A, norm, nd if nd is not None else protocol_nd_options("imagenet"), num_classes)
