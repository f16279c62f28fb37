"""`audit logs RUN_ID`: the tail of a run's log and of its scheduler output.

Shows log.txt (the runner's log), then the stdout/stderr of the latest job the run was
submitted as (SLURM: <store>/slurm/<job id>/*_log.out|err; local: <store>/local/<job>.log).
A unique prefix of a run id is enough. Control characters from the logs are shown escaped.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from audit.errors import AuditError
from audit.store import Store
from runners.rundir import LOG_FILE

HELP = "show the tail of a run's log and of its scheduler stdout/stderr"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", help="a run id (or a unique prefix of one)")
    parser.add_argument(
        "--store", type=Path, default=Path("runs"), help="result store (default: ./runs)"
    )
    parser.add_argument("--lines", type=int, default=20, help="lines per file (default 20)")


def find_run(store: Store, wanted: str) -> str:
    run_ids = store.run_ids()
    if wanted in run_ids:
        return wanted
    matches = [r for r in run_ids if r.startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AuditError(
            f"run id prefix {wanted!r} matches {len(matches)} runs ({', '.join(matches[:3])}, "
            "...); give more of it"
        )
    raise AuditError(f"no run {wanted!r} in store {store.root}; `audit status` lists the runs")


def log_paths(store: Store, rid: str) -> list[Path]:
    """The runner's log, then the latest job's scheduler output files."""
    from audit.launch.slurm import slurm_log_files

    job = store.read_job(rid, quarantine=False)
    paths = [store.run_dir(rid) / LOG_FILE]
    job_id = job.get("job_id")
    if job_id and job.get("executor") == "slurm":
        paths += slurm_log_files(store, str(job_id), rid)  # in a pack: this run's own too
    elif job_id and job.get("executor") == "local":
        paths.append(store.root / "local" / f"{job_id}.log")
    return paths


def tail(path: Path, lines: int) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    shown = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(CONTROL.sub(lambda m: repr(m.group())[1:-1], line) for line in shown)


def main(args: argparse.Namespace) -> int:
    if not 1 <= args.lines <= 100_000:
        raise AuditError(f"--lines must be between 1 and 100000, got {args.lines}")
    if not Path(args.store).is_dir():
        raise AuditError(f"no result store at {args.store}; pass --store DIR")
    store = Store(args.store, create=False)
    rid = find_run(store, args.run_id)
    job = store.read_job(rid, quarantine=False)
    print(f"run {rid}: {job.get('executor') or 'not launched'} job {job.get('job_id') or '-'}")
    for path in log_paths(store, rid):
        if not path.is_file():
            print(f"==> {path} <== (absent)")
            continue
        print(f"==> {path} <==")
        print(tail(path, args.lines))
    return 0
