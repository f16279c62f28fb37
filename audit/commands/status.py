"""`audit status`: every run of a store, done / running / queued / failed / diverged.

Progress is "epoch k of E" from metrics.jsonl; for SLURM runs the job id and the scheduler's
state come from one batched sacct call, and a queued job's pending reason (Priority,
Resources, PartitionConfig, ...) from one squeue call. The last line sets the GPU-hours SLURM
measured beside the plan's estimate. Reading the store changes nothing in it.
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


def pending_reasons(rows: list[tuple[RunState, list[str]]]) -> dict[str, str]:
    """run id -> why its queued SLURM job waits (squeue), marked when waiting never ends."""
    from audit.launch.slurm import pending_reasons as ask

    queued = {s.job_id: s.run_id for s, _ in rows if s.status == "queued" and s.job_id}
    if not queued or not shutil.which("squeue"):
        return {}
    found = ask(list(queued))
    return {
        queued[job]: p.reason + (" (never starts: `audit cancel`, then fix)" if p.hopeless else "")
        for job, p in found.items()
    }


def _deviations(store: Store, rid: str) -> list[str]:
    from audit.plan import spec_deviations
    from runners.rundir import read_spec

    try:
        return spec_deviations(read_spec(store.run_dir(rid)))
    except Exception:  # an unreadable spec is shown as a run without known deviations
        return []


def format_status(
    rows: list[tuple[RunState, list[str]]],
    label: str | None,
    pending: dict[str, str] | None = None,
) -> str:
    lines = []
    if label or any(devs for _, devs in rows):
        lines.append(f"NOTE: {terminal(label or 'runs marked * deviate from the protocol')}")
    lines.append(f"{'run id':<58} {'status':<12} {'progress':<14} {'job':<22} reason")
    for state, devs in rows:
        progress = (
            f"epoch {state.epochs_done} of {state.epochs_planned}" if state.epochs_planned else "-"
        )
        job = f"{state.job_id or '-'} {state.scheduler_state or ''}".strip()
        if state.gpus > 1:  # one run on several GPUs: one job of that many tasks
            job += f" x{state.gpus} GPUs"
        job = terminal(job)
        reason = terminal((state.reason or "").splitlines()[0][:60]) if state.reason else ""
        if (pending or {}).get(state.run_id):
            reason = terminal(f"pending: {pending[state.run_id]}")
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
    from audit.cost import plan_estimates, store_cost

    rows = collect(store)
    label = store.read_plan().get("label")
    pending = pending_reasons(rows)
    run_ids = [state.run_id for state, _ in rows]
    cost = store_cost(store, run_ids, plan_estimates(store) or None)
    if args.json:
        data = [
            {**asdict(state), "deviations": devs, "pending_reason": pending.get(state.run_id)}
            for state, devs in rows
        ]
        out = {"label": label, "runs": data, "cost": asdict(cost)}
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(format_status(rows, label, pending))
        print(cost.line())
    return 0
