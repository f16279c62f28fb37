"""`audit status`: every run of a store, done / running / queued / failed / diverged.

Progress is "epoch k of E" from metrics.jsonl; for SLURM runs the job id and the scheduler's
state come from one batched sacct call. Reading the store changes nothing in it.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from audit.errors import AuditError
from audit.escape import terminal
from audit.store import RunState, Store, open_store, scheduler_ids

HELP = "show done / running / queued / failed runs of a store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", type=Path, default=Path("runs"), help="result store (default: ./runs)"
    )
    parser.add_argument("--json", action="store_true", help="print the states as JSON")


def collect(store: Store) -> list[tuple[RunState, list[str]]]:
    """(state, deviations) of every run in the store, sacct asked once for all SLURM jobs."""
    from audit.launch import sacct_states

    run_ids = store.run_ids()
    job_ids = scheduler_ids(store, run_ids)
    states = (sacct_states(job_ids) if job_ids and shutil.which("sacct") else None) or {}
    return [(store.state(rid, states), _deviations(store, rid)) for rid in run_ids]


def _deviations(store: Store, rid: str) -> list[str]:
    from audit.plan import spec_deviations
    from runners.rundir import read_spec

    try:
        return spec_deviations(read_spec(store.run_dir(rid)))
    except Exception:  # an unreadable spec is shown as a run without known deviations
        return []


def format_status(rows: list[tuple[RunState, list[str]]], label: str | None) -> str:
    lines = []
    if label or any(devs for _, devs in rows):
        lines.append(f"NOTE: {terminal(label or 'runs marked * deviate from the protocol')}")
    lines.append(f"{'run id':<58} {'status':<12} {'progress':<14} {'job':<22} reason")
    for state, devs in rows:
        progress = (
            f"epoch {state.epochs_done} of {state.epochs_planned}" if state.epochs_planned else "-"
        )
        job = terminal(f"{state.job_id or '-'} {state.scheduler_state or ''}".strip())
        reason = terminal((state.reason or "").splitlines()[0][:60]) if state.reason else ""
        mark = "*" if devs else " "
        run_id = terminal(state.run_id)  # a folder name is untrusted text: no escape codes
        lines.append(f"{run_id:<57}{mark} {state.status:<12} {progress:<14} {job:<22} {reason}")
    counts = Counter(state.status for state, _ in rows)
    lines.append(f"{len(rows)} run(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if not Path(args.store).exists():
        raise AuditError(f"no result store at {args.store}; run `audit run` or pass --store DIR")
    store = open_store(args.store)
    rows = collect(store)
    label = store.read_plan().get("label")
    if args.json:
        data = [{**asdict(state), "deviations": devs} for state, devs in rows]
        print(json.dumps({"label": label, "runs": data}, indent=2, sort_keys=True))
    else:
        print(format_status(rows, label))
    return 0
