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
from typing import TYPE_CHECKING, Any

from audit import limits
from audit.commands.plan import add_selection_arguments, plan_from_args
from audit.errors import AuditError, disk_full_error, is_disk_full
from audit.limits import float_in, int_in
from audit.plan import Plan, format_plan, judged_by, preflight

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
    add(
        "--escalate",
        action="store_true",
        help="two-look design: after the first look, add seeds to the undecided cells, once "
        "(docs/verdicts.md)",
    )
    add(
        "--max-seeds",
        type=int_in(*limits.SEEDS),
        default=None,
        help="--escalate: seeds at the second look (2x; at most 100)",
    )
    add(
        "--skip-missing-data",
        action="store_true",
        help="leave out the runs whose data are missing here (default: refuse to start)",
    )
    slurm = parser.add_argument_group(
        "SLURM (override the `cluster:` section of --config; its keys are these flags' names)"
    )
    slurm.add_argument("--config", type=Path, default=None, help="YAML with a cluster: section")
    for flag, key, kind, text in SLURM_OPTIONS:
        repeat = {"action": "append"} if key in ("sbatch", "setup") else {}
        slurm.add_argument(flag, dest=f"slurm_{key}", type=kind, help=text, **repeat)


# flag, config key (audit/cluster_config.py), type, help: the SLURM parameters a flag sets
SLURM_OPTIONS = (
    ("--partition", "partition", str, "default: the cluster's default partition"),
    ("--account", "account", str, None),
    ("--qos", "qos", str, None),
    ("--time", "time", str, "per job: minutes or SLURM's HH:MM:SS, D-HH:MM... (default 240)"),
    (
        "--gpus",
        "gpus",
        int,
        "GPUs per job (default: 1 where a run needs one and the partition has them)",
    ),
    ("--cpus", "cpus", int, "CPUs per job (default: what the runs need, at most a node's)"),
    ("--mem", "mem", str, "memory per job, e.g. 32G or 32000M (default: what the runs need)"),
    ("--constraint", "constraint", str, None),
    ("--cpu-partition", "cpu_partition", str, "CPU-only runs (MLP, kernels) go to this partition"),
    ("--array-parallelism", "array_parallelism", int, "array tasks at once (default 16)"),
    (
        "--runs-per-gpu",
        "runs_per_gpu",
        int,
        "runs trained together in one array task (default: 4 for small runs, else 1)",
    ),
    (
        "--sbatch",
        "sbatch",
        str,
        "KEY=VALUE: an extra #SBATCH directive (repeatable), e.g. gres=gpu:a100:1",
    ),
    (
        "--setup",
        "setup",
        str,
        "a shell line run before the job (repeatable), e.g. 'module load cuda'",
    ),
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
    if args.escalate and args.detach:
        raise AuditError(
            "--escalate waits for the first look's runs before it chooses cells; run it "
            "without --detach (a repeat resumes where it stopped)"
        )
    if args.max_seeds is not None and not args.escalate:
        raise AuditError("--max-seeds is the second look of --escalate; pass --escalate too")
    plan = plan_from_args(args)
    flags = {key: getattr(args, f"slurm_{key}") for _, key, _, _ in SLURM_OPTIONS}
    params = slurm_params(
        load_cluster_section(args.config), flags, where=str(args.config or "flags")
    )
    print(format_plan(plan))
    if args.executor == "slurm":
        params = _slurm_request(params, plan, args)
    if args.dry_run:
        return 0
    for line in preflight(plan, skip_missing=args.skip_missing_data):  # before any submission
        print(f"audit run: {line}")
    if not plan.runs:
        raise AuditError("no run left once those without data are left out; nothing to do")
    return _run(args, plan, params)


def _run(args: argparse.Namespace, plan: Plan, params: SlurmParams) -> int:
    from audit.store import Store

    store = Store(args.store)
    declaration = _declare(args, plan, store) if args.escalate else None
    store.write_plan({**plan.to_json(), "executor": args.executor})
    costs = {r.run_id: r.gpu_hours for r in plan.runs}
    report = _launch(args, store, [r.spec for r in plan.runs], params, plan.data_dir, costs)
    if args.detach:
        return 0
    _refuse_full_disk(store, report.settled)
    counts = Counter(report.settled.values())
    print(
        f"audit run: {len(plan.runs)} run(s): "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    )
    extra: list[str] = []
    if declaration is not None:
        extra, settled = _escalate(args, plan, store, declaration, params)
        counts.update(settled.values())
    _check_and_report(args, plan, store, extra)
    return 1 if counts.get("failed") else 0


def _launch(
    args: argparse.Namespace,
    store: Store,
    specs: list[dict],
    params: SlurmParams,
    data_dir: Path,
    costs: dict[str, float] | None = None,
) -> Any:
    """Launch `specs` with the chosen executor and wait (unless --detach); the launch report."""
    from audit.launch import RunOptions, launch, make_executor
    from audit.progress import Progress

    # the jobs read the data where the preflight found them (also on another host's cwd)
    options = RunOptions(data_dir=str(Path(data_dir).absolute()), device=args.device)
    executor = make_executor(args.executor, store, options, params=params, parallel=args.parallel)
    progress = Progress(store, len(specs), costs=costs)
    try:
        return launch(
            specs,
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


def _declare(args: argparse.Namespace, plan: Plan, store: Store) -> Any:
    """The store's two-look design, declared before this command judges the first look."""
    from audit.escalate import declare

    done = sum(store.result_status(r.run_id) == "done" for r in plan.runs)
    declaration = declare(store.root, len(plan.seeds), args.max_seeds, done)
    level = 1 - declaration.nominal_alpha
    print(
        f"audit run: two-look design: {declaration.n_first} -> {declaration.max_seeds} seeds, "
        f"each look at {level:.2%} (Pocock), declared {declaration.declared}"
    )
    return declaration


def _escalate(
    args: argparse.Namespace, plan: Plan, store: Store, declaration: Any, params: SlurmParams
) -> tuple[list[str], dict[str, str]]:
    """The second look: once, seeds n_first..max-1 for the cells the first left undecided
    (a repeat resumes the recorded runs). Returns their run ids and settled states."""
    from audit.compare import compare
    from audit.escalate import plan_escalation, record_escalation

    if declaration.escalation is None:
        claims, results = _plan_results(args, *judged_by(plan.to_json()), store)
        table = compare(claims, results, declaration.design())
        chosen = plan_escalation(claims, table, plan.profile, declaration, plan.data_dir)
        record_escalation(store.root, declaration, *chosen)
        print(
            f"audit run: escalation: {len(chosen[0])} undecided claim(s) get seeds "
            f"{declaration.n_first}..{declaration.max_seeds - 1}: {len(chosen[2])} run(s)"
        )
    runs = declaration.escalation["runs"]
    if not runs:
        return [], {}
    report = _launch(args, store, [r["spec"] for r in runs], params, plan.data_dir)
    return [r["run_id"] for r in runs], dict(report.settled)


def _plan_results(
    args: argparse.Namespace, covered: list[str], run_ids: set[str], store: Store
) -> tuple[Any, Any]:
    """The claims `covered` and the results of exactly the runs `run_ids`."""
    from audit.commands.check import select_claims
    from audit.results import load_results

    claims = select_claims(args).select(ids=covered)
    results = load_results(store.root)
    if len(results):
        results = results[results["run_id"].isin(run_ids)]
    return claims, results


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


def _check_and_report(
    args: argparse.Namespace, plan: Plan, store: Store, extra: list[str] | None = None
) -> None:
    """The check table of this plan's runs (not other profiles' runs in the same store) and
    of its escalation runs, then the report."""
    from audit import check
    from audit.compare import compare
    from audit.escalate import read_design

    covered, planned = judged_by(plan.to_json())  # as `audit check` judges the store
    if not covered:
        print("audit run: no claim covers these runs (smoke runs only); nothing to check")
        return
    claims, results = _plan_results(args, covered, planned | set(extra or []), store)
    design = read_design(store.root)
    table = compare(claims, results, design)
    if plan.note:
        print(f"NOTE: {plan.note}")
    print(check.render_table(table, check.passing_verdicts()))
    if args.no_report:
        return
    try:
        paths = _render(args, plan, claims, table, results, store, design)
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


def _render(args, plan, claims, table, results, store, design):
    """The report, with the verdict record (verdicts.json, docs/verdicts.md) in its folder."""
    from audit.check import passing_verdicts
    from audit.record import record_file
    from audit.report import render_report

    command = " ".join(["audit", *sys.argv[1:]])
    record = record_file(
        table,
        passing_verdicts(),
        claims=claims,
        claims_path=args.claims,
        store=store.root,
        results_table=results,
        command=command,
        design=design,
    )
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
        command=command,
        claims_path=args.claims,
        pdf=not args.no_pdf,
        extra_files=record,
    )


def _slurm_request(params: SlurmParams, plan: Plan, args: argparse.Namespace) -> SlurmParams:
    """Preflight against the cluster (refuses what no node can grant) and the chosen values
    with their reasons; under --dry-run also the whole job script(s), nothing submitted."""
    from audit.cluster_config import require_training_time
    from audit.launch.slurm import script_text
    from audit.slurm_preflight import preflight_request

    costs = [r.gpu_hours for r in plan.runs]  # the default runs_per_gpu follows them
    request, sections = preflight_request(params, [r.spec for r in plan.runs], costs)
    for title, choice, _ in sections:
        require_training_time(choice.params)
        print(f"SLURM request, {title}:")
        for reason in choice.reasons:
            print(f"  {reason}")
    if args.dry_run:
        for title, choice, n_runs in sections:
            print(f"job script, {title} (dry run, nothing submitted):")
            print(script_text(choice.params, args.store, n_runs).rstrip())
    return request
