"""Every selected claim, one row each with its `#claim-<id>` anchor and where it comes from:
the table or figure, row and column, the quoted text, and a link to the paper. The HTML
filters and sorts this table with a small inline script; the PDF leaves it out (it is in
index.html and in the exports)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from audit.report.common import (
    as_list,
    claimed_text,
    experiment_text,
    fmt,
    get,
    is_proxy,
    mean_text,
    missing,
    missing_any,
    text,
)
from audit.report.links import safe_url
from audit.report.methods import tolerance_text
from audit.report.vocabulary import verdict

SOURCE_KEYS = ("table", "row", "column", "cells")


def claim_rows(
    comparison: pd.DataFrame, index: Mapping[str, Any], paper: Mapping[str, Any]
) -> list[dict[str, Any]]:
    link = paper_link(paper)
    rows = []
    for r in comparison.to_dict("records"):
        claim = index.get(str(r["claim_id"]))
        rows.append(
            {
                "id": str(r["claim_id"]),
                "group": text(r.get("group")),
                "type": text(r.get("type")),
                "experiment": experiment_text(r),
                "metric": text(r.get("metric")),
                "claimed": claimed_text(r),
                "reproduced": mean_text(r["reproduced_mean"], r["reproduced_std"], r["n"]),
                "ci": f"[{fmt(r.get('ci_low'))}, {fmt(r.get('ci_high'))}]"
                if not missing(r.get("ci_low"))
                else "–",
                "abs_dev": fmt(r.get("abs_dev"), signed=True, suffix=" pp"),
                "rel_dev": fmt(r.get("rel_dev"), signed=True, suffix=" %"),
                "sort_dev": "" if missing(r.get("abs_dev")) else f"{float(r['abs_dev']):.6f}",
                "tolerance": tolerance_text(r.get("tolerance")),
                "verdict": str(r["verdict"]),
                "verdict_label": verdict(r["verdict"]).label,
                "proxy": is_proxy(r),
                "gated": _gated(r.get("gate")),
                "reason": text(r.get("reason")),
                "runs": as_list(r.get("run_ids")),
                "note": text(get(claim, "note", None) or r.get("note")),
                "source": claim_source(claim, r),
                "link": link,
            }
        )
    return rows


def claim_source(claim: Any, row: Mapping[str, Any]) -> dict[str, str]:
    """Where the claim is printed: `where` (Table 1 · row VGG-16 · column ND20), the quoted
    text, and which transcriptions it was read from."""
    provenance = get(claim, "provenance", None)
    if not isinstance(provenance, Mapping):
        return {"where": text(row.get("source")), "quote": "", "from": ""}
    where = []
    for key in SOURCE_KEYS:
        value = provenance.get(key)
        if value not in (None, ""):
            where.append(str(value) if key == "table" else f"{key} {value}")
    quote = text(provenance.get("quote"))
    if not quote and str(get(claim, "type", "")) == "value":
        quote = text(row.get("claimed_text"))  # a table cell's quoted text is its number
    sources = provenance.get("transcribed_from")
    listed = ", ".join(map(str, sources)) if isinstance(sources, list | tuple) else text(sources)
    return {"where": " · ".join(where) or text(row.get("source")), "quote": quote, "from": listed}


def paper_link(paper: Mapping[str, Any]) -> str:
    """The paper's own page, from the claims file's `paper:` block (url, else openreview)."""
    for key in ("url", "openreview", "pdf"):
        link = safe_url(paper.get(key) if isinstance(paper, Mapping) else None)
        if link:
            return link
    return ""


def _gated(gate: Any) -> bool:
    """A claim gates `audit check` unless compare's `gate` says False (bool or numpy bool)."""
    return True if missing_any(gate) else bool(gate)
