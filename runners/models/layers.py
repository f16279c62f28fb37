"""The BN/ND norm switch shared by every CIFAR model family.

Each family is written once against `NormSwitch`; the switch decides what a "conv followed by
its normalisation" is (docs/method.md#norm-switch):
- bn: `nn.Conv2d` (bias as the family's BN variant has it) followed by `nn.BatchNorm2d`;
- nd: one `FastDeconv` (bias=True, it plays the role of BN's beta) and no BatchNorm at all.
Per-layer exceptions the authors hard-code (frozen stems, n_iter 15/10/3) are passed by the
family as keyword overrides, so they sit next to the layer they belong to.

The classifier head is also chosen here: BN models always end in `nn.Linear` (the authors'
`--block-fc 0`); ND models follow `NDOptions.head`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from runners.deconv import ChannelDeconv, Delinear, FastDeconv
from runners.errors import RunnerInputError
from runners.specs.nd_options import NDOptions

NORMS = ("bn", "nd")


@dataclass(frozen=True)
class NormSwitch:
    """Builds conv/norm units and heads for one model in `norm` mode ("bn" or "nd")."""

    norm: str
    nd: NDOptions = field(default_factory=NDOptions)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise RunnerInputError(
                f"norm must be one of {', '.join(NORMS)} for the CIFAR CNNs, got {self.norm!r}"
            )
        if self.nd is None:  # builders may pass nd=None for "the authors' defaults"
            object.__setattr__(self, "nd", NDOptions())

    @property
    def is_nd(self) -> bool:
        return self.norm == "nd"

    def fast_deconv(self, in_ch: int, out_ch: int, kernel_size: int, **kwargs: Any) -> FastDeconv:
        """A FastDeconv with the model-wide ND options; `kwargs` override per layer."""
        options: dict[str, Any] = {
            "block": self.nd.block,
            "sampling_stride": self.nd.sampling_stride,
            "n_iter": self.nd.n_iter,
            "eps": self.nd.eps,
            "momentum": self.nd.momentum,
            "layout": self.nd.layout,
        }
        options.update(kwargs)
        # The authors' layer folds the mean into the bias, so it needs one
        # (docs/method.md#folding).
        return FastDeconv(in_ch, out_ch, kernel_size, bias=True, **options)

    def conv(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
        **nd_overrides: Any,
    ) -> nn.Module:
        """A bare convolution: `nn.Conv2d(bias=bias)` in bn mode, a FastDeconv in nd mode.

        In ND mode the authors replace every `nn.Conv2d`, also those without a BN after them.
        """
        geometry = {"stride": stride, "padding": padding, "groups": groups}
        if self.is_nd:
            return self.fast_deconv(in_ch, out_ch, kernel_size, **geometry, **nd_overrides)
        return nn.Conv2d(in_ch, out_ch, kernel_size, bias=bias, **geometry)

    def batch_norm(self, channels: int) -> nn.Module:
        """BatchNorm2d in bn mode; nothing in nd mode (the FastDeconv next to it replaces it)."""
        return nn.Identity() if self.is_nd else nn.BatchNorm2d(channels)

    def conv_norm(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
        **nd_overrides: Any,
    ) -> nn.Module:
        """Conv -> BN (bn) or one FastDeconv (nd); no activation."""
        conv = self.conv(in_ch, out_ch, kernel_size, stride, padding, groups, bias, **nd_overrides)
        if self.is_nd:
            return conv
        return nn.Sequential(conv, nn.BatchNorm2d(out_ch))

    def norm_relu_conv(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        **nd_overrides: Any,
    ) -> nn.Module:
        """Pre-activation unit: BN -> ReLU -> Conv (bn) or ReLU -> FastDeconv (nd).

        The ReLU is not in-place: pre-activation nets reuse their input (concat, identity).
        """
        conv = self.conv(in_ch, out_ch, kernel_size, stride, padding, 1, bias, **nd_overrides)
        if self.is_nd:
            return nn.Sequential(nn.ReLU(), conv)
        return nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(), conv)

    def head(self, features: int, num_classes: int, pool: nn.Module) -> Head:
        """The classifier: [ChannelDeconv] -> pool -> flatten -> Linear or Delinear."""
        head = self.nd.head if self.is_nd else "linear"
        nd = self.nd
        pre: nn.Module = nn.Identity()
        if head == "delinear":
            fc: nn.Module = Delinear(
                features,
                num_classes,
                block=nd.block_fc,
                eps=nd.eps,
                n_iter=nd.n_iter,
                momentum=nd.momentum,
            )
        else:
            fc = nn.Linear(features, num_classes)
        if head == "channel_deconv":
            # Paper-era head: whitens the last feature map before the pool
            # (docs/method.md#channeldeconv), with the model-wide --eps, --deconv-iter and
            # --stride as the authors' main.py passes.
            pre = ChannelDeconv(
                nd.block_fc,
                eps=nd.eps,
                n_iter=nd.n_iter,
                momentum=nd.momentum,
                sampling_stride=nd.sampling_stride,
                moment=nd.fc_moment,
            )
        return Head(pre, pool, fc)


class Head(nn.Module):
    """`pre` (a ChannelDeconv or identity) -> `pool` -> flatten -> `fc`."""

    def __init__(self, pre: nn.Module, pool: nn.Module, fc: nn.Module) -> None:
        super().__init__()
        self.pre = pre
        self.pool = pool
        self.fc = fc

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.pre(x)).flatten(1))
