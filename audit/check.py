"""The CI gate's verdict and its renderings: a compact text table, JUnit XML, markdown, JSON.

Input is the comparison table of `audit.compare.compare`. A claim passes the gate when its
verdict is `reproduced` or `holds` (audit/verdicts.py); `missing` and the undecided
`inconclusive`/`unresolved` pass only when allowed (flags of `audit check`); claims with
`gate: false` are shown but never fail the gate.
Exit codes: 0 every gated claim passes, 1 some does not (2, bad input, is raised earlier).

This module never imports torch.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pandas as pd

from audit import verdicts
from audit.escape import markdown, xml
from audit.verdicts import PASSING, VERDICTS

PASS, FAIL = 0, 1
MARKDOWN_ROW_LIMIT = 500  # GitHub caps a step summary at 1 MiB


passing_verdicts = verdicts.passing_verdicts  # the rule lives with the vocabulary


def gate_failures(table: pd.DataFrame, allowed: set[str]) -> pd.DataFrame:
    """The gated claims whose verdict is not allowed."""
    return table[table["gate"].astype(bool) & ~table["verdict"].isin(allowed)]


def exit_code(table: pd.DataFrame, allowed: set[str]) -> int:
    return FAIL if len(gate_failures(table, allowed)) else PASS


def summary_line(table: pd.DataFrame, allowed: set[str]) -> str:
    from audit.compare import fdr_summary

    counts = Counter(table["verdict"])
    parts = [f"{counts[v]} {verdicts.label(v)}" for v in VERDICTS if counts[v]]
    failing = len(gate_failures(table, allowed))
    gate = "PASS" if not failing else f"FAIL ({failing} gated claim(s) not within tolerance)"
    fdr = fdr_summary(table) if "q_value" in table else {"failures": 0}
    fdr_text = f" {fdr['sentence'][0].upper()}{fdr['sentence'][1:]}." if fdr["failures"] else ""
    return f"{len(table)} claims: {', '.join(parts) or 'none'}.{fdr_text} Gate: {gate}"


# --------------------------------------------------------------------------- numbers


def _num(value: Any, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def reproduced_text(row: Any) -> str:
    if not row.n:
        return "-"
    text = _num(row.reproduced_mean, signed=row.type == "relation")
    if row.n >= 2:
        text += f" ± {_num(row.reproduced_std)}"
    return f"{text} (n={row.n})"


def claimed_text(row: Any) -> str:
    if row.type == "relation":
        return row.claimed_text and f"{_num(row.claimed, signed=True)}"
    if row.type == "threshold":
        return f"≥ {row.claimed_text}"
    return row.claimed_text


def deviation_text(row: Any) -> str:
    """Both deviations, labelled, as in every place a deviation appears."""
    return f"{_num(row.abs_dev, signed=True)} pt, {_num(row.rel_dev, signed=True)}% rel"


# --------------------------------------------------------------------------- text table


def render_table(table: pd.DataFrame, allowed: set[str], only_failures: bool = False) -> str:
    """A compact fixed-width table, one line per claim, then the summary line."""
    shown = gate_failures(table, allowed) if only_failures else table
    header = ("claim", "claimed", "reproduced", "Δ pt", "Δ %", "tolerance", "verdict")
    lines = [
        (
            row.claim_id + ("" if row.gate else " (not gated)"),
            claimed_text(row),
            reproduced_text(row),
            _num(row.abs_dev, signed=True),
            _num(row.rel_dev, signed=True),
            row.tolerance,
            row.verdict + (" *" if row.deviations else ""),
        )
        for row in shown.itertuples(index=False)
    ]
    widths = [max([len(h), *(len(x[i]) for x in lines)]) for i, h in enumerate(header)]
    out = [_fixed(header, widths), _fixed(tuple("-" * w for w in widths), widths)]
    out.extend(_fixed(cells, widths) for cells in lines)
    if any(shown["deviations"].map(bool)):
        out.append("* some runs deviate from the protocol; --json lists the deviations")
    out.append(summary_line(table, allowed))
    return "\n".join(out)


def _fixed(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


# --------------------------------------------------------------------------- JUnit


def render_junit(table: pd.DataFrame, allowed: set[str], name: str = "audit check") -> str:
    """One testcase per claim (classname = group); gate failures are <failure>, non-passing
    claims that do not gate (not gated, or allowed missing/inconclusive) are <skipped>.

    Written as text with escaping rather than through ElementTree: 10,000 cases in a
    fraction of the time.
    """
    failing = set(gate_failures(table, allowed)["claim_id"])
    cases = []
    failures = skipped = 0
    for row in table.itertuples(index=False):
        head = f"<testcase classname={_attr(row.group)} name={_attr(row.claim_id)}"
        if row.claim_id in failing:
            failures += 1
            cases.append(
                f"{head}><failure message={_attr(_junit_message(row))} "
                f"type={_attr(row.verdict)}>{escape(xml(_junit_detail(row)))}</failure></testcase>"
            )
        elif row.verdict not in PASSING:
            skipped += 1
            cases.append(f"{head}><skipped message={_attr(_junit_message(row))}/></testcase>")
        else:
            cases.append(f"{head}/>")
    suite = (
        f'<testsuite name={_attr(name)} tests="{len(table)}" failures="{failures}" '
        f'errors="0" skipped="{skipped}">'
    )
    return "\n".join(
        [
            "<?xml version='1.0' encoding='utf-8'?>",
            f"<testsuites name={_attr(name)}>",
            suite,
            *cases,
            "</testsuite>",
            "</testsuites>",
            "",
        ]
    )


def _attr(text: Any) -> str:
    """An XML attribute value: quoted, escaped, and without characters XML 1.0 forbids."""
    return quoteattr(xml(text))


def _junit_message(row: Any) -> str:
    return (
        f"{row.verdict}: claimed {claimed_text(row) or '-'}, reproduced {reproduced_text(row)}, "
        f"deviation {deviation_text(row)}, tolerance {row.tolerance}"
    )


def _junit_detail(row: Any) -> str:
    lines = [f"reason: {row.reason}", f"source: {row.source}"]
    if row.statement:
        lines.insert(0, f"statement: {row.statement}")
    if row.deviations:
        lines.append("deviations: " + "; ".join(row.deviations))
    if row.run_ids:
        lines.append("runs: " + ", ".join(row.run_ids))
    return "\n".join(lines)


# --------------------------------------------------------------------------- markdown


def render_markdown(table: pd.DataFrame, allowed: set[str], title: str = "Claims check") -> str:
    """A CI step summary: verdict counts per group, then the claims that fail the gate."""
    out = [f"## {markdown(title)}", "", summary_line(table, allowed), ""]
    out += _group_counts(table)
    failing = gate_failures(table, allowed)
    if len(failing):
        out += ["", f"### Not within tolerance ({len(failing)})", ""]
        out += _claims_markdown(failing)
    out += ["", "Deviations: Δ pt = reproduced − claimed (points); "]
    out[-1] += "Δ % = (reproduced − claimed) / claimed × 100 (the seed study's definition)."
    return "\n".join(out) + "\n"


def _group_counts(table: pd.DataFrame) -> list[str]:
    present = [v for v in VERDICTS if (table["verdict"] == v).any()]
    lines = ["| group | " + " | ".join(verdicts.label(v) for v in present) + " |"]
    lines.append("|---" * (len(present) + 1) + "|")
    for group, part in table.groupby("group", sort=False):
        counts = Counter(part["verdict"])
        lines.append(f"| {markdown(group)} | " + " | ".join(str(counts[v]) for v in present) + " |")
    return lines


def _claims_markdown(rows: pd.DataFrame) -> list[str]:
    lines = [
        "| claim | claimed | reproduced | Δ pt | Δ % | tolerance | verdict | reason |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows.head(MARKDOWN_ROW_LIMIT).itertuples(index=False):
        cells = (
            f"`{row.claim_id}`",  # ids hold only letters, digits, ".", "_" and "-"
            markdown(claimed_text(row)),
            reproduced_text(row),
            _num(row.abs_dev, signed=True),
            _num(row.rel_dev, signed=True),
            markdown(row.tolerance),
            f"**{markdown(verdicts.label(row.verdict))}**",
            markdown(row.reason or ""),
        )
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) > MARKDOWN_ROW_LIMIT:
        lines.append(
            f"\n… and {len(rows) - MARKDOWN_ROW_LIMIT} more (see the JUnit or JSON output)"
        )
    return lines


# --------------------------------------------------------------------------- JSON


def render_json(table: pd.DataFrame, allowed: set[str], **context: object) -> str:
    """The verdict record (audit/record.py, docs/verdicts.md): what `audit check --json`
    prints and verdicts.json holds."""
    from audit.record import build_verdict_record, record_json

    return record_json(build_verdict_record(table, allowed, **context))  # type: ignore[arg-type]
