"""Launching runs: the executor interface and the wait-and-retry loop (submitit's core).

Executors decide where the job function (audit/launch/job.py) runs:

- debug: in this process, one run after another (tests)       -> audit/launch/local.py
- local: one child process per run on this machine, `--parallel` at a time -> local.py
- slurm: submitit job arrays, requeued from checkpoints        -> audit/launch/slurm.py

`launch()` submits what is not finished, re-attaches to SLURM jobs recorded in job.json,
polls (rate-limited), retries failed or cancelled jobs up to `retries` times and records a
run that still fails as failed, with the tail of its logs. A queued job whose pending reason
can never resolve by waiting ends the launch with one error naming the reason and the jobs
(after cancelling what this launch queued); a long but legitimate wait is reported.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from audit.cluster_config import SlurmParams
from audit.cost import submission_shares
from audit.errors import AuditError
from audit.launch.job import DISK_FULL, RunOptions, now
from audit.store import (
    Store,
    checkpoint_is_corrupt,
    result_is_finished,
    scheduler_ids,
)
from runners.rundir import RESULT_FILE, log_tail

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
UNKNOWN_GRACE_S = 300  # a job sacct has never heard of this long after submission is lost
PENDING_REPORT_S = (600, 3600)  # a long wait is reported after 10 min, then hourly


# ----------------------------------------------------------------------------- executors


class Executor(Protocol):
    """What `launch` needs of an executor."""

    name: str

    def submit(self, specs: list[dict[str, Any]]) -> list[str]:
        """Start (or queue) one job per spec; their job ids, in order."""

    def poll(self, job_ids: list[str]) -> dict[str, str] | None:
        """State per known job id; None when the scheduler did not answer."""

    def pending(self, job_ids: list[str]) -> dict[str, Any]:
        """Why each pending job waits (audit.launch.slurm.Pending), where the scheduler says."""

    def cancel(self, job_ids: list[str]) -> None:
        """Cancel exactly these jobs (SLURM); nothing to do elsewhere."""

    def log_files(self, job_id: str, run_id: str | None = None) -> list[Path]:
        """The job's own output files (and `run_id`'s, where a job holds several runs), for
        failure reasons."""

    def shutdown(self) -> None:
        """Stop what must not outlive this process (local children); SLURM jobs go on."""


def make_executor(
    name: str,
    store: Store,
    options: RunOptions,
    *,
    params: SlurmParams | None = None,
    parallel: int = 1,
) -> Executor:
    """The executor called `name`; unknown names are an AuditError."""
    if name in ("debug", "local"):
        from audit.launch.local import DebugExecutor, LocalExecutor

        if name == "debug":
            return DebugExecutor(store, options)
        return LocalExecutor(store, options, parallel)
    if name == "slurm":
        from audit.launch.slurm import SlurmExecutor

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
    scheduler_state: str | None = None  # the latest poll's state of its job
    pending_reason: str | None = None  # why the scheduler has not started it (PENDING)
    pending_reported: int = 0  # long-wait reports given so far


@dataclass
class LaunchReport:
    settled: dict[str, str] = field(default_factory=dict)  # run id -> done|diverged|failed|...
    events: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)  # job ids this launch queued


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
    fresh = [t for t in todo if t.job_id is None and not t.waiting_on_lock]
    report.submitted += _submit(store, executor, fresh, say)
    if detach:
        say(
            f"detached: {len(todo)} run(s) submitted or running; "
            "`audit status` or a later `audit run` re-attaches"
        )
        ids = [t.job_id for t in todo if t.job_id]
        _stop_if_hopeless(executor, todo, report, executor.pending(ids), cancel=False)
        return report
    while todo:
        states = executor.poll([t.job_id for t in todo if t.job_id])
        if states is None:  # the scheduler did not answer: decide nothing this round
            time.sleep(poll_s)
            continue
        pending = _note_pending(executor, todo, states, say)
        _stop_if_hopeless(executor, todo, report, pending, cancel=True)
        retry = []
        for item in list(todo):
            verdict = _settle(store, executor, item, states, retries, say)
            if verdict == "retry":
                retry.append(item)
            elif verdict:
                report.settled[item.run_id] = verdict
                todo.remove(item)
        report.submitted += _submit(store, executor, retry, say)
        if on_poll is not None:
            on_poll(tracked, states)
        if todo:
            time.sleep(poll_s)
    if executor.name == "slurm":
        record_allocations(store, list(report.settled))  # cost as SLURM measured it
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


def _note_pending(
    executor: Executor, todo: list[Tracked], states: dict[str, str], say: Callable[[str], None]
) -> dict[str, Any]:
    """Record each job's state and pending reason on its item (the progress display shows
    them; a job squeue holds as pending is PENDING in `states` too), and report a long wait
    (10 min, then hourly): waiting is not an error."""
    for item in todo:
        item.scheduler_state = states.get(item.job_id or "")
    # sacct learns of a job from slurmdbd, which can lag seconds to minutes behind the
    # controller: a submitted job sacct does not know yet is asked about as well (squeue
    # reads the controller itself)
    asked = [t for t in todo if t.job_id and (t.scheduler_state or "PENDING").startswith("PEND")]
    reasons = executor.pending([t.job_id for t in asked]) if asked else {}
    for item in todo:
        pending = reasons.get(item.job_id or "")
        item.pending_reason = pending.reason if pending else None
        if pending and item.scheduler_state is None:  # queued, whatever sacct says yet
            item.scheduler_state = states[item.job_id or ""] = "PENDING"
    waiting = [t for t in todo if (t.scheduler_state or "").startswith("PENDING")]
    due = [
        t
        for t in waiting
        if t.pending_reported < len(PENDING_REPORT_S)
        and time.time() - t.submitted_at >= PENDING_REPORT_S[t.pending_reported]
    ]
    if due:
        for item in due:
            item.pending_reported += 1
        minutes = int((time.time() - min(t.submitted_at for t in due)) // 60)
        why = sorted({t.pending_reason or "unknown" for t in due})
        say(
            f"{len(due)} job(s) still pending after {minutes} min ({', '.join(why)}): the "
            "scheduler's queue, not an error; `audit status` shows each job"
        )
    return reasons


def _stop_if_hopeless(
    executor: Executor,
    todo: list[Tracked],
    report: LaunchReport,
    pending: dict[str, Any],
    *,
    cancel: bool,
) -> None:
    """A pending reason that waiting never resolves ends the launch: one error naming it,
    the jobs and a hint; what this launch queued is cancelled first (unless detached)."""
    ids = [t.job_id for t in todo if t.job_id]
    hopeless = {j: p for j, p in pending.items() if p.hopeless}
    if not hopeless:
        return
    reason = next(iter(hopeless.values()))
    named = sorted(hopeless)
    jobs = ", ".join(named[:8]) + (f" and {len(named) - 8} more" if len(named) > 8 else "")
    if cancel:
        mine = [j for j in ids if j in report.submitted or j in hopeless]
        executor.cancel(mine)
        left = f"cancelled this run's {len(mine)} queued job(s)"
    else:
        left = "the jobs stay queued (--detach): `audit cancel` removes them"
    raise AuditError(
        f"job(s) {jobs} cannot start: SLURM says {reason.reason!r}, which waiting never "
        f"resolves ({reason.hint}); {left}; fix the request and rerun `audit run`"
    )


def _submit(
    store: Store, executor: Executor, items: list[Tracked], say: Callable[[str], None]
) -> list[str]:
    if not items:
        return []
    for item in items:
        _drop_failed_result(store, item.run_id)
    job_ids = executor.submit([t.spec for t in items])
    shared = Counter(job_ids)  # runs packed into one job share its allocation
    for item, job_id in zip(items, job_ids, strict=True):
        item.job_id, item.submitted_at = job_id, time.time()
        item.submissions += 1
        _record_submission(store, item.run_id, executor.name, job_id, shared[job_id])
    if executor.name == "slurm":
        say(f"submitted {len(items)} run(s) to SLURM: job(s) {_compact(job_ids)}")
    return job_ids


def _drop_failed_result(store: Store, rid: str) -> None:
    """Before a retry: a failed result.json would make the run look settled (job.json keeps
    the reason); a corrupt one is moved aside by the job itself."""
    with store.try_lock(rid) as got:
        if got and store.result_status(rid) == "failed":
            (store.run_dir(rid) / RESULT_FILE).unlink()


def _record_submission(
    store: Store, rid: str, executor: str, job_id: str, shared_by: int = 1
) -> None:
    entry: dict[str, Any] = {"job_id": job_id, "time": now()}
    if shared_by > 1:
        entry["shared_by"] = shared_by  # the runs trained together in this job (a pack)

    def change(job: dict[str, Any]) -> None:
        job["executor"], job["job_id"] = executor, job_id
        job.setdefault("submissions", []).append(entry)

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
    tail = store.log_tail(item.run_id, executor.log_files(item.job_id, item.run_id))
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


def record_allocations(store: Store, run_ids: list[str]) -> int:
    """Write each SLURM run's measured allocation (sacct: elapsed and GPU seconds of every job
    it was submitted as) into its job.json; the number of runs measured (0 without
    accounting). A job that trained a pack of runs is divided equally over them: `gpu_s` is
    the run's share, `allocation_gpu_s` the whole job's."""
    from audit.launch.slurm import sacct_allocations

    jobs = {rid: store.read_job(rid) for rid in run_ids}
    ids = {
        rid: submission_shares(job) for rid, job in jobs.items() if job.get("executor") == "slurm"
    }
    found = sacct_allocations(sorted({j for js in ids.values() for j in js})) or {}
    measured = 0
    for rid, shares in ids.items():
        allocations = {j: found[j].share(n) for j, n in shares.items() if j in found}
        if allocations:
            store.update_job(rid, lambda job, a=allocations: job.update(allocations=a))
            measured += 1
    return measured
