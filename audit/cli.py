"""The `audit` command: one subcommand per verb, each in its own module.

Only the chosen verb's module is imported, so `audit --help` and `audit check` never
import torch. Each command module, audit.commands.<verb>, provides `HELP` (one line, the
same as SUMMARY's, which the top-level help shows without importing every module),
`add_arguments(parser)` and `main(args) -> int` (the exit code).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from importlib import import_module
from typing import NoReturn

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
MESSAGE_LIMIT = 2000  # characters of one error line


def _top_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (what, which flag, where to look) and exit 2."""

    def error(self, message: str) -> NoReturn:
        from audit.escape import one_line

        self.exit(2, f"{self.prog}: error: {one_line(message)}; see `{self.prog} --help`\n")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # while importing a verb or parsing its flags
        print("audit: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
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
    parser = _Parser(prog=f"audit {verb}", description=module.HELP)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return _run_reporting_errors(verb, module.main, args)


def _run_reporting_errors(
    verb: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """The one error boundary (docs/errors.md): bad input of any kind is one line on stderr
    and exit 2; a bug is one line naming a file with the traceback, exit 3; Ctrl-C is 130; a
    closed stdout ends quietly (141). Exit 1 stays the gate's "not within tolerance"."""
    from audit import errors
    from audit.escape import one_line
    from runners.errors import RunnerInputError

    def fail(message: str, code: int) -> int:
        text = one_line(message)
        if len(text) > MESSAGE_LIMIT:  # a message quoting a huge input must stay a line
            text = text[:MESSAGE_LIMIT] + " ... (message cut)"
        print(f"audit {verb}: {text}", file=sys.stderr, flush=True)
        return code

    try:
        code = int(func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _closed_stdout()
    except (errors.AuditError, RunnerInputError) as exc:
        return fail(f"error: {exc}", getattr(exc, "exit_code", errors.EXIT_BAD_INPUT))
    except KeyboardInterrupt:
        return fail("interrupted", errors.EXIT_INTERRUPTED)
    except OSError as exc:  # the environment: a full disk, a folder that cannot be written
        if errors.is_disk_full(exc):
            where = exc.filename or "standard output or an output file"
            return fail(f"error: {errors.disk_full_error(where)}", errors.EXIT_BAD_INPUT)
        where = f": {exc.filename}" if exc.filename else ""
        return fail(f"error: {exc.strerror or exc}{where}", errors.EXIT_BAD_INPUT)
    except Exception as exc:
        saved = _save_traceback(verb)
        return fail(
            f"internal error ({type(exc).__name__}: {exc}); this is a bug in the harness, not "
            f"your input: please report it with the traceback {saved}",
            errors.EXIT_BUG,
        )


def _closed_stdout() -> int:
    """The reader of stdout went away (`audit ... | head`): stop printing, say nothing."""
    import os

    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit-time flush cannot fail again
    from audit.errors import EXIT_CLOSED_STDOUT

    return EXIT_CLOSED_STDOUT


def _save_traceback(verb: str) -> str:
    """Write the current exception's traceback to a file; its path, or why there is none."""
    import tempfile
    import traceback

    text = f"audit {verb} {sys.argv[1:]!r}\n{traceback.format_exc()}"
    try:
        fd, path = tempfile.mkstemp(prefix=f"audit-{verb}-crash-", suffix=".txt")
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        return f"(not saved: {exc.strerror}); rerun with PYTHONFAULTHANDLER=1"
    return f"saved in {path}"


if __name__ == "__main__":
    sys.exit(main())
