"""`audit run`: plan, launch, wait, then check and report. Safe to repeat at any point:
finished runs are never trained again (unless --force), interrupted ones resume, SLURM jobs
still queued or running are re-attached through the job ids kept in the store.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from audit import limits
from audit.commands.plan import add_selection_arguments, plan_from_args
from audit.errors import AuditError, disk_full_error, is_disk_full
from audit.limits import float_in, int_in
from audit.plan import SMOKE, Plan, format_plan

if TYPE_CHECKING:
    from audit.cluster_config import SlurmParams
    from audit.progress import Progress
    from audit.store import Store

HELP = "plan, launch, wait, check and report: the one-command audit (safe to repeat)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    add = parser.add_argument
    add("--executor", default="local", help="local (default), slurm or debug (in-process)")
    add("--force", action="store_true", help="retrain finished runs (old files are kept aside)")
    add("--retries", type=int_in(*limits.RETRIES), default=2, help="resubmissions (0-100; 2)")
    add("--detach", action="store_true", help="submit and return; re-attach with a later run")
    add("--dry-run", action="store_true", help="print the matrix and sbatch parameters only")
    add("--poll", type=float_in(*limits.POLL_S), default=15.0, help="seconds between polls (15)")
    add("--parallel", type=int_in(*limits.PARALLEL), default=1, help="local runs at once (1)")
    add("--device", default=None, help="cpu, cuda or cuda:N (default: a GPU if present)")
    add("--no-report", action="store_true", help="skip the HTML/PDF report at the end")
    add("--no-pdf", action="store_true", help="write the report's HTML only")
    add("--reports", type=Path, default=Path("reports"), help="report folder (./reports)")
    slurm = parser.add_argument_group("SLURM (override the `cluster:` section of --config)")
    slurm.add_argument("--config", type=Path, default=None, help="YAML with a cluster: section")
    for flag, field, kind, text in SLURM_OPTIONS:
        slurm.add_argument(flag, dest=field, type=kind, help=text)


# flag, SlurmParams field, type, help: the SLURM parameters a flag can override
SLURM_OPTIONS = (
    ("--partition", "partition", str, None),
    ("--account", "account", str, None),
    ("--qos", "qos", str, None),
    ("--time", "time_min", int, "minutes per job"),
    ("--gpus", "gpus_per_node", int, "GPUs per job"),
    ("--cpus", "cpus_per_task", int, "CPUs per job"),
    ("--mem", "mem_gb", int, "memory per job in GB"),
    ("--constraint", "constraint", str, None),
    ("--array-parallelism", "array_parallelism", int, "array tasks at once"),
)


def main(args: argparse.Namespace) -> int:
    from audit.cluster_config import load_cluster_section, slurm_params
    from audit.launch import EXECUTORS

    if args.executor not in EXECUTORS:
        raise AuditError(
            f"unknown executor {args.executor!r}; choose one of {', '.join(EXECUTORS)} (--executor)"
        )
    if args.detach and args.executor != "slurm":
        raise AuditError(
            "--detach needs --executor slurm (local runs end with the `audit run` that "
            "started them; rerun it to resume them)"
        )
    if args.retries < 0:
        raise AuditError(f"--retries must be 0 or more, got {args.retries}")
    if args.parallel < 1:
        raise AuditError(f"--parallel must be at least 1, got {args.parallel}")
    if not args.poll >= 0:  # also NaN
        raise AuditError(f"--poll must be 0 or more seconds, got {args.poll}")
    plan = plan_from_args(args)
    flags = {field: getattr(args, field) for _, field, _, _ in SLURM_OPTIONS}
    params = slurm_params(
        load_cluster_section(args.config), flags, where=str(args.config or "flags")
    )
    print(format_plan(plan))
    if args.dry_run:
        if args.executor == "slurm":
            print(sbatch_preview(params, args.store, len(plan.runs)))
        return 0
    return _run(args, plan, params)


def _run(args: argparse.Namespace, plan: Plan, params: SlurmParams) -> int:
    from audit.launch import RunOptions, launch, make_executor
    from audit.progress import Progress
    from audit.store import Store

    store = Store(args.store)
    options = RunOptions(data_dir=str(args.data_dir) if args.data_dir else None, device=args.device)
    executor = make_executor(args.executor, store, options, params=params, parallel=args.parallel)
    store.write_plan({**plan.to_json(), "executor": args.executor})
    progress = Progress(store, len(plan.runs))
    try:
        report = launch(
            [r.spec for r in plan.runs],
            store,
            executor,
            retries=args.retries,
            force=args.force,
            detach=args.detach,
            poll_s=args.poll,
            say=_say(progress),
            on_poll=progress.update,
        )
    finally:
        progress.close()
        executor.shutdown()
    if args.detach:
        return 0
    _refuse_full_disk(store, report.settled)
    counts = Counter(report.settled.values())
    print(
        f"audit run: {len(plan.runs)} run(s): "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    )
    _check_and_report(args, plan, store)
    return 1 if counts.get("failed") else 0


def _refuse_full_disk(store: Store, settled: dict[str, str]) -> None:
    """Runs that failed on a full disk: exit 2 with the one message, not "job ... FAILED"."""
    from audit.launch import failed_on_full_disk

    if any(
        failed_on_full_disk(store, rid) for rid, status in settled.items() if status == "failed"
    ):
        raise disk_full_error(store.root)


def _say(progress: Progress) -> Callable[[str], None]:
    def say(message: str) -> None:
        progress.write(f"audit run: {message}")

    return say


def _check_and_report(args: argparse.Namespace, plan: Plan, store: Store) -> None:
    """The check table of this plan's runs (not other profiles' runs in the same store),
    then the report."""
    from audit import check
    from audit.commands.check import select_claims
    from audit.compare import compare
    from audit.results import load_results

    covered = sorted({c for r in plan.runs for c in r.claim_ids if c != SMOKE})
    if not covered:
        print("audit run: no claim covers these runs (smoke runs only); nothing to check")
        return
    claims = select_claims(args).select(ids=covered)
    results = load_results(store.root)
    planned = {r.run_id for r in plan.runs}
    if len(results):
        results = results[results["run_id"].isin(planned)]
    table = compare(claims, results)
    if plan.note:
        print(f"NOTE: {plan.note}")
    print(check.render_table(table, check.passing_verdicts()))
    if args.no_report:
        return
    try:
        paths = _render(args, plan, claims, table, results, store)
    except (OSError, AuditError) as exc:  # the renderer's own advice names `audit report`'s flags
        if is_disk_full(exc):
            raise disk_full_error(args.reports) from None
        cause = exc if isinstance(exc, OSError) else exc.__context__
        why = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(exc)
        raise AuditError(
            f"cannot write the report under {args.reports}: {why}; the runs are kept; rerun "
            "with --reports DIR, a writable folder (nothing is retrained)"
        ) from None
    print(f"audit run: report {paths.html}" + (f" and {paths.pdf}" if paths.pdf else ""))


def _render(args, plan, claims, table, results, store):
    from audit.report import render_report  # the report issue's renderer

    return render_report(
        claims,
        table,
        results,
        store.root,
        args.reports / plan.profile.name,
        scope={
            "profile": plan.profile.name,
            "executor": args.executor,
            "label": plan.label,
        },
        command=" ".join(["audit", *sys.argv[1:]]),
        claims_path=args.claims,
        pdf=not args.no_pdf,
    )


def sbatch_preview(params: SlurmParams, store_dir: Path, n_runs: int) -> str:
    """The sbatch header the array would be submitted with (nothing is submitted)."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder = Path(store_dir).resolve() / "slurm" / "%j"
    text = _make_sbatch_string(
        command="python -u -m submitit.core._submit <folder>",
        folder=folder,
        map_count=n_runs,
        **params.submitit_parameters(),
    )
    header = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    return "sbatch parameters (dry run, nothing submitted):\n" + "\n".join(header)
