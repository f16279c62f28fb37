"""`audit cancel`: cancel this store's queued and running SLURM jobs, and only them.

The job ids come from the store's job.json files; a job is cancelled only while SLURM still
queues or runs it with its output in this store's slurm/ folder, so another store's jobs, other
users' jobs and a job id SLURM has since given to another job are left alone. Finished runs
stay finished; a later `audit run` resumes the cancelled ones from their checkpoints.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from audit.errors import AuditError
from audit.store import Store

HELP = "cancel this store's queued and running SLURM jobs (and only them)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", type=Path, default=Path("runs"), help="result store (default: ./runs)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the jobs that would be cancelled"
    )


def store_job_ids(store: Store) -> list[str]:
    """Every SLURM job id the store's runs were submitted as."""
    ids = set()
    for rid in store.run_ids():
        job = store.read_job(rid, quarantine=False)
        if job.get("executor") != "slurm":
            continue
        ids.update(str(s["job_id"]) for s in job.get("submissions", []) if s.get("job_id"))
        if job.get("job_id"):
            ids.add(str(job["job_id"]))
    return sorted(ids)


def main(args: argparse.Namespace) -> int:
    from audit.launch.slurm import scancel, store_jobs

    if not Path(args.store).is_dir():
        raise AuditError(f"no result store at {args.store}; pass --store DIR")
    store = Store(args.store, create=False)
    ids = store_job_ids(store)
    if not ids:
        print(f"audit cancel: store {store.root} has no SLURM jobs; nothing to cancel")
        return 0
    if shutil.which("squeue") is None or shutil.which("scancel") is None:
        raise AuditError("audit cancel needs SLURM's squeue and scancel on PATH")
    active = store_jobs(store, ids)
    if not active:
        print(f"audit cancel: no queued or running job of store {store.root}")
        return 0
    shown = ", ".join(active[:10]) + (f" and {len(active) - 10} more" if len(active) > 10 else "")
    if args.dry_run:
        print(f"audit cancel: would cancel {len(active)} job(s): {shown}")
        return 0
    scancel(active)
    print(
        f"audit cancel: cancelled {len(active)} job(s) of store {store.root}: {shown}; "
        "`audit run` resumes them from their checkpoints"
    )
    return 0
