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
import math
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

from runners import safe_yaml
from runners.errors import RunnerInputError

SPEC_FILE = "spec.yaml"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
PROVENANCE_FILE = "provenance.json"
LOG_FILE = "log.txt"

STATUSES = ("done", "failed", "diverged")
# Bounds of what a reader accepts as a run file (far above what a runner writes).
SPEC_MAX_BYTES = 2**20
RESULT_MAX_BYTES = 16 * 2**20
METRICS_MAX_BYTES = 256 * 2**20
LOG_TAIL_BYTES = 256 * 2**10
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
    """All complete lines of a JSON-lines file; a torn (unparseable) last line is skipped.

    Any other line that is not a JSON object raises ValueError naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    lines = _read_text(path, METRICS_MAX_BYTES).splitlines()
    records = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            if index == len(lines) - 1:
                break  # a write cut short by a crash
            raise ValueError(f"{path}:{index + 1}: not a JSON line") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{index + 1}: not a JSON object")
        records.append(record)
    return records


def _read_text(path: Path, limit: int) -> str:
    """A run-directory file's text; ValueError (naming the file) for one that cannot be what
    the runner wrote: a folder, larger than `limit`, not UTF-8. FileNotFoundError passes."""
    try:
        if path.stat().st_size > limit:
            raise ValueError(f"{path}: larger than {limit // 2**20} MiB, not a run file")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except OSError as exc:  # a folder where a file should be, no permission, ...
        raise ValueError(f"{path}: unreadable ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 (byte {exc.start})") from None


def write_result(run_dir: Path, result: RunResult) -> None:
    result.validate()
    atomic_write_json(Path(run_dir) / RESULT_FILE, result.to_dict())


def read_result(run_dir: Path) -> RunResult | None:
    """The run's result, or None when it has none yet. A corrupt file raises ValueError."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(_read_text(path, RESULT_MAX_BYTES))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        result = RunResult.from_dict(data)
        _check_result_types(result)
        return result
    except FileNotFoundError:
        return None  # removed between the check and the read (a retry dropping it)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(f"{path}: corrupt result file ({_short(exc)})") from None


def _check_result_types(result: RunResult) -> None:
    """The fields a reader relies on have the types the runners write."""
    if not isinstance(result.metrics, dict) or not all(isinstance(k, str) for k in result.metrics):
        raise ValueError("metrics is not a mapping of names to numbers")
    if not isinstance(result.deviations, list) or not all(
        isinstance(d, str) for d in result.deviations
    ):
        raise ValueError("deviations is not a list of text")
    if result.reason is not None and not isinstance(result.reason, str):
        raise ValueError("reason is not text")
    for name in ("epochs_completed", "epochs_planned"):
        value = getattr(result, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} is not a whole number")
    for name in ("wall_seconds", "gpu_seconds"):
        value = getattr(result, name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{name} is not a number")


def read_spec(run_dir: Path) -> dict[str, Any]:
    """The run's spec.yaml as a mapping. FileNotFoundError when absent; ValueError (naming
    the file and why) for anything else: bad YAML, unsafe tags, bombs, not a mapping."""
    path = Path(run_dir) / SPEC_FILE
    text = _read_text(path, SPEC_MAX_BYTES)
    try:
        data = safe_yaml.load(text)
    except (yaml.YAMLError, ValueError) as exc:
        line = safe_yaml.error_line(exc)
        raise ValueError(f"{path}:{line}: not a valid spec ({safe_yaml.problem(exc)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping")
    return data


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- the one reader


@dataclass
class RunRecord:
    """What a run directory holds, as far as it can be read; never an exception.

    `problem` says why the directory is damaged (then `status` is "corrupt"): a spec.yaml or
    result.json that cannot be read or has fields of the wrong type, a result without its
    spec, a done result whose metric is not a finite number, a bad metrics.jsonl line.
    Results, report, plan, store and status all read run directories through `read_run`."""

    run_dir: Path
    spec: dict[str, Any] | None = None  # None: absent or unreadable
    result: RunResult | None = None  # None: absent (not finished) or unreadable
    problem: str | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl's lines
    damaged: tuple[str, ...] = ()  # the files `problem` is about (e.g. ("result.json",))

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def status(self) -> str | None:
        """done | failed | diverged | corrupt, or None for a run without a result yet."""
        if self.problem is not None:
            return "corrupt"
        return self.result.status if self.result is not None else None


# Spec fields every reader uses, and their types (whatever the runner kind).
_SPEC_TYPES = {"kind": str, "dataset": str, "arch": str, "norm": str, "epochs": int, "seed": int}


def read_run(run_dir: Path) -> RunRecord:
    """Read a run directory once, whole; a damaged part becomes `problem`, never a raise."""
    record = RunRecord(Path(run_dir))
    problems, damaged = [], []
    for name, part in _PARTS:
        try:
            part(record)
        except (ValueError, TypeError, OSError, RecursionError, yaml.YAMLError) as exc:
            problems.append(_short(exc, 300))
            damaged.append(name)
    if record.result is not None and record.spec is None and not damaged:
        problems.append(f"{SPEC_FILE} is missing, so the result cannot be matched to a claim")
        damaged.append(SPEC_FILE)
    record.problem = "; ".join(problems) or None
    record.damaged = tuple(damaged)
    return record


def _read_spec_part(record: RunRecord) -> None:
    try:
        spec = read_spec(record.run_dir)
    except FileNotFoundError:
        return
    for key, kind in _SPEC_TYPES.items():
        value = spec.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ValueError(
                f"{record.run_dir / SPEC_FILE}: {key} must be {kind.__name__}, got {value!r:.40}"
            )
    record.spec = spec


def _read_result_part(record: RunRecord) -> None:
    result = read_result(record.run_dir)
    if result is not None and result.status == "done":
        for name, value in result.metrics.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{RESULT_FILE}: metric {name} is {value!r:.40}, not a number")
            if not math.isfinite(value):
                raise ValueError(f"{RESULT_FILE}: metric {name} of a done run is {value}")
    record.result = result


def _read_metrics_part(record: RunRecord) -> None:
    record.metrics = read_jsonl(record.run_dir / METRICS_FILE)


_PARTS = (
    (SPEC_FILE, _read_spec_part),
    (RESULT_FILE, _read_result_part),
    (METRICS_FILE, _read_metrics_part),
)


def log_tail(path: Path, lines: int = 20) -> list[str]:
    """The last `lines` lines of a log file (undecodable bytes replaced); [] when unreadable.
    Reads at most the file's last 256 KiB, whatever its size."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:] if lines > 0 else []


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
