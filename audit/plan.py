"""The plan: claims x profile x selection -> effective specs x seeds, one run id each.

Experiments that no runner of this harness can run (architectures without a model, claims marked
`runnable: false`, absent data under the profiles that need it) are not dropped silently: they
are listed as skipped with the reason. The cost estimate uses throughputs recorded in the store
where a finished run of the same model exists, otherwise the catalogue's defaults
(runners/specs/estimate.py), and says which.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import AuditError
from audit.profiles import Profile, dataset_present, experiment_key, reference_scope
from runners import catalogue, datafiles
from runners.errors import RunnerInputError
from runners.registry import RUNNERS
from runners.specs import effective_spec, run_id, spec_class
from runners.specs.estimate import estimate_gpu_hours, unrunnable  # cost, "can this run?"

SMOKE = "(smoke run of the profile)"  # claim id slot of a profile's own runs
NOT_RUNNABLE = "the claims file marks it `runnable: false` (results only by CSV)"


@dataclass
class PlannedRun:
    run_id: str
    spec: dict[str, Any]  # the effective spec, with seed
    claim_ids: list[str]  # the claims whose check needs this run
    deviations: list[str]  # departures from the authors' protocol, in words
    gpu_hours: float  # estimated GPU-hours of training and evaluation
    throughput_source: str  # "recorded" (from the store) or "default"
    gpus: int = 1  # processes (GPUs) of the run; gpu_hours = wall_hours x gpus
    wall_hours: float | None = None  # None: gpu_hours (one GPU)


@dataclass
class SkippedExperiment:
    experiment: dict[str, Any]
    claim_ids: list[str]
    reason: str


@dataclass
class Plan:
    profile: Profile
    seeds: list[int]
    runs: list[PlannedRun] = field(default_factory=list)
    skipped: list[SkippedExperiment] = field(default_factory=list)
    data_dir: Path | None = None  # where the runs read their datasets
    # dataset the runs read -> None where its data are present here, else what is missing
    # and how to get it (runners.datafiles.missing_data, asked on the planning host)
    data: dict[str, str | None] = field(default_factory=dict)

    @property
    def total_epochs(self) -> int:
        return sum(int(r.spec.get("epochs", 0) or 0) for r in self.runs)

    @property
    def gpu_hours(self) -> float:
        return sum(r.gpu_hours for r in self.runs)

    @property
    def deviates(self) -> bool:
        return any(r.deviations for r in self.runs)

    @property
    def label(self) -> str | None:
        """The profile's label, where some run departs from the protocol (else None)."""
        return self.profile.label if self.deviates else None

    @property
    def note(self) -> str | None:
        """The NOTE line's text wherever the plan's runs are shown; None without deviations."""
        if not self.deviates:
            return None
        return self.profile.label or "some runs deviate from the protocol"

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "label": self.label,
            "seeds": self.seeds,
            "runs": len(self.runs),
            "epochs": self.total_epochs,
            "gpu_hours": round(self.gpu_hours, 3),
            "matrix": [
                {
                    "run_id": r.run_id,
                    "spec": r.spec,
                    "claims": r.claim_ids,
                    "deviations": r.deviations,
                    "gpu_hours": round(r.gpu_hours, 4),
                    "throughput": r.throughput_source,
                    **_multi_gpu_json(r),
                }
                for r in self.runs
            ],
            "skipped": [
                {"experiment": s.experiment, "claims": s.claim_ids, "reason": s.reason}
                for s in self.skipped
            ],
            "data": {
                "dir": str(self.data_dir) if self.data_dir else None,
                "datasets": {
                    name: {"present": problem is None, "problem": problem}
                    for name, problem in self.data.items()
                },
            },
        }


def build_plan(
    claims: Iterable[Any],
    profile: Profile,
    *,
    seeds: int | None = None,
    data_dir: Path,
    extras: bool = True,
    recorded: dict[tuple[str, str, str], float] | None = None,
    imagenet_gpus: int = 1,
) -> Plan:
    """The deduplicated runs the selected `claims` need under `profile`.

    `claims` are audit.claims.Claim objects (already selected); non-gating claims and
    reference-only entries contribute nothing. `recorded` maps `throughput_key`s to
    measured images/s. `imagenet_gpus` > 1 runs each ImageNet experiment on that many GPUs
    (spec field `gpus`, one process per GPU; 1 leaves the specs, and their run ids, as they are).
    """
    n_seeds = profile.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise AuditError(f"--seeds must be at least 1, got {n_seeds}")
    plan = Plan(profile=profile, seeds=list(range(n_seeds)))
    scope = reference_scope(claims, profile)  # a prior reproduction's cells, or None
    experiments = [
        (with_imagenet_gpus(profile.adjust(exp), imagenet_gpus), ids, runnable)
        for exp, ids, runnable in _claim_experiments(claims)
        if profile.keep(exp) and (scope is None or experiment_key(exp) in scope)
    ]
    if extras:  # the profile's own runs, already in final form
        experiments += [(exp, [SMOKE], True) for exp in profile.extras(data_dir)]
    by_id: dict[str, PlannedRun] = {}
    for fields, claim_ids, runnable in experiments:
        reason = NOT_RUNNABLE if not runnable else _not_runnable(fields, profile, data_dir)
        if reason:
            plan.skipped.append(SkippedExperiment(fields, claim_ids, reason))
            continue
        for seed in plan.seeds:
            run = _planned_run({**fields, "seed": seed}, claim_ids, recorded or {})
            known = by_id.setdefault(run.run_id, run)
            known.claim_ids += [c for c in claim_ids if c not in known.claim_ids]
    plan.runs = list(by_id.values())
    plan.skipped = _merge_skipped(plan.skipped)
    plan.data_dir = Path(data_dir)
    plan.data = data_status(plan.runs, data_dir)
    return plan


def dataset_read(spec: dict[str, Any]) -> str | None:
    """The dataset a run reads from the data directory (None: e.g. skimage's photographs)."""
    name = spec.get("dataset") if spec.get("kind") == "classify" else spec.get("source")
    return name if name in catalogue.DATASETS else None


def data_status(runs: Iterable[PlannedRun], data_dir: Path) -> dict[str, str | None]:
    """Each dataset the runs read -> None where present in `data_dir`, else the problem."""
    names = dict.fromkeys(n for r in runs if (n := dataset_read(r.spec)) is not None)
    return {name: datafiles.missing_data(name, data_dir) for name in names}


def preflight(plan: Plan, *, skip_missing: bool) -> list[str]:
    """Before anything is queued or trained: every dataset of the plan must be present on this
    host. Missing ones are one AuditError listing each with its fix; with `skip_missing` their
    runs are dropped from the plan instead, and the lines returned say which."""
    missing = {name: problem for name, problem in plan.data.items() if problem}
    if not missing:
        return []
    if not skip_missing:
        listed = "".join(f"\n  - {problem}" for problem in missing.values())
        raise AuditError(
            f"data missing for {len(missing)} dataset(s) of the plan "
            f"({', '.join(missing)}); nothing was submitted or trained. Provide them, or "
            f"rerun with --skip-missing-data to leave their runs out:{listed}"
        )
    dropped = [r for r in plan.runs if dataset_read(r.spec) in missing]
    plan.runs = [r for r in plan.runs if dataset_read(r.spec) not in missing]
    for name in missing:
        del plan.data[name]
    return [
        f"--skip-missing-data: left out {sum(dataset_read(r.spec) == name for r in dropped)} "
        f"run(s) of {name} (its data are missing): "
        + ", ".join(r.run_id for r in dropped if dataset_read(r.spec) == name)
        for name in missing
    ]


def _claim_experiments(
    claims: Iterable[Any],
) -> list[tuple[dict[str, Any], list[str], bool]]:
    """(experiment, claim ids, runnable) in file order; non-runnable claims keep their
    experiments so the plan can say why they are skipped."""
    out: list[tuple[dict[str, Any], list[str], bool]] = []
    for claim in claims:
        if not getattr(claim, "gate", True):
            continue
        for exp in claim.experiments():
            out.append((dict(exp), [claim.id], getattr(claim, "runnable", True)))
    return out


def _not_runnable(fields: dict[str, Any], profile: Profile, data_dir: Path) -> str | None:
    """Why no runner of this harness can run `fields` here, or None."""
    kind = fields.get("kind", "classify")
    if kind not in RUNNERS:
        return f"no runner for kind {kind!r}"
    try:
        spec_class(kind)
    except (ImportError, RunnerInputError):
        return f"no spec class for kind {kind!r} yet"
    reason = unrunnable(fields)  # the catalogue's datasets, architectures and norms
    if reason:
        return reason
    dataset = fields.get("dataset")
    if kind == "classify" and profile.needs_data_present and not dataset_present(dataset, data_dir):
        return f"{dataset} is not in the data directory {data_dir} (profile {profile.name})"
    return None


def _planned_run(
    fields: dict[str, Any], claim_ids: list[str], recorded: dict[tuple[str, str, str], float]
) -> PlannedRun:
    try:
        spec = effective_spec({"kind": "classify", **fields})
    except RunnerInputError as exc:
        raise AuditError(f"claims {', '.join(claim_ids)}: invalid experiment: {exc}") from None
    hours, source = estimate_gpu_hours(spec, recorded)
    gpus = int(spec.get("gpus", 1) or 1)
    # N GPUs: the one-GPU time divided by N (perfect scaling: an estimate, a lower bound on
    # the wall time), each hour of it N GPU-hours
    wall = hours / gpus if gpus > 1 else None
    return PlannedRun(
        run_id(spec), spec, list(claim_ids), spec_deviations(spec), hours, source, gpus, wall
    )


def with_imagenet_gpus(fields: dict[str, Any], gpus: int) -> dict[str, Any]:
    """An ImageNet experiment on `gpus` GPUs (--imagenet-gpus); others, and gpus 1, unchanged."""
    dataset = catalogue.DATASETS.get(str(fields.get("dataset")))
    if gpus > 1 and dataset is not None and dataset.multi_gpu and "gpus" not in fields:
        return {**fields, "gpus": gpus}
    return fields


def _multi_gpu_json(run: PlannedRun) -> dict[str, Any]:
    """The plan.json keys of a run on several GPUs (absent for one GPU: plans stay as they were)."""
    if run.gpus == 1:
        return {}
    return {"gpus": run.gpus, "wall_hours": round(run.wall_hours or 0.0, 4)}


def judged_by(plan: dict[str, Any]) -> tuple[list[str], set[str]]:
    """(claim ids, run ids) the check of a plan (`Plan.to_json()`, a store's plan.json) judges:
    the claims its runs serve (a profile's smoke runs serve none) on its own runs only."""
    matrix = [r for r in plan.get("matrix") or [] if isinstance(r, dict)]
    claims = dict.fromkeys(c for r in matrix for c in r.get("claims") or [] if c != SMOKE)
    return list(claims), {str(r.get("run_id")) for r in matrix}


def spec_deviations(spec: dict[str, Any]) -> list[str]:
    """The spec class's own account of its departures from the protocol."""
    obj = spec_class(spec["kind"]).from_dict(dict(spec))
    return list(obj.deviations()) if hasattr(obj, "deviations") else []


def _merge_skipped(skipped: list[SkippedExperiment]) -> list[SkippedExperiment]:
    merged: dict[str, SkippedExperiment] = {}
    for item in skipped:
        key = json.dumps(item.experiment, sort_keys=True, default=str)
        if key in merged:
            merged[key].claim_ids += [c for c in item.claim_ids if c not in merged[key].claim_ids]
        else:
            merged[key] = SkippedExperiment(item.experiment, list(item.claim_ids), item.reason)
    return list(merged.values())


def format_plan(plan: Plan, measured: dict[str, float] | None = None) -> str:
    """The matrix as text: a label line, one line per run, skipped experiments, totals.
    `measured` (run id -> GPU-hours SLURM accounted, after runs) is set beside the estimate."""
    lines = [f"profile {plan.profile.name}: {plan.profile.description}"]
    if plan.note:
        lines.append(f"NOTE: {plan.note}")
    lines.append(f"{'run id':<58} {'epochs':>6} {'GPU-h':>8}  deviations")
    for run in plan.runs:
        devs = "; ".join(run.deviations) or "-"
        lines.append(
            f"{run.run_id:<58} {run.spec.get('epochs', '-')!s:>6} {run.gpu_hours:>8.3f}  {devs}"
        )
    lines.extend(_multi_gpu_lines(plan))
    lines.extend(_skipped_lines(plan.skipped))
    lines.extend(_data_lines(plan))
    sources = sorted({r.throughput_source for r in plan.runs}) or ["default"]
    lines.append(
        f"{len(plan.runs)} runs ({len(plan.seeds)} seed(s)), {plan.total_epochs} epochs, "
        f"about {plan.gpu_hours:.2f} GPU-hours ({'/'.join(sources)} throughputs); "
        f"{len(plan.skipped)} experiment(s) skipped"
    )
    if measured:
        estimate = sum(r.gpu_hours for r in plan.runs if r.run_id in measured)
        lines.append(
            f"measured: {sum(measured.values()):.2f} GPU-hours by SLURM accounting for "
            f"{len(measured)} run(s) of this plan (estimated for them: {estimate:.2f})"
        )
    return "\n".join(lines)


def _multi_gpu_lines(plan: Plan) -> list[str]:
    """What the estimate of runs on several GPUs assumes (one line, only where there are any)."""
    multi = [r for r in plan.runs if r.gpus > 1]
    if not multi:
        return []
    counts = sorted({r.gpus for r in multi})
    wall = sum(r.wall_hours or 0.0 for r in multi)
    return [
        f"{len(multi)} run(s) on {'/'.join(map(str, counts))} GPUs each (one process per GPU): "
        f"GPU-h counts every GPU of the job; wall time about {wall:.2f} h in all, assuming "
        "perfect scaling (an estimate: communication makes it longer)"
    ]


def _data_lines(plan: Plan) -> list[str]:
    """Per dataset the runs read: present, or MISSING with what to do (checked on this host)."""
    if not plan.data:
        return []
    lines = [f"data (checked here, in {plan.data_dir}):"]
    for name, problem in plan.data.items():
        lines.append(f"  {name:<14} {'present' if problem is None else 'MISSING: ' + problem}")
    return lines


def _skipped_lines(skipped: list[SkippedExperiment], shown: int = 3) -> list[str]:
    """One line per reason (e.g. one per missing architecture); --json lists every one."""
    by_reason: dict[str, list[SkippedExperiment]] = {}
    for item in skipped:
        by_reason.setdefault(item.reason, []).append(item)
    lines = []
    for reason, items in by_reason.items():
        claims = list(dict.fromkeys(c for item in items for c in item.claim_ids))
        more = f" and {len(claims) - shown} more" if len(claims) > shown else ""
        lines.append(
            f"skipped {len(items)} experiment(s): {reason} "
            f"(claims {', '.join(claims[:shown])}{more})"
        )
    return lines
