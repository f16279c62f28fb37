"""The result store: one run directory per run id, plus the harness's bookkeeping.

    <store>/runs/<run_id>/   the runner's files (runners/rundir.py) and, from the harness:
        lock                 flock held by the process training the run (one trainer per run)
        job.json             executor, submissions (SLURM job ids), attempts, failures
    <store>/plan.json        the last plan `audit run` launched (profile, label, run ids)
    <store>/slurm/           submitit's job folders (pickles, sbatch files, stdout/stderr)

The lock is the truth about "running": it is held for as long as a process trains the run
and the kernel drops it when that process dies, however it dies. Everything else is derived
from files, so `audit status` needs no daemon and any number of readers are safe.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from audit.errors import AuditError
from runners.rundir import (
    CHECKPOINT_FILE,
    LOG_FILE,
    METRICS_FILE,
    RunResult,
    atomic_write_json,
    atomic_write_yaml,
    read_jsonl,
    read_result,
    read_spec,
    write_result,
)

RUNS_DIR = "runs"
LOCK_FILE = "lock"
JOB_FILE = "job.json"
JOB_GUARD = ".job.lock"  # serialises read-modify-writes of job.json
PLAN_FILE = "plan.json"
SPEC_FILE = "spec.yaml"
LOG_TAIL_LINES = 20
# A run is finished (never trained again without --force) in these result states.
FINISHED = ("done", "diverged")


@dataclass
class RunState:
    run_id: str
    status: str  # done | diverged | failed | running | queued | interrupted | corrupt | new
    epochs_done: int = 0
    epochs_planned: int = 0
    job_id: str | None = None  # the latest SLURM job id (array ids as <job>_<task>)
    scheduler_state: str | None = None  # e.g. PENDING, RUNNING, CANCELLED (SLURM only)
    reason: str | None = None
    attempts: int = 0
    gpus: int = 1  # processes of the run, one per GPU (spec field `gpus`)


class Store:
    """A store directory. Opening it checks that it can be written."""

    def __init__(self, root: Path, *, create: bool = True):
        self.root = Path(root)
        if create:
            self._ensure_writable()
        elif not self.runs_dir.is_dir():
            raise AuditError(f"{self.root} is not a result store (no runs/ folder); --store DIR")

    def _ensure_writable(self) -> None:
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise AuditError(
                f"cannot write to the store directory {self.root}: {exc.strerror or exc}; "
                "choose a writable one with --store DIR"
            ) from None

    @property
    def runs_dir(self) -> Path:
        return self.root / RUNS_DIR

    @property
    def slurm_dir(self) -> Path:
        return self.root / "slurm"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def run_ids(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if p.is_dir())

    # ------------------------------------------------------------------ locks

    @contextlib.contextmanager
    def try_lock(self, run_id: str) -> Iterator[bool]:
        """Hold the run's lock for the `with` body; yields False (not waiting) when another
        live process holds it. The holder writes "<pid> <host>" into the lock file."""
        path = self.run_dir(run_id) / LOCK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            if not _flock_nowait(handle):
                yield False
                return
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()} {os.uname().nodename}\n")
                handle.flush()
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def is_locked(self, run_id: str) -> bool:
        """Whether a live process holds the run's lock (probe: take and drop it at once,
        leaving the file and its holder's "<pid> <host>" as they were)."""
        try:
            handle = open(self.run_dir(run_id) / LOCK_FILE)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return False
        with handle:
            if not _flock_nowait(handle):
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    # ------------------------------------------------------------------ files

    def write_spec(self, run_id: str, spec: dict[str, Any]) -> None:
        atomic_write_yaml(self.run_dir(run_id) / SPEC_FILE, spec)

    def read_job(self, run_id: str, *, quarantine: bool = True) -> dict[str, Any]:
        """The run's job.json; {} when absent or torn. A torn one is moved aside unless
        `quarantine` is False (readers such as `audit status` change nothing)."""
        path = self.run_dir(run_id) / JOB_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError:
            # bookkeeping only: a torn job.json loses the job ids, never a result
            if quarantine:
                self.quarantine(run_id, JOB_FILE)
            return {}
        return data if isinstance(data, dict) else {}

    def update_job(self, run_id: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read-modify-write job.json under its own lock (the trainer and the launcher both
        write it; the run lock cannot serialise them, the trainer holds it for hours)."""
        guard = self.run_dir(run_id) / JOB_GUARD
        guard.parent.mkdir(parents=True, exist_ok=True)
        with open(guard, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            data = self.read_job(run_id)
            change(data)
            atomic_write_json(self.run_dir(run_id) / JOB_FILE, data)
            return data

    def quarantine(self, run_id: str, name: str) -> Path | None:
        """Move a corrupt file aside as <name>.corrupt-<timestamp> (kept for inspection)."""
        path = self.run_dir(run_id) / name
        if not path.exists():
            return None
        target = path.with_name(f"{name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, target)
        return target

    def archive(self, run_id: str) -> Path | None:
        """--force: move the run's files into previous-<timestamp>/ so it trains from scratch
        and nothing earlier is lost."""
        run_dir = self.run_dir(run_id)
        if not run_dir.is_dir():
            return None
        target = run_dir / f"previous-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        target.mkdir()
        for item in run_dir.iterdir():
            if item == target or item.name in (LOCK_FILE, JOB_GUARD, SPEC_FILE):
                continue
            if item.name.startswith("previous-"):
                continue
            shutil.move(str(item), target / item.name)
        return target

    def result(self, run_id: str) -> RunResult | None:
        """The run's result; None when absent. A corrupt one raises ValueError."""
        return read_result(self.run_dir(run_id))

    def result_status(self, run_id: str) -> str | None:
        """The status of the run's result; None when it is absent or corrupt."""
        try:
            result = self.result(run_id)
        except ValueError:
            return None
        return result.status if result is not None else None

    def epochs_done(self, run_id: str) -> int:
        """Lines in the run's metrics.jsonl: the epochs trained so far. A corrupt line is not
        counted (a resumed runner rewrites the file from its checkpoint)."""
        path = self.run_dir(run_id) / METRICS_FILE
        try:
            return len(read_jsonl(path))
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                return sum(map(_is_json_line, path.read_text(errors="replace").splitlines()))
            return 0

    def record_failure(self, run_id: str, reason: str) -> None:
        """Write a failed result.json (the trainer never got to write one)."""
        spec = _read_spec_or_empty(self.run_dir(run_id))
        write_result(
            self.run_dir(run_id),
            RunResult(
                run_id=run_id,
                status="failed",
                reason=reason,
                epochs_completed=self.epochs_done(run_id),
                epochs_planned=_planned_epochs(spec),
            ),
        )

    def log_tail(self, run_id: str, extra: Sequence[Path] = (), lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the run's log (and of e.g. SLURM's stderr), for failure reasons."""
        chunks = []
        for path in [self.run_dir(run_id) / LOG_FILE, *extra]:
            with contextlib.suppress(OSError):
                text = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
                if text:
                    chunks.append(f"[{Path(path).name}] " + " | ".join(text[-lines:]))
        return "\n".join(chunks)

    def write_plan(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.root / PLAN_FILE, data)

    def read_plan(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / PLAN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    # ------------------------------------------------------------------ state

    def state(self, run_id: str, scheduler: dict[str, str] | None = None) -> RunState:
        """What a run is doing, from its files, its lock and (SLURM) the scheduler's states."""
        run_dir = self.run_dir(run_id)
        spec = _read_spec_or_empty(run_dir)
        job = self.read_job(run_id, quarantine=False)
        job_id = job.get("job_id")
        sched = (scheduler or {}).get(job_id) if job_id else None
        state = RunState(
            run_id,
            "new",
            epochs_done=self.epochs_done(run_id),
            epochs_planned=_planned_epochs(spec),
            job_id=job_id,
            scheduler_state=sched,
            attempts=len(job.get("attempts", [])),
            gpus=_spec_gpus(spec),
        )
        if self.is_locked(run_id):
            state.status = "running"
            return state
        try:
            result = self.result(run_id)
        except ValueError as exc:
            state.status, state.reason = "corrupt", str(exc)
            return state
        if result is not None:
            state.status, state.reason = result.status, result.reason
            state.epochs_done = max(state.epochs_done, result.epochs_completed)
            return state
        state.status = _unfinished_status(job, sched, state.epochs_done)
        return state


def _unfinished_status(job: dict[str, Any], sched: str | None, epochs_done: int) -> str:
    """No result and nobody training: queued at the scheduler, or interrupted, or new."""
    if sched in ("PENDING", "REQUEUED", "CONFIGURING", "RESIZING", "SUSPENDED"):
        return "queued"
    if sched and sched.startswith("RUNNING"):
        return "running"  # on another node, or between the job's start and the lock
    if job.get("submissions") and sched is None and job.get("executor") == "slurm":
        return "queued"  # submitted; the scheduler has not reported it yet
    return "interrupted" if epochs_done or job.get("attempts") else "new"


def _flock_nowait(handle: Any) -> bool:
    """Take an exclusive flock on the open file `handle`; False when another holds it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _read_spec_or_empty(run_dir: Path) -> dict[str, Any]:
    """The run's spec.yaml; {} when it is missing or unreadable (states stay computable)."""
    try:
        return read_spec(run_dir)
    except (OSError, ValueError, yaml.YAMLError):
        return {}


def _spec_gpus(spec: dict[str, Any]) -> int:
    gpus = spec.get("gpus", 1)
    return gpus if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > 1 else 1


def _planned_epochs(spec: dict[str, Any]) -> int:
    epochs = spec.get("epochs")
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else 0


def _is_json_line(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def checkpoint_is_corrupt(run_dir: Path) -> str | None:
    """Why the run's checkpoint.pt cannot be loaded, or None (absent or intact).

    torch.save writes a zip archive with a CRC per member, so a truncated or bit-flipped
    file is found here without importing torch.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"{path.name} is not a readable checkpoint ({exc})"
    return f"{path.name}: member {bad} fails its CRC" if bad else None


def result_is_finished(store: Store, run_id: str) -> bool:
    """True for a valid done/diverged result; a corrupt result counts as unfinished."""
    return store.result_status(run_id) in FINISHED


def scheduler_ids(store: Store, run_ids: list[str]) -> list[str]:
    """The SLURM job ids recorded for `run_ids` (for one batched sacct call)."""
    ids = []
    for rid in run_ids:
        job = store.read_job(rid, quarantine=False)
        if job.get("executor") == "slurm" and job.get("job_id"):
            ids.append(str(job["job_id"]))
    return ids


__all__ = [
    "FINISHED",
    "RunState",
    "Store",
    "checkpoint_is_corrupt",
    "result_is_finished",
    "scheduler_ids",
]
