"""Cost: seconds per epoch and GPU-hours, BN against ND, per dataset and architecture; and
each run's measured hours against the hours `audit plan` estimated for it (plan.json)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from markupsafe import Markup

from audit import figures
from audit.report.common import arch_label, arch_order, column, dataset_label, fmt, missing

MAX_BARS = 12  # architecture-dataset pairs drawn as bars; more are only tabulated


def cost_section(
    results: pd.DataFrame, details: pd.DataFrame, estimates: dict[str, float]
) -> dict[str, Any]:
    runs = _classify_with_details(results, details)
    bn_nd = runs[runs["norm"].isin(["bn", "nd"])] if len(runs) else runs
    out: dict[str, Any] = {"rows": [], "svg": None, "estimate_svg": None, "estimate": ""}
    if len(bn_nd) and not bn_nd["seconds_per_epoch"].isna().all():
        out.update(_per_epoch(bn_nd))
    out.update(_against_estimate(details, estimates))
    return out


def _per_epoch(runs: pd.DataFrame) -> dict[str, Any]:
    grouped = runs.groupby(["dataset", "arch", "norm"]).agg(
        seconds=("seconds_per_epoch", "mean"), gpu=("gpu_seconds", "sum"), n=("run_id", "size")
    )
    wide = grouped.unstack("norm")
    rows, bars = [], []
    for (dataset, arch), row in sorted(
        wide.iterrows(), key=lambda i: (i[0][0], arch_order(i[0][1]))
    ):
        bn, nd = row.get(("seconds", "bn"), math.nan), row.get(("seconds", "nd"), math.nan)
        label = f"{arch_label(arch)} · {dataset_label(dataset)}"
        rows.append(
            {
                "label": label,
                "bn_seconds": fmt(bn, 1),
                "nd_seconds": fmt(nd, 1),
                "ratio": fmt(nd / bn if bn and not missing(bn) else math.nan, 2, suffix="×"),
                "bn_gpu_hours": fmt(row.get(("gpu", "bn"), math.nan) / 3600, 3),
                "nd_gpu_hours": fmt(row.get(("gpu", "nd"), math.nan) / 3600, 3),
                "runs": f"{_count(row, 'bn')} / {_count(row, 'nd')}",
            }
        )
        bars.append({"label": label, "bn_seconds": bn, "nd_seconds": nd})
    if len(bars) > MAX_BARS:
        return {"rows": rows, "svg": None}  # the table says it; 40 pairs of bars do not
    svg = figures.cost_bars_svg(pd.DataFrame(bars), title="Training seconds per epoch")
    return {"rows": rows, "svg": Markup(svg)}


def _against_estimate(details: pd.DataFrame, estimates: dict[str, float]) -> dict[str, Any]:
    """Measured against the plan's estimate: the GPU-hours SLURM accounted for the run where
    `audit run` recorded them, else the runner's GPU seconds, else wall-clock seconds (CPU)."""
    if not estimates or details.empty:
        return {}
    measured = details.assign(
        hours=[_measured_hours(row) for row in details.itertuples()],
        clock=[_clock(row) for row in details.itertuples()],
    )
    # a log-log plot needs both positive: plan.json rounds a tiny run's estimate to 0
    planned = [r for r, hours in estimates.items() if hours > 0]
    measured = measured[measured["run_id"].isin(planned) & (measured["hours"] > 0)]
    if measured.empty:
        return {}
    points = pd.DataFrame(
        {
            "estimated": [estimates[r] for r in measured["run_id"]],
            "measured": measured["hours"].to_numpy(),
            "device": measured["device"].replace("", "not recorded").to_numpy(),
        }
    )
    ratio = float(points["measured"].sum() / points["estimated"].sum())
    clocks = " and ".join(dict.fromkeys(measured["clock"]))
    text = (
        f"{len(points)} run{'s' if len(points) != 1 else ''}: measured {clocks} hours "
        f"{fmt(points['measured'].sum(), 3)} against {fmt(points['estimated'].sum(), 3)} "
        f"estimated GPU-hours ({fmt(ratio, 2)}× the estimate)."
    )
    svg = figures.cost_estimate_svg(points, title="Measured against estimated hours per run")
    return {"estimate_svg": Markup(svg), "estimate": text}


def _measured_hours(row: Any) -> float:
    accounted = getattr(row, "accounted_gpu_hours", math.nan)
    if not missing(accounted) and accounted > 0:
        return float(accounted)
    return (row.gpu_seconds if row.gpu_seconds > 0 else row.wall_seconds) / 3600


def _clock(row: Any) -> str:
    accounted = getattr(row, "accounted_gpu_hours", math.nan)
    if not missing(accounted) and accounted > 0:
        return "GPU (SLURM accounting)"
    return "GPU" if row.gpu_seconds > 0 else "wall-clock"


def _count(row: pd.Series, norm: str) -> int:
    value = row.get(("n", norm), 0)
    return 0 if missing(value) else int(value)


def _classify_with_details(results: pd.DataFrame, details: pd.DataFrame) -> pd.DataFrame:
    if details.empty or "run_id" not in results:
        return pd.DataFrame()
    kind = column(results, "kind", "classify")
    return results[kind == "classify"].merge(details, on="run_id", how="inner")
