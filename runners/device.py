"""The device a runner computes on: the choice, a readable name, and the loader workers it
wants. Execution details only (never part of a spec); shared by every runner."""

from __future__ import annotations

import os

import torch

from runners.errors import RunnerInputError


def pick_device(name: str | None) -> torch.device:
    """'auto' (default): CUDA when present, else the CPU; 'cpu'; 'cuda' or 'cuda:N'."""
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunnerInputError(
            f"device {name!r} requested but CUDA is not available on this machine; "
            "use --device cpu or --device auto"
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise RunnerInputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def auto_workers(dev: torch.device) -> int:
    """Data-loader workers when the caller does not say: none on the CPU (they would compete
    with the training threads); on a GPU one per usable core but one, at most the authors' 16
    (main.py's --workers), so decoding keeps up with the device."""
    if dev.type != "cuda":
        return 0
    return max(0, min(16, len(os.sched_getaffinity(0)) - 1))


def device_name(dev: torch.device) -> str:
    """'cpu', or 'cuda:N (<GPU model>)' for the provenance and the logs."""
    if dev.type != "cuda":
        return dev.type
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
