"""The ND layers on CUDA (skipped without a GPU): float32 on the device, TF32 off, against a
float64 CPU reference, and no host synchronisation in a deferred step. The same checks run in
scripts/gpu-check.sh, which does not need pytest (the GPU machine may not have it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import gpu_check

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(
    "device", [pytest.param("cuda", marks=needs_cuda), pytest.param("cpu")]
)  # fmt: skip
def test_layers_match_a_float64_reference(device):
    row = gpu_check.check_cuda_layer(torch.device(device), gpu_check.SIZES["cpu"])
    assert row["status"] == "ok", row


@needs_cuda
def test_deferred_step_never_synchronises_on_cuda():
    row = gpu_check.check_no_sync(torch.device("cuda"), gpu_check.SIZES["cpu"])
    assert row["status"] == "ok", row
