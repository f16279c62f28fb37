"""scripts/gpu-check.sh: its CPU mode runs every check end to end; --wheels feeds PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"


def test_wheels_folder_goes_on_the_python_path(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "probe-1.0-py3-none-any.whl", "w") as whl:
        whl.writestr("gpucheck_probe.py", "VALUE = 'from the wheel'\n")
    fake = tmp_path / "python"  # stands in for the interpreter: imports the probe, echoes args
    fake.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c "
        "'import sys, gpucheck_probe; print(gpucheck_probe.VALUE, sys.argv[1:])' \"$@\"\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake)}
    out = subprocess.run(
        [str(SCRIPT), "--wheels", str(wheels), "--device", "cpu"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    assert "from the wheel" in out and "--device" in out and "--wheels" not in out


def test_wheels_without_a_folder_is_one_clear_error(tmp_path):
    proc = subprocess.run(
        [str(SCRIPT), "--wheels", str(tmp_path / "absent")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gpu-check: error: --wheels needs a folder"


@pytest.mark.slow
def test_cpu_mode_runs_every_check_and_ends_with_the_summary(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(SCRIPT), "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu-check-summary.json").read_text())
    rows = {row["check"]: row for row in summary["rows"]}
    assert list(rows) == [
        "cuda-layer", "no-sync", "step-vgg16", "step-resnet18", "audit-e2e", "device-data",
        "packing",
    ]  # fmt: skip
    assert all(row["status"] in ("ok", "skipped") for row in rows.values())
    assert rows["audit-e2e"]["status"] == "ok"  # submitit is installed here
    assert len(list(tmp_path.glob("store/runs/classify-vgg16-*-cifar10-e1-s0-*"))) == 2
    assert proc.stdout.rstrip().splitlines()[-1].startswith("| packing |")
