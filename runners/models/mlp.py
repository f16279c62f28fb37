"""The authors' MLP for MNIST / Fashion-MNIST (docs/method.md#mlp).

Three linear layers, in_features -> 128 -> 128 -> K, with sigmoid activations, in one of
three modes (the authors' `--method`):

- "none" (method 1): plain linears with biases, biases initialised to 0;
- "bn"   (method 2): BatchNorm1d before each sigmoid; linears without bias;
- "nd"   (method 3): ChannelDeconv(32) in front of every linear, the raw input included;
  linears without bias.

The MLP's ChannelDeconv uses the layer's own defaults in the authors' code (block 32,
eps 1e-2), not the CNN-wide `--eps 1e-5`, so block and eps are fixed here like the other
per-layer exceptions the authors hard-code. The Newton-Schulz iteration count, momentum,
sampling stride and the second-moment choice (`fc_moment`) come from `NDOptions`, whose
defaults equal the layer defaults the authors' MLP used.
"""

from __future__ import annotations

from itertools import pairwise

from torch import Tensor, nn

from runners.deconv import ChannelDeconv
from runners.errors import RunnerInputError
from runners.specs.nd_options import NDOptions

NORMS = ("none", "bn", "nd")
ND_BLOCK = 32  # ChannelDeconv(32) in models/simple.py (docs/method.md#mlp)
ND_EPS = 1e-2  # ChannelDeconv's default eps, which the MLP does not override
HIDDEN = 128  # hidden_nodes
N_LINEAR = 3  # hidden_layers: the number of linear layers


class MLP(nn.Module):
    """Sigmoid MLP with a "none" / "bn" / "nd" normalisation mode; input (N, ...) is flattened."""

    def __init__(
        self,
        norm: str,
        num_classes: int = 10,
        nd: NDOptions | None = None,
        in_features: int = 784,
        hidden: int = HIDDEN,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise RunnerInputError(
                f"MLP norm must be one of {', '.join(NORMS)}, got {norm!r}; "
                "set the spec's norm field accordingly"
            )
        self.norm, self.in_features = norm, in_features
        nd = nd or NDOptions()
        widths = [in_features] + [hidden] * (N_LINEAR - 1) + [num_classes]
        blocks = []
        for i, (n_in, n_out) in enumerate(pairwise(widths)):
            # Activation of the previous layer first, as the authors' Sequential blocks.
            pre: list[nn.Module] = []
            if i > 0:
                if norm == "bn":
                    pre.append(nn.BatchNorm1d(n_in))
                pre.append(nn.Sigmoid())
            if norm == "nd":
                pre.append(_channel_deconv(nd))
            blocks.append(nn.Sequential(*pre, nn.Linear(n_in, n_out, bias=norm == "none")))
        self.blocks = nn.Sequential(*blocks)
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.in_features:
            raise RunnerInputError(
                f"MLP expects {self.in_features} input features per sample, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)}); use 28x28 single-channel images"
            )
        return self.blocks(x)


def _channel_deconv(nd: NDOptions) -> ChannelDeconv:
    return ChannelDeconv(
        ND_BLOCK,
        eps=ND_EPS,
        n_iter=nd.n_iter,
        momentum=nd.momentum,
        sampling_stride=nd.sampling_stride,
        moment=nd.fc_moment,
    )


def mlp(norm: str, num_classes: int, nd: NDOptions | None = None) -> MLP:
    """The registry builder: the authors' 784-128-128-K sigmoid MLP."""
    return MLP(norm, num_classes=num_classes, nd=nd)
