"""The model registry: a lazy builder of the catalogue's architectures (runners/catalogue.py).

Importing this module does not import torch; `build_model` imports the family module.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

# The architectures, their builds and the datasets' input kinds are catalogue entries.
from runners.catalogue import ARCHS, INPUT_KINDS, ArchInfo, Builder, input_kind_of
from runners.catalogue import arch as arch_info
from runners.errors import RunnerInputError

if TYPE_CHECKING:  # annotations only: importing this module must not import torch
    from torch import nn

    from runners.specs.nd_options import NDOptions


__all__ = [
    "ARCHS",
    "INPUT_KINDS",
    "ArchInfo",
    "Builder",
    "arch_info",
    "build_model",
    "input_kind_of",
]


def build_model(
    arch: str,
    norm: str,
    num_classes: int,
    nd: NDOptions | None,
    input_kind: str | None = None,
) -> nn.Module:
    """Build `arch` with `norm` for `num_classes` on `input_kind` inputs (None: the
    architecture's first build, CIFAR for the CNNs); `nd` None means the authors' defaults."""
    info = arch_info(arch)
    kind = input_kind or info.input_kinds[0]
    builder = info.builders.get(kind)
    if builder is None:
        raise RunnerInputError(
            f"architecture {arch!r} has no model for {INPUT_KINDS.get(kind, kind)}; "
            f"it is built for: {', '.join(INPUT_KINDS[k] for k in info.input_kinds)}"
        )
    if norm not in builder.norms:
        raise RunnerInputError(
            f"architecture {arch!r} on {INPUT_KINDS[kind]} supports norm "
            f"{', '.join(builder.norms)}; got {norm!r}"
        )
    module_name, _, func = builder.target.partition(":")
    module = import_module(f"runners.models.{module_name}")
    return getattr(module, func)(norm=norm, num_classes=num_classes, nd=nd)
