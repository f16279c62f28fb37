"""Cost as measured, next to the plan's estimate.

SLURM runs: what `sacct` accounted for every job a run was submitted as (requeues included),
elapsed seconds times the GPUs allocated, divided equally over the runs that shared the job
(a pack: `--runs-per-gpu`, several runs trained together in one allocation); `audit run`
writes it into job.json (`allocations`) when the runs end, and readers fall back to asking
sacct. Every run also has its runner's in-process GPU seconds (result.json `gpu_seconds`: time
holding a GPU). The estimate is the plan's (plan.json, or a plan built now).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from audit.store import Store


@dataclass
class Cost:
    measured_gpu_h: float = 0.0  # from sacct
    measured_runs: int = 0
    in_process_gpu_h: float = 0.0  # the runners' own GPU seconds
    estimated_gpu_h: float | None = None

    def line(self) -> str:
        parts = []
        if self.measured_runs:
            parts.append(
                f"measured {self.measured_gpu_h:.2f} GPU-h by SLURM accounting "
                f"({self.measured_runs} run(s))"
            )
        parts.append(f"{self.in_process_gpu_h:.2f} GPU-h in-process")
        if self.estimated_gpu_h is not None:
            parts.append(f"estimated {self.estimated_gpu_h:.2f} GPU-h (plan)")
        return "cost: " + ", ".join(parts)


def measured_gpu_hours(store: Store, run_ids: list[str], *, ask_sacct: bool = True) -> dict:
    """run id -> GPU-hours SLURM accounted (runs without a record left out). Recorded
    allocations first; the rest from one sacct call (read-only: nothing is written)."""
    out: dict[str, float] = {}
    missing: dict[str, list[str]] = {}
    for rid in run_ids:
        job = store.read_job(rid, quarantine=False)
        allocations = job.get("allocations")
        if isinstance(allocations, dict) and allocations:
            out[rid] = sum(_gpu_s(a) for a in allocations.values()) / 3600
        elif job.get("executor") == "slurm":
            missing[rid] = submission_shares(job)
    if missing and ask_sacct and shutil.which("sacct"):
        from audit.launch.slurm import sacct_allocations

        found = sacct_allocations(sorted({j for js in missing.values() for j in js})) or {}
        for rid, shares in missing.items():
            if any(j in found for j in shares):
                # a job that trained a pack of runs is divided equally over them
                out[rid] = sum(found[j].gpu_s / n for j, n in shares.items() if j in found) / 3600
    return out


def submission_shares(job: dict[str, Any]) -> dict[str, int]:
    """job id -> how many runs shared it (1 unless packed), for every submission of a run."""
    out = {}
    for entry in job.get("submissions", []):
        if isinstance(entry, dict) and entry.get("job_id"):
            shared = entry.get("shared_by", 1)
            out[str(entry["job_id"])] = shared if isinstance(shared, int) and shared > 0 else 1
    return out


def _gpu_s(allocation: object) -> float:
    value = allocation.get("gpu_s") if isinstance(allocation, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0


def store_cost(store: Store, run_ids: list[str], estimates: dict[str, float] | None) -> Cost:
    """Measured, in-process and estimated GPU-hours of `run_ids`."""
    measured = measured_gpu_hours(store, run_ids)
    in_process = 0.0
    for rid in run_ids:
        try:
            result = store.result(rid)
        except (ValueError, OSError):  # a damaged result counts nothing
            result = None
        if result is not None:
            in_process += float(getattr(result, "gpu_seconds", 0.0) or 0.0) / 3600
    estimate = None
    if estimates:
        estimate = sum(estimates.get(rid, 0.0) for rid in run_ids)
    return Cost(sum(measured.values()), len(measured), in_process, estimate)


def plan_estimates(store: Store) -> dict[str, float]:
    """run id -> estimated GPU-hours from the store's plan.json ({} without one)."""
    matrix = store.read_plan().get("matrix")
    out = {}
    for row in matrix if isinstance(matrix, list) else []:
        if isinstance(row, dict) and isinstance(row.get("gpu_hours"), int | float):
            out[str(row.get("run_id"))] = float(row["gpu_hours"])
    return out
