"""`audit diff A B`: compare two verdict records or stores.

    audit diff main/verdicts.json pr/verdicts.json [--json] [--markdown FILE]
    audit diff runs-main runs-pr [--claims claims.yaml] [--group ...]

Exit 0: no gated claim regressed; 1: some did (passed in A, fails in B); 2: bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from audit.commands.check import add_selection_arguments

HELP = "compare two verdict records or stores; exit 1 when a gated claim regressed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", type=Path, help="before: verdicts.json, a folder with one, or a store")
    parser.add_argument("b", type=Path, help="after: the same kinds")
    add_selection_arguments(parser)  # used when A or B is a store
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write a markdown summary")


def main(args: argparse.Namespace) -> int:
    from audit.diff import diff_records, render_json, render_markdown, render_text

    before, after = load_side(args.a, args), load_side(args.b, args)
    diff = diff_records(before, after, (str(args.a), str(args.b)))
    if args.markdown:
        from runners.rundir import atomic_write_text

        try:
            atomic_write_text(args.markdown, render_markdown(diff))
        except OSError as exc:
            from audit.errors import AuditError

            raise AuditError(f"{args.markdown}: cannot write ({exc.strerror or exc})") from None
    print(render_json(diff) if args.json else render_text(diff))
    return diff.exit_code


def load_side(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A verdict record: the file itself, a folder's verdicts.json (a report folder), or a
    store's verdicts computed now (a folder with runs/)."""
    from audit.errors import AuditError
    from audit.record import RECORD_NAME, load_verdict_record

    if path.is_file():
        return load_verdict_record(path)
    if path.is_dir() and (path / "runs").is_dir():
        return _store_record(path, args)
    if path.is_dir() and (path / RECORD_NAME).is_file():
        return load_verdict_record(path / RECORD_NAME)
    raise AuditError(
        f"{path}: neither a verdict record nor a store (no runs/ or {RECORD_NAME} in it); "
        "give a verdicts.json that `audit check` or `audit report` wrote, or a store directory"
    )


def _store_record(store: Path, args: argparse.Namespace) -> dict[str, Any]:
    from audit.check import passing_verdicts
    from audit.commands.check import select_claims
    from audit.compare import compare
    from audit.escalate import read_design
    from audit.record import build_verdict_record
    from audit.results import load_results

    claims = select_claims(args)
    results = load_results(store)
    for problem in results.attrs.get("problems", []):
        print(f"audit diff: warning: {problem}", file=sys.stderr)
    design = read_design(store)
    table = compare(claims, results, design)
    return build_verdict_record(
        table,
        passing_verdicts(),
        claims=claims,
        claims_path=args.claims,
        store=store,
        results_table=results,
        design=design,
    )
