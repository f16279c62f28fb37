"""`audit diff`: what changed between two verdict records (e.g. a pull request's audit and
main's): verdicts that changed, deviations that moved by more than their interval, claims
and runs that appeared or vanished. A gated claim that passed in A and fails in B is a
regression (exit 1).

Input: two verdict records (`verdicts.json`, docs/verdicts.md), or folders holding one, or
stores (their verdicts computed now, with the claims file). Renderings: a text table,
markdown and JSON. This module never imports torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from audit import verdicts


@dataclass
class Change:
    claim_id: str
    before: str
    after: str
    gated: bool
    regression: bool  # passed the gate in A, fails it in B


@dataclass
class Move:
    claim_id: str
    abs_dev_before: float
    abs_dev_after: float
    rel_dev_before: float | None
    rel_dev_after: float | None
    interval: float  # half-width of the 95 % interval the move exceeded


@dataclass
class Diff:
    a: str
    b: str
    changed: list[Change] = field(default_factory=list)
    moved: list[Move] = field(default_factory=list)
    claims_added: list[str] = field(default_factory=list)
    claims_removed: list[str] = field(default_factory=list)
    runs_appeared: list[str] = field(default_factory=list)
    runs_vanished: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changed if c.regression]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def diff_records(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str] = ("A", "B")) -> Diff:
    """Compare record `a` (before) with `b` (after)."""
    passing = set(b["gate"]["passing_verdicts"]) or set(verdicts.PASSING)
    before = {c["claim_id"]: c for c in a["claims"]}
    after = {c["claim_id"]: c for c in b["claims"]}
    out = Diff(*names)
    out.claims_added = sorted(set(after) - set(before))
    out.claims_removed = sorted(set(before) - set(after))
    for claim_id in [c for c in after if c in before]:
        old, new = before[claim_id], after[claim_id]
        if old["verdict"] != new["verdict"]:
            regression = new["gate"] and old["verdict"] in passing and new["verdict"] not in passing
            out.changed.append(
                Change(claim_id, old["verdict"], new["verdict"], new["gate"], regression)
            )
        move = _moved(claim_id, old, new)
        if move is not None:
            out.moved.append(move)
    runs_a, runs_b = _run_ids(a), _run_ids(b)
    out.runs_appeared = sorted(runs_b - runs_a)
    out.runs_vanished = sorted(runs_a - runs_b)
    return out


def _moved(claim_id: str, old: dict[str, Any], new: dict[str, Any]) -> Move | None:
    """A deviation that moved by more than its interval (the wider half-width of the two
    records' intervals; single runs have none, so only their verdict changes show)."""
    if old["abs_dev"] is None or new["abs_dev"] is None:
        return None
    halves = [
        (c["ci_high"] - c["ci_low"]) / 2
        for c in (old, new)
        if c["ci_low"] is not None and c["ci_high"] is not None
    ]
    if not halves:
        return None
    interval = max(halves)
    if abs(new["abs_dev"] - old["abs_dev"]) <= interval:
        return None
    return Move(claim_id, old["abs_dev"], new["abs_dev"], old["rel_dev"], new["rel_dev"], interval)


def _run_ids(record: dict[str, Any]) -> set[str]:
    if record.get("runs") is not None:
        return {r["run_id"] for r in record["runs"]}
    return {r for c in record["claims"] for r in c["run_ids"]}


# --------------------------------------------------------------------------- renderings


def summary_line(diff: Diff) -> str:
    result = "FAIL" if diff.exit_code else "PASS"
    return (
        f"{diff.a} -> {diff.b}: {len(diff.changed)} verdict(s) changed "
        f"({len(diff.regressions)} gated regression(s)), {len(diff.moved)} deviation(s) moved "
        f"beyond their interval, {len(diff.claims_added)} claim(s) added, "
        f"{len(diff.claims_removed)} removed, {len(diff.runs_appeared)} run(s) appeared, "
        f"{len(diff.runs_vanished)} vanished. Diff: {result}"
    )


def _sections(diff: Diff) -> list[tuple[str, tuple[str, ...], list[tuple[str, ...]]]]:
    """(title, header, rows) of each non-empty part, shared by text and markdown."""
    parts = [
        (
            "Verdicts that changed",
            ("claim", "before", "after", "gate"),
            [
                (
                    c.claim_id,
                    verdicts.label(c.before),
                    verdicts.label(c.after),
                    "REGRESSION" if c.regression else ("gated" if c.gated else "not gated"),
                )
                for c in diff.changed
            ],
        ),
        (
            "Deviations that moved beyond their interval",
            ("claim", "Δ pt before", "Δ pt after", "Δ % before", "Δ % after", "± interval"),
            [
                (
                    m.claim_id,
                    _num(m.abs_dev_before),
                    _num(m.abs_dev_after),
                    _num(m.rel_dev_before),
                    _num(m.rel_dev_after),
                    f"{m.interval:.2f}",
                )
                for m in diff.moved
            ],
        ),
        ("Claims added", ("claim",), [(c,) for c in diff.claims_added]),
        ("Claims removed", ("claim",), [(c,) for c in diff.claims_removed]),
        ("Runs that appeared", ("run",), [(r,) for r in diff.runs_appeared]),
        ("Runs that vanished", ("run",), [(r,) for r in diff.runs_vanished]),
    ]
    return [part for part in parts if part[2]]


def render_text(diff: Diff) -> str:
    out: list[str] = []
    for title, header, rows in _sections(diff):
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
        out += [f"{title} ({len(rows)}):", _fixed(header, widths)]
        out.append(_fixed(tuple("-" * w for w in widths), widths))
        out += [_fixed(row, widths) for row in rows]
        out.append("")
    out.append(summary_line(diff))
    return "\n".join(out)


def render_markdown(diff: Diff) -> str:
    out = ["## Audit diff", "", _md(summary_line(diff)), ""]
    for title, header, rows in _sections(diff):
        out += [f"### {title} ({len(rows)})", ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|---" * len(header) + "|")
        out += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out) + "\n"


def render_json(diff: Diff) -> str:
    data = asdict(diff)
    data["regressions"] = [c.claim_id for c in diff.regressions]
    data["exit_code"] = diff.exit_code
    data["summary"] = summary_line(diff)
    return json.dumps(data, indent=1, ensure_ascii=False)


def _fixed(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:+.2f}"


def _md(text: str) -> str:
    """Claim ids and run ids come from other people's files: no markup may pass through."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for char in "\\`*_[]|#":
        text = text.replace(char, "\\" + char)
    return " ".join(text.split())
