"""The SLURM executor (submitit job arrays) and what the harness asks the scheduler.

- submission: one sbatch array per call; sbatch's refusals become one AuditError line with
  sbatch's own reason (exit 2), never a traceback;
- states: one batched `sacct` call per poll; pending reasons from one `squeue` call, and
  which of them can never resolve by waiting (PartitionConfig, PartitionTimeLimit, a
  per-job QOS limit, ReqNodeNotAvail on down or drained nodes, ...);
- cost as measured: every instance of a job (requeues too) from `sacct -D`, elapsed seconds
  times its allocated GPUs;
- cancel: scancel of given job ids only.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import math
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from audit.cluster_config import SlurmParams
from audit.errors import AuditError
from audit.launch.job import JobFunction, RunOptions
from audit.launch.pack import RUN_LOG, PackFunction, pack_indices, spec_cost
from audit.store import Store

SUBMIT_MODULE = "-u -m submitit.core._submit"
# Pending reasons that waiting never resolves, with the hint for each.
HOPELESS = {
    "PartitionConfig": "the request exceeds what partition allows (CPUs, memory, GPUs or "
    "nodes): lower --cpus/--mem/--gpus or choose another --partition",
    "PartitionTimeLimit": "--time exceeds the partition's MaxTime: lower --time or choose "
    "another --partition",
    "PartitionNodeLimit": "the job asks for more nodes than the partition allows",
    "BadConstraints": "no node has the --constraint features",
    "InvalidAccount": "the --account is not valid for this user",
    "InvalidQOS": "the --qos is not valid for this user or account",
    "DependencyNeverSatisfied": "the --sbatch dependency can never be satisfied",
    "ReqNodeNotAvail": "the nodes it can use are down or drained: --sbatch exclude=NODES or "
    "another --partition",
}
# Limits per job (never lifted by other jobs ending), e.g. QOSMaxWallDurationPerJobLimit.
PER_JOB_LIMIT = re.compile(r"^(QOS|Assoc)Max\w*PerJob(Limit)?$|^(QOS|Assoc)Min\w*$")
UNUSABLE_NODE_STATES = ("down", "drain", "drained", "draining", "fail", "failing", "inval")


@dataclass(frozen=True)
class Pending:
    """Why a job waits, and whether waiting can end it."""

    reason: str
    hopeless: bool = False
    hint: str = ""


class SlurmExecutor:
    """submitit job arrays; states from one batched `sacct` call per poll."""

    name = "slurm"

    def __init__(self, store: Store, options: RunOptions, params: SlurmParams):
        require_slurm_commands()
        self.store, self.options, self.params = store, options, params
        self.folder = store.slurm_dir.absolute() / "%j"
        self.executor = self._submitit(params)
        # with --cpu-partition, CPU-only runs go out as an array of their own
        self.cpu_executor = self._submitit(params.cpu_only) if params.cpu_only else None

    def _submitit(self, params: SlurmParams) -> submitit.SlurmExecutor:
        with contextlib.redirect_stderr(io.StringIO()):
            executor = submitit.SlurmExecutor(
                folder=self.folder, max_num_timeout=params.max_num_timeout
            )
        executor.update_parameters(**params.submitit_parameters())
        return executor

    def submit(self, specs: list[dict[str, Any]]) -> list[str]:
        """One array per request: the runs of one process, and per process count > 1 the
        runs on that many GPUs (an array's tasks share one request: ntasks-per-node)."""
        from audit.slurm_preflight import run_processes

        groups: dict[int, list[int]] = {}
        for index, spec in enumerate(specs):
            groups.setdefault(run_processes(spec), []).append(index)
        ids: dict[int, str] = {}
        for processes, indices in sorted(groups.items()):
            chosen = [specs[i] for i in indices]
            if processes == 1:
                got = self._submit_one_process(chosen)
            else:
                got = self._submit_processes(processes, chosen)
            ids.update(zip(indices, got, strict=True))
        return [ids[i] for i in range(len(specs))]

    def _submit_processes(self, processes: int, specs: list[dict[str, Any]]) -> list[str]:
        """Runs of `processes` processes (DDP): their own array(s), one task per process."""
        from audit.slurm_preflight import distributed_request, needs_gpu

        cpu_only = self.params.cpu_only if self.cpu_executor is not None else None
        cpu = {i for i, spec in enumerate(specs) if cpu_only and not needs_gpu(spec)}
        out: dict[int, str] = {}
        for base, indices in (
            (self.params, [i for i in range(len(specs)) if i not in cpu]),
            (cpu_only, sorted(cpu)),
        ):
            if base is None or not indices:
                continue
            request = dict(base.task_requests).get(processes)
            request = request or distributed_request(base, processes)
            # never packed: the N processes of one run fill its allocation
            ids = self._submit(self._submitit(request), [specs[i] for i in indices], k=1)
            out.update(zip(indices, ids, strict=True))
        return [out[i] for i in range(len(specs))]

    def _submit_one_process(self, specs: list[dict[str, Any]]) -> list[str]:
        if self.cpu_executor is None:
            return self._submit(self.executor, specs, self._runs_per_task(self.executor))
        from audit.slurm_preflight import needs_gpu

        gpu = [i for i, spec in enumerate(specs) if needs_gpu(spec)]
        cpu = [i for i in range(len(specs)) if i not in gpu]
        k_gpu, k_cpu = (self._runs_per_task(e) for e in (self.executor, self.cpu_executor))
        ids = dict(
            zip(gpu, self._submit(self.executor, [specs[i] for i in gpu], k_gpu), strict=True)
        )
        cpu_ids = self._submit(self.cpu_executor, [specs[i] for i in cpu], k_cpu)
        ids.update(zip(cpu, cpu_ids, strict=True))
        return [ids[i] for i in range(len(specs))]

    def _submit(
        self, executor: submitit.SlurmExecutor, specs: list[dict[str, Any]], k: int
    ) -> list[str]:
        """One array task per run, or with K > 1 runs per task one task per pack of K runs
        (audit/launch/pack.py); every run gets the id of the task that trains it."""
        if not specs:
            return []
        if k == 1:
            return self._map(executor, JobFunction(), specs)
        packs = pack_indices([spec_cost(s) for s in specs], k)
        task_ids = self._map(executor, PackFunction(), [[specs[i] for i in p] for p in packs])
        ids = {i: task for pack, task in zip(packs, task_ids, strict=True) for i in pack}
        return [ids[i] for i in range(len(specs))]

    def _runs_per_task(self, executor: submitit.SlurmExecutor) -> int:
        params = self.params.cpu_only if executor is self.cpu_executor else self.params
        return (params.runs_per_gpu if params else None) or 1

    def _map(self, executor: submitit.SlurmExecutor, function: Any, items: list[Any]) -> list[str]:
        n = len(items)
        captured = io.StringIO()  # submitit prints sbatch's stderr; it goes into our message
        try:
            with contextlib.redirect_stderr(captured):
                jobs = executor.map_array(
                    function, items, [str(self.store.root)] * n, [self.options] * n
                )
        except submitit.core.utils.FailedSubmissionError as exc:
            raise AuditError(f"sbatch printed no job id: {_first_line(str(exc))}") from None
        except (submitit.core.utils.FailedJobError, OSError) as exc:
            raise AuditError(f"sbatch refused the job: {sbatch_reason(exc)}") from None
        return [str(job.job_id) for job in jobs]

    def poll(self, job_ids: list[str]) -> dict[str, str] | None:
        return sacct_states(job_ids)

    def pending(self, job_ids: list[str]) -> dict[str, Pending]:
        return pending_reasons(job_ids)

    def cancel(self, job_ids: list[str]) -> None:
        scancel(job_ids)

    def log_files(self, job_id: str, run_id: str | None = None) -> list[Path]:
        return slurm_log_files(self.store, job_id, run_id)

    def shutdown(self) -> None:
        pass  # the jobs belong to SLURM; a later `audit run` re-attaches to them


def require_slurm_commands() -> None:
    """sbatch submits; the job script runs the training through srun (submitit)."""
    if shutil.which("sbatch") is None:
        raise AuditError(
            "--executor slurm needs SLURM's sbatch on PATH, and it is not there; "
            "run on a SLURM login node or use --executor local"
        )
    if shutil.which("srun") is None:
        raise AuditError(
            "--executor slurm found sbatch but not srun on PATH (the job script starts the "
            "training with srun); install SLURM's client commands or fix PATH"
        )


def sbatch_reason(exc: BaseException) -> str:
    """sbatch's own words: its last `sbatch: error:` line, without the prefix."""
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()] or lines
    return re.sub(r"^sbatch:\s*(error:\s*)?", "", errors[-1])


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["(nothing)"])[0]


def script_text(params: SlurmParams, store_dir: Path, n_runs: int) -> str:
    """The job script an array of `n_runs` would be submitted with, as SlurmExecutor's
    submitit writes it (the same parameters, the same command): one task per pack of
    runs_per_gpu runs."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder = Path(store_dir).absolute() / "slurm" / "%j"
    command = " ".join([shlex.quote(sys.executable), SUBMIT_MODULE, shlex.quote(str(folder))])
    tasks = math.ceil(n_runs / (params.runs_per_gpu or 1))
    # submitit submits a single task as a plain job, more than one as an array
    return _make_sbatch_string(
        command=command,
        folder=folder,
        map_count=tasks if tasks > 1 else None,
        **params.submitit_parameters(),
    )


def slurm_log_files(store: Store, job_id: str, run_id: str | None = None) -> list[Path]:
    """submitit's stderr and stdout of the job; in a pack (several runs in one task) also
    `run_id`'s own child output, never its siblings'."""
    folder = store.slurm_dir / job_id
    files = sorted(folder.glob("*_log.err")) + sorted(folder.glob("*_log.out"))
    own = folder / RUN_LOG.format(run_id=run_id) if run_id else None
    return files + ([own] if own and own.is_file() else [])


def _scheduler(cmd: list[str], timeout: float = 60) -> str | None:
    """A scheduler command's stdout; None when it is missing, fails or hangs."""
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _mains(job_ids: list[str]) -> list[str]:
    return sorted({j.split("_")[0] for j in job_ids})


def _squeue(fmt: str, *extra: str) -> str | None:
    """This user's jobs, array tasks one per line (filtered by the caller: `squeue -j` fails
    as a whole on one job id it no longer knows)."""
    return _scheduler(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", fmt, *extra])


def sacct_states(job_ids: list[str]) -> dict[str, str] | None:
    """State per job id (array tasks as <job>_<task>) from one sacct call; None when sacct
    fails (the caller polls again later rather than taking silence for an ended job)."""
    mains = _mains(job_ids)
    if not mains:
        return {}
    cmd = ["sacct", "-o", "JobID,State,NodeList", "--parsable2"]
    for main in mains:
        cmd += ["-j", main]
    out = _scheduler(cmd)
    if out is None:
        return None
    # submitit's parser understands array ranges such as 12_[3-5%2]
    info = submitit.slurm.slurm.SlurmInfoWatcher(delay_s=0).read_info(out)
    return {j: info[j]["State"] for j in job_ids if j in info}


def pending_reasons(job_ids: list[str]) -> dict[str, Pending]:
    """Why each pending job of `job_ids` waits (one squeue call, array tasks expanded)."""
    mains = _mains(job_ids)
    if not mains:
        return {}
    out = _squeue("%i|%r", "-t", "PD")
    reasons = {}
    for line in (out or "").splitlines():
        job_id, _, reason = line.partition("|")
        if job_id.strip() in job_ids and reason.strip():
            reasons[job_id.strip()] = reason.strip()
    down = _down_nodes() if any("ReqNodeNotAvail" in r for r in reasons.values()) else set()
    return {job: classify_reason(reason, down) for job, reason in reasons.items()}


def classify_reason(reason: str, down_nodes: set[str] | None = None) -> Pending:
    """Whether `reason` (squeue's %r) can end by waiting. ReqNodeNotAvail is hopeless only
    when every node it names is down or drained (a reservation or maintenance ends)."""
    head = reason.split(",")[0].split("(")[0].strip()
    if head == "ReqNodeNotAvail":
        named = re.findall(r"UnavailableNodes:([^\s)]*)", reason)
        nodes = set(_expand_hostlist(named[0])) if named and named[0] else set()
        if nodes and nodes <= (down_nodes or set()):
            return Pending(reason, True, HOPELESS[head])
        return Pending(reason)
    if head in HOPELESS:
        return Pending(reason, True, HOPELESS[head])
    if PER_JOB_LIMIT.match(head):
        return Pending(
            reason,
            True,
            "a per-job limit of the QOS or association: lower the request or choose another --qos",
        )
    return Pending(reason)


def _down_nodes() -> set[str]:
    out = _scheduler(["sinfo", "-h", "-N", "-o", "%N|%T"]) or ""
    down = set()
    for line in out.splitlines():
        node, _, state = line.partition("|")
        if state.strip().rstrip("*~#!%$@^-").lower().startswith(UNUSABLE_NODE_STATES):
            down.add(node.strip())
    return down


def _expand_hostlist(text: str) -> list[str]:
    """node[01-03,07],gpu5 -> node01 node02 node03 node07 gpu5 (SLURM's hostlist syntax)."""
    out: list[str] = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", text):
        if plain:
            out.append(plain)
            continue
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            width = len(low)
            for n in range(int(low), int(high or low) + 1):
                out.append(f"{prefix}{n:0{width}d}")
    return out


@dataclass(frozen=True)
class Allocation:
    """What SLURM accounted for a job (every instance: requeues included)."""

    elapsed_s: int
    gpu_s: int
    gpus: int
    cpus: int
    instances: int

    def to_json(self) -> dict[str, Any]:
        return {
            "elapsed_s": self.elapsed_s,
            "gpu_s": self.gpu_s,
            "gpus": self.gpus,
            "cpus": self.cpus,
            "instances": self.instances,
            "source": "sacct",
        }

    def share(self, runs: int) -> dict[str, Any]:
        """This allocation as recorded for one of `runs` runs that shared it (a pack): its
        GPU seconds divided equally, the whole job's kept beside; the elapsed time stays the
        job's (the runs trained side by side)."""
        if runs <= 1:
            return self.to_json()
        return {
            **self.to_json(),
            "gpu_s": round(self.gpu_s / runs, 3),
            "allocation_gpu_s": self.gpu_s,
            "shared_by": runs,
        }


def sacct_allocations(job_ids: list[str]) -> dict[str, Allocation] | None:
    """Elapsed and GPU seconds per job id from one `sacct -D -X` call; None without
    accounting (sacct missing or failing)."""
    mains = _mains(job_ids)
    if not mains:
        return {}
    fields = "JobID,State,ElapsedRaw,AllocTRES"
    out = _scheduler(["sacct", "-D", "-X", "-n", "-P", "-o", fields, "-j", ",".join(mains)])
    if out is None:
        return None
    rows: dict[str, list[tuple[int, int, int]]] = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) != 4 or parts[0] not in job_ids:
            continue
        tres = dict(t.split("=", 1) for t in parts[3].split(",") if "=" in t)
        elapsed = int(parts[2]) if parts[2].isdigit() else 0
        gpus, cpus = _tres_count(tres.get("gres/gpu")), _tres_count(tres.get("cpu"))
        rows.setdefault(parts[0], []).append((elapsed, gpus, cpus))
    return {
        job: Allocation(
            elapsed_s=sum(e for e, _, _ in inst),
            gpu_s=sum(e * g for e, g, _ in inst),
            gpus=max(g for _, g, _ in inst),
            cpus=max(c for _, _, c in inst),
            instances=len(inst),
        )
        for job, inst in rows.items()
    }


def _tres_count(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def scancel(job_ids: list[str]) -> None:
    """Cancel exactly these jobs (array tasks as <job>_<task>)."""
    if not job_ids:
        return
    try:
        subprocess.run(
            ["scancel", *job_ids], capture_output=True, text=True, timeout=60, check=True
        )
    except subprocess.CalledProcessError as exc:
        raise AuditError(f"scancel failed: {_first_line(exc.stderr or str(exc))}") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise AuditError(f"scancel could not run: {exc}") from None


def active_job_ids(job_ids: list[str]) -> list[str]:
    """Those of `job_ids` the scheduler still queues or runs (one squeue call)."""
    mains = _mains(job_ids)
    if not mains:
        return []
    out = _squeue("%i")
    if out is None:
        raise AuditError("squeue did not answer; cannot tell which jobs are still queued")
    queued = {line.strip() for line in out.splitlines()}
    return [j for j in job_ids if j in queued]


def store_jobs(store: Store, job_ids: list[str]) -> list[str]:
    """Those of `job_ids` SLURM still queues or runs *for this store*: a job counts only
    when its stdout lies in the store's slurm/ folder (SLURM reuses job ids after a restart
    of its controller, so an id in job.json alone could name someone else's job)."""
    wanted = set(job_ids)
    if not wanted:
        return []
    out = _squeue_columns("JobArrayID:|,StdOut:|")
    if out is None:
        raise AuditError("squeue did not answer; cannot tell which jobs are still queued")
    folder = str(store.slurm_dir.absolute()) + "/"
    mine = []
    for line in out.splitlines():
        job_id, _, stdout = line.partition("|")
        if job_id.strip() in wanted and stdout.startswith(folder):
            mine.append(job_id.strip())
    return sorted(mine)


def _squeue_columns(columns: str) -> str | None:
    return _scheduler(["squeue", "-h", "-r", "-u", getpass.getuser(), "-O", columns])
