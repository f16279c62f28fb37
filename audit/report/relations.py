"""Relation claims (ND beats BN, faster convergence, ...) with the per-seed paired differences
the comparator computed for them; each distinct note printed once below the table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from audit.report.common import (
    as_values,
    experiment_text,
    fmt,
    is_proxy,
    mean_text,
    metric_suffix,
    missing,
    missing_any,
    text,
)
from audit.report.vocabulary import AGREES, NOT_RUN, OPEN, verdict


def relation_rows(comparison: pd.DataFrame) -> list[dict[str, Any]]:
    rows = comparison[comparison["type"] == "relation"]
    marks = {note: i for i, note in enumerate(relation_notes(comparison), start=1)}
    return [
        {
            "id": str(r["claim_id"]),
            "cell": experiment_text(r) + metric_suffix(r),
            "statement": text(r.get("statement")),
            "note_mark": marks.get(text(r.get("note"))),
            "claimed": _claimed(r),
            "per_seed": ", ".join(fmt(v, signed=True) for v in as_values(r.get("values"))),
            "paired": bool(r.get("paired")) if not missing_any(r.get("paired")) else False,
            "reproduced": mean_text(r["reproduced_mean"], r["reproduced_std"], r["n"]),
            "verdict": str(r["verdict"]),
            "reason": text(r.get("reason")),
            "proxy": is_proxy(r),
            # held, unresolved or not run: left out of print (the deviation plot shows it)
            "routine": verdict(r["verdict"]).outcome in (AGREES, OPEN, NOT_RUN),
        }
        for r in rows.to_dict("records")
    ]


def relation_notes(comparison: pd.DataFrame) -> list[str]:
    """The distinct notes of the relation claims (the ImageNet baseline caveat would
    otherwise repeat on every ImageNet row)."""
    notes = comparison.loc[comparison["type"] == "relation"].get("note", pd.Series(dtype=object))
    return [note for note in dict.fromkeys(notes.map(text)) if note]


def _claimed(row: Mapping[str, Any]) -> str:
    """`93.25 - 90.07 = +3.18`: the printed cells and the difference they imply."""
    printed, claimed = text(row.get("claimed_text")), row.get("claimed")
    if missing(claimed):
        return printed or "–"
    return f"{printed} = {fmt(claimed, signed=True)}" if printed else fmt(claimed, signed=True)
