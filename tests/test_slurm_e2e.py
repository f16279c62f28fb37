"""End-to-end against a real single-node SLURM cluster (tests/slurm_cluster.py starts it).

Every job trains a real MLP on a subset of the real Fashion-MNIST (Debian's package), on the
CPU. Scenarios:
- a tiny audit goes out as a SLURM array; its `audit run` is killed part-way and run again:
  the finished runs are not retrained, the rest re-attached, and the check table printed;
- a job cancelled with scancel is reported and retried (and resumes from its checkpoint);
- a job sent USR2 (preemption) is requeued by submitit and resumes at the saved epoch.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from audit import PROJECT_ROOT
from audit.cluster_config import slurm_params
from audit.launch import RunOptions, launch, make_executor, sacct_states
from audit.store import Store
from runners.rundir import read_jsonl
from runners.specs import effective_spec, run_id
from tests import slurm_cluster

pytestmark = pytest.mark.slurm

CLAIMS = PROJECT_ROOT / "claims.yaml"
CPU_JOB = {"gpus_per_node": 0, "cpus_per_task": 1, "time_min": 10, "signal_delay_s": 30}


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


EPOCHS = 10


def _slow_spec(norm: str) -> dict:
    """About 1 s per epoch on an idle 2-core CPU (more under load): long enough to interrupt
    mid-run, given the cluster's KillWait=1 between scancel's SIGTERM and SIGKILL."""
    return effective_spec(
        {
            "kind": "classify",
            "dataset": "fashion-mnist",
            "arch": "mlp",
            "norm": norm,
            "epochs": EPOCHS,
            "train_subset": 10000,
            "test_subset": 500,
        }
    )


def _launch_in_background(store: Store, specs: list[dict], data_dir: Path):
    params = slurm_params(CPU_JOB, {})
    executor = make_executor("slurm", store, RunOptions(data_dir=str(data_dir)), params=params)
    events: list[str] = []
    box: dict = {}

    def target():
        box["report"] = launch(specs, store, executor, retries=1, poll_s=1.0, say=events.append)

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
