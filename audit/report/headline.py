"""The headline: the outcome in sentences (one per claim group, one overall), the verdict counts
beside them, and the scope of the audit, all generated from the comparison and the runs.

A claim judged on runs that depart from the paper's protocol (its comparison row lists
deviations) is a proxy: it is counted as such and never as a reproduction or a refutation."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pandas as pd

from audit.report.common import as_list, column, fmt, is_proxy, text
from audit.report.facts import Facts
from audit.report.vocabulary import BROKEN, NOT_RUN, PROXY, ordered, phrase, verdict

NOUNS = {"value": "printed numbers", "threshold": "stated bounds", "relation": "relations"}
NOUN = {"value": "printed number", "threshold": "stated bound", "relation": "relation"}


def counted_verdict(row: Mapping[str, Any]) -> str:
    """The verdict a claim is counted under: `proxy` for a judgement on deviating runs."""
    name = str(row["verdict"])
    if is_proxy(row) and verdict(name).outcome not in (NOT_RUN, BROKEN):
        return PROXY.name
    return name


def headline(comparison: pd.DataFrame) -> dict[str, Any]:
    """Sentences and counts of the verdicts, overall and per claim group."""
    rows = comparison.to_dict("records")
    for row in rows:
        row["counted"] = counted_verdict(row)
    names = ordered(r["counted"] for r in rows if r["counted"] != PROXY.name)
    if any(r["counted"] == PROXY.name for r in rows):
        names.append(PROXY.name)
    groups = list(dict.fromkeys(str(r["group"]) for r in rows))
    table = []
    for group in groups:
        counts = Counter(r["counted"] for r in rows if str(r["group"]) == group)
        table.append(
            {
                "group": group,
                "counts": [counts.get(n, 0) for n in names],
                "total": sum(counts.values()),
                "sentence": group_sentence([r for r in rows if str(r["group"]) == group]),
            }
        )
    totals = Counter(r["counted"] for r in rows)
    return {
        "overall": overall_sentence(rows),
        "proxy_note": proxy_note(rows),
        "verdicts": names,
        "labels": [PROXY.label if n == PROXY.name else verdict(n).label for n in names],
        "groups": table,
        "totals": [totals.get(n, 0) for n in names],
        "total": len(rows),
    }


def group_sentence(rows: list[dict[str, Any]], statements: bool = True) -> str:
    """`Of 36 printed numbers, 20 reproduced, 8 worse than claimed, 8 not run.`"""
    parts = [_type_clause(rows, kind, statements) for kind in NOUNS]
    return _capital("; ".join(p for p in parts if p)) + "."


def overall_sentence(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No claim was selected."
    return group_sentence(rows, statements=False)


def _type_clause(rows: list[dict[str, Any]], kind: str, statements: bool) -> str:
    mine = [r for r in rows if str(r.get("type")) == kind]
    if not mine:
        return ""
    relation = kind == "relation"
    counts = Counter(r["counted"] for r in mine)
    names = ordered(n for n in counts if n != PROXY.name)
    items = [f"{counts[n]} {phrase(n, relation)}" for n in names]
    if counts.get(PROXY.name):
        items.append(f"{counts[PROXY.name]} judged only on proxy runs (not counted)")
    noun = NOUN[kind] if len(mine) == 1 else NOUNS[kind]
    about = _statements(mine) if relation and statements else ""
    return f"of {len(mine)} {noun}{about}, " + ", ".join(items)


def _statements(rows: list[dict[str, Any]]) -> str:
    """The relations' statements without their formulas: ` (ND beats BN)`."""
    plain = [re.sub(r"\s*\([^()]*\)\s*$", "", text(r.get("statement"))) for r in rows]
    unique = [s for s in dict.fromkeys(plain) if s]
    return f" ({'; '.join(unique)})" if unique else ""


def proxy_note(rows: list[dict[str, Any]]) -> str:
    """Which claims are proxies and why, in one sentence; "" when none is."""
    proxies = [r for r in rows if r["counted"] == PROXY.name]
    if not proxies:
        return ""
    reasons = list(dict.fromkeys(d for r in proxies for d in as_list(r.get("deviations"))))
    shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    one = len(proxies) == 1
    count = f"{len(proxies)} claim{'' if one else 's'} rest{'s' if one else ''}"
    return (
        f"{count} on runs that depart from the paper's protocol ({shown}): they are "
        "labelled proxy and counted neither as reproduced nor as refuted."
    )


def _capital(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


# -- the scope


def scope_items(
    facts: Facts, results: pd.DataFrame, details: pd.DataFrame
) -> list[tuple[str, str]]:
    """What the audit covered, stated next to the headline; every item from the runs."""
    statuses = column(results, "status", "done").value_counts()
    gpu_hours = float(details["gpu_seconds"].sum()) / 3600 if len(details) else 0.0
    wall_hours = float(details["wall_seconds"].sum()) / 3600 if len(details) else 0.0
    items = [
        ("results", facts.origin_text()),
        ("profile", facts.profile_text()),
        ("runs", ", ".join(f"{n} {status}" for status, n in statuses.items()) or "none"),
        ("seeds", facts.seeds_text()),
        ("hardware", facts.hardware_text()),
        ("GPU-hours", fmt(gpu_hours, 2) if len(details) else "not recorded"),
        # CPU-only audits spend no GPU-hours; the wall-clock total still says what it cost
        ("wall-clock hours", fmt(wall_hours, 2) if len(details) else "not recorded"),
    ]
    return items + [(k, v) for k, v in facts.extra_scope.items()]
