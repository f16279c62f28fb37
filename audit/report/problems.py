"""What went wrong: failed, diverged and corrupt runs with their reason and log tail, and the
claims left without a usable result, one line per (group, verdict)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from audit.report.common import column, experiment_text, text
from audit.report.vocabulary import BROKEN, NOT_RUN, verdict

BAD_STATUSES = ("failed", "diverged", "corrupt")
MAX_REASONS = 5  # distinct reasons shown per group; the claims table has every one


def problems(
    comparison: pd.DataFrame, results: pd.DataFrame, details: pd.DataFrame
) -> dict[str, Any]:
    status = column(results, "status", "done")
    bad = results[status.isin(BAD_STATUSES)]
    tails = dict(zip(details["run_id"], details["log_tail"], strict=True)) if len(details) else {}
    runs = [
        {
            "run_id": text(r.get("run_id")),
            "status": text(r.get("status")),
            "experiment": experiment_text(r),
            "reason": text(r.get("reason")) or "no reason recorded",
            "log_tail": tails.get(r.get("run_id"), ""),
        }
        for r in bad.to_dict("records")
    ]
    return {"runs": runs, "claims": unmet_claims(comparison)}


def unmet_claims(comparison: pd.DataFrame) -> list[dict[str, Any]]:
    """Claims left without a usable result: how many, which (linked), their distinct
    reasons. A 200-line list would bury the failures."""
    unmet_mask = comparison["verdict"].map(lambda v: verdict(v).outcome in (NOT_RUN, BROKEN))
    unmet = comparison[unmet_mask.astype(bool)] if len(comparison) else comparison
    out = []
    for (group, name), rows in unmet.groupby(["group", "verdict"], sort=False):
        reasons = list(dict.fromkeys(rows["reason"].map(text)))
        out.append(
            {
                "group": str(group),
                "verdict": str(name),
                "ids": [str(i) for i in rows["claim_id"]],
                "reasons": reasons[:MAX_REASONS],
                "more_reasons": max(0, len(reasons) - MAX_REASONS),
            }
        )
    return out
