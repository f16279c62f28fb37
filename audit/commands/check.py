"""`audit check`: compare results with the claims; the CI gate.

Exit 0: every selected gated claim is within tolerance; 1: some is not; 2: bad input
(raised as AuditError and reported by audit/cli.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from audit import project_file

if TYPE_CHECKING:  # imported lazily below: `audit check --help` must stay fast
    import pandas as pd

    from audit.claims import ClaimSet

HELP = "compare results with the claims; exit 0 within tolerance, 1 not, 2 bad input"
DEFAULT_CLAIMS = project_file("claims.yaml")  # the project's own, wherever audit runs
DEFAULT_STORE = "runs"


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """Claims file and selection options (shared with `audit validate`)."""
    parser.add_argument(
        "--claims",
        type=Path,
        default=DEFAULT_CLAIMS,
        help="claims file (the project's claims.yaml)",
    )
    add = parser.add_argument
    add("--group", action="append", help="claim group(s), repeatable or comma-separated")
    add("--id", action="append", help="claim id(s) or glob patterns like 'table1.cifar10.*'")
    add("--dataset", action="append", help="only claims on these datasets")
    add("--arch", action="append", help="only claims on these architectures")
    add("--norm", action="append", help="only claims on these norms (bn, nd, none)")
    add("--epochs", action="append", help="only claims at these epoch budgets")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--store", type=Path, default=None, help=f"store directory ({DEFAULT_STORE}/)"
    )
    source.add_argument(
        "--results",
        "--results-csv",
        dest="results",
        type=Path,
        action="append",
        metavar="CSV",
        help="results CSV instead of a store (repeatable; format: docs/claims.md)",
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write a markdown summary")
    parser.add_argument(
        "--json", action="store_true", help="print the verdict record (JSON) instead of the table"
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="write the verdict record here (default: ./verdicts.json; never into the store, "
        "which a check leaves byte for byte as it was)",
    )
    parser.add_argument("--no-record", action="store_true", help="write no verdicts.json")
    parser.add_argument(
        "--only-failures", action="store_true", help="list only the claims failing the gate"
    )
    parser.add_argument(
        "--allow-missing", action="store_true", help="claims without results do not fail"
    )
    parser.add_argument(
        "--allow-inconclusive",
        action="store_true",
        help="undecided claims (inconclusive, unresolved) do not fail",
    )
    add_scope_argument(parser)


def add_scope_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--all-claims",
        action="store_true",
        help="judge every selected claim (default for a store: only the claims of its plan)",
    )


def scope_to_store_plan(
    verb: str, args: argparse.Namespace, claims: ClaimSet, results: pd.DataFrame, store: Path | None
) -> tuple[ClaimSet, pd.DataFrame]:
    """A store alone is judged as `audit run` judged it: the claims of its recorded plan, on
    the plan's runs. Not with --all-claims, with CSV input, or where no plan was recorded."""
    from audit.errors import AuditError
    from audit.escalate import escalation_run_ids
    from audit.plan import judged_by

    plan = _read_plan(store) if store is not None and not args.results else {}
    if args.all_claims or not plan.get("matrix"):
        return claims, results
    claim_ids, run_ids = judged_by(plan)
    run_ids |= escalation_run_ids(store)  # the second look's seeds belong to the plan too
    wanted = set(claim_ids)
    kept = [c for c in claims if c.id in wanted]
    where = f"the plan of {store} (profile {plan.get('profile', '?')})"
    if not wanted:
        print(f"audit {verb}: {where} covers no claim (smoke runs only)", file=sys.stderr)
    elif not kept:
        raise AuditError(
            f"the selection matches none of the {len(wanted)} claim(s) of {where}; "
            "add --all-claims to judge claims outside it"
        )
    else:
        print(
            f"audit {verb}: judging the {len(kept)} claim(s) of {where}; "
            "--all-claims judges every claim",
            file=sys.stderr,
        )
    if len(results):
        results = results[results["run_id"].isin(run_ids)]
    return dataclasses.replace(claims, claims=kept), results


def _read_plan(store: Path) -> dict:
    import json

    from audit.store import PLAN_FILE

    try:
        plan = json.loads((Path(store) / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return plan if isinstance(plan, dict) else {}


def split_list(values: list[str] | None) -> list[str] | None:
    """`--group a --group b,c` -> [a, b, c]."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def select_claims(args: argparse.Namespace) -> ClaimSet:
    from audit.claims import load_claims
    from audit.errors import AuditError
    from audit.limits import EPOCHS, parse_int

    epochs = split_list(args.epochs)
    try:
        epochs = [parse_int(e, *EPOCHS) for e in epochs] if epochs else None
    except ValueError as exc:
        raise AuditError(f"--epochs: {exc}") from None
    return load_claims(args.claims).select(
        groups=split_list(args.group),
        ids=split_list(args.id),
        datasets=split_list(args.dataset),
        archs=split_list(args.arch),
        norms=split_list(args.norm),
        epochs=epochs,
    )


def load_table(args: argparse.Namespace) -> pd.DataFrame:
    """The CSVs' rows when --results is given, else the store's runs."""
    store = None if args.results else (args.store or Path(DEFAULT_STORE))
    return load_results_table(store, args.results or [])


def load_results_table(store: Path | None, csvs: list[Path]) -> pd.DataFrame:
    """The store's runs and every CSV's rows in one results table, each run once (a run
    given twice is merged with a warning, or an error when its values differ)."""
    from audit.duplicates import merge_results
    from audit.results import load_results, load_results_csv

    tables = [load_results(store)] if store is not None else []
    tables += [load_results_csv(path) for path in csvs]
    return merge_results(tables)


def main(args: argparse.Namespace) -> int:
    # The check allocates about a million small objects and frees none of them as cyclic
    # garbage; with the cyclic collector paused it needs a quarter less CPU time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _check(args)
    finally:
        if collecting:
            gc.enable()


def _check(args: argparse.Namespace) -> int:
    from audit import check
    from audit.compare import compare
    from audit.escalate import read_design
    from audit.escape import terminal

    claims = select_claims(args)
    results = load_table(args)
    for problem in results.attrs.get("problems", []):
        print(f"audit check: warning: {terminal(problem)}", file=sys.stderr)
    store = None if args.results else (args.store or Path(DEFAULT_STORE))
    claims, results = scope_to_store_plan("check", args, claims, results, store)
    design = read_design(store)
    table = compare(claims, results, design)
    allowed = check.passing_verdicts(args.allow_missing, args.allow_inconclusive)
    context = dict(
        claims=claims,
        claims_path=args.claims,
        store=store,
        results=args.results or [],
        results_table=results,
        design=design,
    )
    _write_record(args, store, table, allowed, context)
    if args.junit:
        _write(args.junit, check.render_junit(table, allowed))
    if args.markdown:
        _write(args.markdown, check.render_markdown(table, allowed))
    if args.json:
        print(check.render_json(table, allowed, **context))
    else:
        print(check.render_table(table, allowed, only_failures=args.only_failures))
    return check.exit_code(table, allowed)


def _write_record(
    args: argparse.Namespace,
    store: Path | None,
    table: pd.DataFrame,
    allowed: set[str],
    context: dict,
) -> None:
    """verdicts.json: where --record says (an error if it cannot be written), else in the
    current directory (a warning if it is read-only). Never into the store: a check reads
    it and changes no byte of it (docs/errors.md)."""
    from audit.errors import AuditError
    from audit.record import RECORD_NAME, write_verdict_record

    if args.no_record:
        return
    path = args.record
    if path is None:
        path = Path(RECORD_NAME)
    try:
        write_verdict_record(path, table, allowed, **context)
    except AuditError as exc:
        if args.record is not None:
            raise
        print(f"audit check: warning: {exc}", file=sys.stderr)


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a failed write (a full disk) leaves the previous file as it was."""
    from audit.atomic import write_text_atomic

    write_text_atomic(path, text, what="the check's output")
