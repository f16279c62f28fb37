"""The executors on this machine: `debug` (in this process) and `local` (child processes).

A local child dies with its parent (PR_SET_PDEATHSIG), so a killed `audit run` leaves no
orphan trainer behind. With several GPUs, `--parallel` children get distinct GPUs through
CUDA_VISIBLE_DEVICES (the least used one at each start), so N runs do not share GPU 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from audit.errors import AuditError
from audit.launch.job import ATTEMPT_ENV, RunOptions, run_job
from audit.store import Store

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class DebugExecutor:
    """In this process, at submission (tests; no scheduler)."""

    name = "debug"

    def __init__(self, store: Store, options: RunOptions):
        self.store, self.options = store, options
        self.states: dict[str, str] = {}
        self.count = 0

    def submit(self, specs: list[dict[str, Any]]) -> list[str]:
        from audit.slurm_preflight import run_processes

        for spec in specs:
            if run_processes(spec) > 1:
                raise AuditError(
                    f"the debug executor trains in this process; a run on "
                    f"{run_processes(spec)} GPUs needs one process per GPU: use --executor "
                    "local or slurm"
                )
        ids = []
        for spec in specs:
            self.count += 1
            job_id = f"debug-{self.count}"
            outcome = run_job(spec, str(self.store.root), self.options)
            self.states[job_id] = "FAILED" if outcome["outcome"] == "error" else "COMPLETED"
            ids.append(job_id)
        return ids

    def poll(self, job_ids: list[str]) -> dict[str, str]:
        return {j: self.states[j] for j in job_ids if j in self.states}

    def pending(self, job_ids: list[str]) -> dict[str, Any]:
        return {}

    def cancel(self, job_ids: list[str]) -> None:
        pass

    def log_files(self, job_id: str, run_id: str | None = None) -> list[Path]:
        return []

    def shutdown(self) -> None:
        pass


class LocalExecutor:
    """One child process per run, `parallel` at a time, started as slots free up."""

    name = "local"

    def __init__(
        self,
        store: Store,
        options: RunOptions,
        parallel: int = 1,
        gpus: list[str] | None = None,
    ):
        self.store, self.options, self.parallel = store, options, max(1, parallel)
        self.queue: list[tuple[str, dict[str, Any]]] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.gpu_of: dict[str, str] = {}  # job id -> the GPU its child was given
        self.gpus = visible_gpus() if gpus is None else gpus
        self.count = 0

    def submit(self, specs: list[dict[str, Any]]) -> list[str]:
        for spec in specs:
            self._check_gpus(spec)
        ids = []
        for spec in specs:
            self.count += 1
            job_id = f"local-{os.getpid()}-{self.count}"
            self.queue.append((job_id, spec))
            ids.append(job_id)
        self._start_queued()
        return ids

    def _start_queued(self) -> None:
        from audit.slurm_preflight import run_processes

        running = sum(p.poll() is None for p in self.procs.values())
        while self.queue and running < self.parallel:
            job_id, spec = self.queue.pop(0)
            payload = json.dumps(
                {"spec": spec, "store": str(self.store.root), "options": asdict(self.options)}
            )
            if run_processes(spec) > 1:
                self.procs[job_id] = self._start_ranks(job_id, payload, run_processes(spec))
                running += 1
                continue
            log = open(self._log_path(job_id), "w")  # noqa: SIM115 - handed to the child
            self.procs[job_id] = subprocess.Popen(
                [sys.executable, "-m", "audit.launch.local", payload],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._child_env(job_id),
                preexec_fn=functools.partial(_die_with_parent, os.getpid()),
            )
            log.close()
            running += 1

    def _child_env(self, job_id: str, count: int = 1) -> dict[str, str] | None:
        """The child's environment: CUDA_VISIBLE_DEVICES set to the `count` least used GPUs
        when the device is left to the runner (or `cuda`) and GPUs are known; else inherited."""
        if not self.gpus or self.options.device not in (None, "cuda"):
            return None
        busy = Counter(
            gpu
            for j, p in self.procs.items()
            if p.poll() is None and j in self.gpu_of
            for gpu in self.gpu_of[j].split(",")
        )
        chosen = sorted(self.gpus, key=lambda g: (busy[g], self.gpus.index(g)))[:count]
        self.gpu_of[job_id] = ",".join(chosen)
        return {**os.environ, "CUDA_VISIBLE_DEVICES": self.gpu_of[job_id]}

    def _check_gpus(self, spec: dict[str, Any]) -> None:
        """A run on N GPUs needs N of them here, unless it trains on the CPU (gloo)."""
        from audit.slurm_preflight import run_processes

        n = run_processes(spec)
        if n > 1 and self.gpus and self.options.device in (None, "cuda") and len(self.gpus) < n:
            raise AuditError(
                f"a run on {n} GPUs needs {n} GPUs on this machine, which shows "
                f"{len(self.gpus)} ({','.join(self.gpus)}); use --executor slurm, or "
                "--device cpu to train its processes on the CPU"
            )

    def _start_ranks(self, job_id: str, payload: str, count: int) -> RankGroup:
        """One run on `count` GPUs: `count` children (torchrun's variables: RANK, WORLD_SIZE,
        LOCAL_RANK, MASTER_ADDR/PORT on this host) that see the same GPUs and take
        cuda:LOCAL_RANK; rank 0 writes the log the job's own, rank k `<job>.rank<k>.log`."""
        base = self._child_env(job_id, count) or dict(os.environ)
        port = _free_port()
        procs = []
        for rank in range(count):
            env = {
                **base,
                "RANK": str(rank),
                "WORLD_SIZE": str(count),
                "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(count),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                ATTEMPT_ENV: job_id,
            }
            path = self._log_path(job_id, rank)
            with open(path, "w") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "audit.launch.local", payload],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                        preexec_fn=functools.partial(_die_with_parent, os.getpid()),
                    )
                )
        return RankGroup(procs)

    def _log_path(self, job_id: str, rank: int = 0) -> Path:
        folder = self.store.root / "local"
        folder.mkdir(exist_ok=True)
        return folder / (f"{job_id}.log" if rank == 0 else f"{job_id}.rank{rank}.log")

    def poll(self, job_ids: list[str]) -> dict[str, str]:
        self._start_queued()
        states = {}
        queued = {j for j, _ in self.queue}
        for job_id in job_ids:
            if job_id in queued:
                states[job_id] = "PENDING"
            elif job_id in self.procs:
                code = self.procs[job_id].poll()
                states[job_id] = (
                    "RUNNING"
                    if code is None
                    else ("COMPLETED" if code == 0 else f"FAILED (exit {code})")
                )
        return states

    def pending(self, job_ids: list[str]) -> dict[str, Any]:
        return {}  # a local run waits only for a free --parallel slot

    def cancel(self, job_ids: list[str]) -> None:
        pass

    def log_files(self, job_id: str, run_id: str | None = None) -> list[Path]:
        ranks = sorted((self.store.root / "local").glob(f"{job_id}.rank*.log"))
        return [self._log_path(job_id), *ranks]

    def shutdown(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()


class RankGroup:
    """The processes of one run on several GPUs, seen as one child (what torchrun does): it
    runs while any rank runs; a rank that fails ends the others, and its exit code is the
    group's (a rank left alone would wait in the process group until its timeout)."""

    def __init__(self, procs: list[subprocess.Popen]):
        self.procs = procs

    def poll(self) -> int | None:
        codes = [p.poll() for p in self.procs]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            self.terminate()
            for proc in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
            return failed[0]
        return None if None in codes else 0

    def terminate(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def visible_gpus() -> list[str]:
    """The GPUs children may be given: CUDA_VISIBLE_DEVICES's entries where it is set (an
    empty or -1 value hides them all), else one per `nvidia-smi -L` line; [] without any."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        ids = [g.strip() for g in given.split(",") if g.strip()]
        return [] if not ids or ids[0] == "-1" else ids
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux prctl
    PR_SET_PDEATHSIG), and end now if `parent` died between the fork and the prctl (the
    kernel would never send the signal then)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _child_main(payload: str) -> int:
    """Entry point of a local executor's child process."""
    data = json.loads(payload)
    outcome = run_job(data["spec"], data["store"], RunOptions(**data["options"]))
    print(json.dumps(outcome, default=str))
    return 1 if outcome["outcome"] == "error" else 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
