"""Several runs in one SLURM array task (`--runs-per-gpu`, audit/launch/pack.py), without a
cluster: the default chosen from the runs' cost and sized by the preflight (SLURM faked), the
array's shape and what each task is given, the measured cost divided over a pack, and a pack
trained for real in child processes (a failing run leaves its sibling training; a stopped
child records its end and resumes at its checkpoint). The real SLURM: tests/test_slurm_e2e.py.
"""

import faulthandler
import os
import pickle
import re
import signal
import time

import pytest

from audit.cluster_config import slurm_params
from audit.cost import measured_gpu_hours
from audit.errors import AuditError
from audit.launch import RunOptions, launch, make_executor, record_allocations
from audit.launch.pack import (
    RUN_LOG,
    PackFunction,
    _start,
    cpu_shares,
    gpu_of,
    pack_indices,
    run_pack,
    stop_children,
)
from audit.launch.slurm import script_text, slurm_log_files
from audit.slurm_preflight import PACK_DEFAULT, preflight_request
from audit.store import Store
from runners.rundir import read_jsonl
from runners.specs import effective_spec, run_id
from tests import test_launch
from tests.fakedata import write_fashion_mnist
from tests.test_launch import _audit_slurm, mlp_spec

fake_slurm = test_launch.fake_slurm  # the fixture: SLURM's commands faked on PATH


def cifar_spec(epochs: int, norm: str = "bn") -> dict:
    return effective_spec(
        {"kind": "classify", "dataset": "cifar10", "arch": "vgg16", "norm": norm, "epochs": epochs}
    )


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


# ----------------------------------------------------------------------------- choosing K


def test_small_runs_are_packed_and_costly_ones_keep_a_gpu_each(fake_slurm):
    params = slurm_params({"partition": "gpu"}, {})
    small = [cifar_spec(1), cifar_spec(20, "nd"), cifar_spec(1, "nd"), cifar_spec(20), mlp_spec()]
    request, [(_, choice, _)] = preflight_request(params, small)
    assert request.runs_per_gpu == PACK_DEFAULT == 4
    assert any(
        r.startswith("runs per GPU 4: the costliest run is estimated at") for r in choice.reasons
    )
    # one CIFAR run wants 8 CPUs and 16G: four of them 32 CPUs (a node's 16 at most) and 64G
    assert (request.cpus, request.mem, request.gpus) == (16, "64G", 1)
    big, [(_, choice, _)] = preflight_request(params, [cifar_spec(100, "nd"), cifar_spec(1)])
    assert big.runs_per_gpu == 1 and (big.cpus, big.mem) == (8, "16G")
    assert any(
        r.startswith("runs per GPU 1: the costliest run is estimated at 0.59")
        for r in choice.reasons
    )
    imagenet = effective_spec(
        {"kind": "classify", "dataset": "imagenet", "arch": "resnet18", "norm": "bn", "epochs": 1}
    )
    assert preflight_request(params, [imagenet, cifar_spec(1)])[0].runs_per_gpu == 1


def test_the_plans_costs_decide_where_given(fake_slurm):
    params = slurm_params({"partition": "gpu"}, {})
    specs = [cifar_spec(1), cifar_spec(1, "nd")]
    assert preflight_request(params, specs)[0].runs_per_gpu == 2  # at most the runs
    # recorded throughputs can make the same runs dear: the plan's figures count
    assert preflight_request(params, specs, costs=[0.1, 3.0])[0].runs_per_gpu == 1


def test_k_is_capped_by_a_nodes_memory_and_the_flag_wins(fake_slurm):
    specs = [mlp_spec(norm=n, epochs=e) for n in ("bn", "nd", "none") for e in (1, 2)]
    request, [(_, choice, _)] = preflight_request(slurm_params({}, {}), specs)
    # node c1: 16000M; an MLP run is sized 4G, so three fit, not four
    assert (request.runs_per_gpu, request.cpus, request.mem) == (3, 4, "12G")
    assert any("as many as a node's memory (16000M) holds" in r for r in choice.reasons)
    given = slurm_params({"runs_per_gpu": 2}, {})
    request, [(_, choice, _)] = preflight_request(given, specs)
    assert (request.runs_per_gpu, request.cpus, request.mem) == (2, 4, "8G")
    assert "runs per GPU 2 (cluster.runs_per_gpu in config): 2 runs share" in "\n".join(
        choice.reasons
    )
    with pytest.raises(AuditError, match="--runs-per-gpu must be an integer of at least 1"):
        slurm_params({}, {"runs_per_gpu": 0})


def test_dry_run_shows_the_choice_and_one_task_per_pack(tmp_path, fake_slurm):
    out = _audit_slurm(tmp_path, "--dry-run")  # the ci profile: 3 tiny MLP runs
    assert out.returncode == 0, out.stderr
    assert "runs per GPU 3: the costliest run is estimated at 0.00 GPU-h (<= 0.25)" in out.stdout
    assert "#SBATCH --array" not in out.stdout  # one task holds the three runs
    assert "#SBATCH --cpus-per-task=4" in out.stdout and "#SBATCH --mem=12G" in out.stdout
    out = _audit_slurm(tmp_path, "--dry-run", "--runs-per-gpu", "2")
    assert "runs per GPU 2 (--runs-per-gpu): 2 runs share each array task" in out.stdout
    assert "#SBATCH --array=0-1%2" in out.stdout  # packs of 2 and 1


def test_script_text_counts_tasks_not_runs(tmp_path):
    params = slurm_params({"runs_per_gpu": 4, "array_parallelism": 3}, {})
    assert "#SBATCH --array=0-2%3" in script_text(params, tmp_path, 10)


# ----------------------------------------------------------------------------- the array


def test_packs_group_alike_runs_and_split_the_cpus():
    assert pack_indices([0.1, 2.0, 0.1, 1.9, 0.5], 2) == [[1, 3], [4, 0], [2]]
    assert pack_indices([1.0, 1.0, 1.0], 4) == [[0, 1, 2]]
    assert cpu_shares(3, [0, 1, 2, 3, 4, 5, 6]) == [{0, 1}, {2, 3}, {4, 5, 6}]
    assert cpu_shares(3, [4, 5]) == [{4}, {5}, {4}]  # fewer CPUs than runs: shared


def test_children_get_the_tasks_gpus_round_robin(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert [gpu_of(i, RunOptions()) for i in range(3)] == ["2", "3", "2"]
    assert gpu_of(0, RunOptions(device="cuda:1")) is None  # an explicit device is kept
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert gpu_of(1, RunOptions()) is None  # one GPU: all share it


def test_a_packed_array_gives_each_run_its_tasks_id(store, fake_slurm):
    specs = [mlp_spec(norm=n, epochs=1) for n in ("bn", "nd", "none")]
    params = slurm_params({"runs_per_gpu": 2, "cpus": 2}, {})
    executor = make_executor("slurm", store, RunOptions(), params=params)
    ids = executor.submit(specs)
    assert ids == ["4242_0", "4242_0", "4242_1"]  # equal costs: packs in the given order
    script = (fake_slurm / "submitted.sh").read_text()
    assert "#SBATCH --array=0-1%2" in script
    pickles = sorted(store.slurm_dir.glob("*/*_submitted.pkl"))
    delayed = [pickle.loads(p.read_bytes()) for p in pickles]
    given = sorted(len(d.args[0]) for d in delayed)
    assert given == [1, 2] and all(isinstance(d.function, PackFunction) for d in delayed)


def test_launch_records_the_pack_and_cost_is_divided_over_it(store, fake_slurm):
    specs = [mlp_spec(norm=n, epochs=1) for n in ("bn", "nd")]
    params = slurm_params({"runs_per_gpu": 2, "cpus": 2}, {})
    executor = make_executor("slurm", store, RunOptions(), params=params)
    launch(specs, store, executor, detach=True, say=lambda m: None)
    rids = [run_id(s) for s in specs]
    for rid in rids:
        job = store.read_job(rid)
        assert job["job_id"] == "4242" and job["submissions"][0]["shared_by"] == 2
    (fake_slurm / "sacct-D.txt").write_text(
        "4242|COMPLETED|600|billing=8,cpu=8,gres/gpu=1,mem=32G,node=1\n"
    )
    assert record_allocations(store, rids) == 2
    allocation = store.read_job(rids[0])["allocations"]["4242"]
    assert (allocation["gpu_s"], allocation["allocation_gpu_s"]) == (300, 600)
    assert allocation["shared_by"] == 2
    assert measured_gpu_hours(store, rids) == {r: pytest.approx(300 / 3600) for r in rids}
    for rid in rids:  # without the record: the same share, asked of sacct
        store.update_job(rid, lambda job: job.pop("allocations"))
    assert measured_gpu_hours(store, rids) == {r: pytest.approx(300 / 3600) for r in rids}


# ----------------------------------------------------------------------------- a real pack


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fashion_mnist(tmp_path_factory.mktemp("data"), n_train=64, n_test=32)


@pytest.mark.slow
def test_a_failing_run_leaves_its_sibling_training(store, data_dir, tmp_path):
    good, bad = mlp_spec(norm="nd", epochs=2), mlp_spec(dataset="mnist", epochs=1)
    options = RunOptions(data_dir=str(data_dir))
    codes = run_pack([bad, good], str(store.root), options, tmp_path / "task")
    assert codes == [{"run_id": run_id(bad), "exit": 0}, {"run_id": run_id(good), "exit": 0}]
    assert store.result(run_id(good)).status == "done"
    assert len(read_jsonl(store.run_dir(run_id(good)) / "metrics.jsonl")) == 2
    assert "dataset mnist not found" in store.result(run_id(bad)).reason
    attempts = [store.read_job(run_id(s))["attempts"][0] for s in (good, bad)]
    assert len({a["pid"] for a in attempts} | {os.getpid()}) == 3  # a child each
    assert [a["outcome"] for a in attempts] == ["done", "input-error"]
    for spec in (good, bad):  # each child's own output, beside the task's logs
        assert (tmp_path / "task" / RUN_LOG.format(run_id=run_id(spec))).is_file()


@pytest.mark.slow
def test_a_stopped_child_records_its_end_and_resumes_at_its_checkpoint(store, tmp_path):
    data = write_fashion_mnist(tmp_path / "data", n_train=2000, n_test=32)
    spec = mlp_spec(norm="bn", epochs=8, batch_size=16)
    rid, options = run_id(spec), RunOptions(data_dir=str(data))
    proc = _start(spec, str(store.root), options, {0}, None, tmp_path / "child.log")
    deadline = time.monotonic() + 120
    while (store.run_dir(rid) / "checkpoint.pt").exists() is False or len(
        read_jsonl(store.run_dir(rid) / "metrics.jsonl")
    ) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, (
            tmp_path / "child.log"
        ).read_text()
        time.sleep(0.2)
    stop_children([proc])
    assert proc.returncode == 128 + 15  # SIGTERM turned into a clean exit
    attempt = store.read_job(rid)["attempts"][0]
    assert attempt["outcome"] == "interrupted" and "end" in attempt
    assert not store.is_locked(rid) and store.result_status(rid) is None
    run_pack([spec], str(store.root), options, tmp_path / "task")
    log = (store.run_dir(rid) / "log.txt").read_text()
    resumed = re.findall(r"resuming after epoch (\d+) of 8", log)
    assert len(resumed) == 1 and int(resumed[0]) >= 1, log
    epochs = [m["epoch"] for m in read_jsonl(store.run_dir(rid) / "metrics.jsonl")]
    assert epochs == list(range(1, 9))
    assert store.result(rid).status == "done"


@pytest.mark.slow
def test_a_signal_while_the_task_waits_stops_its_children_and_requeues(store, tmp_path):
    """What submitit does on USR2, in this process: the handler (here on SIGALRM) calls the
    pack's checkpoint() while run_pack waits for its children, then exits. The children end
    cleanly, and nothing deadlocks (a blocking Popen.wait interrupted by a handler that
    waits on the same child did, on the real cluster)."""
    data = write_fashion_mnist(tmp_path / "data", n_train=2000, n_test=32)
    spec = mlp_spec(norm="bn", epochs=50, batch_size=16)
    rid, options = run_id(spec), RunOptions(data_dir=str(data))
    resubmitted = []

    def handler(signum, frame):
        if not read_jsonl(store.run_dir(rid) / "metrics.jsonl"):
            signal.setitimer(signal.ITIMER_REAL, 0.5)  # not training yet: look again
            return
        resubmitted.append(PackFunction().checkpoint([spec], str(store.root), options))
        raise SystemExit(-1)  # as submitit does once the task is requeued

    saved = signal.signal(signal.SIGALRM, handler)
    faulthandler.dump_traceback_later(180, exit=True)  # a deadlock fails, never hangs
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(SystemExit):
            run_pack([spec], str(store.root), options, tmp_path / "task")
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, saved)
    (delayed,) = resubmitted
    assert isinstance(delayed.function, PackFunction) and delayed.args[0] == [spec]
    attempt = store.read_job(rid)["attempts"][0]
    assert attempt["outcome"] == "interrupted" and not store.is_locked(rid)
    assert store.result_status(rid) is None


def test_a_runs_own_child_log_is_shown_never_its_siblings(store):
    folder = store.slurm_dir / "7_0"
    folder.mkdir(parents=True)
    for name in ("7_0_0_log.err", "7_0_0_log.out", "run-a.log", "run-b.log"):
        (folder / name).write_text("x\n")
    names = [p.name for p in slurm_log_files(store, "7_0", "a")]
    assert names == ["7_0_0_log.err", "7_0_0_log.out", "run-a.log"]
    assert [p.name for p in slurm_log_files(store, "7_0")] == names[:2]
