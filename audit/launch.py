"""Launching runs: the job function, the executors, and the wait-and-retry loop.

The job function (`run_job`) is what every executor executes for one spec: it takes the run's
lock, skips a finished run, moves a corrupt result or checkpoint aside, calls the runner
(which resumes from its checkpoint) and records the attempt in job.json. Executors only
decide where it runs:

- debug: in this process, one run after another (tests);
- local: one child process per run on this machine (GPU if present), `--parallel` at a time;
  a child dies with its parent, so a killed `audit run` leaves no orphan trainer behind;
- slurm: submitit job arrays; `JobFunction` is Checkpointable, so a preempted (USR2) or
  timed-out job is requeued by submitit and resumes from the checkpoint.

`launch()` submits what is not finished, re-attaches to SLURM jobs recorded in job.json,
polls (rate-limited), retries failed or cancelled jobs up to `retries` times and records a
run that still fails as failed, with the tail of its logs. Only the job function imports the
runners (and so torch), lazily.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import submitit

from audit.cluster_config import SlurmParams
from audit.errors import AuditError, is_disk_full
from audit.store import (
    FINISHED,
    Store,
    checkpoint_is_corrupt,
    result_is_finished,
    scheduler_ids,
)
from runners.rundir import CHECKPOINT_FILE, LOG_FILE, RESULT_FILE, log_tail

EXECUTORS = ("local", "slurm", "debug")
# Scheduler states of a job that may still train (SLURM's, plus the local executor's).
ACTIVE_STATES = (
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "CONFIGURING",
    "COMPLETING",
    "RESIZING",
    "SUSPENDED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "SIGNALING",
    "STAGE_OUT",
)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
DISK_FULL = "no space left on device"
UNKNOWN_GRACE_S = 300  # a job sacct has never heard of this long after submission is lost


@dataclass(frozen=True)
class RunOptions:
    """Execution details passed to every job (never part of a spec or a run id)."""

    data_dir: str | None = None
    device: str | None = None


# ----------------------------------------------------------------------------- job function


def run_job(spec: dict[str, Any], store_dir: str, options: RunOptions) -> dict[str, Any]:
    """Run one spec in its run directory under the run's lock; returns the outcome.

    Never raises for a failing run (the failure is recorded in result.json and job.json),
    so a scheduler's job state says whether the job ran, the store what came of it.
    """
    from runners.specs import run_id as make_run_id

    store = Store(Path(store_dir))
    rid = make_run_id(spec)
    with store.try_lock(rid) as got:
        if not got:
            return {"run_id": rid, "outcome": "locked"}  # another live process trains it
        if result_is_finished(store, rid):
            return {"run_id": rid, "outcome": "skipped"}
        _clear_stale_files(store, rid)
        return _attempt(store, rid, spec, options)


def _clear_stale_files(store: Store, rid: str) -> None:
    """Damaged files (the reader's verdict, the check's too) and a corrupt checkpoint are
    moved aside (never used), a failed result removed (its reason is kept in job.json's
    attempts). The runner then writes the spec again and resumes or retrains."""
    record = store.record(rid)
    for name in record.damaged:
        moved = store.quarantine(rid, name)
        if moved is not None:
            _note(store, rid, f"damaged {name} moved to {moved.name}: {record.problem}")
    if store.result_status(rid) == "failed":
        (store.run_dir(rid) / RESULT_FILE).unlink()
    problem = checkpoint_is_corrupt(store.run_dir(rid))
    if problem:
        moved = store.quarantine(rid, CHECKPOINT_FILE)
        _note(store, rid, f"{problem}; moved to {moved.name}, training from scratch")


def _note(store: Store, rid: str, message: str) -> None:
    store.update_job(rid, lambda job: job.setdefault("notes", []).append(_stamp(message)))
    with open(store.run_dir(rid) / LOG_FILE, "a", encoding="utf-8") as handle:
        handle.write(_stamp(message) + "\n")


def _attempt(store: Store, rid: str, spec: dict[str, Any], options: RunOptions) -> dict[str, Any]:
    from runners.errors import RunnerInputError
    from runners.registry import get_runner

    index = _record_attempt_start(store, rid, store.epochs_done(rid))
    outcome: dict[str, Any] = {"run_id": rid, "outcome": "interrupted"}
    try:
        runner = get_runner(spec["kind"])
        data_dir = Path(options.data_dir) if options.data_dir else None
        result = runner(
            spec, store.run_dir(rid), data_dir=data_dir, device=options.device, log=None
        )
        outcome = {"run_id": rid, "outcome": result.status}
    except RunnerInputError as exc:
        store.record_failure(rid, str(exc))  # bad input: the same on every retry, so final
        outcome = {"run_id": rid, "outcome": "input-error", "error": str(exc)}
    except submitit.core.utils.UncompletedJobError:
        raise  # submitit's own signal: the job is over and not requeued
    except Exception as exc:
        if is_disk_full(exc):  # the last checkpoint is whole: freeing space lets it resume
            reason = f"{DISK_FULL}: {store.run_dir(rid)}"
            with contextlib.suppress(OSError):
                store.record_failure(rid, reason)
            outcome = {"run_id": rid, "outcome": "disk-full", "error": reason}
            return outcome
        tail = "".join(traceback.format_exception_only(exc)).strip()
        store.record_failure(rid, f"{tail}\n{store.log_tail(rid, lines=5)}".strip())
        outcome = {
            "run_id": rid,
            "outcome": "error",
            "error": tail,
            "traceback": traceback.format_exc(limit=8),
        }
    finally:
        # SystemExit (submitit's requeue) and KeyboardInterrupt leave outcome "interrupted"
        with contextlib.suppress(OSError):  # bookkeeping; a full disk must not hide the cause
            _record_attempt_end(store, rid, index, outcome)
    return outcome


def _record_attempt_start(store: Store, rid: str, start_epoch: int) -> int:
    entry = {
        "start": _now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": _slurm_job_id(),
        "start_epoch": start_epoch,
    }
    job = store.update_job(rid, lambda data: data.setdefault("attempts", []).append(entry))
    return len(job["attempts"]) - 1


def _record_attempt_end(store: Store, rid: str, index: int, outcome: dict[str, Any]) -> None:
    def change(job: dict[str, Any]) -> None:
        job["attempts"][index].update(end=_now(), **outcome)

    store.update_job(rid, change)


def _slurm_job_id() -> str | None:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    return os.environ.get("SLURM_JOB_ID")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _stamp(message: str) -> str:
    return f"{_now()} {message}"


class JobFunction(submitit.helpers.Checkpointable):
    """run_job for submitit. On preemption or time-out submitit calls `checkpoint()`, whose
    default resubmits the same call: the runner then resumes from checkpoint.pt."""

    def __call__(self, spec: dict[str, Any], store_dir: str, options: RunOptions) -> dict:
        return run_job(spec, store_dir, options)


# ----------------------------------------------------------------------------- executors


class Executor(Protocol):
    """What `launch` needs of an executor."""

    name: str

    def submit(self, specs: list[dict[str, Any]]) -> list[str]:
        """Start (or queue) one job per spec; their job ids, in order."""

    def poll(self, job_ids: list[str]) -> dict[str, str] | None:
        """State per known job id; None when the scheduler did not answer."""

    def log_files(self, job_id: str) -> list[Path]:
        """The job's own output files, for failure reasons."""

    def shutdown(self) -> None:
        """Stop what must not outlive this process (local children); SLURM jobs go on."""


class DebugExecutor:
    """In this process, at submission (tests; no scheduler)."""

    name = "debug"

    def __init__(self, store: Store, options: RunOptions):
        self.store, self.options = store, options
        self.states: dict[str, str] = {}
        self.count = 0

    def submit(self, specs: list[dict[str, Any]]) -> list[str]:
        ids = []
        for spec in specs:
            self.count += 1
            job_id = f"debug-{self.count}"
            outcome = run_job(spec, str(self.store.root), self.options)
            self.states[job_id] = "FAILED" if outcome["outcome"] == "error" else "COMPLETED"
            ids.append(job_id)
        return ids

    def poll(self, job_ids: list[str]) -> dict[str, str]:
        return {j: self.states[j] for j in job_ids if j in self.states}

    def log_files(self, job_id: str) -> list[Path]:
        return []

    def shutdown(self) -> None:
        pass


class LocalExecutor:
    """One child process per run, `parallel` at a time, started as slots free up."""

    name = "local"

    def __init__(self, store: Store, options: RunOptions, parallel: int = 1):
        self.store, self.options, self.parallel = store, options, max(1, parallel)
        self.queue: list[tuple[str, dict[str, Any]]] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.count = 0

    def submit(self, specs: list[dict[str, Any]]) -> list[str]:
        ids = []
        for spec in specs:
            self.count += 1
            job_id = f"local-{os.getpid()}-{self.count}"
            self.queue.append((job_id, spec))
            ids.append(job_id)
        self._start_queued()
        return ids

    def _start_queued(self) -> None:
        running = sum(p.poll() is None for p in self.procs.values())
        while self.queue and running < self.parallel:
            job_id, spec = self.queue.pop(0)
            payload = json.dumps(
                {"spec": spec, "store": str(self.store.root), "options": asdict(self.options)}
            )
            log = open(self._log_path(job_id), "w")  # noqa: SIM115 - handed to the child
            self.procs[job_id] = subprocess.Popen(
                [sys.executable, "-m", "audit.launch", payload],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=functools.partial(_die_with_parent, os.getpid()),
            )
            log.close()
            running += 1

    def _log_path(self, job_id: str) -> Path:
        folder = self.store.root / "local"
        folder.mkdir(exist_ok=True)
        return folder / f"{job_id}.log"

    def poll(self, job_ids: list[str]) -> dict[str, str]:
        self._start_queued()
        states = {}
        queued = {j for j, _ in self.queue}
        for job_id in job_ids:
            if job_id in queued:
                states[job_id] = "PENDING"
            elif job_id in self.procs:
                code = self.procs[job_id].poll()
                states[job_id] = (
                    "RUNNING"
                    if code is None
                    else ("COMPLETED" if code == 0 else f"FAILED (exit {code})")
                )
        return states

    def log_files(self, job_id: str) -> list[Path]:
        return [self._log_path(job_id)]

    def shutdown(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux prctl
    PR_SET_PDEATHSIG), and end now if `parent` died between the fork and the prctl (the
    kernel would never send the signal then)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


class SlurmExecutor:
    """submitit job arrays; states from one batched `sacct` call per poll."""

    name = "slurm"

    def __init__(self, store: Store, options: RunOptions, params: SlurmParams):
        if shutil.which("sbatch") is None:
            raise AuditError(
                "--executor slurm needs SLURM's sbatch on PATH, and it is not there; "
                "run on a SLURM login node or use --executor local"
            )
        self.store, self.options, self.params = store, options, params
        self.folder = store.slurm_dir / "%j"
        self.executor = submitit.SlurmExecutor(
            folder=self.folder, max_num_timeout=params.max_num_timeout
        )
        self.executor.update_parameters(**params.submitit_parameters())

    def submit(self, specs: list[dict[str, Any]]) -> list[str]:
        if not specs:
            return []
        n = len(specs)
        jobs = self.executor.map_array(
            JobFunction(), specs, [str(self.store.root)] * n, [self.options] * n
        )
        return [str(job.job_id) for job in jobs]

    def poll(self, job_ids: list[str]) -> dict[str, str] | None:
        return sacct_states(job_ids)

    def log_files(self, job_id: str) -> list[Path]:
        folder = self.store.slurm_dir / job_id
        return sorted(folder.glob("*_log.err")) + sorted(folder.glob("*_log.out"))

    def shutdown(self) -> None:
        pass  # the jobs belong to SLURM; a later `audit run` re-attaches to them


def sacct_states(job_ids: list[str]) -> dict[str, str] | None:
    """State per job id (array tasks as <job>_<task>) from one sacct call; None when sacct
    fails (the caller polls again later rather than taking silence for an ended job)."""
    mains = sorted({j.split("_")[0] for j in job_ids})
    if not mains:
        return {}
    cmd = ["sacct", "-o", "JobID,State,NodeList", "--parsable2"]
    for main in mains:
        cmd += ["-j", main]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # submitit's parser understands array ranges such as 12_[3-5%2]
    info = submitit.slurm.slurm.SlurmInfoWatcher(delay_s=0).read_info(out)
    return {j: info[j]["State"] for j in job_ids if j in info}


def make_executor(
    name: str,
    store: Store,
    options: RunOptions,
    *,
    params: SlurmParams | None = None,
    parallel: int = 1,
) -> Executor:
    """The executor called `name`; unknown names are an AuditError."""
    if name == "debug":
        return DebugExecutor(store, options)
    if name == "local":
        return LocalExecutor(store, options, parallel)
    if name == "slurm":
        return SlurmExecutor(store, options, params or SlurmParams())
    raise AuditError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


# ----------------------------------------------------------------------------- wait and retry


@dataclass
class Tracked:
    """One run `launch` waits for: its current job and this invocation's submissions."""

    run_id: str
    spec: dict[str, Any]
    job_id: str | None = None
    submitted_at: float = 0.0
    submissions: int = 0
    waiting_on_lock: bool = False  # another process (another `audit run`) trains it now


@dataclass
class LaunchReport:
    settled: dict[str, str] = field(default_factory=dict)  # run id -> done|diverged|failed|...
    events: list[str] = field(default_factory=list)


def launch(
    specs: list[dict[str, Any]],
    store: Store,
    executor: Executor,
    *,
    retries: int = 2,
    force: bool = False,
    detach: bool = False,
    poll_s: float = 15.0,
    say: Callable[[str], None] = print,
    on_poll: Callable[[list[Tracked], dict[str, str]], None] | None = None,
) -> LaunchReport:
    """Bring every spec to a finished result (or a recorded failure); safe to repeat."""
    from runners.specs import run_id as make_run_id

    report = LaunchReport()
    tracked = [Tracked(make_run_id(s), s) for s in specs]
    recorded = _recorded_states(store, executor, [t.run_id for t in tracked])
    _report_corrupt(store, [t.run_id for t in tracked], say)
    todo = [t for t in tracked if _prepare(store, t, force, recorded, report)]
    _submit(store, executor, [t for t in todo if t.job_id is None and not t.waiting_on_lock], say)
    if detach:
        say(
            f"detached: {len(todo)} run(s) submitted or running; "
            "`audit status` or a later `audit run` re-attaches"
        )
        return report
    while todo:
        states = executor.poll([t.job_id for t in todo if t.job_id])
        if states is None:  # the scheduler did not answer: decide nothing this round
            time.sleep(poll_s)
            continue
        retry = []
        for item in list(todo):
            verdict = _settle(store, executor, item, states, retries, say)
            if verdict == "retry":
                retry.append(item)
            elif verdict:
                report.settled[item.run_id] = verdict
                todo.remove(item)
        _submit(store, executor, retry, say)
        if on_poll is not None:
            on_poll(tracked, states)
        if todo:
            time.sleep(poll_s)
    return report


def _report_corrupt(store: Store, run_ids: list[str], say: Callable[[str], None]) -> None:
    """Say which stored files are corrupt: the job moves them aside and trains again."""
    for rid in run_ids:
        problems = [checkpoint_is_corrupt(store.run_dir(rid))]
        try:
            store.result(rid)
        except ValueError as exc:
            problems.append(str(exc))
        for problem in filter(None, problems):
            say(f"run {rid}: {problem}; it will be moved aside and the run trained again")


def _recorded_states(store: Store, executor: Executor, run_ids: list[str]) -> dict[str, str]:
    """Scheduler states of the SLURM jobs job.json files name (one sacct call)."""
    if executor.name != "slurm":
        return {}
    return executor.poll(scheduler_ids(store, run_ids)) or {}


def _prepare(
    store: Store, item: Tracked, force: bool, recorded: dict[str, str], report: LaunchReport
) -> bool:
    """Whether `item` needs waiting for; writes its spec and re-attaches a live SLURM job or a
    run another process is training."""
    rid = item.run_id
    if force and (result_is_finished(store, rid) or store.run_dir(rid).exists()):
        with store.try_lock(rid) as got:
            if not got:
                raise AuditError(f"--force: run {rid} is being trained by another process")
            store.archive(rid)
    if result_is_finished(store, rid):
        report.settled[rid] = store.result(rid).status
        return False
    if store.is_locked(rid):
        item.waiting_on_lock = True
        return True
    store.write_spec(rid, item.spec)
    job_id = store.read_job(rid).get("job_id")
    if job_id and _is_active(recorded.get(job_id)):
        item.job_id, item.submitted_at = job_id, time.time()
    return True


def _submit(
    store: Store, executor: Executor, items: list[Tracked], say: Callable[[str], None]
) -> None:
    if not items:
        return
    for item in items:
        _drop_failed_result(store, item.run_id)
    job_ids = executor.submit([t.spec for t in items])
    for item, job_id in zip(items, job_ids, strict=True):
        item.job_id, item.submitted_at = job_id, time.time()
        item.submissions += 1
        _record_submission(store, item.run_id, executor.name, job_id)
    if executor.name == "slurm":
        say(f"submitted {len(items)} run(s) to SLURM: job(s) {_compact(job_ids)}")


def _drop_failed_result(store: Store, rid: str) -> None:
    """Before a retry: a failed result.json would make the run look settled (job.json keeps
    the reason); a corrupt one is moved aside by the job itself."""
    with store.try_lock(rid) as got:
        if got and store.result_status(rid) == "failed":
            (store.run_dir(rid) / RESULT_FILE).unlink()


def _record_submission(store: Store, rid: str, executor: str, job_id: str) -> None:
    def change(job: dict[str, Any]) -> None:
        job["executor"], job["job_id"] = executor, job_id
        job.setdefault("submissions", []).append({"job_id": job_id, "time": _now()})

    store.update_job(rid, change)


def _compact(job_ids: list[str]) -> str:
    mains = sorted({j.split("_")[0] for j in job_ids})
    return ", ".join(mains) + (f" ({len(job_ids)} array task(s))" if "_" in job_ids[0] else "")


def _is_active(state: str | None) -> bool:
    return bool(state) and state.split()[0] in ACTIVE_STATES


def _settle(
    store: Store,
    executor: Executor,
    item: Tracked,
    states: dict[str, str],
    retries: int,
    say: Callable[[str], None],
) -> str | None:
    """None: still running. "retry": resubmit. Otherwise the run's final status."""
    state = states.get(item.job_id or "")
    if store.is_locked(item.run_id) or _is_active(state):
        return None
    if item.job_id and state is None and time.time() - item.submitted_at < UNKNOWN_GRACE_S:
        return None  # submitted; sacct has not caught up yet
    if result_is_finished(store, item.run_id):
        return store.result(item.run_id).status
    if failed_on_full_disk(
        store, item.run_id, executor.log_files(item.job_id) if item.job_id else ()
    ):
        with contextlib.suppress(OSError, IndexError):  # for `audit run`'s exit (when it fits)
            store.update_job(
                item.run_id, lambda job: job["attempts"][-1].update(outcome="disk-full")
            )
        say(f"run {item.run_id} failed: {DISK_FULL} (free space and rerun: it resumes)")
        return "failed"  # retrying on a full disk cannot help
    last = (store.read_job(item.run_id).get("attempts") or [{}])[-1]
    if last.get("outcome") == "input-error":
        say(f"run {item.run_id} failed: {last.get('error')}")
        return "failed"
    if item.job_id is None:
        item.waiting_on_lock = False
        return "retry"  # another process held it and stopped before finishing it
    why = f"job {item.job_id} ended {state or 'without a state'}"
    if item.submissions <= retries:
        say(f"run {item.run_id}: {why}; retrying ({item.submissions} of {retries} retries)")
        return "retry"
    tail = store.log_tail(item.run_id, executor.log_files(item.job_id))
    reason = f"{why} after {item.submissions} attempt(s); last output:\n{tail}".strip()
    with store.try_lock(item.run_id) as got:
        if got and store.result_status(item.run_id) != "failed":
            store.record_failure(item.run_id, reason)
    say(f"run {item.run_id} failed: {why}")
    return "failed"


def failed_on_full_disk(store: Store, rid: str, logs: Any = ()) -> bool:
    """Whether the run's last attempt ended on a full disk: its recorded outcome, or (when
    the disk was too full to record it) "No space left on device" in its logs' tails."""
    attempts = store.read_job(rid).get("attempts") or [{}]
    if isinstance(attempts[-1], dict) and attempts[-1].get("outcome") == "disk-full":
        return True
    return any("No space left on device" in line for log in logs for line in log_tail(log, 5))


def _child_main(payload: str) -> int:
    """Entry point of a local executor's child process."""
    data = json.loads(payload)
    outcome = run_job(data["spec"], data["store"], RunOptions(**data["options"]))
    print(json.dumps(outcome, default=str))
    return 1 if outcome["outcome"] == "error" else 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))


__all__ = [
    "EXECUTORS",
    "FINISHED",
    "Executor",
    "JobFunction",
    "RunOptions",
    "launch",
    "make_executor",
    "run_job",
    "sacct_states",
]
