"""The run directory: what a runner writes, how, and the schema of `result.json`.

A run directory holds (design.md, "Contracts worth keeping stable"):

    spec.yaml         the effective spec (every default filled in)
    metrics.jsonl     one JSON object per epoch (see EPOCH_FIELDS)
    result.json       the outcome (see RunResult), written once at the end
    checkpoint.pt     model, optimiser, scheduler, RNG state and epoch (torch.save)
    provenance.json   where and how the run was made (see collect_provenance)
    log.txt           the runner's human-readable log

Every whole-file write goes through a temporary file in the same directory and an
atomic rename, so a reader sees either the old file or the new one, never half of one.
`metrics.jsonl` is appended line by line; a reader ignores a torn last line, and a
resumed run rewrites the file up to its checkpointed epoch first.

This module never imports torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from runners.errors import RunnerInputError

SPEC_FILE = "spec.yaml"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
PROVENANCE_FILE = "provenance.json"
LOG_FILE = "log.txt"

STATUSES = ("done", "failed", "diverged")
RESULT_SCHEMA_VERSION = 1

# Keys of one metrics.jsonl line written by the classification runner, in order.
EPOCH_FIELDS = (
    "epoch",  # 1-based epoch number
    "train_loss",  # mean training loss over the epoch (augmented data, train mode)
    "train_top1",  # running training accuracy over the epoch, percent (never a claim value)
    "test_loss",  # mean test loss after the epoch (eval mode, running ND statistics)
    "test_top1",  # test accuracy after the epoch, percent
    "test_top5",  # test top-5 accuracy after the epoch, percent (Table 2 reports it)
    "lr",  # learning rate after the epoch's last scheduler step
    "seconds",  # wall-clock seconds of the epoch's training part
    "images_per_second",  # training throughput of the epoch
)


@dataclass
class RunResult:
    """The content of `result.json`: the one place the result schema is defined."""

    run_id: str  # the directory name; `<slug>-<12 hex digits of the spec hash>`
    status: str  # "done" | "failed" | "diverged"
    reason: str | None = None  # why a run failed or diverged, in words; None when done
    metrics: dict[str, float] = field(default_factory=dict)
    # ^ the numbers claims are compared against. Classification runs write
    #   test_top1 (final epoch, percent: the primary metric), test_top5, best_test_top1 (max over
    #   epochs), train_top1 (final epoch, reported separately, never compared with a
    #   test claim) and test_loss. Other runners document their own keys.
    best_epoch: int | None = None  # epoch (1-based) of best_test_top1
    epochs_completed: int = 0  # epochs whose metrics line was written
    epochs_planned: int = 0  # the spec's epoch budget
    wall_seconds: float = 0.0  # wall time over all attempts (resumes add up)
    gpu_seconds: float = 0.0  # wall seconds spent holding a GPU; 0 on the CPU
    device: str = ""  # e.g. "cuda:0 (NVIDIA H100 80GB HBM3)" or "cpu"
    deviations: list[str] = field(default_factory=list)  # departures from the protocol
    schema_version: int = RESULT_SCHEMA_VERSION

    def validate(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"result status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        known = {f.name for f in dataclasses.fields(cls)}
        result = cls(**{k: v for k, v in data.items() if k in known})
        result.validate()
        return result


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary sibling file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; a shared store must stay readable as a plain open() would make it.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def atomic_write_yaml(path: Path, data: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=True, default_flow_style=False))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it, so a crash loses at most the line being written."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True, allow_nan=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete lines of a JSON-lines file; a torn (unparseable) last line is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if index == len(lines) - 1:
                break  # a write cut short by a crash
            raise
    return records


def write_result(run_dir: Path, result: RunResult) -> None:
    result.validate()
    atomic_write_json(Path(run_dir) / RESULT_FILE, result.to_dict())


def read_result(run_dir: Path) -> RunResult | None:
    """The run's result, or None when it has none yet. A corrupt file raises ValueError."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return RunResult.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: corrupt result file ({exc})") from exc


def read_spec(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / SPEC_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping")
    return data


def write_spec(
    run_dir: Path, spec: dict[str, Any], effective: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """spec.yaml = the effective `spec`; a directory that holds another spec is refused.

    `effective` turns a spec read back from disk into its effective form (the runner's spec
    class), so a file written with implicit defaults still matches; an unreadable or invalid
    file counts as another spec.
    """
    path = Path(run_dir) / SPEC_FILE
    if path.exists():
        try:
            existing = effective(read_spec(run_dir))
        except (ValueError, TypeError, yaml.YAMLError, RunnerInputError):
            existing = None
        if existing != spec:
            raise RunnerInputError(
                f"{path} holds a different spec than the one given; "
                "use a fresh run directory for a different experiment"
            )
    atomic_write_yaml(path, spec)


class RunLog:
    """A runner's log: timestamped lines appended to log.txt, and each message (without the
    time) forwarded to the caller's callback, e.g. the launcher's progress display."""

    def __init__(self, path: Path, callback: Callable[[str], None] | None = None) -> None:
        self.path, self.callback = Path(path), callback

    def __call__(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {message}\n")
        if self.callback is not None:
            self.callback(message)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


# Written into an installed wheel by setup.py: the commit it was built from.
BUILD_INFO = Path(__file__).resolve().parent / "_build_info.json"


def project_commit() -> dict[str, Any]:
    """The project's git commit and whether the working tree had uncommitted changes: asked of
    git in a checkout; an installed wheel answers with the commit it was built from (asking git
    there would name whatever repository the environment happens to sit in)."""
    if not (Path(__file__).resolve().parent.parent / "pyproject.toml").is_file():
        return _built_commit()
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _built_commit() -> dict[str, Any]:
    try:
        info = json.loads(BUILD_INFO.read_text(encoding="utf-8"))
        return {"commit": info.get("commit"), "dirty": info.get("dirty")}
    except (OSError, ValueError, AttributeError):
        return {"commit": None, "dirty": None}


PROVENANCE_PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "submitit",
    "scikit-image",
    "jinja2",
    "pyyaml",
)


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect_provenance(**extra: Any) -> dict[str, Any]:
    """Where and how a run was made. Runners add torch/CUDA/cuDNN, device, seed and the
    dataset checksum through `extra` (this module does not import torch)."""
    return {
        "project": project_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "command_line": sys.argv,
        **extra,
    }
