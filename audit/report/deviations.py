"""Deviation (forest) plots, one per claim group: per claim with results, the claimed value
(or the printed difference of a relation), our mean with its 95% interval, each seed's
value as a dot (the cell's strip of seeds), the tolerance band, the verdict's colour.

Value claims are drawn as deviations from the paper (our value - claimed, in points), so
every row's band sits around 0; relations as their statistic (e.g. ND - BN) against the
boundary they must exceed. A figure holds at most MAX_ROWS rows per panel (legible on an A4
page); a larger group is split into even chunks, at most MAX_FIGURES of them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
from markupsafe import Markup

from audit import figures
from audit.report.common import (
    NORM_LABELS,
    arch_label,
    arch_order,
    as_values,
    dataset_label,
    epochs_value,
    is_proxy,
    missing,
    norm_label,
    text,
)
from audit.report.vocabulary import verdict
from runners.catalogue import PERCENT_METRICS, PRIMARY_METRIC  # percent: differences in pp

MAX_ROWS = 40  # rows per figure; 40 rows of 8-pt labels fill about half an A4 page
MAX_FIGURES = 4  # per group and kind: beyond 160 rows, the claims farthest out are drawn


def deviation_figures(comparison: pd.DataFrame) -> list[dict[str, Any]]:
    """Per claim group with at least one judged claim: its figures (values and relations
    apart when a group holds both) and a caption."""
    out = []
    judged = comparison[comparison["n"].fillna(0).astype(float) > 0]
    for group, rows in judged.groupby("group", sort=False):
        is_relation = rows["type"] == "relation"
        mixed = bool(is_relation.any() and not is_relation.all())
        for relation in (False, True):
            part = rows[is_relation == relation]
            if len(part):
                out.extend(_figures(str(group), part, relation, mixed))
    return out


def _figures(group: str, rows: pd.DataFrame, relation: bool, mixed: bool) -> list[dict]:
    points = [_point(r, relation) for r in rows.to_dict("records")]
    shown = _farthest(points, MAX_ROWS * MAX_FIGURES)
    name = f"{group}, relations" if relation and mixed else group
    left_out = len(points) - len(shown)
    out = []
    chunks = _chunks(shown)
    for index, chunk in enumerate(chunks):
        title = name + (f" ({index + 1} of {len(chunks)})" if len(chunks) > 1 else "")
        if left_out and index == len(chunks) - 1:
            title += f"; the {left_out} claims nearest the paper are in the all-claims table"
        svg = figures.forest_svg(
            pd.DataFrame(chunk),
            title=f"Deviations of claim group {title}",
            x_label=_x_label(rows, relation),
            relation=relation,
        )
        out.append({"group": group, "title": title, "svg": Markup(svg)})
    return out


def _point(row: Mapping[str, Any], relation: bool) -> dict[str, Any]:
    claimed = float(row["claimed"]) if not missing(row.get("claimed")) else math.nan
    centre = 0.0 if relation or math.isnan(claimed) else claimed
    seeds = [v - centre for v in as_values(row.get("values"))]
    return {
        "panel": _panel(row),
        "label": _label(row, relation),
        "sort": (arch_order(row.get("arch")), _epochs_number(row), str(row.get("norm"))),
        "mean": float(row["reproduced_mean"]) - centre,
        "ci_low": _float(row.get("ci_low")) - centre,
        "ci_high": _float(row.get("ci_high")) - centre,
        "band_low": _band(row, claimed)[0] - centre,
        "band_high": _band(row, claimed)[1] - centre,
        "claimed": claimed if relation else 0.0,
        "seeds": seeds,
        "colour": verdict(row["verdict"]).ink,
        "verdict": verdict(row["verdict"]).label,
        "proxy": is_proxy(row),
    }


def _x_label(rows: pd.DataFrame, relation: bool) -> str:
    unit = " (pp)" if rows["metric"].isin(PERCENT_METRICS).all() else ""
    if relation:
        return f"our statistic{unit}; the claim holds right of the band's left edge"
    return f"our value - the paper's{unit}"


def _farthest(points: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most `limit` points: those farthest outside (then nearest the edge of) their band."""
    if len(points) <= limit:
        return points

    def outside(point: dict[str, Any]) -> float:
        low, high = point["band_low"], point["band_high"]
        below = low - point["mean"] if math.isfinite(low) else -math.inf
        above = point["mean"] - high if math.isfinite(high) else -math.inf
        return max(below, above)

    return sorted(points, key=outside, reverse=True)[:limit]


def _panel(row: Mapping[str, Any]) -> str:
    metric = text(row.get("metric"))
    suffix = f", {metric}" if metric and metric != PRIMARY_METRIC else ""
    return (
        dataset_label(row.get("dataset")) + suffix
        if not missing(row.get("dataset"))
        else (metric or "claims")
    )


def _label(row: Mapping[str, Any], relation: bool) -> str:
    arch = arch_label(row.get("arch")) if not missing(row.get("arch")) else text(row["claim_id"])
    epochs = epochs_value(row.get("epochs"))
    if relation:
        return f"{arch} {norm_label(row.get('norm'))} {epochs} ep"
    norm = NORM_LABELS.get(text(row.get("norm")), text(row.get("norm")))
    if epochs is None:
        return f"{arch} {norm}"
    return f"{arch} {norm}{epochs}" if " " not in norm else f"{arch} {norm}, {epochs} ep"


def _epochs_number(row: Mapping[str, Any]) -> float:
    epochs = epochs_value(row.get("epochs"))
    return float(epochs) if isinstance(epochs, int) else math.inf


def _chunks(points: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """As few figures as keep every panel within MAX_ROWS rows, in even chunks of the
    paper's order (60 rows per panel: two figures of 30, not 40 and 20)."""
    points = sorted(points, key=lambda p: (p["panel"], p["sort"]))
    panels = {name: [p for p in points if p["panel"] == name] for name in
              dict.fromkeys(p["panel"] for p in points)}  # fmt: skip
    longest = max((len(rows) for rows in panels.values()), default=0)
    if not longest:
        return []
    count = math.ceil(longest / MAX_ROWS)
    size = math.ceil(longest / count)
    return [
        [p for rows in panels.values() for p in rows[start : start + size]]
        for start in range(0, longest, size)
    ]


def _band(row: Mapping[str, Any], claimed: float) -> tuple[float, float]:
    """The comparator's tolerance bounds (`tol_low`, `tol_high`), else the Tolerance's own;
    (nan, nan) when neither is known (no band is drawn then)."""
    low, high = _float(row.get("tol_low")), _float(row.get("tol_high"))
    bounds = getattr(row.get("tolerance"), "bounds", None)
    if math.isnan(low) and math.isnan(high) and callable(bounds) and not math.isnan(claimed):
        return bounds(claimed)
    return low, high


def _float(value: Any) -> float:
    return math.nan if missing(value) else float(value)
