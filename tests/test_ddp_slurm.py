"""One run on several GPUs, as the harness launches it (audit/launch, the preflight, the plan).

The runner's side (runners/distributed.py) is tested in tests/test_distributed.py. Here:
- the SLURM script of such runs (SLURM faked on PATH): an array of their own, one task per
  process (`--ntasks-per-node`), one GPU per task, srun ending every rank when one fails;
- the preflight: the tasks must fit one node (GPUs, CPUs), memory per process;
- the plan: `--imagenet-gpus` sets `gpus` of ImageNet runs only, 1 keeps every run id;
- rank handling of the job function: rank 0 alone locks and records, the others follow;
- the local executor: N child processes with torchrun's variables (gloo on the CPU);
- the real local SLURM (slurm, slow): a 2-process gloo MLP run through `audit run --executor
  slurm` (tasks_per_node = 2) is preempted (USR2), requeued as one job with both tasks, and
  resumes at its last epoch with nothing retrained.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.cluster_config import slurm_params
from audit.errors import AuditError
from audit.launch import RunOptions, launch, make_executor, run_job
from audit.launch.job import RANKS_FILE
from audit.store import Store
from runners.rundir import read_jsonl
from runners.specs import effective_spec, run_id
from tests import fakedata, fakeslurm, slurm_cluster
from tests.fakedata import write_fashion_mnist


def mlp_spec(norm: str = "bn", gpus: int = 1, epochs: int = 2, **extra) -> dict:
    return fakedata.mlp_spec(norm, epochs, **{"batch_size": 32, "gpus": gpus, **extra})


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    folder = tmp_path / "fake-slurm"
    monkeypatch.setenv("PATH", f"{fakeslurm.install(folder)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_CONF", raising=False)
    return folder


def _scripts(folder: Path) -> list[str]:
    """Every script the fake sbatch was given, in order."""
    text = (folder / "submitted-all.sh").read_text()
    return ["#!/bin/bash" + part for part in text.split("#!/bin/bash")[1:]]


# ----------------------------------------------------------------------------- SLURM script


def test_runs_on_several_gpus_go_out_as_arrays_of_their_own(tmp_path, fake_slurm):
    store = Store(tmp_path / "store")
    params = slurm_params({"partition": "gpu", "gpus": 1, "cpus": 4, "mem": "16G"}, {})
    executor = make_executor("slurm", store, RunOptions(), params=params)
    specs = [mlp_spec("bn", 2), mlp_spec("none"), mlp_spec("nd", 2), mlp_spec("bn")]
    job_ids = executor.submit(specs)
    # the 1-process runs as one array, the 2-process runs as another (sbatch answers 4242)
    assert job_ids == ["4242_0", "4242_0", "4242_1", "4242_1"]
    one, two = _scripts(fake_slurm)
    assert "--ntasks-per-node" not in one and "kill-on-bad-exit" not in one
    assert "#SBATCH --gpus-per-node=1" in one and "#SBATCH --mem=16G" in one
    assert "#SBATCH --ntasks-per-node=2" in two and "#SBATCH --array=0-1%2" in two
    assert "#SBATCH --gpus-per-node=2" in two  # one GPU per task
    assert "#SBATCH --cpus-per-task=4" in two  # --cpus per process
    assert "#SBATCH --mem=32G" in two  # --mem per process, times the processes
    srun = next(line for line in two.splitlines() if line.startswith("srun "))
    assert "--kill-on-bad-exit=1" in srun


def test_on_a_cpu_partition_the_tasks_ask_no_gpu_and_gres_counts_the_tasks(tmp_path, fake_slurm):
    from audit.launch.slurm import script_text
    from audit.slurm_preflight import distributed_request

    store = Store(tmp_path / "store")
    params = slurm_params({"gpus": 0, "cpus": 1}, {})
    make_executor("slurm", store, RunOptions(), params=params).submit([mlp_spec("bn", 2)])
    (script,) = _scripts(fake_slurm)
    assert "#SBATCH --ntasks-per-node=2" in script and "gpus" not in script
    assert "--array" not in script  # a single run: a plain job, as submitit sends it
    typed = slurm_params({"sbatch": ["gres=gpu:a100:1,lscratch:10"]}, {})
    request = distributed_request(typed, 4)
    assert dict(request.sbatch)["gres"] == "gpu:a100:4,lscratch:10"
    assert "#SBATCH --ntasks-per-node=4" in script_text(request, store.root, 1)


# ----------------------------------------------------------------------------- preflight


def test_preflight_needs_every_task_on_one_node(tmp_path, fake_slurm):
    """fakeslurm's partition gpu: one usable node g1 with 16 CPUs, 128000M and 4 a100."""
    from audit.slurm_preflight import preflight_request

    for name, text in (("scontrol.txt", fakeslurm.PARTITIONS), *fakeslurm.NODES.items()):
        path = fake_slurm / (name if name.endswith(".txt") else f"sinfo-{name}.txt")
        path.write_text(text)
    imagenet = {"kind": "classify", "dataset": "imagenet", "arch": "resnet18", "norm": "bn"}
    four = [effective_spec({**imagenet, "epochs": 1, "gpus": 4})]
    params = slurm_params({"partition": "gpu", "cpus": 4}, {})
    request, sections = preflight_request(params, four)
    (n, chosen), *_ = request.task_requests
    assert n == 4 and chosen.tasks_per_node == 4 and chosen.gpus == 4 and chosen.cpus == 4
    # ImageNet wants 64G per process: 4 x 64G is more than g1 has, so the node's 125G
    assert chosen.mem_mb == 128000
    assert any("runs on 4 processes" in title for title, _, _ in sections)
    with pytest.raises(AuditError, match=r"a run on 4 GPUs needs 4 tasks on one node .*4 x 8 CPUs"):
        preflight_request(slurm_params({"partition": "gpu", "cpus": 8}, {}), four)
    eight = [effective_spec({**imagenet, "epochs": 1, "gpus": 8})]
    with pytest.raises(AuditError, match="8 GPU"):
        preflight_request(slurm_params({"partition": "gpu", "cpus": 1}, {}), eight)
    with pytest.raises(AuditError, match=r"--mem 64G per process x 4 processes"):
        preflight_request(slurm_params({"partition": "gpu", "cpus": 2}, {"mem": "64G"}), four)


# ----------------------------------------------------------------------------- plan


def test_imagenet_gpus_sets_gpus_of_imagenet_runs_only_and_1_keeps_the_run_ids():
    from audit import PROJECT_ROOT
    from audit.claims import load_claims
    from audit.plan import build_plan, format_plan
    from audit.profiles import get_profile

    claims = load_claims(PROJECT_ROOT / "claims.yaml")
    full = get_profile("full")
    plain = build_plan(claims, full, seeds=1, data_dir=Path("/nonexistent"))
    same = build_plan(claims, full, seeds=1, data_dir=Path("/nonexistent"), imagenet_gpus=1)
    assert [r.run_id for r in same.runs] == [r.run_id for r in plain.runs]
    four = build_plan(claims, full, seeds=1, data_dir=Path("/nonexistent"), imagenet_gpus=4)
    before = {r.run_id: r for r in plain.runs}
    for run in four.runs:
        if run.spec.get("dataset") == "imagenet":
            assert run.spec["gpus"] == 4 and run.gpus == 4 and run.run_id not in before
            # perfect scaling: a quarter of the time, on four GPUs
            assert run.wall_hours == pytest.approx(run.gpu_hours / 4)
        else:
            assert "gpus" not in run.spec and run.run_id in before
    matrix = four.to_json()["matrix"]
    assert any(row.get("gpus") == 4 and row["wall_hours"] > 0 for row in matrix)
    assert "assuming perfect scaling" in format_plan(four)
    assert "perfect scaling" not in format_plan(plain)


# ----------------------------------------------------------------------------- ranks


def test_other_ranks_follow_rank_0_and_never_lock_or_record(tmp_path, monkeypatch):
    """A finished run: rank 0 says "skipped" for this launch, rank 1 returns that too,
    without taking the lock or touching job.json; a stale decision of another launch is
    not followed."""
    from audit.launch import job as job_module

    store = Store(tmp_path / "store")
    spec = mlp_spec("bn", 2)
    rid = run_id(spec)
    monkeypatch.setenv("AUDIT_RANK_ATTEMPT", "launch-1")
    with store.try_lock(rid) as got:  # another process trains it: rank 0 reports "locked"
        assert got
        monkeypatch.setenv("RANK", "0")
        assert run_job(spec, str(store.root), RunOptions())["outcome"] == "locked"
        monkeypatch.setenv("RANK", "1")  # a follower does not try the lock at all
        assert run_job(spec, str(store.root), RunOptions())["outcome"] == "locked"
    told = json.loads((store.run_dir(rid) / RANKS_FILE).read_text())
    assert told == {"attempt": "launch-1", "decision": "locked"}
    assert store.read_job(rid) == {}
    monkeypatch.setenv("AUDIT_RANK_ATTEMPT", "launch-2")  # the old decision is not this one's
    monkeypatch.setattr(job_module, "FOLLOW_TIMEOUT_S", 0.5)
    with pytest.raises(RuntimeError, match=r"rank 0 of run .* said nothing"):
        run_job(spec, str(store.root), RunOptions())


def test_each_slurm_task_exports_torchs_variables_for_the_runner(monkeypatch):
    """submitit's TorchDistributedEnvironment from the task's SLURM variables; a MASTER_PORT
    inherited from the submitting shell is not used (two jobs on a node would share it), and
    CUDA_VISIBLE_DEVICES keeps the job's GPUs (rank k takes cuda:k)."""
    from audit.launch.job import export_torch_distributed
    from runners.distributed import DistEnv, dist_env

    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "77", "SLURM_NTASKS": "2",
             "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_JOB_NUM_NODES": "1",
             "SLURM_JOB_NODELIST": "gpu[03-04]", "MASTER_PORT": "1", "RANK": "5",
             "CUDA_VISIBLE_DEVICES": "4,5"}  # fmt: skip
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    for name in ("WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    export_torch_distributed()
    env = dist_env()
    assert env == DistEnv(1, 2, 1, "gpu03", env.master_port)
    assert 20000 <= env.master_port <= 60000
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5"


def test_debug_executor_refuses_a_run_on_several_gpus(tmp_path):
    store = Store(tmp_path / "store")
    executor = make_executor("debug", store, RunOptions())
    with pytest.raises(AuditError, match="debug executor trains in this process"):
        executor.submit([mlp_spec("bn", 2)])


def test_local_executor_refuses_more_gpus_than_the_machine_shows(tmp_path):
    from audit.launch.local import LocalExecutor

    executor = LocalExecutor(Store(tmp_path / "s"), RunOptions(), 1, gpus=["0"])
    with pytest.raises(AuditError, match=r"needs 2 GPUs on this machine, which shows 1"):
        executor.submit([mlp_spec("bn", 2)])


@pytest.mark.slow
def test_local_executor_trains_a_run_as_two_gloo_processes(tmp_path):
    """`--executor local`: two children (torchrun's variables, gloo on the CPU), one run
    directory written by rank 0, one attempt in job.json, both ranks' logs kept."""
    from audit.launch.local import LocalExecutor

    data = write_fashion_mnist(tmp_path / "data", n_train=64, n_test=32)
    store = Store(tmp_path / "store")
    spec = mlp_spec("nd", 2)
    executor = LocalExecutor(store, RunOptions(data_dir=str(data)), 1, gpus=[])
    report = launch([spec], store, executor, poll_s=0.2, say=lambda m: None)
    assert report.settled == {run_id(spec): "done"}, store.log_tail(run_id(spec))
    job = store.read_job(run_id(spec))
    assert [a["outcome"] for a in job["attempts"]] == ["done"]
    logs = executor.log_files(job["job_id"])
    assert [p.name.split(".", 1)[1] for p in logs] == ["log", "rank1.log"]
    assert '"outcome": "done"' in logs[1].read_text()  # rank 1 trained alongside
    result = store.result(run_id(spec))
    assert result.epochs_completed == 2 and "gpus=2 (protocol: 1)" in result.deviations
    assert [m["epoch"] for m in read_jsonl(store.run_dir(run_id(spec)) / "metrics.jsonl")] == [
        1,
        2,
    ]


# ----------------------------------------------------------------------------- real SLURM


EPOCHS = 20  # about 0.7 s each on the idle 2-core VM: time to preempt after epoch 2
DDP_CLAIMS = """schema_version: 1
tables:
  - id: ddp
    group: ddp
    metric: test_top1
    experiment: {kind: classify, dataset: fashion-mnist, arch: mlp, epochs: %d,
                 train_subset: 8000, test_subset: 500, gpus: 2}
    layout: [norm, value]
    columns:
      value: {}
    tolerance: {abs: 100}
    rows:
      - [bn, 50.0]
"""


@pytest.fixture(scope="module")
def cluster():
    try:
        found = slurm_cluster.start_cluster()
    except slurm_cluster.ClusterUnavailable as exc:
        pytest.skip(f"no SLURM cluster: {exc}")
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(found.conf)
    yield found
    found.stop()
    if saved is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = saved


def _wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slurm
@pytest.mark.slow
def test_two_process_run_through_slurm_resumes_after_preemption(cluster, tmp_path):
    store_dir, claims = tmp_path / "store", tmp_path / "claims.yaml"
    claims.write_text(DDP_CLAIMS % EPOCHS)
    data = write_fashion_mnist(tmp_path / "data", n_train=8000, n_test=500)
    cmd = [sys.executable, "-m", "audit.cli", "run", "--claims", str(claims)]
    cmd += ["--profile", "full", "--seeds", "1", "--executor", "slurm", "--store"]
    cmd += [str(store_dir), "--data-dir", str(data), "--poll", "2", "--no-report"]
    cmd += ["--cpus", "1", "--time", "10"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        store = _wait_until(lambda: store_dir.is_dir() and Store(store_dir), 60, "the store")
        rid = _wait_until(lambda: (store.run_ids() or [None])[0], 60, "the run")

        def training_at_epoch_2():
            done = len(read_jsonl(store.run_dir(rid) / "metrics.jsonl"))
            return store.read_job(rid).get("job_id") if done >= 2 and store.is_locked(rid) else None

        job_id = _wait_until(training_at_epoch_2, 420, "epoch 2")
        saved = len(read_jsonl(store.run_dir(rid) / "metrics.jsonl"))
        # preemption; the controller has refused a signal to a job it had just started
        # ("Invalid job id") under load, so it is asked again for a few seconds
        _wait_until(
            lambda: subprocess.run(["scancel", "--signal=USR2", job_id]).returncode == 0,
            30,
            f"SLURM to take USR2 for job {job_id}",
        )
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            subprocess.run(["scancel", *((store_dir.exists() and _job_ids(store_dir)) or [])])
    assert proc.returncode == 0, out
    assert "audit run: 1 run(s): 1 done" in out
    assert "runs on 2 processes, one per GPU (1)" in out  # the request of its own
    assert "2 tasks on one node, one process each (DDP): 0 GPU(s) and 2 x 1 CPUs" in out

    # one job, two tasks, requeued as a whole by rank 0 (submitit), never resubmitted
    (script,) = list((store_dir / "slurm").glob("*/*_submission.sh"))
    assert "#SBATCH --ntasks-per-node=2" in script.read_text()
    job = store.read_job(rid)
    assert job["job_id"] == job_id and len(job["submissions"]) == 1
    # rank 0 alone records attempts: one per start of the job, none "locked"
    assert [a["outcome"] for a in job["attempts"]] == ["interrupted", "done"], job
    assert {a["slurm_job_id"] for a in job["attempts"]} == {job_id}
    # rank 0's word to the others is tagged with the restart (no rank follows a stale one)
    told = json.loads((store.run_dir(rid) / RANKS_FILE).read_text())
    assert told == {"attempt": f"slurm-{job_id}-1", "decision": "run"}
    logs = {p.name: p.read_text() for p in (store_dir / "slurm" / job_id).glob("*_log.out")}
    assert sorted(logs) == [f"{job_id}_0_log.out", f"{job_id}_1_log.out"]
    assert f"Requeued job {job_id}" in logs[f"{job_id}_0_log.out"]
    assert "Not checkpointing nor requeuing since I am a slave" in logs[f"{job_id}_1_log.out"]
    assert logs[f"{job_id}_1_log.out"].count("Starting with JobEnvironment") == 2

    # resumed at the last checkpoint: every epoch once, nothing retrained
    run_dir = store.run_dir(rid)
    resumed = re.findall(
        rf"resuming after epoch (\d+) of {EPOCHS}", (run_dir / "log.txt").read_text()
    )
    assert len(resumed) == 1 and saved - 1 <= int(resumed[0]) < EPOCHS
    assert [m["epoch"] for m in read_jsonl(run_dir / "metrics.jsonl")] == list(range(1, EPOCHS + 1))
    result = store.result(rid)
    assert result.status == "done" and result.epochs_completed == EPOCHS
    assert "gpus=2 (protocol: 1)" in result.deviations
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["resumed_from_epoch"] == int(resumed[0])

    status = subprocess.run(
        [sys.executable, "-m", "audit.cli", "status", "--store", str(store_dir)],
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0 and f"{job_id} COMPLETED x2 GPUs" in status.stdout


def _job_ids(store_dir: Path) -> list[str]:
    store = Store(store_dir)
    return [j for rid in store.run_ids() if (j := store.read_job(rid).get("job_id"))]
