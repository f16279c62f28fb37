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
import itertools
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.errors import AuditError
from runners.rundir import (
    CHECKPOINT_FILE,
    LOG_FILE,
    METRICS_FILE,
    RESULT_FILE,
    RunRecord,
    RunResult,
    atomic_write_json,
    atomic_write_yaml,
    read_jsonl,
    read_result,
    read_run,
    write_result,
)
from runners.rundir import log_tail as read_log_tail

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


# Files any run directory may hold (the runner's and the harness's): one of them, or a run-id
# name, tells a run directory from another folder.
RUN_FILES = (SPEC_FILE, RESULT_FILE, METRICS_FILE, LOG_FILE, CHECKPOINT_FILE, JOB_FILE, LOCK_FILE)
RUN_ID_RE = re.compile(r"[a-z][a-z0-9.]*(-[A-Za-z0-9.]+)*-[0-9a-f]{12}")


def store_problem(root: Path) -> str | None:
    """Why `root` is not a result store, or None when it is one: a folder with a runs/ folder
    that is empty or holds run directories (or beside a plan.json `audit run` wrote)."""
    root = Path(root)
    if not root.exists():
        return "no such folder"
    if not root.is_dir():
        return "a file, not a folder"
    runs = root / RUNS_DIR
    if not runs.is_dir():
        return f"it has no {RUNS_DIR}/ folder"
    if (root / PLAN_FILE).is_file():
        return None
    children = list(itertools.islice(runs.iterdir(), 1000))
    if not children or any(_is_run_dir(child) for child in children):
        return None
    return f"its {RUNS_DIR}/ folder holds no run directory"


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and (
        bool(RUN_ID_RE.fullmatch(path.name)) or any((path / name).exists() for name in RUN_FILES)
    )


def open_store(root: Path) -> Store:
    """An existing store, for the verbs that only read one (status, check, report)."""
    problem = store_problem(root)
    if problem is not None:
        raise AuditError(
            f"--store {root}: not a result store ({problem}); pass the folder `audit run` "
            "wrote to (it holds runs/<run id>/ folders)"
        )
    return Store(Path(root), create=False)


class Store:
    """A store directory. Opening it checks that it can be written."""

    def __init__(self, root: Path, *, create: bool = True):
        self.root = Path(root)
        if create:
            self._refuse_other_folder()
            self._ensure_writable()
        elif not self.runs_dir.is_dir():
            raise AuditError(f"{self.root} is not a result store (no runs/ folder); --store DIR")

    def _refuse_other_folder(self) -> None:
        """A store is made in a new or empty folder, or reused: never inside another folder
        (`--store .` in a project would mix runs/ with its files)."""
        problem = store_problem(self.root)
        if problem is None or not self.root.exists():
            return
        if self.root.is_dir() and not any(self.root.iterdir()):
            return
        raise AuditError(
            f"--store {self.root}: not a result store ({problem}) and not empty; pass a new "
            "or empty folder, or one `audit run` wrote to"
        )

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
        except OSError:  # absent, or not a file (a damaged run directory): nobody holds it
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
        except OSError:  # e.g. a folder named job.json: nothing to read, nothing to move
            return {}
        except (ValueError, RecursionError):
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
        spec = self.record(run_id).spec or {}
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
            tail = read_log_tail(Path(path), lines)
            if tail:
                chunks.append(f"[{Path(path).name}] " + " | ".join(tail))
        return "\n".join(chunks)

    def write_plan(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.root / PLAN_FILE, data)

    def read_plan(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / PLAN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return {}
        return data if isinstance(data, dict) else {}

    # ------------------------------------------------------------------ state

    def record(self, run_id: str) -> RunRecord:
        """Everything the run directory holds, read once (runners.rundir.read_run)."""
        return read_run(self.run_dir(run_id))

    def state(self, run_id: str, scheduler: dict[str, str] | None = None) -> RunState:
        """What a run is doing, from its files, its lock and (SLURM) the scheduler's states."""
        run_dir = self.run_dir(run_id)
        record = read_run(run_dir)
        job = self.read_job(run_id, quarantine=False)
        job_id = job.get("job_id")
        job_id = job_id if isinstance(job_id, str) else None  # a hand-edited job.json
        sched = (scheduler or {}).get(job_id) if job_id else None
        attempts = job.get("attempts")
        state = RunState(
            run_id,
            "new",
            epochs_done=self.epochs_done(run_id),
            epochs_planned=_planned_epochs(record.spec or {}),
            job_id=job_id,
            scheduler_state=sched,
            attempts=len(attempts) if isinstance(attempts, list) else 0,
            gpus=_spec_gpus(record.spec or {}),
        )
        if self.is_locked(run_id):
            state.status = "running"
            return state
        if record.problem is not None:  # paths inside the run directory, without its own
            state.status, state.reason = "corrupt", record.problem.replace(f"{run_dir}/", "")
            return state
        if record.result is not None:
            state.status, state.reason = record.result.status, record.result.reason
            state.epochs_done = max(state.epochs_done, record.result.epochs_completed)
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
    """True for a valid done/diverged result in an undamaged run directory: the same reader
    as the check's (audit.results), so `audit run` and `audit check` agree on what is done."""
    return store.record(run_id).status in FINISHED


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
    "open_store",
    "result_is_finished",
    "scheduler_ids",
    "store_problem",
]
