"""Several runs in one allocation: a pack of K runs trained concurrently by one array task.

A 1-epoch or 20-epoch CIFAR run, or an MLP, leaves most of a GPU idle. With `--runs-per-gpu K`
the SLURM executor puts K runs into each array task. The task (`PackFunction`, run by submitit)
starts one child process per run, each the ordinary job function (`run_job`) in the run's own
directory, with its own lock, checkpoint, log, result and job.json attempts. So a run that
finishes early frees its share (its process, its GPU memory), and a run that fails or crashes
leaves its siblings training: the task itself always ends normally, and `launch()` settles and
retries each run on its own.

Resources: the children share the task's GPU(s) (round robin over CUDA_VISIBLE_DEVICES when
the task has several) and split its CPUs by scheduler affinity, so each runner's data-loader
workers and threads count its own share (`runners.classify.auto_workers` reads the affinity).

Preemption and time limits: SLURM's warning signal (USR2) may reach every process of the step;
the children ignore it, the task's submitit handler calls `checkpoint()`, which stops the
children (SIGTERM, which a child turns into a clean exit: its attempt recorded as interrupted,
its lock released) and requeues the task with the same runs. The requeued task resumes every
run at the checkpoint of its last finished epoch and skips the runs that are finished.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import submitit

from audit.launch.job import RunOptions, run_job
from audit.launch.local import _die_with_parent

STOP_WAIT_S = 20  # how long a stopping task waits for its children to record their end
POLL_S = 0.2  # how often the task looks at its children
RUN_LOG = "run-{run_id}.log"  # a child's stdout and stderr, in the task's submitit folder
_CHILDREN: list[subprocess.Popen] = []  # this task's children (a Popen does not pickle)


def pack_indices(costs: list[float], k: int) -> list[list[int]]:
    """Indices into the runs, in packs of at most `k`: the costliest together, so the runs
    sharing an allocation end at about the same time (a run's slot idles once it ends)."""
    order = sorted(range(len(costs)), key=lambda i: -costs[i])
    return [order[i : i + k] for i in range(0, len(order), max(1, k))]


def spec_cost(spec: dict[str, Any]) -> float:
    """The plan's default estimate of a run's GPU-hours (for packing alike runs together)."""
    from audit.plan import estimate_gpu_hours

    try:
        return estimate_gpu_hours(spec, {})[0]
    except (KeyError, TypeError):  # not a planned kind of spec: pack it as it comes
        return 0.0


def cpu_shares(n: int, cpus: list[int] | None = None) -> list[set[int]]:
    """The CPUs of each of `n` children: contiguous equal slices of this process's CPUs, or
    one CPU each, shared round robin, when there are fewer CPUs than children."""
    cpus = sorted(os.sched_getaffinity(0)) if cpus is None else sorted(cpus)
    if len(cpus) < n:
        return [{cpus[i % len(cpus)]} for i in range(n)]
    return [set(cpus[i * len(cpus) // n : (i + 1) * len(cpus) // n]) for i in range(n)]


def gpu_of(index: int, options: RunOptions) -> str | None:
    """The GPU child `index` is given when the task holds several (else None: all share the
    task's CUDA_VISIBLE_DEVICES); an explicit cuda:N device is left alone."""
    if options.device not in (None, "cuda"):
        return None
    given = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    given = [g for g in given if g and g != "-1"]
    return given[index % len(given)] if len(given) > 1 else None


def run_pack(
    specs: list[dict[str, Any]], store_dir: str, options: RunOptions, log_dir: Path
) -> list[dict[str, Any]]:
    """Train `specs` concurrently, one child each; their exit codes (never raises for a run's
    failure: each run records its own outcome)."""
    from runners.specs import run_id

    log_dir.mkdir(parents=True, exist_ok=True)
    shares = cpu_shares(len(specs))
    procs = []
    try:
        for index, spec in enumerate(specs):
            log = log_dir / RUN_LOG.format(run_id=run_id(spec))
            procs.append(
                _start(spec, store_dir, options, shares[index], gpu_of(index, options), log)
            )
            _CHILDREN.append(procs[-1])
        _wait_all(procs)
    finally:
        stop_children(procs)
        for proc in procs:
            with contextlib.suppress(ValueError):
                _CHILDREN.remove(proc)
    codes = [p.returncode for p in procs]
    return [{"run_id": run_id(s), "exit": c} for s, c in zip(specs, codes, strict=True)]


def _start(
    spec: dict[str, Any],
    store_dir: str,
    options: RunOptions,
    cpus: set[int],
    gpu: str | None,
    log: Path,
) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(len(cpus)))  # torch's threads: this child's share
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    payload = json.dumps({"spec": spec, "store": store_dir, "options": asdict(options)})
    with open(log, "a", encoding="utf-8") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "audit.launch.pack", payload],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=functools.partial(_child_setup, os.getpid(), cpus),
        )


def _child_setup(parent: int, cpus: set[int]) -> None:
    """In the child, before exec: its CPUs; USR2 ignored (SLURM may signal every process of
    the step; the task requeues, then stops its children); dies with the task."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, cpus)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # an ignored signal stays so across exec
    _die_with_parent(parent)


def _wait_all(procs: list[subprocess.Popen], deadline: float | None = None) -> bool:
    """Whether every child ended (by `deadline`, a time.monotonic() value, if given).

    Polls rather than blocking in Popen.wait: submitit's signal handler runs in this thread
    and stops the children itself, and a handler's wait on a child whose blocking wait it
    interrupted deadlocks on Popen's internal lock."""
    while any(p.poll() is None for p in procs):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def stop_children(procs: list[subprocess.Popen], wait_s: float = STOP_WAIT_S) -> None:
    """SIGTERM to the children still running, then wait (bounded) for them to record their
    end; SIGKILL what is left (SLURM would kill it with the task anyway)."""
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        with contextlib.suppress(OSError):
            proc.terminate()
    if not _wait_all(live, time.monotonic() + wait_s):
        for proc in live:
            with contextlib.suppress(OSError):
                proc.kill()
        _wait_all(live)


class PackFunction(submitit.helpers.Checkpointable):
    """run_pack for submitit: on preemption or time-out the children are stopped, then the
    task is requeued with the same runs (each resumes from its own checkpoint)."""

    def __call__(
        self, specs: list[dict[str, Any]], store_dir: str, options: RunOptions
    ) -> list[dict[str, Any]]:
        return run_pack(specs, store_dir, options, task_folder(store_dir))

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        stop_children(list(_CHILDREN))
        return super().checkpoint(*args, **kwargs)


def task_folder(store_dir: str) -> Path:
    """This array task's submitit folder (slurm/<job>_<task>/), where its logs are."""
    try:
        return Path(submitit.JobEnvironment().paths.folder)
    except RuntimeError:  # not inside a submitit job (tests call the function directly)
        return Path(store_dir) / "slurm" / "pack"


def _child_main(payload: str) -> int:
    """A pack child: one run through the job function; SIGTERM ends it cleanly (the attempt
    is recorded as interrupted, the lock released)."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    data = json.loads(payload)
    outcome = run_job(data["spec"], data["store"], RunOptions(**data["options"]))
    print(json.dumps(outcome, default=str), flush=True)
    return 1 if outcome["outcome"] == "error" else 0


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
