"""The `audit` command: one subcommand per verb, each in its own module.

Only the chosen verb's module is imported, so `audit --help` and `audit check` never
import torch. Each command module, audit.commands.<verb>, provides `HELP` (one line, the
same as SUMMARY's, which the top-level help shows without importing every module),
`add_arguments(parser)` and `main(args) -> int` (the exit code).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib import import_module

SUMMARY = {
    "run": "plan, launch, wait, check and report: the one-command audit (safe to repeat)",
    "plan": "show the experiment matrix a profile and selection would run",
    "status": "show done / running / queued / failed runs of a store",
    "check": "compare results with the claims; exit 0 within tolerance, 1 not, 2 bad input",
    "report": "render the HTML and PDF reproduction report",
    "validate": "check a claims file without running anything",
    "train": "train one classification run (BN / ND / MLP) into a run directory",
    "kernels": "compute first-layer deconvolution kernels and their centre-surround score",
    "diff": "compare two verdict records or stores; exit 1 when a gated claim regressed",
    "cancel": "cancel this store's queued and running SLURM jobs (and only them)",
    "logs": "show the tail of a run's log and of its scheduler stdout/stderr",
}
COMMANDS = tuple(SUMMARY)  # the verbs, in help order; each is a module under audit.commands


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audit",
        description="Reproducibility audit of 'Network Deconvolution' (Ye et al., ICLR 2020).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="verbs:\n"
        + "\n".join(f"  {verb:<10} {SUMMARY[verb]}" for verb in COMMANDS)
        + "\n\nRun `audit VERB --help` for a verb's options.",
    )
    parser.add_argument("verb", choices=COMMANDS, metavar="VERB", help="what to do")
    parser.add_argument("--version", action="store_true", help="print the version and commit")
    return parser


def version_line() -> str:
    """`audit 0.1.0 (commit 1a2b3c4d5e6f)`, `+ uncommitted changes` where the tree was dirty;
    the commit is left out where unknown (a wheel built without git)."""
    from audit import version
    from runners.rundir import project_commit

    project = project_commit()
    if not project["commit"]:
        return f"audit {version()}"
    dirty = " + uncommitted changes" if project["dirty"] else ""
    return f"audit {version()} (commit {project['commit'][:12]}{dirty})"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    if argv[0] == "--version":
        print(version_line())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in COMMANDS:
        top.error(f"unknown verb {verb!r} (choose from {', '.join(COMMANDS)})")
    module = import_module(f"audit.commands.{verb}")
    parser = argparse.ArgumentParser(prog=f"audit {verb}", description=module.HELP)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return _run_reporting_errors(verb, module.main, args)


def _run_reporting_errors(
    verb: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """Bad input ends in one line on stderr and exit code 2, never a traceback."""
    from audit.errors import AuditError
    from runners.errors import RunnerInputError

    try:
        return int(func(args) or 0)
    except (AuditError, RunnerInputError) as exc:
        print(f"audit {verb}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print(f"audit {verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
