"""`audit validate`: check a claims file (and optionally a results CSV) without running anything."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from audit.commands.check import add_selection_arguments, select_claims
from audit.errors import AuditError

if TYPE_CHECKING:
    from audit.claims import Claim, ClaimSet

HELP = "check a claims file without running anything"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", type=Path, help="claims file (default: --claims)")
    add_selection_arguments(parser)
    parser.add_argument(
        "--results", type=Path, action="append", metavar="CSV", help="also check a results CSV"
    )
    parser.add_argument("--list", action="store_true", help="print every claim id and value")


def main(args: argparse.Namespace) -> int:
    if args.file is not None:
        args.claims = args.file
    claims = select_claims(args)
    check_experiments(claims)
    if args.list:
        for claim in claims:
            print(_claim_line(claim))
    for path in args.results or []:
        from audit.results import load_results_csv

        print(f"{path}: {len(load_results_csv(path))} result rows, OK")
    print(_summary(claims))
    return 0


def check_experiments(claims: ClaimSet) -> None:
    """Every runnable experiment must be a valid runner spec (names, fields, values).

    The runners' spec classes do not import torch, so this stays a cheap, offline check.
    """
    from runners.errors import RunnerInputError
    from runners.specs import effective_spec

    for claim in claims:
        if not (claim.gate and claim.runnable):
            continue
        for experiment in claim.experiments():
            try:
                effective_spec(experiment)
            except RunnerInputError as exc:
                raise AuditError(
                    f"{claims.path}:{claim.line}: claim {claim.id}: its experiment "
                    f"{experiment} is not a valid runner spec: {exc}"
                ) from None


def _claim_line(claim: Claim) -> str:
    gate = "" if claim.gate else "  (not gated)"
    value = claim.claimed_text or (claim.statement if claim.type == "relation" else "")
    return f"{claim.id}  {claim.type}  {value}  tol {claim.tolerance.describe()}{gate}"


def _summary(claims: ClaimSet) -> str:
    groups = Counter(c.group for c in claims)
    types = Counter(c.type for c in claims)
    refs = ", ".join(f"{r.id} ({len(r.values)} values)" for r in claims.reference_sources)
    lines = [
        f"{claims.path}: {len(claims)} claims OK "
        f"({', '.join(f'{n} {t}' for t, n in types.items())})",
        "groups: " + ", ".join(f"{g} ({n})" for g, n in groups.items()),
        f"experiments to run: {len(claims.experiments())}",
        f"reference sources (not gated): {refs or 'none'}",
    ]
    return "\n".join(lines)
