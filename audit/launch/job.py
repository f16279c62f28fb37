"""The job function: what every executor runs for one spec, wherever it runs.

`run_job` takes the run's lock, skips a finished run, moves a corrupt result or checkpoint
aside, calls the runner (which resumes from its checkpoint) and records the attempt in
job.json. This is the only module of the harness that imports the runners (and so torch),
and only inside the job.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from audit.errors import is_disk_full
from audit.store import Store, checkpoint_is_corrupt, result_is_finished
from runners.rundir import CHECKPOINT_FILE, LOG_FILE, RESULT_FILE, atomic_write_json

DISK_FULL = "no space left on device"


@dataclass(frozen=True)
class RunOptions:
    """Execution details passed to every job (never part of a spec or a run id)."""

    data_dir: str | None = None
    device: str | None = None


def run_job(spec: dict[str, Any], store_dir: str, options: RunOptions) -> dict[str, Any]:
    """Run one spec in its run directory under the run's lock; returns the outcome.

    Never raises for a failing run (the failure is recorded in result.json and job.json),
    so a scheduler's job state says whether the job ran, the store what came of it.
    """
    from runners.specs import run_id as make_run_id

    store = Store(Path(store_dir))
    rid = make_run_id(spec)
    if _rank(spec) > 0:  # one of several processes of the run: rank 0 decides and records
        return _follow(store, rid, spec, options)
    with store.try_lock(rid) as got:
        if not got:
            _tell_ranks(store, rid, spec, "locked")
            return {"run_id": rid, "outcome": "locked"}  # another live process trains it
        if result_is_finished(store, rid):
            _tell_ranks(store, rid, spec, "skipped")
            return {"run_id": rid, "outcome": "skipped"}
        _clear_stale_files(store, rid)
        _tell_ranks(store, rid, spec, "run")
        return _attempt(store, rid, spec, options)


# ----------------------------------------------------------------------------- several ranks
# A run on N GPUs is N processes, each calling run_job (SLURM tasks, or the local executor's
# children). Rank 0 alone takes the run's lock, moves stale files aside and writes job.json;
# it then tells the other ranks whether to train ("run"), or that the run is finished
# ("skipped") or trained by another process ("locked"), through RANKS_FILE in the run
# directory, tagged with this launch's attempt (they must not start a stale decision's
# training, nor wait forever in the process group for a rank 0 that will never join).

RANKS_FILE = ".ranks.json"
ATTEMPT_ENV = "AUDIT_RANK_ATTEMPT"  # set by the local executor; SLURM's ids otherwise
FOLLOW_TIMEOUT_S = 600.0


def _processes(spec: dict[str, Any]) -> int:
    from audit.slurm_preflight import run_processes

    return run_processes(spec)


def _rank(spec: dict[str, Any]) -> int:
    """This process's rank in its run (0 for a one-process run)."""
    if _processes(spec) == 1:
        return 0
    value = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
    return int(value) if value.isdigit() else 0


def launch_attempt() -> str:
    """What tells this launch of a run apart from earlier ones (a requeue is a new one)."""
    given = os.environ.get(ATTEMPT_ENV)
    if given:
        return given
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        return f"slurm-{job}-{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    return f"master-{os.environ.get('MASTER_ADDR', '')}:{os.environ.get('MASTER_PORT', '')}"


def _tell_ranks(store: Store, rid: str, spec: dict[str, Any], decision: str) -> None:
    if _processes(spec) > 1:
        store.run_dir(rid).mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            store.run_dir(rid) / RANKS_FILE, {"attempt": launch_attempt(), "decision": decision}
        )


def _follow(store: Store, rid: str, spec: dict[str, Any], options: RunOptions) -> dict[str, Any]:
    """A rank other than 0: wait for rank 0's decision, then train with it (the runner keeps
    the files to rank 0) or return what rank 0 found. A failure is raised (not recorded): the
    task exits non-zero and srun ends the other ranks (--kill-on-bad-exit)."""
    from runners.errors import RunnerInputError
    from runners.registry import get_runner

    attempt, path = launch_attempt(), store.run_dir(rid) / RANKS_FILE
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    decision = None
    while decision is None:
        try:
            told = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            told = {}
        if isinstance(told, dict) and told.get("attempt") == attempt:
            decision = told.get("decision")
        elif time.monotonic() > deadline:
            raise RuntimeError(
                f"rank 0 of run {rid} said nothing within {FOLLOW_TIMEOUT_S:.0f} s ({attempt})"
            )
        else:
            time.sleep(0.2)
    if decision != "run":
        return {"run_id": rid, "outcome": decision}
    data_dir = Path(options.data_dir) if options.data_dir else None
    try:
        result = get_runner(spec["kind"])(
            spec, store.run_dir(rid), data_dir=data_dir, device=options.device, log=None
        )
    except RunnerInputError as exc:  # the same on every rank; rank 0 records it
        return {"run_id": rid, "outcome": "input-error", "error": str(exc)}
    return {"run_id": rid, "outcome": result.status}


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
    store.update_job(rid, lambda job: job.setdefault("notes", []).append(stamp(message)))
    with open(store.run_dir(rid) / LOG_FILE, "a", encoding="utf-8") as handle:
        handle.write(stamp(message) + "\n")


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
        "start": now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": _slurm_job_id(),
        "start_epoch": start_epoch,
    }
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # which GPU(s) this attempt was given
        entry["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    job = store.update_job(rid, lambda data: data.setdefault("attempts", []).append(entry))
    return len(job["attempts"]) - 1


def _record_attempt_end(store: Store, rid: str, index: int, outcome: dict[str, Any]) -> None:
    def change(job: dict[str, Any]) -> None:
        job["attempts"][index].update(end=now(), **outcome)

    store.update_job(rid, change)


def _slurm_job_id() -> str | None:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    return os.environ.get("SLURM_JOB_ID")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def stamp(message: str) -> str:
    return f"{now()} {message}"


class JobFunction(submitit.helpers.Checkpointable):
    """run_job for submitit. On preemption or time-out submitit calls `checkpoint()`, whose
    default resubmits the same call: the runner then resumes from checkpoint.pt."""

    def __call__(self, spec: dict[str, Any], store_dir: str, options: RunOptions) -> dict:
        if _processes(spec) == 1:
            return run_job(spec, store_dir, options)
        export_torch_distributed()
        outcome = run_job(spec, store_dir, options)
        if outcome["outcome"] == "error":  # recorded; a non-zero exit ends the other ranks
            raise RuntimeError(f"run {outcome['run_id']} failed: {outcome.get('error')}")
        return outcome


TORCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")


def export_torch_distributed() -> None:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT of this SLURM task, from
    submitit (the first host of the job; a port drawn from the job id, so two jobs on one node
    differ). Values inherited from the submitting shell (sbatch --export=ALL) are dropped
    first; CUDA_VISIBLE_DEVICES keeps every GPU of the job (the runner takes cuda:LOCAL_RANK;
    submitit's option to narrow it to "LOCAL_RANK" would be wrong where SLURM does not
    renumber the devices)."""
    for name in (*TORCH_VARIABLES, "MASTER_PORT"):
        os.environ.pop(name, None)
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
