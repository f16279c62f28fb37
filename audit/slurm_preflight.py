"""Preflight against the cluster: a request no node can grant is refused before submission,
and unset resources are chosen to fit.

The partition's limits and node shapes come from the scheduler (`scontrol show partition`:
state, MaxTime, MaxCPUsPerNode, MaxMemPerNode; `sinfo -N`: CPUs, memory, GRES such as GPUs
and their types, features and state per node). What the runs need comes from their specs
(an MLP or the kernels experiment needs no GPU; CIFAR and ImageNet runs want one, and CPUs
for their data loaders). Defaults: a GPU only where a run needs one and the partition has
GPUs, CPUs and memory as needed but at most what a node offers, the time limit at most the
partition's MaxTime, several runs per array task (`--runs-per-gpu`, 4) where even the costliest
run is small, with CPUs and memory sized for all of them. An explicit request above what any
usable node offers is one AuditError naming the flag (or config key), the request and the
offer. Where the scheduler does not answer, the check is skipped with a note and the defaults
follow the runs' needs alone.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

from audit.cluster_config import DEFAULT_TIME_MIN, SlurmParams, format_mem, parse_time
from audit.errors import AuditError
from runners.catalogue import RUN_NEEDS

# What one run wants, per input kind: (a GPU?, CPUs, memory in MB), the catalogue's.
NEEDS = RUN_NEEDS
KERNELS_NEED = (False, 2, 4 * 1024)
# Runs this cheap (the plan's GPU-hours of the costliest run of a group: 1-epoch and 20-epoch
# CIFAR, the MLP) leave most of a GPU idle: PACK_DEFAULT of them share one array task. Dearer
# ones (100-epoch CIFAR, ImageNet) keep a GPU each.
SMALL_RUN_GPU_H = 0.25
PACK_DEFAULT = 4
UNUSABLE = ("down", "drain", "fail", "inval", "future", "maint")
PARTITION_UP = "UP"


@dataclass(frozen=True)
class Needs:
    gpu: bool
    cpus: int
    mem_mb: int
    what: str  # in words: "CPU-only runs (MLP, kernels)" or "GPU runs (cifar)"


@dataclass
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: dict[str, int]  # GPU type ("" when untyped) -> count
    features: set[str]
    state: str

    @property
    def usable(self) -> bool:
        return not self.state.lower().startswith(UNUSABLE) and not self.state.endswith("*")

    def gpu_count(self, kind: str = "") -> int:
        return self.gpus.get(kind, 0) if kind else sum(self.gpus.values())


@dataclass
class Partition:
    name: str
    state: str
    max_time_min: int | None  # None: unlimited
    max_cpus_per_node: int | None
    max_mem_per_node_mb: int | None
    nodes: list[Node] = field(default_factory=list)

    @property
    def usable_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.usable]


@dataclass
class Choice:
    """The parameters to submit with, and why each value is what it is."""

    params: SlurmParams
    reasons: list[str]
    skipped: str | None = None  # why the cluster was not consulted


def run_needs(specs: list[dict[str, Any]]) -> Needs:
    """The most any of the runs needs (one array: one resource request for all)."""
    from runners.catalogue import input_kind_of  # torch-free

    wants, kinds = [], set()
    for spec in specs:
        if spec.get("kind") != "classify":
            wants.append(KERNELS_NEED)
            kinds.add(spec.get("kind", "?"))
            continue
        kind = input_kind_of(spec["dataset"])
        wants.append(NEEDS.get(kind, NEEDS["cifar"]))
        kinds.add(spec["arch"] if kind == "flat" else spec["dataset"])
    if not wants:
        return Needs(False, 1, 1024, "no runs")
    gpu = any(w[0] for w in wants)
    what = f"{'GPU' if gpu else 'CPU-only'} runs ({', '.join(sorted(kinds))})"
    return Needs(gpu, max(w[1] for w in wants), max(w[2] for w in wants), what)


def needs_gpu(spec: dict[str, Any]) -> bool:
    return run_needs([spec]).gpu


def preflight_request(
    params: SlurmParams, specs: list[dict[str, Any]], costs: list[float] | None = None
) -> tuple[SlurmParams, list[tuple[str, Choice, int]]]:
    """The request to submit with, and (title, choice, runs) per group: all runs on the
    partition, or with --cpu-partition the CPU-only runs (MLP, kernels) there, without a GPU
    (`cpu_only` of the returned parameters). `costs`: the plan's GPU-hours per spec (for the
    default runs_per_gpu; the default throughputs' estimate without it)."""
    from runners.specs import run_id

    cost_of = None
    if costs is not None:
        cost_of = {run_id(s): c for s, c in zip(specs, costs, strict=True)}
    cpu_specs = [s for s in specs if not needs_gpu(s)] if params.cpu_partition else []
    main_specs = [s for s in specs if not params.cpu_partition or needs_gpu(s)]
    sections = []
    cpu_choice = None
    if cpu_specs:
        origins = {**params.origins, "partition": params.origin("cpu_partition")}
        cpu_request = params.with_values(
            partition=params.cpu_partition,
            gpus=None,
            sbatch=tuple((k, v) for k, v in params.sbatch if k != "gres"),
            origins=origins,
        )
        cpu_choice = preflight(cpu_request, cpu_specs, cost_of)
        sections.append(
            (f"CPU-only runs on --cpu-partition ({len(cpu_specs)})", cpu_choice, len(cpu_specs))
        )
    if not main_specs:
        assert cpu_choice is not None
        return with_task_requests(cpu_choice.params, cpu_specs, sections), sections
    choice = preflight(params, main_specs, cost_of)
    title = "GPU runs" if cpu_specs else "runs"
    sections.insert(0, (f"{title} ({len(main_specs)})", choice, len(main_specs)))
    cpu_only = cpu_choice.params if cpu_choice else None
    if cpu_choice is not None:
        cpu_only = with_task_requests(cpu_choice.params, cpu_specs, sections)
    main = with_task_requests(choice.params, main_specs, sections)
    return main.with_values(cpu_only=cpu_only), sections


def preflight(
    params: SlurmParams, specs: list[dict[str, Any]], costs: dict[str, float] | None = None
) -> Choice:
    """Check `params` against the partition and fill what is unset; AuditError when no
    usable node of the partition can grant the request."""
    needs = run_needs(specs)
    partition, why_not = read_partition(params.partition)
    if partition is None:
        return _without_cluster(params, specs, needs, why_not, costs)
    reasons: list[str] = []
    _check_partition_state(partition, params)
    values = {
        "time_min": _time(params, partition, reasons),
        "gpus": _gpus(params, partition, needs, reasons),
    }
    k = _runs_per_gpu(params, specs, costs, needs, _max_mem(partition), reasons)
    values["runs_per_gpu"] = k
    most_cpus, most_mem = _max_cpus(partition), _max_mem(partition)
    values["cpus"] = _sized(params, partition, "cpus", needs.cpus * k, most_cpus, reasons)
    values["mem_mb"] = _sized(params, partition, "mem_mb", needs.mem_mb * k, most_mem, reasons)
    chosen = params.with_values(**values)
    _check_constraint(chosen, partition)
    _check_some_node_fits(chosen, partition)
    return Choice(chosen, [f"partition {partition.name}: {_describe(partition)}", *reasons])


def _without_cluster(
    params: SlurmParams,
    specs: list[dict[str, Any]],
    needs: Needs,
    why: str,
    costs: dict[str, float] | None,
) -> Choice:
    gpus = params.gpus if params.gpus is not None else (0 if gres_gpus(params) else int(needs.gpu))
    note = f"preflight skipped: {why}; the request was not checked against the cluster"
    reasons = [note, f"defaults from the runs' needs: {needs.what}"]
    k = _runs_per_gpu(params, specs, costs, needs, None, reasons)
    chosen = params.with_values(
        time_min=params.time_min or DEFAULT_TIME_MIN,
        gpus=gpus,
        cpus=params.cpus or needs.cpus * k,
        runs_per_gpu=k,
    )
    return Choice(chosen, reasons, skipped=why)


def run_cost(spec: dict[str, Any], costs: dict[str, float] | None) -> float:
    """The plan's GPU-hours of a run (`costs`: run id -> GPU-hours), else the estimate from
    the default throughputs."""
    from audit.launch.pack import spec_cost
    from runners.specs import run_id

    if costs and run_id(spec) in costs:
        return costs[run_id(spec)]
    return spec_cost(spec)


def _runs_per_gpu(
    params: SlurmParams,
    specs: list[dict[str, Any]],
    costs: dict[str, float] | None,
    needs: Needs,
    most_mem: int | None,
    reasons: list[str],
) -> int:
    """Runs per array task (audit/launch/pack.py): as given, or PACK_DEFAULT when even the
    costliest run is small, fewer where a node's memory holds fewer, at most the runs."""
    if params.runs_per_gpu is not None:
        k = min(params.runs_per_gpu, max(1, len(specs)))
        if k > 1:
            reasons.append(
                f"runs per GPU {k} ({params.origin('runs_per_gpu')}): {k} runs share each "
                "array task; CPUs and memory are sized for all of them"
            )
        return k
    costliest = max((run_cost(s, costs) for s in specs), default=0.0)
    flag = "--runs-per-gpu"
    if costliest > SMALL_RUN_GPU_H:
        reasons.append(
            f"runs per GPU 1: the costliest run is estimated at {costliest:.2f} GPU-h "
            f"(> {SMALL_RUN_GPU_H}), enough to keep a GPU busy ({flag} packs several)"
        )
        return 1
    k = min(PACK_DEFAULT, max(1, len(specs)))
    fits = most_mem // needs.mem_mb if most_mem and needs.mem_mb else k
    if 1 <= fits < k:
        k = fits
        room = f", as many as a node's memory ({format_mem(most_mem or 0)}) holds"
    else:
        room = ""
    reasons.append(
        f"runs per GPU {k}: the costliest run is estimated at {costliest:.2f} GPU-h "
        f"(<= {SMALL_RUN_GPU_H}), too small to keep a GPU busy alone, so {k} share each array "
        f"task{room} ({flag} 1 turns this off)"
    )
    return k


# ----------------------------------------------------------------------------- choices


def _time(params: SlurmParams, part: Partition, reasons: list[str]) -> int:
    limit = part.max_time_min
    if params.time_min is not None:
        if limit is not None and params.time_min > limit:
            _refuse(
                params,
                "time_min",
                f"{params.time_min} min",
                f"partition {part.name} allows at most {limit} min (MaxTime)",
                "lower --time (longer runs requeue from their checkpoints)",
            )
        return params.time_min
    if limit is not None and limit < DEFAULT_TIME_MIN:
        reasons.append(f"time {limit} min: the partition's MaxTime (runs requeue from checkpoints)")
        return limit
    reasons.append(f"time {DEFAULT_TIME_MIN} min: the default (runs requeue from checkpoints)")
    return DEFAULT_TIME_MIN


def _gpus(params: SlurmParams, part: Partition, needs: Needs, reasons: list[str]) -> int:
    kind, count = gres_gpus(params) or ("", 0)
    most = max((n.gpu_count(kind) for n in part.usable_nodes), default=0)
    what = f"{kind} GPUs" if kind else "GPUs"
    if count:  # through --sbatch gres=gpu[:type]:N
        if count > most:
            types = _gpu_types(part)
            offer = f"partition {part.name} has at most {most} {what} per node" + (
                f" (GPU types: {', '.join(types)})" if types else " (no GPUs)"
            )
            _refuse(
                params,
                "sbatch",
                f"gres=gpu:{kind + ':' if kind else ''}{count}",
                offer,
                "choose a GPU type and count the partition has, or another --partition",
            )
        reasons.append(f"gpus via --sbatch gres: {count} {what}")
        return 0
    if params.gpus is not None:
        if params.gpus > most:
            offer = (
                f"partition {part.name} has no GPUs"
                if not most
                else f"partition {part.name} has at most {most} GPUs per node"
            )
            _refuse(
                params,
                "gpus",
                str(params.gpus),
                offer,
                "lower --gpus (0 trains on CPUs) or choose a GPU --partition",
            )
        return params.gpus
    if needs.gpu and most:
        reasons.append(f"gpus 1: {needs.what} need a GPU and the partition has them")
        return 1
    if needs.gpu:
        reasons.append(
            f"gpus 0: partition {part.name} has no GPUs, so {needs.what} train on CPUs (slow); "
            "choose a GPU partition with --partition"
        )
        return 0
    reasons.append(f"gpus 0: {needs.what} need no GPU")
    return 0


def _sized(
    params: SlurmParams, part: Partition, name: str, need: int, most: int, reasons: list[str]
) -> int:
    """CPUs or memory: the request checked, or the need capped at what a node offers."""
    given = getattr(params, name)
    show = format_mem if name == "mem_mb" else str
    what = "memory" if name == "mem_mb" else "CPUs"
    if given is not None:
        if given > most:
            _refuse(
                params,
                name,
                show(given),
                f"the usable nodes of partition {part.name} offer at most {show(most)} {what} "
                "per job",
                f"lower {params.origin(name).split(' ')[0]} or choose another --partition",
            )
        return given
    chosen = min(need, most)
    capped = " (a node's most)" if chosen < need else ""
    reasons.append(f"{name.split('_')[0]} {show(chosen)}: what the runs need{capped}")
    return chosen


def _max_cpus(part: Partition) -> int:
    most = max((n.cpus for n in part.usable_nodes), default=0)
    return min(most, part.max_cpus_per_node) if part.max_cpus_per_node else most


def _max_mem(part: Partition) -> int:
    most = max((n.mem_mb for n in part.usable_nodes), default=0)
    return min(most, part.max_mem_per_node_mb) if part.max_mem_per_node_mb else most


def _check_partition_state(part: Partition, params: SlurmParams) -> None:
    if part.state.upper() != PARTITION_UP:
        raise AuditError(
            f"{params.origin('partition')}: partition {part.name} is {part.state}: its jobs "
            "would wait until an administrator brings it up; choose another --partition"
        )
    if not part.usable_nodes:
        states = ", ".join(f"{n.name} ({n.state})" for n in part.nodes) or "none"
        raise AuditError(
            f"{params.origin('partition')}: no node of partition {part.name} can run jobs "
            f"(nodes: {states}); choose another --partition"
        )


def _check_constraint(params: SlurmParams, part: Partition) -> None:
    """A plain feature list (a&b or a,b) must be met by some usable node; operators beyond
    AND are left to SLURM."""
    if not params.constraint or re.search(r"[|*\[\]()!:]", params.constraint):
        return
    wanted = set(re.split(r"[&,]", params.constraint))
    if not any(wanted <= n.features for n in part.usable_nodes):
        offered = sorted(set().union(*(n.features for n in part.usable_nodes))) or ["none"]
        _refuse(
            params,
            "constraint",
            params.constraint,
            f"no usable node of partition {part.name} has those features "
            f"(features: {', '.join(offered)})",
            "change --constraint",
        )


def _check_some_node_fits(params: SlurmParams, part: Partition) -> None:
    """Each value may fit some node while no node has them all at once."""
    kind, count = gres_gpus(params) or ("", params.gpus or 0)
    for node in part.usable_nodes:
        if (
            node.cpus >= (params.cpus or 1)
            and node.mem_mb >= (params.mem_mb or 0)
            and node.gpu_count(kind) >= count
        ):
            return
    shapes = ", ".join(
        f"{n.name}: {n.cpus} CPUs, {format_mem(n.mem_mb)}, {n.gpu_count(kind)} GPUs"
        for n in part.usable_nodes[:5]
    )
    raise AuditError(
        f"--cpus {params.cpus}, --mem {params.mem or '-'} and {count} GPU(s) together: no node "
        f"of partition {part.name} has all of them ({shapes}); lower one of them"
    )


def _refuse(params: SlurmParams, name: str, asked: str, offer: str, fix: str) -> None:
    raise AuditError(f"{params.origin(name)} {asked}: {offer}; {fix}")


def gres_gpus(params: SlurmParams) -> tuple[str, int] | None:
    """(type, count) of a GPU request in --sbatch gres=gpu[:type][:count], else None."""
    gres = dict(params.sbatch).get("gres")
    if not isinstance(gres, str):
        return None
    for item in gres.split(","):
        parts = item.split(":")
        if parts[0] == "gpu":
            count = int(parts[-1]) if parts[-1].isdigit() else 1
            kind = parts[1] if len(parts) > 1 and not parts[1].isdigit() else ""
            return kind, count
    return None


def _gpu_types(part: Partition) -> list[str]:
    return sorted({k for n in part.usable_nodes for k in n.gpus if k})


def _describe(part: Partition) -> str:
    usable = part.usable_nodes
    gpus = max((n.gpu_count() for n in usable), default=0)
    types = _gpu_types(part)
    limit = f"{part.max_time_min} min" if part.max_time_min else "unlimited"
    return (
        f"{len(usable)} usable node(s) of {len(part.nodes)}, up to {_max_cpus(part)} CPUs, "
        f"{format_mem(_max_mem(part))} memory and {gpus} GPU(s)"
        + (f" ({', '.join(types)})" if types else "")
        + f" per node, MaxTime {limit}"
    )


# ----------------------------------------------------------------------------- several GPUs


def run_processes(spec: dict[str, Any]) -> int:
    """The processes (SLURM tasks) of one run's job: a classification spec's `gpus`, else 1."""
    gpus = spec.get("gpus", 1) if spec.get("kind") == "classify" else 1
    return gpus if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > 1 else 1


def distributed_request(params: SlurmParams, processes: int) -> SlurmParams:
    """The job of a run of `processes` processes (DDP), from the request of one-process runs:
    that many tasks on one node, one GPU per task where those runs get a GPU (none on a CPU
    partition: gloo), `cpus` per task, `processes` x `mem` for the node. A request sized for
    packs of K one-process runs (runs_per_gpu) is brought back to one run's share first."""
    k = params.runs_per_gpu or 1
    cpus = max(1, params.cpus // k) if params.cpus else params.cpus
    mem_mb = max(1, params.mem_mb // k) if params.mem_mb else None
    sbatch = tuple(
        (k, _gres_count(v, processes) if k == "gres" and isinstance(v, str) else v)
        for k, v in params.sbatch
    )
    return params.with_values(
        tasks_per_node=processes,
        runs_per_gpu=1,
        cpus=cpus,
        gpus=processes if params.gpus else params.gpus,
        mem_mb=mem_mb * processes if mem_mb else None,
        sbatch=sbatch,
        cpu_only=None,
        task_requests=(),
    )


def _gres_count(gres: str, count: int) -> str:
    """gpu:a100:1,foo:2 -> gpu:a100:COUNT,foo:2 (a GPU type is kept)."""
    items = []
    for item in gres.split(","):
        parts = item.split(":")
        if parts[0] == "gpu":
            parts = parts[:-1] if len(parts) > 1 and parts[-1].isdigit() else parts
            item = ":".join([*parts, str(count)])
        items.append(item)
    return ",".join(items)


def with_task_requests(
    params: SlurmParams, specs: list[dict[str, Any]], sections: list[tuple[str, Choice, int]]
) -> SlurmParams:
    """`params` with the checked request of each process count > 1 among `specs` (their jobs
    go out as arrays of their own: an array has one request for all its tasks); a section
    per count is added to `sections`."""
    counts = sorted({run_processes(s) for s in specs} - {1})
    requests = []
    for n in counts:
        choice = distributed_choice(params, n)
        runs = sum(run_processes(s) == n for s in specs)
        sections.append((f"runs on {n} processes, one per GPU ({runs})", choice, runs))
        requests.append((n, choice.params))
    return params.with_values(task_requests=tuple(requests)) if requests else params


def distributed_choice(params: SlurmParams, processes: int) -> Choice:
    """The request of `processes`-process runs checked against the partition: some usable
    node must hold all the tasks (their GPUs and CPUs) at once; memory not given explicitly
    is capped at what such a node has. AuditError when none can."""
    request = distributed_request(params, processes)
    kind, gpus = gres_gpus(request) or ("", request.gpus or 0)
    cpus = (request.cpus or 1) * processes
    reasons = [
        f"{processes} tasks on one node, one process each (DDP): {gpus} GPU(s) and "
        f"{processes} x {request.cpus or 1} CPUs per job"
        + (", gloo on the CPU" if not gpus else "")
        + (f", memory {processes} x {params.mem}" if params.mem_mb else "")
    ]
    partition, why = read_partition(params.partition)
    if partition is None:
        return Choice(request, [*reasons, f"not checked against the cluster: {why}"], why)
    fitting = [n for n in partition.usable_nodes if n.gpu_count(kind) >= gpus and n.cpus >= cpus]
    if not fitting or (partition.max_cpus_per_node or cpus) < cpus:
        shapes = ", ".join(
            f"{n.name}: {n.cpus} CPUs, {n.gpu_count(kind)} GPUs" for n in partition.usable_nodes[:5]
        )
        raise AuditError(
            f"a run on {processes} GPUs needs {processes} tasks on one node with {gpus} "
            f"{kind + ' ' if kind else ''}GPU(s) and {processes} x {request.cpus or 1} CPUs: "
            f"no usable node of partition {partition.name} has them ({shapes}); lower "
            "--imagenet-gpus or --cpus, or choose another --partition"
        )
    most = max(n.mem_mb for n in fitting)
    most = min(most, partition.max_mem_per_node_mb or most)
    if request.mem_mb and request.mem_mb > most:
        if "mem_mb" in params.origins:
            raise AuditError(
                f"{params.origin('mem_mb')} {params.mem} per process x {processes} processes: "
                f"the nodes of partition {partition.name} that hold the tasks offer at most "
                f"{format_mem(most)}; lower --mem (it is per process for such runs)"
            )
        request = request.with_values(mem_mb=most)
        reasons.append(f"mem {format_mem(most)}: {processes} x a run's need, capped at a node's")
    return Choice(request, reasons)


# ----------------------------------------------------------------------------- reading


def _ask(cmd: list[str]) -> tuple[str | None, str]:
    """(stdout, "") or (None, why) for a scheduler command."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return None, f"{cmd[0]} is not on PATH"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{cmd[0]} did not answer ({exc})"
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[0]
        return None, f"{' '.join(cmd[:2])} failed: {first}"
    return out.stdout, ""


def read_partition(name: str | None) -> tuple[Partition | None, str]:
    """The partition (the cluster's default one when `name` is None) with its nodes, or
    (None, why) when the scheduler does not answer. An unknown partition is an AuditError."""
    if name and "," in name:
        return None, "a list of partitions is left to SLURM"
    out, why = _ask(["scontrol", "show", "partition", "-o"])
    if out is None:
        return None, why
    table = [_fields(line) for line in out.splitlines() if line.strip()]
    if name is None:
        found = [t for t in table if t.get("Default") == "YES"]
        if not found:
            return None, "the cluster has no default partition; --partition chooses one"
    else:
        found = [t for t in table if t.get("PartitionName") == name]
        if not found:
            names = ", ".join(t.get("PartitionName", "?") for t in table) or "none"
            raise AuditError(
                f"--partition {name}: no such partition on this cluster (partitions: {names})"
            )
    info = found[0]
    part = Partition(
        name=info["PartitionName"],
        state=info.get("State", "UP"),
        max_time_min=_limit_minutes(info.get("MaxTime")),
        max_cpus_per_node=_number(info.get("MaxCPUsPerNode")),
        max_mem_per_node_mb=_number(info.get("MaxMemPerNode")),
    )
    nodes, why = _ask(["sinfo", "-h", "-N", "-p", part.name, "-o", "%N|%c|%m|%G|%T|%f"])
    if nodes is None:
        return None, why
    part.nodes = _unique([_node(line) for line in nodes.splitlines() if line.count("|") == 5])
    return part, ""


def _fields(line: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok)


def _limit_minutes(value: str | None) -> int | None:
    if not value or value.upper() in ("UNLIMITED", "INFINITE", "NONE"):
        return None
    try:
        return parse_time(value, "MaxTime")
    except AuditError:
        return None


def _number(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def _node(line: str) -> Node:
    name, cpus, mem, gres, state, features = (p.strip() for p in line.split("|"))
    return Node(
        name=name,
        cpus=int(re.sub(r"\D.*", "", cpus) or 0),
        mem_mb=int(re.sub(r"\D.*", "", mem) or 0),
        gpus=_gpus_of(gres),
        features=set() if features in ("(null)", "") else set(features.split(",")),
        state=state,
    )


def _gpus_of(gres: str) -> dict[str, int]:
    """gpu:a100:4(S:0-1),gpu:2 -> {"a100": 4, "": 2}."""
    out: dict[str, int] = {}
    for item in re.split(r",(?![^()]*\))", gres):
        parts = re.sub(r"\(.*\)", "", item).split(":")
        if parts[0] != "gpu":
            continue
        count = int(parts[-1]) if parts[-1].isdigit() else 1
        kind = parts[1] if len(parts) > 2 else ""
        out[kind] = out.get(kind, 0) + count
    return out


def _unique(nodes: list[Node]) -> list[Node]:
    seen: dict[str, Node] = {}
    for node in nodes:
        seen.setdefault(node.name, node)
    return list(seen.values())
