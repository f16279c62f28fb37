"""The Network Deconvolution options of a spec (`nd:`), in a module of their own.

The models (`runners/models`) and the layers (`runners/deconv.py`) read these options; the
classification spec (`runners/specs/classify.py`) validates and records them. Keeping them
here lets both import the options without importing each other (no import cycle). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from runners.catalogue import DATASETS, ND_N_ITER
from runners.errors import RunnerInputError
from runners.specs.checks import is_number, require_choice, require_positive_int

ND_HEADS = ("delinear", "channel_deconv", "linear")
ND_LAYOUTS = ("interleaved", "contiguous")
FC_MOMENTS = ("uncentred", "centred")


@dataclass(frozen=True)
class NDOptions:
    """Network Deconvolution settings shared by every FastDeconv layer of a model.

    Per-layer exceptions the authors hard-code (stems with n_iter 15/10 and freeze,
    grouped convs with n_iter 3) live in the model definitions, not here.
    """

    block: int = 64  # B: channels per deconvolution block (main.py --block)
    sampling_stride: int = 3  # im2col sampling stride for the statistics (--stride)
    n_iter: int = ND_N_ITER  # Newton-Schulz iterations (--deconv-iter); part of the method
    eps: float = 1e-5  # ridge added to the covariance (--eps)
    momentum: float = 0.1  # EMA of the running mean and running D
    head: str = "delinear"  # classifier head: HEAD's Delinear, paper-era ChannelDeconv, plain
    block_fc: int = 512  # block of the head deconvolution (--block-fc)
    layout: str = "interleaved"  # authors' interleaved channel groups, or contiguous blocks
    fc_moment: str = "uncentred"  # ChannelDeconv second moment: authors' uncentred, or centred
    # ImageNet VGG-11 only: main_imagenet.py's vgg11d call skips torchvision's VGG init (its
    # name string lands in `pretrained`, docs/method.md#imagenet-models), so the authors' model
    # keeps PyTorch's default init; True runs their init loop as written (docs/fidelity.md, 8c).
    vgg11_custom_init: bool = False

    def validate(self) -> None:
        require_choice("nd.head", self.head, ND_HEADS)
        require_choice("nd.layout", self.layout, ND_LAYOUTS)
        require_choice("nd.fc_moment", self.fc_moment, FC_MOMENTS)
        for name in ("block", "sampling_stride", "n_iter", "block_fc"):
            require_positive_int(f"nd.{name}", getattr(self, name))
        if not (is_number(self.eps) and 0 < self.eps < 1):
            raise RunnerInputError(f"nd.eps must be in (0, 1), got {self.eps!r}")
        if not (is_number(self.momentum) and 0 < self.momentum <= 1):
            raise RunnerInputError(f"nd.momentum must be in (0, 1], got {self.momentum!r}")


def protocol_nd_options(dataset: str) -> NDOptions:
    """The authors' ND options for `dataset` (the catalogue's; ImageNet's head block differs)."""
    return NDOptions(**DATASETS[dataset].nd_protocol)
