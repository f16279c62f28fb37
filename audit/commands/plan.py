"""`audit plan`: the experiment matrix a profile and a selection would run (nothing runs)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audit import limits
from audit.errors import AuditError
from audit.limits import int_in
from audit.plan import Plan, build_plan, format_plan
from audit.profiles import DEFAULT_PROFILE, PROFILES, default_data_dir, get_profile
from runners.errors import RunnerInputError
from runners.specs.estimate import throughput_key

HELP = "show the experiment matrix a profile and selection would run"


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `audit plan` and `audit run` share: `audit check`'s claims selection plus
    profile, seeds, data and store."""
    from audit.commands.check import add_selection_arguments as add_claim_selection

    add_claim_selection(parser)
    parser.add_argument(
        "--profile",
        default=None,
        help=f"one of {', '.join(PROFILES)} (default: {DEFAULT_PROFILE}, a CPU-sized audit; "
        "the paper's matrix is seed-study or full, for a cluster)",
    )
    parser.add_argument(
        "--seeds",
        type=int_in(*limits.SEEDS),
        default=None,
        help="seeds per experiment, 1 to 100 (default: the profile's)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="datasets folder (default: $AUDIT_DATA_DIR, else ~/.cache/nd-audit/data or "
        "$XDG_CACHE_HOME/nd-audit/data)",
    )
    parser.add_argument(
        "--store", type=Path, default=Path("runs"), help="result store (default: ./runs)"
    )
    parser.add_argument(
        "--imagenet-gpus",
        type=int,
        default=1,
        help="GPUs per ImageNet run, one process each (DDP, spec field gpus; default 1; "
        "docs/cluster.md)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def plan_from_args(args: argparse.Namespace) -> Plan:
    """Load the claims, apply the selection and the profile: the plan both verbs use."""
    from audit.commands.check import select_claims

    if args.imagenet_gpus < 1:
        raise AuditError(f"--imagenet-gpus must be 1 or more, got {args.imagenet_gpus}")
    profile = get_profile(args.profile or _default_profile())
    selected = select_claims(args)
    narrowed = bool(args.group or args.id)
    plan = build_plan(
        selected,
        profile,
        seeds=args.seeds,
        data_dir=args.data_dir or default_data_dir(),
        extras=not narrowed,
        recorded=recorded_throughputs(args.store),
        imagenet_gpus=args.imagenet_gpus,
    )
    if not plan.runs:
        raise AuditError(
            f"profile {profile.name} with this selection has nothing to run "
            f"({len(plan.skipped)} experiment(s) skipped; `audit plan` lists why)"
        )
    return plan


def _default_profile() -> str:
    """Without --profile: the quick profile, never the cluster-scale matrix (a bare `audit run`
    on a laptop or a login node must not start ~400 runs on the local executor)."""
    print(
        f"audit: no --profile given: the {DEFAULT_PROFILE} profile, a CPU-sized audit; "
        "--profile seed-study or --profile full runs the paper's matrix (on a cluster)",
        file=sys.stderr,
    )
    return DEFAULT_PROFILE


def recorded_throughputs(store_dir: Path) -> dict[tuple[str, str, str], float]:
    """Mean images/s of finished GPU runs in the store, per (input kind, arch, norm);
    unreadable run directories are left out (an estimate never fails a plan)."""
    rates: dict[tuple[str, str, str], list[float]] = {}
    runs = Path(store_dir) / "runs"
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        speeds = _recorded_speeds(run_dir)
        if speeds:
            rates.setdefault(speeds[0], []).extend(speeds[1])
    return {key: sum(v) / len(v) for key, v in rates.items()}


def _recorded_speeds(run_dir: Path) -> tuple[tuple[str, str, str], list[float]] | None:
    """(throughput key, images/s per epoch) of a finished GPU classification run, else None."""
    from runners.rundir import read_run

    record = read_run(run_dir)
    result, spec, metrics = record.result, record.spec or {}, record.metrics
    if record.problem or result is None or result.status != "done" or not result.gpu_seconds > 0:
        return None
    speeds = [m.get("images_per_second") for m in metrics if isinstance(m, dict)]
    speeds = [float(v) for v in speeds if isinstance(v, int | float) and v > 0]
    if not speeds or spec.get("kind") != "classify":
        return None
    try:
        return throughput_key(spec), speeds
    except (KeyError, TypeError, ValueError, RunnerInputError):  # a spec.yaml edited by hand
        return None


def main(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    measured = _measured(args.store, plan)
    if args.json:
        print(
            json.dumps({**plan.to_json(), "measured_gpu_hours": measured}, indent=2, sort_keys=True)
        )
    else:
        print(format_plan(plan, measured))
    return 0


def _measured(store_dir: Path, plan: Plan) -> dict[str, float]:
    """GPU-hours SLURM accounted for the plan's runs already in the store (after runs)."""
    if not (Path(store_dir) / "runs").is_dir():
        return {}
    from audit.cost import measured_gpu_hours
    from audit.store import Store

    return measured_gpu_hours(Store(store_dir, create=False), [r.run_id for r in plan.runs])
