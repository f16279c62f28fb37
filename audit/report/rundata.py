"""What the report reads from run directories beyond the results table: devices, seconds,
ND options, log tails, per-epoch curves, and the plan's cost estimates (plan.json).

A run directory that cannot be read contributes nothing here; the results table already
reports it (status `corrupt`), so the report never crashes on a damaged store."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.store import PLAN_FILE
from runners.rundir import LOG_FILE, log_tail, read_run

LOG_TAIL_LINES = 20
DETAIL_COLUMNS = [
    "run_id",
    "device",
    "wall_seconds",
    "gpu_seconds",
    "seconds_per_epoch",
    "nd_options",
    "log_tail",
    "accounted_gpu_hours",  # SLURM accounting's share of the run's allocations (job.json)
]
CURVE_COLUMNS = ["run_id", "dataset", "arch", "norm", "epochs", "seed", "epoch", "test_top1"]


def run_dirs(store_dir: Path | None, results: pd.DataFrame) -> dict[str, Path]:
    """run id -> its directory, for the results rows that have one in the store."""
    if store_dir is None or "run_id" not in results:
        return {}
    runs = Path(store_dir) / "runs"
    ids = [str(r) for r in results["run_id"].dropna()]
    return {run_id: runs / run_id for run_id in ids if (runs / run_id).is_dir()}


def load_run_details(store_dir: Path | None, results: pd.DataFrame) -> pd.DataFrame:
    """Per run: device, wall and GPU seconds (result.json), seconds per epoch
    (metrics.jsonl), the ND options (spec.yaml) and, for runs that did not finish, the
    tail of log.txt: what the cost, failure and methods sections need."""
    rows = []
    dirs = run_dirs(store_dir, results)
    accounted = _accounted_hours(store_dir, list(dirs))
    for run_id, run_dir in dirs.items():
        record = read_run(run_dir)  # the one reader: a damaged part is left out, never raised
        result = record.result.to_dict() if record.result is not None else {}
        seconds = [m["seconds"] for m in record.metrics if _finite(m.get("seconds"))]
        rows.append(
            {
                "run_id": run_id,
                "device": str(result.get("device") or ""),
                "wall_seconds": _seconds(result.get("wall_seconds")),
                "gpu_seconds": _seconds(result.get("gpu_seconds")),
                "seconds_per_epoch": float(np.mean(seconds)) if seconds else math.nan,
                "nd_options": _nd_options(record.spec),
                "log_tail": "" if record.status == "done" else _tail(run_dir / LOG_FILE),
                "accounted_gpu_hours": accounted.get(run_id, math.nan),
            }
        )
    return pd.DataFrame(rows, columns=DETAIL_COLUMNS)


def _accounted_hours(store_dir: Path | None, run_ids: list[str]) -> dict[str, float]:
    """run id -> GPU-hours SLURM accounted, as `audit run` recorded them in job.json (the
    report asks no scheduler: it renders the same offline)."""
    if store_dir is None or not run_ids:
        return {}
    from audit.cost import measured_gpu_hours
    from audit.store import Store

    return measured_gpu_hours(Store(Path(store_dir), create=False), run_ids, ask_sacct=False)


def load_curves(store_dir: Path | None, results: pd.DataFrame) -> pd.DataFrame:
    """One row per (classification run, epoch) with the run's dataset, arch, norm, seed."""
    dirs = run_dirs(store_dir, results)
    frames = []
    for run in results[results["run_id"].isin(list(dirs))].to_dict("records") if dirs else []:
        lines = [
            {"epoch": m["epoch"], "test_top1": m["test_top1"]}
            for m in read_run(dirs[run["run_id"]]).metrics
            if _finite(m.get("test_top1")) and _finite(m.get("epoch"))
        ]
        if lines:
            frame = pd.DataFrame(lines)
            frames.append(frame.assign(**{k: run.get(k) for k in CURVE_COLUMNS[:6]}))
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[CURVE_COLUMNS]


def planned_hours(store_dir: Path | None) -> dict[str, float]:
    """run id -> the GPU-hours `audit plan` estimated for it (the store's plan.json)."""
    if store_dir is None:
        return {}
    matrix = read_json(Path(store_dir) / PLAN_FILE).get("matrix")
    out = {}
    for entry in matrix if isinstance(matrix, list) else []:
        if isinstance(entry, Mapping) and _finite(entry.get("gpu_hours")):
            out[str(entry.get("run_id"))] = float(entry["gpu_hours"])
    return out


def stored_plan(store_dir: Path | None) -> dict[str, Any]:
    """The store's plan.json (profile, label, seeds), or {}."""
    return read_json(Path(store_dir) / PLAN_FILE) if store_dir is not None else {}


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}  # a run without (or with a torn) result.json is reported by the results table
    return data if isinstance(data, dict) else {}


def _tail(path: Path) -> str:
    return "\n".join(log_tail(path, LOG_TAIL_LINES))


def _nd_options(spec: dict[str, Any] | None) -> str:
    """The ND fidelity options of an ND run's effective spec, as `key=value` text."""
    options = spec.get("nd") if isinstance(spec, dict) and spec.get("norm") == "nd" else None
    if not isinstance(options, Mapping):
        return ""
    return ", ".join(f"{key}={value}" for key, value in sorted(options.items()))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(value: Any) -> float:
    return float(value) if _finite(value) else 0.0
