"""End-to-end against a real single-node SLURM cluster (tests/slurm_cluster.py starts it).

Every job trains a real MLP on a subset of the real Fashion-MNIST (Debian's package), on the
CPU. Scenarios:
- a tiny audit goes out as a SLURM array; its `audit run` is killed part-way and run again:
  the finished runs are not retrained, the rest re-attached, and the check table printed;
- a job cancelled with scancel is reported and retried (and resumes from its checkpoint);
- a job sent USR2 (preemption) is requeued by submitit and resumes at the saved epoch;
- a pack (two runs in one array task, `runs_per_gpu`) trains each run in its own place, and
  a USR2 sent to it requeues the task once and resumes every run at its own saved epoch;
- an array task that reaches its 1-minute time limit gets SLURM's warning signal, requeues
  itself and resumes at the saved epoch, as often as the limit comes, until it is done.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from audit import PROJECT_ROOT
from audit.cluster_config import slurm_params
from audit.launch import RunOptions, launch, make_executor, sacct_states
from audit.store import Store
from runners.rundir import read_jsonl
from runners.specs import run_id
from tests import fakedata, slurm_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLAIMS = PROJECT_ROOT / "claims.yaml"
CPU_JOB = {"gpus": 0, "cpus": 1, "time": 10, "signal_delay_s": 30}


@pytest.fixture(scope="module")
def cluster():
    """The cluster for this module: started here (and stopped after) or reused as found."""
    try:
        found = slurm_cluster.start_cluster()
    except slurm_cluster.ClusterUnavailable as exc:
        pytest.skip(f"no SLURM cluster: {exc}")
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(found.conf)  # sbatch passes it on to the jobs
    yield found
    found.stop()  # a no-op for a cluster this module did not start
    if saved is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = saved


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, cluster):
    from runners.data import install_system_fashion_mnist

    root = tmp_path_factory.mktemp("data")
    install_system_fashion_mnist(root, log=lambda message: None)  # once, not once per job
    return root


def _wait_until(predicate, timeout: float, what: str, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _audit_run(store: Path, data_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "audit.cli",
        "run",
        "--claims",
        str(CLAIMS),
        "--profile",
        "ci",
        "--executor",
        "slurm",
        "--store",
        str(store),
        "--data-dir",
        str(data_dir),
        "--poll",
        "2",
        "--no-report",
        "--gpus",
        "0",
        "--cpus",
        "1",
        "--time",
        "10",
        "--runs-per-gpu",
        "1",  # one run per array task (packs: the pack tests below)
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finished(store: Store) -> list[str]:
    return [rid for rid in store.run_ids() if (store.run_dir(rid) / "result.json").exists()]


def test_audit_through_slurm_arrays_survives_a_killed_audit_run(cluster, data_dir, tmp_path):
    store_dir = tmp_path / "store"
    first = _audit_run(store_dir, data_dir, "--array-parallelism", "1")
    store = _wait_until(lambda: store_dir.is_dir() and Store(store_dir), 60, "the store")
    _wait_until(lambda: _finished(store), 240, "the first run to finish")
    first.send_signal(signal.SIGKILL)  # no cleanup at all: the jobs stay queued in SLURM
    first.wait()
    done_before = {
        rid: (store.run_dir(rid) / "result.json").stat().st_mtime_ns for rid in _finished(store)
    }
    assert len(done_before) < 3  # killed part-way (array tasks run one at a time)
    job_ids = {rid: store.read_job(rid)["job_id"] for rid in store.run_ids()}
    assert all("_" in j for j in job_ids.values())  # array tasks
    assert len({j.split("_")[0] for j in job_ids.values()}) == 1  # one array

    second = _audit_run(store_dir, data_dir)
    out, _ = second.communicate(timeout=400)
    assert second.returncode == 0, out
    assert "audit run: 3 run(s): 3 done" in out
    assert "submitted" not in out  # re-attached to the array, nothing submitted again
    assert "mlp.fashion-mnist.nd-not-worse.vs-bn" in out  # the check table
    assert "NOT a reproduction" in out
    for rid in store.run_ids():
        job = store.read_job(rid)
        assert [a["outcome"] for a in job["attempts"]] == ["done"], rid  # trained once
        assert job["job_id"] == job_ids[rid] and len(job["submissions"]) == 1
    for rid, mtime in done_before.items():
        assert (store.run_dir(rid) / "result.json").stat().st_mtime_ns == mtime

    status = subprocess.run(
        [sys.executable, "-m", "audit.cli", "status", "--store", str(store_dir)],
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    assert "3 run(s): 3 done" in status.stdout and "COMPLETED" in status.stdout
    assert "epoch 20 of 20" in status.stdout and "NOTE: ci profile" in status.stdout


def _audit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def _queued(store_dir: Path) -> list[str]:
    """This user's queued or running jobs whose output goes into `store_dir` (squeue)."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-O", "JobArrayID:|,StdOut:|"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    folder = str(store_dir.absolute())
    return sorted(
        j
        for j, _, path in (line.partition("|") for line in out.splitlines())
        if path.startswith(folder)
    )


def test_preflight_refuses_what_no_node_can_grant(cluster, data_dir, tmp_path):
    """Above the node's CPUs, or a GPU on the GPU-less partition: refused in one line before
    anything is submitted (exit 2)."""
    store_dir = tmp_path / "store"
    cases = [
        (
            ["--cpus", "4096"],
            r"--cpus 4096: the usable nodes of partition \S+ offer at most \d+ CPUs",
        ),
        (["--gpus", "1"], r"--gpus 1: partition \S+ has no GPUs"),
        (["--mem", "64T"], r"--mem 64T: the usable nodes of partition \S+ offer at most \d+M"),
        (["--partition", "nosuch"], r"--partition nosuch: no such partition on this cluster"),
    ]
    base = ["run", "--claims", str(CLAIMS), "--profile", "ci", "--executor", "slurm"]
    for extra, message in cases:
        out = _audit(*base, "--store", str(store_dir), "--data-dir", str(data_dir), *extra)
        assert out.returncode == 2, (extra, out.stdout, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
        assert re.search(message, out.stderr), out.stderr
    assert not (store_dir / "slurm").exists() and _queued(store_dir) == []


def test_defaults_fit_the_cluster_and_passthrough_reaches_the_job(cluster, data_dir, tmp_path):
    """No --gpus/--cpus/--mem/--runs-per-gpu on a GPU-less 2-CPU node: the defaults fit (no
    GPU asked, CPUs and memory within the node, the three tiny runs packed into one task),
    the audit runs; a --sbatch directive and a --setup line are
    in the submitted script, the setup line runs before the training and sees the directive's
    effect; each run records SLURM's measured allocation, shown by `audit status`."""
    store_dir = tmp_path / "store"
    setup = 'echo "setup ran: mark=$ND_E2E_MARK"'
    out = _audit(
        "run",
        "--claims",
        str(CLAIMS),
        "--profile",
        "ci",
        "--executor",
        "slurm",
        "--store",
        str(store_dir),
        "--data-dir",
        str(data_dir),
        "--poll",
        "2",
        "--no-report",
        "--time",
        "0:10:00",
        "--sbatch",
        "export=ALL,ND_E2E_MARK=passthrough",
        "--setup",
        setup,
        timeout=600,
    )
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "gpus 0: CPU-only runs (mlp) need no GPU" in out.stdout
    assert "runs per GPU 3: the costliest run is estimated at 0.00 GPU-h" in out.stdout
    assert "audit run: 3 run(s): 3 done" in out.stdout
    scripts = list((store_dir / "slurm").glob("*/*_submission.sh"))
    assert len(scripts) == 1, scripts
    script = scripts[0].read_text()
    assert "#SBATCH --export=ALL,ND_E2E_MARK=passthrough" in script
    assert "gpus" not in script and "#SBATCH --time=10" in script
    store = Store(store_dir)
    for rid in store.run_ids():
        job = store.read_job(rid)
        stdout = _submitit_log(store, job["job_id"], "out")
        lines = stdout.splitlines()
        assert "setup ran: mark=passthrough" in lines, stdout
        started = next(i for i, line in enumerate(lines) if "Starting with JobEnvironment" in line)
        assert lines.index("setup ran: mark=passthrough") < started
        allocation = job["allocations"][job["job_id"]]
        assert allocation["source"] == "sacct" and allocation["elapsed_s"] >= 0
        assert allocation["gpus"] == 0 and allocation["cpus"] >= 1
    status = _audit("status", "--store", str(store_dir))
    assert status.returncode == 0, status.stderr
    assert "cost: measured 0.00 GPU-h by SLURM accounting (3 run(s))" in status.stdout
    logs = _audit("logs", store.run_ids()[0], "--store", str(store_dir))
    assert logs.returncode == 0 and "setup ran: mark=passthrough" in logs.stdout


def test_audit_cancel_cancels_exactly_the_stores_jobs(cluster, data_dir, tmp_path):
    """Two detached audits (held back by --sbatch begin=now+1hour) and a job of someone
    else: `audit cancel` on one store removes that store's jobs and nothing more."""
    stores = [tmp_path / "a", tmp_path / "b"]
    for store_dir in stores:
        out = _audit(
            "run",
            "--claims",
            str(CLAIMS),
            "--profile",
            "ci",
            "--executor",
            "slurm",
            "--store",
            str(store_dir),
            "--data-dir",
            str(data_dir),
            "--cpus",
            "1",
            "--time",
            "10",
            "--runs-per-gpu",
            "1",
            "--detach",
            "--sbatch",
            "begin=now+3600",
        )
        assert out.returncode == 0, (out.stdout, out.stderr)
    other = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--begin=now+3600",
            "-o",
            str(tmp_path / "other.out"),
            "--wrap",
            "sleep 1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        assert len(_queued(stores[0])) == 3 and len(_queued(stores[1])) == 3
        out = _audit("cancel", "--store", str(stores[0]))
        assert out.returncode == 0, out.stderr
        assert "cancelled 3 job(s)" in out.stdout
        _wait_until(lambda: not _queued(stores[0]), 30, "store a's jobs to go")
        assert len(_queued(stores[1])) == 3  # the other store's jobs stay
        assert (
            other
            in subprocess.run(
                ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True
            ).stdout.split()
        )
        # the controller names the reason at its next scheduling pass, not at submission
        _wait_until(
            lambda: "pending: BeginTime" in _audit("status", "--store", str(stores[1])).stdout,
            60,
            "`audit status` to show the pending reason",
        )
        assert _audit("cancel", "--store", str(stores[0])).stdout.startswith(
            "audit cancel: no queued or running job"
        )
    finally:
        _audit("cancel", "--store", str(stores[1]))
        subprocess.run(["scancel", other], check=False)


def test_an_unresolvable_pending_reason_ends_the_run(cluster, data_dir, tmp_path):
    """The audit's jobs pend behind a job that holds the node's CPUs (a legitimate wait,
    shown with its reason); then the partition's MaxTime drops below the jobs' limit, so they
    can never start: `audit run` ends with that reason and the job ids, exit 2, and leaves
    nothing queued."""
    part = subprocess.run(
        ["sinfo", "-h", "-o", "%P|%c"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    name, cpus = part.split("|")
    name = name.rstrip("*")
    shown = subprocess.run(
        ["scontrol", "show", "partition", name, "-o"], capture_output=True, text=True, check=True
    ).stdout
    max_time = re.search(r"MaxTime=(\S+)", shown).group(1)
    blocker = subprocess.run(
        ["sbatch", "--parsable", "-c", cpus, "-o", "/dev/null", "--wrap", "sleep 300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    store_dir = tmp_path / "store"
    proc = None
    try:
        _wait_until(lambda: sacct_states([blocker]).get(blocker) == "RUNNING", 60, "the blocker")
        proc = _audit_run(store_dir, data_dir)  # --cpus 1 --time 10: fits, but waits
        _wait_until(lambda: len(_queued(store_dir)) == 3, 120, "the audit's jobs to queue")
        time.sleep(5)  # a poll or two: the wait is shown, not an error
        assert proc.poll() is None
        subprocess.run(["scontrol", "update", f"PartitionName={name}", "MaxTime=5"], check=True)
        out, _ = proc.communicate(timeout=120)
    finally:
        subprocess.run(
            ["scontrol", "update", f"PartitionName={name}", f"MaxTime={max_time}"], check=False
        )
        subprocess.run(["scancel", blocker], check=False)
        if proc is not None and proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, out
    assert "pending: " in out  # the progress line showed why the jobs waited
    error = [line for line in out.splitlines() if "audit run: error:" in line]
    assert len(error) == 1 and "Traceback" not in out, out
    assert "SLURM says 'PartitionTimeLimit', which waiting never resolves" in error[0]
    job_ids = {Store(store_dir).read_job(rid)["job_id"] for rid in Store(store_dir).run_ids()}
    assert all(j in error[0] for j in job_ids), (job_ids, error[0])
    assert "cancelled this run's 3 queued job(s)" in error[0]
    _wait_until(lambda: not _queued(store_dir), 30, "the audit's jobs to be cancelled")


EPOCHS = 10


def _slow_spec(norm: str, epochs: int = EPOCHS, train_subset: int = 10000) -> dict:
    """About 1 s per epoch on an idle 2-core CPU (more under load): long enough to interrupt
    mid-run, given the cluster's KillWait=1 between scancel's SIGTERM and SIGKILL."""
    return fakedata.mlp_spec(norm, epochs, train_subset=train_subset, test_subset=500)


def _launch_in_background(
    store: Store, specs: list[dict], data_dir: Path, job: dict = CPU_JOB, retries: int = 1
):
    params = slurm_params(job, {})
    executor = make_executor("slurm", store, RunOptions(data_dir=str(data_dir)), params=params)
    events: list[str] = []
    box: dict = {}

    def target():
        box["report"] = launch(
            specs, store, executor, retries=retries, poll_s=1.0, say=events.append
        )

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, events, box


def _epochs(store: Store, rid: str) -> int:
    return len(read_jsonl(store.run_dir(rid) / "metrics.jsonl"))


def _running_with_epochs(store: Store, rid: str, n: int) -> str | None:
    job_id = store.read_job(rid).get("job_id")
    if job_id and _epochs(store, rid) >= n and store.is_locked(rid):
        return job_id
    return None


def test_scancel_is_reported_and_retried(cluster, data_dir, tmp_path):
    store = Store(tmp_path / "store")
    spec = _slow_spec("none")
    rid = run_id(spec)
    thread, events, box = _launch_in_background(store, [spec], data_dir)
    # cancelled as soon as it trains (lock held): the job has all its epochs still to go
    job_id = _wait_until(lambda: _running_with_epochs(store, rid, 0), 180, "the job to start")
    subprocess.run(["scancel", job_id], check=True)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert box["report"].settled == {rid: "done"}
    assert any(f"job {job_id} ended CANCELLED" in e and "retrying" in e for e in events), events
    job = store.read_job(rid)
    assert len(job["submissions"]) == 2 and job["job_id"] != job_id
    first, second = job["attempts"]
    assert "end" not in first  # killed by scancel: the attempt never got to record an end
    assert second["outcome"] == "done"
    assert [m["epoch"] for m in read_jsonl(store.run_dir(rid) / "metrics.jsonl")] == list(
        range(1, EPOCHS + 1)
    )
    assert sacct_states([job_id])[job_id].startswith("CANCELLED")


def test_usr2_preemption_requeues_and_resumes_at_the_saved_epoch(cluster, data_dir, tmp_path):
    store = Store(tmp_path / "store")
    spec = _slow_spec("bn")
    rid = run_id(spec)
    thread, events, box = _launch_in_background(store, [spec], data_dir)
    job_id = _wait_until(lambda: _running_with_epochs(store, rid, 2), 180, "epoch 2")
    saved = _epochs(store, rid)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert box["report"].settled == {rid: "done"}
    job = store.read_job(rid)
    assert len(job["submissions"]) == 1 and job["job_id"] == job_id  # requeued, not resubmitted
    assert len(job["attempts"]) == 2
    assert job["attempts"][1]["slurm_job_id"] == job_id
    log = (store.run_dir(rid) / "log.txt").read_text()
    resumed = re.findall(rf"resuming after epoch (\d+) of {EPOCHS}", log)
    assert len(resumed) == 1, log
    # the last checkpoint before the signal: the epochs seen before sending it (less the
    # one whose metrics line may have been written just before its checkpoint)
    assert saved - 1 <= int(resumed[0]) < EPOCHS
    # job.json counts metrics lines, which may hold the one epoch the signal cut short
    # between its line and its checkpoint
    assert job["attempts"][1]["start_epoch"] - int(resumed[0]) in (0, 1)
    epochs = [m["epoch"] for m in read_jsonl(store.run_dir(rid) / "metrics.jsonl")]
    assert epochs == list(range(1, EPOCHS + 1))
    assert store.result(rid).epochs_completed == EPOCHS
    assert not any("retrying" in e for e in events)


# ----------------------------------------------------------------------------- packs

PACK_JOB = {**CPU_JOB, "cpus": 2, "runs_per_gpu": 2}  # two runs per array task, a CPU each


def test_a_packed_array_trains_every_run_in_its_own_place(cluster, data_dir, tmp_path):
    """Three runs, two to a task: an array of two tasks; each run its own process, files,
    attempts and share of the measured allocation."""
    store = Store(tmp_path / "store")
    specs = [_slow_spec(norm, epochs=2, train_subset=500) for norm in ("bn", "nd", "none")]
    rids = [run_id(s) for s in specs]
    thread, events, box = _launch_in_background(store, specs, data_dir, PACK_JOB)
    with _diagnostics_on_failure(store, rids, cluster):
        thread.join(timeout=300)
        assert not thread.is_alive() and "report" in box, events
    assert box["report"].settled == dict.fromkeys(rids, "done")
    jobs = [store.read_job(rid) for rid in rids]
    task_ids = [job["job_id"] for job in jobs]
    assert len(set(task_ids)) == 2 and all("_" in t for t in task_ids)  # an array of two
    for rid, job in zip(rids, jobs, strict=True):
        shared = task_ids.count(job["job_id"])
        assert job["submissions"][0].get("shared_by", 1) == shared
        (attempt,) = job["attempts"]
        assert attempt["outcome"] == "done" and attempt["slurm_job_id"] == job["job_id"]
        assert [m["epoch"] for m in read_jsonl(store.run_dir(rid) / "metrics.jsonl")] == [1, 2]
        assert (store.slurm_dir / job["job_id"] / f"run-{rid}.log").is_file()
        allocation = job["allocations"][job["job_id"]]
        if shared > 1:
            assert allocation["shared_by"] == shared
            assert allocation["gpu_s"] == allocation["allocation_gpu_s"] / shared
    pids = {job["attempts"][0]["pid"] for job in jobs}
    assert len(pids) == 3  # a process per run, also within a task
    packed = [rid for rid, task in zip(rids, task_ids, strict=True) if task_ids.count(task) == 2]
    logs = _audit("logs", packed[0], "--store", str(store.root))
    assert logs.returncode == 0, logs.stderr
    assert f"run-{packed[0]}.log <==" in logs.stdout and f"run-{packed[1]}" not in logs.stdout


def test_usr2_requeues_a_pack_and_resumes_every_run_at_its_epoch(cluster, data_dir, tmp_path):
    """Preemption of a task holding two runs: both are stopped cleanly (their attempts end
    `interrupted`), the task requeues itself once, and each run resumes at its own last
    saved epoch; nothing is retrained, nothing resubmitted."""
    store = Store(tmp_path / "store")
    specs = [_slow_spec("bn"), _slow_spec("none")]
    rids = [run_id(s) for s in specs]
    thread, events, box = _launch_in_background(store, specs, data_dir, PACK_JOB)
    with _diagnostics_on_failure(store, rids, cluster):
        job_ids = [
            _wait_until(lambda r=rid: _running_with_epochs(store, r, 2), 240, f"epoch 2 of {rid}")
            for rid in rids
        ]
        assert job_ids[0] == job_ids[1]  # one task holds both
        saved = [_epochs(store, rid) for rid in rids]
        subprocess.run(["scancel", "--signal=USR2", job_ids[0]], check=True)
        thread.join(timeout=300)
        assert not thread.is_alive() and "report" in box, events
    assert box["report"].settled == dict.fromkeys(rids, "done")
    assert not any("retrying" in e for e in events), events
    for rid, before in zip(rids, saved, strict=True):
        job = store.read_job(rid)
        assert len(job["submissions"]) == 1 and job["job_id"] == job_ids[0]
        first, second = job["attempts"]
        assert first["outcome"] == "interrupted"  # stopped by the task, not killed
        assert second["slurm_job_id"] == job_ids[0] and second["outcome"] == "done"
        log = (store.run_dir(rid) / "log.txt").read_text()
        resumed = re.findall(rf"resuming after epoch (\d+) of {EPOCHS}", log)
        assert len(resumed) == 1, log
        assert before - 1 <= int(resumed[0]) < EPOCHS  # its own last checkpoint
        epochs = [m["epoch"] for m in read_jsonl(store.run_dir(rid) / "metrics.jsonl")]
        assert epochs == list(range(1, EPOCHS + 1))  # no epoch trained twice


# ----------------------------------------------------------------------------- time limit

# A 1-minute limit with USR2 10 s before it (submitit's --signal=USR2@10). slurmctld tests time
# limits every 30 s (PERIODIC_TIMEOUT, fixed) and sends the warning signal at the first test
# where now + delay + 30 s >= the end time (sbatch(1): "may be sent up to 60 seconds earlier
# than specified"), so every attempt gets it 20-50 s after its start. A 30 s delay would put it
# anywhere in the first 30 s, possibly before the first checkpoint.
TIME_LIMIT_JOB = {**CPU_JOB, "time": 1, "signal_delay_s": 10}
TIME_LIMIT_S = 60
# About 1.4 s per epoch of 20000 images on one thread of the 2-core test machine: some 65 s of
# training, more than the latest warning (50 s into the first attempt) leaves. On a CPU so fast
# that the run still ends within its first attempt, the test doubles the epochs once.
TL_EPOCHS = 45
TL_TRAIN_SUBSET = 20000
TL_DEADLINE_S = 480


def test_time_limit_requeues_and_resumes(cluster, data_dir, tmp_path, monkeypatch):
    """SLURM's own time limit, nothing sent by hand: slurmctld sends USR2 before the 1-minute
    limit, the array task checkpoints and requeues itself (submitit), resumes at the saved
    epoch (as often as the limit comes) and ends with every epoch once, on the learning-rate
    schedule of an uninterrupted run. Its sibling task, done within its first attempt, is left
    alone."""
    # One torch thread per job (the jobs inherit the environment, sbatch --export=ALL): with
    # two OpenMP threads spinning on a shared 2-core machine epochs take 1-18 s instead of ~1.4.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    epochs = TL_EPOCHS
    for _ in range(2):
        store = Store(tmp_path / f"store-e{epochs}")
        spec = _slow_spec("bn", epochs, TL_TRAIN_SUBSET)
        sibling_spec = _slow_spec("none", 2, 2000)  # a few seconds: done before any warning
        rid, sibling = run_id(spec), run_id(sibling_spec)
        started = time.monotonic()
        report, events = _run_time_limited(store, [spec, sibling_spec], data_dir, cluster)
        took = time.monotonic() - started
        attempts = store.read_job(rid)["attempts"]
        if len(attempts) != 1 or attempts[0].get("outcome") != "done":
            break
        print(f"the {epochs}-epoch run ended within its first attempt ({took:.0f} s): doubling")
        epochs *= 2

    with _diagnostics_on_failure(store, [rid, sibling], cluster):
        assert report.settled == {rid: "done", sibling: "done"}, events
        assert not any("retrying" in e for e in events), events
        job = store.read_job(rid)
        job_id = job["job_id"]
        assert "_" in job_id  # an array task, as an audit submits
        assert len(job["submissions"]) == 1  # requeued by SLURM, never resubmitted
        attempts = job["attempts"]
        n = len(attempts)
        assert n >= 2, f"ended before SLURM's warning (20-50 s in); raise TL_EPOCHS: {attempts}"
        assert all(a["slurm_job_id"] == job_id for a in attempts)
        assert [a["outcome"] for a in attempts] == ["interrupted"] * (n - 1) + ["done"]

        # sacct: one record per start of the task; each earlier one REQUEUED before its limit
        instances = _sacct_instances(job_id)
        assert [i["State"] for i in instances] == ["REQUEUED"] * (n - 1) + ["COMPLETED"]
        assert {i["Timelimit"] for i in instances} == {"00:01:00"}
        ran = [(_when(i["End"]) - _when(i["Start"])).total_seconds() for i in instances]
        assert all(s < TIME_LIMIT_S for s in ran[:-1]), ran  # not killed at the limit

        # the job's own log: submitit caught each warning, checkpointed and requeued the task
        out = _submitit_log(store, job_id, "out")
        caught = [
            datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
            for stamp in re.findall(r"\(([\d-]+ [\d:]+,\d+)\) - Caught signal SIGUSR2", out)
        ]
        assert len(caught) == n - 1, out
        assert out.count(f"Requeued job {job_id} ") == n - 1, out
        after = [
            (c - _when(i["Start"])).total_seconds()
            for c, i in zip(caught, instances[:-1], strict=True)
        ]
        assert all(0 < s < TIME_LIMIT_S for s in after), after
        assert "TIME LIMIT" not in _submitit_log(store, job_id, "err")

        # the runner: resumed at each saved epoch, provenance of every attempt kept
        run_dir = store.run_dir(rid)
        provenance = json.loads((run_dir / "provenance.json").read_text())
        resumed = [a["resumed_from_epoch"] for a in provenance["attempts"]]
        resumed.append(provenance["resumed_from_epoch"])
        assert len(resumed) == n and resumed[0] == 0, provenance["attempts"]
        assert resumed == sorted(set(resumed)) and resumed[-1] < epochs, resumed
        log = (run_dir / "log.txt").read_text()
        assert [int(k) for k in re.findall(rf"resuming after epoch (\d+) of {epochs}", log)] == (
            resumed[1:]
        )
        # job.json counts metrics lines, which may hold the one epoch the signal cut short
        # between its line and its checkpoint
        assert all(
            a["start_epoch"] - k in (0, 1) for a, k in zip(attempts[1:], resumed[1:], strict=True)
        )

        # the result: every epoch once, on the cosine schedule of an uninterrupted run
        result = store.result(rid)
        assert result.status == "done"
        assert result.epochs_completed == result.epochs_planned == epochs
        metrics = read_jsonl(run_dir / "metrics.jsonl")
        assert [m["epoch"] for m in metrics] == list(range(1, epochs + 1))
        assert spec["lr_schedule"] == "cosine"
        expected_lr = [
            spec["lr"] * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(1, epochs + 1)
        ]
        assert [m["lr"] for m in metrics] == pytest.approx(expected_lr, abs=1e-9)

        # the sibling array task: one attempt, one SLURM record
        other = store.read_job(sibling)
        assert other["job_id"].split("_")[0] == job_id.split("_")[0] != other["job_id"]
        assert [a["outcome"] for a in other["attempts"]] == ["done"]
        assert [i["State"] for i in _sacct_instances(other["job_id"])] == ["COMPLETED"]
    print(
        f"{epochs} epochs in {n} attempts ({took:.0f} s); warnings {after} s and "
        f"requeues {ran[:-1]} s into the attempts; resumed after epochs {resumed[1:]}"
    )


def _run_time_limited(store: Store, specs: list[dict], data_dir: Path, cluster):
    """Launch under TIME_LIMIT_JOB (no retries: a resubmission would bypass the requeue)
    and wait, with a deadline, until every run is settled."""
    thread, events, box = _launch_in_background(store, specs, data_dir, TIME_LIMIT_JOB, 0)
    rids = [run_id(s) for s in specs]
    with _diagnostics_on_failure(store, rids, cluster):
        thread.join(timeout=TL_DEADLINE_S)
        if thread.is_alive():
            for rid in rids:  # the next test gets a free node
                job_id = store.read_job(rid).get("job_id")
                if job_id:
                    subprocess.run(["scancel", job_id], check=False)
            raise AssertionError(f"the runs did not end within {TL_DEADLINE_S} s: {events}")
        if "report" not in box:
            raise AssertionError(f"launch() raised (traceback on stderr): {events}")
    return box["report"], events


def _sacct_instances(job_id: str) -> list[dict[str, str]]:
    """sacct's record of every start of `job_id` (--duplicates: requeued ones too), in order."""
    fields = ["JobID", "State", "Start", "End", "Timelimit"]
    cmd = ["sacct", "-D", "-X", "-n", "--parsable2", "-o", ",".join(fields)]
    out = subprocess.run(
        [*cmd, "-j", job_id.split("_")[0]], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line]
    return [row for row in rows if row["JobID"] == job_id]


def _when(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S")


def _submitit_log(store: Store, job_id: str, kind: str) -> str:
    paths = sorted((store.slurm_dir / job_id).glob(f"*_log.{kind}"))  # <job>_<rank>_log.*
    return "".join(p.read_text(errors="replace") for p in paths)


@contextlib.contextmanager
def _diagnostics_on_failure(store: Store, rids: list[str], cluster):
    """On any failure print what explains it: sacct, the runs' logs, the jobs' stdout and
    stderr, the daemons' logs (pytest shows them with the failure)."""
    try:
        yield
    except BaseException:
        print(_diagnostics(store, rids, cluster))
        raise


def _diagnostics(store: Store, rids: list[str], cluster) -> str:
    sections = []

    def add(title: str, produce) -> None:
        try:
            text = produce()
        except Exception as exc:  # diagnostics must never hide the failure itself
            text = f"(unavailable: {exc})"
        sections.append(f"===== {title}\n{text.rstrip()}")

    jobs = {rid: store.read_job(rid, quarantine=False) for rid in rids}
    mains = sorted({j["job_id"].split("_")[0] for j in jobs.values() if j.get("job_id")})
    fields = "JobID%16,State,Submit,Start,End,Elapsed,Timelimit,ExitCode"
    cmd = ["sacct", "-D", "-o", fields, "-j", ",".join(mains) or "0"]
    add(" ".join(cmd), lambda: subprocess.run(cmd, capture_output=True, text=True).stdout)
    for rid in rids:
        add(f"{rid}/job.json", lambda rid=rid: json.dumps(jobs[rid], indent=1))
        add(f"{rid}/log.txt", lambda rid=rid: _tail(store.run_dir(rid) / "log.txt", 60))
    for path in sorted(store.slurm_dir.rglob("*_log.*")):
        add(str(path), lambda path=path: _tail(path, 80))
    for name in ("slurmctld.log", "slurmd.log"):
        add(name, lambda name=name: _tail(cluster.state_dir / "log" / name, 60))
    return "\n".join(sections)


def _tail(path: Path, lines: int) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
