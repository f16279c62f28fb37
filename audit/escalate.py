"""Seeds spent where they decide: the two-look design behind `audit run --escalate`.

The design is declared in the store (`<store>/escalation.json`) before the first look is
judged: n_first seeds per cell, at most max_seeds, overall level 0.05 split as Pocock does
over two looks (3 -> 6 seeds: each look at the nominal two-sided 0.0294). Then, once:
- every cell is judged at that level (first look); cells of gated claims whose verdict is
  `inconclusive` or `unresolved` get seeds n_first .. max_seeds-1 (all of them, for every
  experiment of the claim, so BN and ND keep sharing seeds), and nothing else does;
- the escalation is recorded before its runs start (a repeat resumes the same runs and never
  chooses again); every later verdict of the store uses the same level, and the claims
  whose cells got seeds are marked `escalated`.
Why peeking cannot manufacture a verdict: the level, the maximum and the rule that picks the
cells are fixed before the first look, a cell is never looked at a third time, and a cell
already decided never gets seeds; the calibration test (tests/test_verdicts_calibration.py)
simulates the whole procedure and finds its false "not reproduced" rate at the nominal 5 %.

This module never imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit.compare import SINGLE_LOOK, Design
from audit.errors import AuditError
from audit.stats import pocock_alpha
from audit.verdicts import UNDECIDED

ESCALATION_FILE = "escalation.json"
RULE = "pocock-2"
ALPHA = 0.05  # overall two-sided type-I error of the two looks together


@dataclass
class Declaration:
    """The store's declared two-look design and, once done, its escalation."""

    n_first: int
    max_seeds: int
    declared: str  # ISO date
    results_at_declaration: int  # done runs of the plan that existed when it was declared
    alpha: float = ALPHA
    rule: str = RULE
    escalation: dict[str, Any] | None = None  # date, triggered, claims, runs (id + spec)

    @property
    def nominal_alpha(self) -> float:
        return pocock_alpha(self.n_first, self.max_seeds, self.alpha)

    def design(self) -> Design:
        escalated = self.escalation or {}
        return Design(
            confidence=1 - self.nominal_alpha,
            interim=self.escalation is None,
            max_seeds=self.max_seeds,
            escalated_claims=frozenset(escalated.get("claims", [])),
            rule=self.rule,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "alpha": self.alpha,
            "nominal_alpha_per_look": round(self.nominal_alpha, 6),
            "n_first": self.n_first,
            "max_seeds": self.max_seeds,
            "declared": self.declared,
            "results_at_declaration": self.results_at_declaration,
            "escalation": self.escalation,
        }


def path_of(store: Path) -> Path:
    return Path(store) / ESCALATION_FILE


def read_declaration(store: Path) -> Declaration | None:
    path = path_of(store)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Declaration(
            n_first=int(data["n_first"]),
            max_seeds=int(data["max_seeds"]),
            declared=str(data["declared"]),
            results_at_declaration=int(data.get("results_at_declaration", 0)),
            alpha=float(data.get("alpha", ALPHA)),
            rule=str(data.get("rule", RULE)),
            escalation=data.get("escalation"),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuditError(
            f"{path}: unreadable escalation design ({exc}); restore it from a backup (the "
            "verdicts of this store depend on it)"
        ) from None


def escalation_run_ids(store: Path) -> set[str]:
    """The run ids the store's escalation added (none without one)."""
    declaration = read_declaration(store)
    escalation = declaration.escalation if declaration else None
    return {str(r["run_id"]) for r in (escalation or {}).get("runs", [])}


def read_design(store: Path | None) -> Design:
    """The design the verdicts of `store` are judged under (one look without a declaration)."""
    if store is None:
        return SINGLE_LOOK
    declaration = read_declaration(store)
    return declaration.design() if declaration else SINGLE_LOOK


def declare(store: Path, n_first: int, max_seeds: int | None, done_runs: int) -> Declaration:
    """The store's design: the existing one (which must match), or a new one written now."""
    max_seeds = 2 * n_first if max_seeds is None else max_seeds
    if n_first < 2:
        raise AuditError(
            f"--escalate needs at least 2 seeds at the first look (the profile gives {n_first}); "
            "pass --seeds 3"
        )
    if max_seeds <= n_first:
        raise AuditError(
            f"--max-seeds must exceed the first look's {n_first} seeds, got {max_seeds}"
        )
    existing = read_declaration(store)
    if existing is not None:
        if (existing.n_first, existing.max_seeds) != (n_first, max_seeds):
            raise AuditError(
                f"{path_of(store)}: this store declared {existing.n_first} -> "
                f"{existing.max_seeds} seeds on {existing.declared}; a design cannot change "
                f"once declared (asked {n_first} -> {max_seeds}); use those seeds or a new store"
            )
        return existing
    declaration = Declaration(
        n_first=n_first,
        max_seeds=max_seeds,
        declared=datetime.now(UTC).isoformat(timespec="seconds"),
        results_at_declaration=done_runs,
    )
    _write(store, declaration)
    return declaration


def undecided_claims(table: Any) -> dict[str, str]:
    """claim id -> verdict of the gated claims the first look left undecided."""
    picked = table[table["verdict"].isin(UNDECIDED) & table["gate"].astype(bool)]
    return dict(zip(picked["claim_id"], picked["verdict"], strict=True))


def plan_escalation(
    claims: Any, table: Any, profile: Any, declaration: Declaration, data_dir: Path
) -> tuple[dict[str, str], list[str], list[tuple[str, dict[str, Any]]]]:
    """(triggered claims and their verdicts, every claim an escalated cell serves, the extra
    runs as (run id, spec)) for the first look's comparison `table` of `claims`."""
    from audit.plan import SMOKE, build_plan

    triggered = undecided_claims(table)
    wider = build_plan(
        claims.select(ids=sorted(triggered)) if triggered else [],
        profile,
        seeds=declaration.max_seeds,
        data_dir=data_dir,
        extras=False,
    )
    extra = [r for r in wider.runs if r.spec["seed"] >= declaration.n_first]
    extra_ids = {r.run_id for r in extra}
    # every claim the new seeds serve: a relation's cells are value claims too
    served = build_plan(
        claims, profile, seeds=declaration.max_seeds, data_dir=data_dir, extras=False
    )
    affected = {c for r in served.runs if r.run_id in extra_ids for c in r.claim_ids} - {SMOKE}
    return triggered, sorted(affected), [(r.run_id, r.spec) for r in extra]


def record_escalation(
    store: Path,
    declaration: Declaration,
    triggered: dict[str, str],
    claims: list[str],
    runs: list[tuple[str, dict[str, Any]]],
) -> None:
    """Write the one escalation down before its runs start (a repeat resumes these)."""
    declaration.escalation = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "triggered": triggered,
        "claims": sorted(claims),
        "runs": [{"run_id": run_id, "spec": spec} for run_id, spec in runs],
    }
    _write(store, declaration)


def _write(store: Path, declaration: Declaration) -> None:
    from runners.rundir import atomic_write_json

    atomic_write_json(path_of(store), declaration.to_json())
