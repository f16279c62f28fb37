"""`audit report`: render the HTML and PDF reproduction report from claims and results.

    audit report [--store runs | --results-csv FILE ...] [--claims claims.yaml]
                 [--name NAME] [--out reports] [--no-pdf] [--group G ...]

writes `<out>/<name>/index.html` (self-contained), `<out>/<name>/report.pdf` and the archive
beside them (results.csv, comparison.csv, the claims file, environment.json, the verdict record
verdicts.json of docs/verdicts.md), all or nothing; docs/report.md describes the folder.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from audit.commands.check import (
    DEFAULT_STORE,
    add_scope_argument,
    add_selection_arguments,
    load_results_table,
)
from audit.escape import terminal

HELP = "render the HTML and PDF reproduction report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    # Unlike `audit check`, both may be given: imported numbers (e.g. a prior study's)
    # are then reported together with the store's own runs.
    parser.add_argument(
        "--store", type=Path, default=None, help=f"store directory ({DEFAULT_STORE}/)"
    )
    parser.add_argument(
        "--results-csv",
        "--results",
        dest="results",
        type=Path,
        action="append",
        metavar="CSV",
        help="results CSV instead of a store (repeatable; format: docs/claims.md)",
    )
    parser.add_argument(
        "--name",
        type=report_name,
        default="latest",
        help="report name: the folder <out>/<name>/ (%(default)s)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="reports directory")
    parser.add_argument("--title", default=None, help="the report's title")
    parser.add_argument("--profile", default=None, help="profile to state in the scope line")
    parser.add_argument("--no-pdf", action="store_true", help="write only index.html")
    add_scope_argument(parser)


def main(args: argparse.Namespace) -> int:
    from audit.commands.check import scope_to_store_plan, select_claims
    from audit.compare import compare
    from audit.escalate import read_design
    from audit.record import record_file
    from audit.report import DEFAULT_TITLE, render_report

    claims = select_claims(args)
    store = args.store if args.store or args.results else Path(DEFAULT_STORE)
    results = load_results_table(store, args.results or [])
    for problem in results.attrs.get("problems", []):
        print(f"audit report: warning: {terminal(problem)}", file=sys.stderr)
    claims, results = scope_to_store_plan("report", args, claims, results, store)
    scope = {"profile": args.profile} if args.profile else {}
    if args.results:
        scope["results"] = ", ".join(str(p) for p in args.results)
    design = read_design(store)
    comparison = compare(claims, results, design)
    record = record_file(
        comparison,
        claims=claims,
        claims_path=args.claims,
        store=store,
        results=args.results or [],
        results_table=results,
        command=command_line(),
        design=design,
    )
    paths = render_report(
        claims,
        comparison,
        results,
        store,
        args.out / args.name,
        title=args.title or DEFAULT_TITLE,
        scope=scope,
        command=command_line(),
        claims_path=args.claims,
        pdf=not args.no_pdf,
        extra_files=record,
    )
    print(f"audit report: wrote {paths.html}" + (f" and {paths.pdf}" if paths.pdf else ""))
    return 0


def report_name(text: str) -> str:
    """A report's folder name: one plain path component, so the report lands in --out."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", text) or text.strip(".") == "":
        raise argparse.ArgumentTypeError(
            f"{text!r:.60} is not a report name: use letters, digits, '.', '_' and '-' (one "
            "folder name under --out, e.g. latest or pr-123)"
        )
    return text


def command_line() -> str:
    """The command as typed, for the report's provenance (`audit` plus its arguments)."""
    return shlex.join(["audit", *sys.argv[1:]])
