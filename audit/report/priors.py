"""Prior reproductions beside ours: every selected claim a prior study reports a value for,
each value judged by the claim's own tolerance through the comparator's band check (so a
value exactly on a band edge is judged here as `audit check` judges it), with a link to the
study (DOI or URL from the claims file)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from audit.report.common import claimed_text, experiment_text, fmt, get, mean_text, metric_suffix
from audit.report.links import doi_url, safe_url
from audit.report.vocabulary import AGREES, BETTER, OUTSIDE, WORSE, verdict


def judge_prior(value: float, claimed: float, tolerance: Any) -> str | None:
    """The verdict the comparator gives one run of `value` against `claimed` (its single-run
    rule: the band with its edge tolerance, then the side). None when there is nothing to
    judge (no tolerance, no claimed number)."""
    from audit.compare import judge_single_value

    if tolerance is None or claimed is None or math.isnan(claimed):
        return None
    return judge_single_value(value, claimed=claimed, tolerance=tolerance)


def source_entries(sources: list[Any]) -> list[dict[str, Any]]:
    """Each prior study: id, title, runs per cell, caveats and its link (DOI first)."""
    out = []
    for s in sources:
        doi = str(get(s, "doi", "") or "")
        out.append(
            {
                "id": s.id,
                "title": s.title,
                "runs": s.runs_per_cell,
                "caveats": list(s.caveats),
                "doi": doi,
                "href": doi_url(doi) or safe_url(get(s, "url", "")),
            }
        )
    return out


def prior_reproductions(
    comparison: pd.DataFrame, sources: list[Any], index: Mapping[str, Any]
) -> dict[str, Any]:
    """The paper, us and each prior study per covered claim, so the colours show who agrees."""
    covered = {claim_id for source in sources for claim_id in source.values}
    rows = []
    for r in comparison[comparison["claim_id"].isin(covered)].to_dict("records"):
        tolerance = get(index.get(str(r["claim_id"])), "tolerance", None)
        rows.append(
            {
                "id": str(r["claim_id"]),
                "cell": experiment_text(r) + metric_suffix(r),
                "claimed": claimed_text(r),
                "ours": mean_text(r["reproduced_mean"], r["reproduced_std"], r["n"]),
                "ours_rel": fmt(r["rel_dev"], signed=True, suffix=" %"),
                "verdict": str(r["verdict"]),
                "priors": [
                    prior_cell(source.values.get(str(r["claim_id"])), r, tolerance)
                    for source in sources
                ],
            }
        )
    return {"sources": source_entries(sources), "rows": rows, "summary": _summary(rows, sources)}


def _summary(rows: list[dict[str, Any]], sources: list[Any]) -> list[dict[str, Any]]:
    """Per prior study: how many of its values are shown, within the tolerance, and how
    often its verdict is ours (the printed report's digest of the per-cell table)."""
    out = []
    for index, source in enumerate(sources):
        cells = [row["priors"][index] for row in rows if row["priors"][index]]
        judged = [c for c in cells if c["agreement"]]
        out.append(
            {
                "id": source.id,
                "count": len(cells),
                "within": sum(verdict(c["verdict"]).outcome == AGREES for c in cells),
                "agrees": sum(c["agreement"] == "agrees with us" for c in judged),
                "compared": len(judged),
            }
        )
    return out


_JUDGED = (AGREES, BETTER, WORSE, OUTSIDE)


def prior_cell(ref: Any, claim: Mapping[str, Any], tolerance: Any) -> dict[str, Any] | None:
    """A prior value: its deviation from the paper, its verdict under the claim's tolerance,
    and whether that verdict is the one we reached."""
    if ref is None:
        return None
    value, claimed = float(ref.value), float(claim["claimed"])
    theirs = judge_prior(value, claimed, tolerance)
    ours = str(claim["verdict"])
    same = None
    if theirs is not None and verdict(ours).outcome in _JUDGED:
        same = (verdict(theirs).outcome == AGREES) == (verdict(ours).outcome == AGREES)
    return {
        "value": str(ref.text or fmt(value)),
        "abs_dev": fmt(value - claimed, signed=True, suffix=" pp"),
        "rel_dev": fmt(
            (value - claimed) / claimed * 100 if claimed else math.nan, signed=True, suffix=" %"
        ),
        "verdict": theirs or "inconclusive",
        "agreement": {True: "agrees with us", False: "differs from us", None: ""}[same],
    }
