"""SLURM values as users write them, the checks at the boundary, pending reasons, measured
cost, `audit cancel` and `audit logs`, and the progress line's counts (no cluster: SLURM's
commands are faked, tests/fakeslurm.py)."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit.cluster_config import (
    format_mem,
    load_cluster_section,
    parse_mem,
    parse_time,
    slurm_params,
)
from audit.errors import AuditError
from audit.launch import RunOptions, launch, record_allocations
from audit.launch.local import LocalExecutor
from audit.launch.slurm import classify_reason, sacct_allocations
from audit.progress import Progress
from audit.store import Store
from runners.specs import run_id
from tests import fakedata, fakeslurm
from tests.fakedata import write_fashion_mnist


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        (90, 90),
        ("90", 90),
        ("5:30", 6),  # MM:SS, seconds rounded up
        ("12:00:00", 720),
        ("1-0", 1440),  # D-HH
        ("2-12", 3600),
        ("1-02:30", 1590),  # D-HH:MM
        ("0-00:00:59", 1),  # D-HH:MM:SS
    ],
)
def test_time_in_slurms_forms(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["12h", "1:2:3:4", "-5", "0", "", "1-", "4:00:00\n", True])
def test_times_slurm_does_not_write_are_refused(text):
    with pytest.raises(AuditError, match=r"--time"):
        parse_time(text)


@pytest.mark.parametrize(
    ("text", "mb", "shown"),
    [
        ("32G", 32768, "32G"),
        ("32000M", 32000, "32000M"),
        ("1T", 1048576, "1T"),
        ("16gb", 16384, "16G"),
        ("512K", 1, "1M"),
    ],
)
def test_memory_in_slurm_sizes(text, mb, shown):
    assert parse_mem(text) == mb
    assert format_mem(mb) == shown


@pytest.mark.parametrize("text", ["32", "32 GiB", "G", "1P", "-1G", "1e3G"])
def test_memory_without_a_slurm_unit_is_refused(text):
    with pytest.raises(AuditError, match=r"--mem: .* is not a SLURM size; give a unit"):
        parse_mem(text)


def test_config_keys_are_the_flag_names_and_flags_win(tmp_path):
    config = tmp_path / "audit.yaml"
    config.write_text(
        "cluster:\n  partition: gpu\n  time: '4:00:00'\n  mem: 32G\n  gpus: 2\n  cpus: 8\n"
        "  array-parallelism: 4\n  sbatch: [exclude=n1, 'gres=gpu:a100:2']\n"
        "  setup: [module load cuda]\n"
    )
    flags = {"time": "30", "sbatch": ["exclude=n2", "reservation=lab"], "setup": ["nvidia-smi"]}
    params = slurm_params(load_cluster_section(config), flags, where=str(config))
    assert (params.partition, params.time_min, params.mem, params.gpus) == ("gpu", 30, "32G", 2)
    assert (params.cpus, params.array_parallelism) == (8, 4)
    # the flag's exclude replaces the file's; the file's setup lines run first
    assert dict(params.sbatch) == {"exclude": "n2", "gres": "gpu:a100:2", "reservation": "lab"}
    assert params.setup == ("module load cuda", "nvidia-smi")
    assert params.origin("time_min") == "--time"
    assert params.origin("mem_mb") == f"cluster.mem in {config}"
    mapping = slurm_params({"sbatch": {"mail-type": "END", "exclusive": None}}, {})
    assert dict(mapping.sbatch) == {"mail-type": "END", "exclusive": True}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"gpus_per_node": 1}, "cluster.gpus_per_node is now called gpus"),
        ({"mem_gb": 32}, "cluster.mem_gb is now called mem (a SLURM size such as 32G)"),
        ({"gpu": 1}, "unknown cluster key(s) gpu; valid keys: partition, account"),
        ({"partition": ["a", "b"]}, "cluster.partition in f.yaml must be a string, got ['a'"),
        ({"cpus": "eight"}, "cluster.cpus in f.yaml must be an integer of at least 0"),
        ({"cpus": True}, "cluster.cpus in f.yaml must be an integer of at least 0"),
        (
            {"array_parallelism": 0},
            "cluster.array_parallelism in f.yaml must be an integer of at least 1",
        ),
        ({"cpus": 10**9}, "is beyond any cluster"),
        ({"sbatch": 5}, "cluster.sbatch in f.yaml must be a list of KEY=VALUE strings"),
        ({"setup": {"a": 1}}, "cluster.setup in f.yaml must be a list of shell lines"),
        ({"setup": ["echo \x1b[31m"]}, "control character '\\x1b' at position 5"),
        ({"reservation": "x"}, "unknown cluster key(s) reservation"),
        ({"sbatch": ["reservation=lab\u202e"]}, "control character '\\u202e'"),
        ({"sbatch": ["exclude=n1;reboot"]}, "exclude='n1;reboot' holds characters"),
        ({"sbatch": ["gres=gpu:a100:1 --wrap=id"]}, "gres='gpu:a100:1 --wrap=id' holds"),
    ],
)
def test_bad_config_values_name_the_key(config, message):
    with pytest.raises(AuditError) as refused:
        slurm_params(config, {}, where="f.yaml")
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_time_limit_that_leaves_no_training_is_refused():
    # the default 120 s warning (which SLURM may send up to 30 s earlier) would leave a
    # 2-minute job nothing: every attempt would be requeued before its first epoch
    with pytest.raises(AuditError, match=r"signal_delay_s \(120 s\) leaves no training time"):
        slurm_params({}, {"time": "2"})
    assert slurm_params({"signal_delay_s": 10}, {"time": "1"}).time_min == 1


# ----------------------------------------------------------------------------- pending


@pytest.mark.parametrize(
    ("reason", "hopeless"),
    [
        ("Priority", False),
        ("Resources", False),
        ("QOSMaxGRESPerUser", False),
        ("BeginTime", False),
        ("PartitionConfig", True),
        ("PartitionTimeLimit", True),
        ("QOSMaxWallDurationPerJobLimit", True),
        ("AssocMaxCpuPerJobLimit", True),
        ("ReqNodeNotAvail, UnavailableNodes:n[1-2]", True),  # both drained, below
        ("ReqNodeNotAvail, UnavailableNodes:n[1-3]", False),  # n3 is only reserved
        ("ReqNodeNotAvail, Reserved for maintenance", False),
    ],
)
def test_which_pending_reasons_never_resolve(reason, hopeless):
    assert classify_reason(reason, {"n1", "n2"}).hopeless is hopeless


class Stuck:
    """An executor whose jobs pend for `reason` (a stand-in for the scheduler's answers)."""

    name = "slurm"

    def __init__(self, reason: str):
        self.reason, self.cancelled, self.count = reason, [], 0

    def submit(self, specs):
        self.count += 1
        return [f"77_{i}" for i in range(len(specs))]

    def poll(self, job_ids):
        return dict.fromkeys(job_ids, "PENDING")

    def pending(self, job_ids):
        return {j: classify_reason(self.reason) for j in job_ids}

    def cancel(self, job_ids):
        self.cancelled += job_ids

    def log_files(self, job_id, run_id=None):
        return []

    def shutdown(self):
        pass


def mlp(norm: str, epochs: int = 1) -> dict:
    return fakedata.mlp_spec(norm, epochs)


def test_a_hopeless_pending_reason_ends_the_launch_and_cancels_its_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sacct: allocations are not asked for
    store, executor = Store(tmp_path / "s"), Stuck("PartitionTimeLimit")
    specs = [mlp("bn"), mlp("nd")]
    with pytest.raises(AuditError) as stopped:
        launch(specs, store, executor, poll_s=0, say=lambda m: None)
    message = str(stopped.value)
    assert "job(s) 77_0, 77_1 cannot start: SLURM says 'PartitionTimeLimit'" in message
    assert "lower --time" in message and "cancelled this run's 2 queued job(s)" in message
    assert executor.cancelled == ["77_0", "77_1"]
    # detached: reported, nothing cancelled
    store2, executor2 = Store(tmp_path / "s2"), Stuck("PartitionConfig")
    with pytest.raises(AuditError, match="the jobs stay queued \\(--detach\\): `audit cancel`"):
        launch(specs, store2, executor2, detach=True, say=lambda m: None)
    assert executor2.cancelled == []


def test_a_long_legitimate_wait_is_reported_not_an_error(tmp_path, monkeypatch):
    import audit.launch.core as core

    store, executor = Store(tmp_path / "s"), Stuck("Priority")
    events: list[str] = []
    polls = {"n": 0}

    def on_poll(tracked, states):
        polls["n"] += 1
        for item in tracked:
            item.submitted_at -= 700  # as if 11+ minutes had passed
        if polls["n"] == 3:
            raise KeyboardInterrupt  # the user stops waiting

    with pytest.raises(KeyboardInterrupt):
        launch([mlp("bn")], store, executor, poll_s=0, say=events.append, on_poll=on_poll)
    assert any("1 job(s) still pending after 11 min (Priority)" in e for e in events), events
    assert executor.cancelled == [] and core.PENDING_REPORT_S[0] == 600


def test_progress_counts_failed_and_shows_why_jobs_wait(tmp_path):
    from audit.launch.core import Tracked

    store = Store(tmp_path / "s")
    done, failed, waiting = mlp("bn"), mlp("nd"), mlp("none")
    for spec in (done, failed, waiting):
        store.write_spec(run_id(spec), spec)
    store.record_failure(run_id(failed), "boom")
    from runners.rundir import RunResult, write_result

    write_result(
        store.run_dir(run_id(done)),
        RunResult(run_id=run_id(done), status="done", epochs_completed=1, epochs_planned=1),
    )
    items = [Tracked(run_id(s), s) for s in (done, failed, waiting)]
    items[2].pending_reason = "Resources"
    stream = io.StringIO()
    Progress(store, 3, stream=stream, bar=False).update(items, {})
    assert stream.getvalue().strip() == (
        "runs 1/3 done, 1 failed; epochs 2/3; pending: 1 Resources"
    )


def test_the_eta_weighs_runs_by_their_estimated_cost(tmp_path):
    progress = Progress(Store(tmp_path / "s"), 2, stream=io.StringIO(), bar=False)
    progress._eta(0.0, 10.0)  # the first poll sets the start
    progress._start = (progress._start[0] - 60, 0.0)  # one minute later...
    assert progress._eta(1.0, 10.0) == "; ETA 9m00s"  # ...a tenth of the cost is done


# ----------------------------------------------------------------------------- cost


def test_measured_allocations_from_sacct_sum_every_instance(tmp_path, monkeypatch):
    folder = tmp_path / "fake"
    monkeypatch.setenv("PATH", f"{fakeslurm.install(folder)}{os.pathsep}{os.environ['PATH']}")
    (folder / "sacct-D.txt").write_text(
        "9_0|REQUEUED|50|billing=8,cpu=8,gres/gpu:a100=2,gres/gpu=2,mem=32G,node=1\n"
        "9_0|COMPLETED|100|billing=8,cpu=8,gres/gpu:a100=2,gres/gpu=2,mem=32G,node=1\n"
        "9_1|COMPLETED|30|billing=2,cpu=2,mem=4G,node=1\n"
        "10|COMPLETED|99|cpu=1\n"
    )
    found = sacct_allocations(["9_0", "9_1"])
    assert found["9_0"].to_json() == {
        "elapsed_s": 150,
        "gpu_s": 300,
        "gpus": 2,
        "cpus": 8,
        "instances": 2,
        "source": "sacct",
    }
    assert (found["9_1"].gpu_s, found["9_1"].elapsed_s) == (0, 30) and "10" not in found
    store = Store(tmp_path / "s")
    rid = run_id(mlp("bn"))
    store.update_job(
        rid, lambda j: j.update(executor="slurm", job_id="9_0", submissions=[{"job_id": "9_0"}])
    )
    assert record_allocations(store, [rid]) == 1
    assert store.read_job(rid)["allocations"]["9_0"]["gpu_s"] == 300
    from audit.cost import measured_gpu_hours

    assert measured_gpu_hours(store, [rid]) == {rid: pytest.approx(300 / 3600)}


# ----------------------------------------------------------------------------- local GPUs


@pytest.mark.slow  # trains, or starts processes that import torch
def test_parallel_local_runs_get_distinct_gpus(tmp_path):
    data = write_fashion_mnist(tmp_path / "data", n_train=64, n_test=32)
    store = Store(tmp_path / "s")
    executor = LocalExecutor(store, RunOptions(data_dir=str(data), device="cpu"), 2, ["0", "1"])
    assert executor._child_env("x") is None  # an explicit device is left alone
    executor = LocalExecutor(store, RunOptions(data_dir=str(data)), 2, gpus=["0", "1"])
    specs = [mlp("bn"), mlp("nd")]
    report = launch(specs, store, executor, poll_s=0.2, say=lambda m: None)
    assert set(report.settled.values()) == {"done"}
    given = sorted(store.read_job(run_id(s))["attempts"][0]["cuda_visible_devices"] for s in specs)
    assert given == ["0", "1"]


def test_visible_gpus_come_from_cuda_visible_devices_or_nvidia_smi(tmp_path, monkeypatch):
    from audit.launch.local import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: H100 (UUID: a)'\necho 'GPU 1: H100 (UUID: b)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert visible_gpus() == ["0", "1"]


# ----------------------------------------------------------------------------- verbs


def _audit(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit.cli", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_audit_cancel_cancels_exactly_the_stores_jobs(tmp_path):
    folder = tmp_path / "fake"
    env = {**os.environ, "PATH": f"{fakeslurm.install(folder)}{os.pathsep}{os.environ['PATH']}"}
    store = Store(tmp_path / "s")
    for rid, job_id in (("run-a", "50_0"), ("run-b", "50_1"), ("run-c", "51")):
        store.update_job(
            rid,
            lambda j, i=job_id: j.update(executor="slurm", job_id=i, submissions=[{"job_id": i}]),
        )
    mine = str((tmp_path / "s" / "slurm").absolute())
    (folder / "squeue-O.txt").write_text(
        f"50_0|{mine}/%A_%a/%A_%a_0_log.out|\n"
        f"50_1|{mine}/%A_%a/%A_%a_0_log.out|\n"
        f"51|/elsewhere/slurm/%j/%j_0_log.out|\n"  # a reused id: another store's job now
        f"52|{mine}/%j/%j_0_log.out|\n"  # not in job.json: not this store's run
    )
    out = _audit("cancel", "--store", str(tmp_path / "s"), "--dry-run", cwd=tmp_path, env=env)
    assert out.returncode == 0 and "would cancel 2 job(s): 50_0, 50_1" in out.stdout
    assert not (folder / "scancelled.txt").exists()
    out = _audit("cancel", "--store", str(tmp_path / "s"), cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert (folder / "scancelled.txt").read_text() == "50_0 50_1\n"
    out = _audit("cancel", "--store", str(tmp_path / "none"), cwd=tmp_path, env=env)
    assert out.returncode == 2 and "no result store at" in out.stderr


def test_audit_logs_shows_the_run_log_and_the_job_output(tmp_path):
    store = Store(tmp_path / "s")
    rid = run_id(mlp("bn"))
    store.run_dir(rid).mkdir(parents=True)
    (store.run_dir(rid) / "log.txt").write_text("".join(f"epoch {i}\n" for i in range(1, 31)))
    store.update_job(rid, lambda j: j.update(executor="slurm", job_id="60_1"))
    job_dir = store.slurm_dir / "60_1"
    job_dir.mkdir(parents=True)
    (job_dir / "60_1_0_log.err").write_text("warning \x1b[31mred\x1b[0m\n")
    (job_dir / "60_1_0_log.out").write_text("submitit INFO started\n")
    out = _audit("logs", rid[:30], "--store", str(store.root), "--lines", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"run {rid}: slurm job 60_1" in out.stdout
    assert "epoch 28\nepoch 29\nepoch 30" in out.stdout and "epoch 27" not in out.stdout
    assert "warning \\x1b[31mred\\x1b[0m" in out.stdout and "\x1b" not in out.stdout
    assert "submitit INFO started" in out.stdout
    out = _audit("logs", "classify-", "--store", str(store.root), cwd=tmp_path)
    assert out.returncode == 0  # a unique prefix
    out = _audit("logs", "nope", "--store", str(store.root), cwd=tmp_path)
    assert out.returncode == 2 and "no run 'nope' in store" in out.stderr
