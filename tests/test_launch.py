"""The job function and the executors, without a cluster.

Runs train a real MLP on a tiny synthetic Fashion-MNIST in this process (debug executor);
SLURM's sbatch and sacct are faked by scripts on PATH, and the generated sbatch text is
compared with tests/golden/sbatch_array.txt.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audit.cluster_config import slurm_params
from audit.errors import AuditError
from audit.launch import RunOptions, launch, make_executor, run_job, sacct_states
from audit.store import Store
from runners.rundir import read_jsonl
from runners.specs import effective_spec, run_id
from tests import fakedata, fakeslurm
from tests.fakedata import write_fashion_mnist

GOLDEN = Path(__file__).parent / "golden" / "sbatch_array.txt"


def mlp_spec(norm: str = "bn", epochs: int = 2, **extra) -> dict:
    return fakedata.mlp_spec(norm, epochs, **{"batch_size": 32, **extra})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fashion_mnist(tmp_path_factory.mktemp("data"), n_train=64, n_test=32)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


@pytest.mark.slow
def test_run_job_trains_once_then_skips(store, data_dir):
    spec = mlp_spec()
    options = RunOptions(data_dir=str(data_dir))
    first = run_job(spec, str(store.root), options)
    assert first["outcome"] == "done"
    assert run_job(spec, str(store.root), options)["outcome"] == "skipped"
    attempts = store.read_job(run_id(spec))["attempts"]
    assert [a["outcome"] for a in attempts] == ["done"]
    assert attempts[0]["start_epoch"] == 0


@pytest.mark.slow
def test_corrupt_result_and_checkpoint_are_moved_aside_and_rerun(store, data_dir):
    spec = mlp_spec(epochs=1)
    rid, options = run_id(spec), RunOptions(data_dir=str(data_dir))
    run_job(spec, str(store.root), options)
    run_dir = store.run_dir(rid)
    (run_dir / "result.json").write_text("{not json")
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 torn")
    events = []
    executor = make_executor("debug", store, options)
    assert launch([spec], store, executor, say=events.append).settled == {rid: "done"}
    assert any("corrupt result file" in e for e in events)
    assert any("checkpoint.pt is not a readable checkpoint" in e for e in events)
    assert len(list(run_dir.glob("result.json.corrupt-*"))) == 1
    assert len(list(run_dir.glob("checkpoint.pt.corrupt-*"))) == 1
    notes = store.read_job(rid)["notes"]
    assert any("corrupt result" in n for n in notes) and any("checkpoint" in n for n in notes)


def test_missing_data_fails_that_run_only_and_is_not_retried(store, data_dir, tmp_path):
    good, bad = mlp_spec(norm="none", epochs=1), mlp_spec(dataset="mnist", epochs=1)
    executor = make_executor("debug", store, RunOptions(data_dir=str(data_dir)))
    events = []
    report = launch([bad, good], store, executor, retries=3, poll_s=0, say=events.append)
    assert report.settled == {run_id(bad): "failed", run_id(good): "done"}
    result = store.result(run_id(bad))
    assert "dataset mnist not found" in result.reason
    assert len(store.read_job(run_id(bad))["attempts"]) == 1  # bad input: no retry
    assert any("dataset mnist not found" in e for e in events)


def _boom(spec, run_dir, **kwargs):
    (Path(run_dir) / "log.txt").write_text("loading\nCUDA error: an illegal memory access\n")
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_a_crashing_run_is_retried_then_recorded_with_its_log_tail(store, monkeypatch):
    monkeypatch.setitem(
        __import__("runners.registry").registry.RUNNERS, "classify", "tests.test_launch:_boom"
    )
    spec = mlp_spec()
    executor = make_executor("debug", store, RunOptions())
    report = launch([spec], store, executor, retries=2, poll_s=0, say=lambda m: None)
    assert report.settled == {run_id(spec): "failed"}
    job = store.read_job(run_id(spec))
    assert [a["outcome"] for a in job["attempts"]] == ["error"] * 3  # first try + 2 retries
    assert len(job["submissions"]) == 3
    reason = store.result(run_id(spec)).reason
    assert "RuntimeError: CUDA error" in reason and "illegal memory access" in reason


def test_a_run_locked_by_another_process_is_not_trained_twice(store, data_dir):
    spec = mlp_spec()
    rid = run_id(spec)
    code = (
        "import time\nfrom pathlib import Path\nfrom audit.store import Store\n"
        f"with Store(Path({str(store.root)!r})).try_lock({rid!r}):\n"
        "    print('held', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        outcome = run_job(spec, str(store.root), RunOptions(data_dir=str(data_dir)))
        assert outcome["outcome"] == "locked"
        assert not (store.run_dir(rid) / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_local_executor_trains_in_a_child_process(store, data_dir):
    spec = mlp_spec(norm="nd", epochs=2)
    executor = make_executor("local", store, RunOptions(data_dir=str(data_dir)))
    report = launch([spec], store, executor, poll_s=0.5, say=lambda m: None)
    assert report.settled == {run_id(spec): "done"}
    attempt = store.read_job(run_id(spec))["attempts"][0]
    assert attempt["pid"] != os.getpid()
    assert len(read_jsonl(store.run_dir(run_id(spec)) / "metrics.jsonl")) == 2


# ----------------------------------------------------------------------------- SLURM, faked


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """SLURM's commands faked on PATH (tests/fakeslurm.py): sbatch keeps a copy of what it
    was given and answers with job 4242; sacct reports the array as sacct does (a pending
    range, one running task); srun exists, as submitit requires."""
    folder = tmp_path / "fake-slurm"
    bindir = fakeslurm.install(folder)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_CONF", raising=False)
    return folder


def golden_params():
    return slurm_params(
        {
            "partition": "gpu",
            "time": "1:30:00",
            "cpus": 4,
            "gpus": 1,
            "array_parallelism": 2,
            "sbatch": ["exclude=node[01-02]"],
            "setup": ["module load cuda/12.1"],
        },
        {
            "account": "lab",
            "mem": "16G",
            "sbatch": ["mail-type=END"],
            "setup": ["source ~/venvs/nd/bin/activate"],
        },
    )


def script_body(text: str) -> list[str]:
    """The lines from the first command on, after checking that only the shebang, #SBATCH
    lines, comments and blank lines precede it and no #SBATCH line follows (sbatch reads
    directives only up to the first command: a later one would be silently ignored)."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    assert all(not line.strip() or line.startswith("#") for line in lines[:first]), lines
    assert not any(line.lstrip().startswith("#SBATCH") for line in lines[first:]), lines
    return lines[first:]


def test_slurm_array_sbatch_text_matches_golden(store, fake_slurm):
    executor = make_executor("slurm", store, RunOptions(device="cuda"), params=golden_params())
    specs = [mlp_spec(norm=n) for n in ("none", "bn", "nd")]
    job_ids = executor.submit(specs)
    assert job_ids == ["4242_0", "4242_1", "4242_2"]
    text = (fake_slurm / "submitted.sh").read_text()
    text = text.replace(str(store.root.absolute()), "<STORE>").replace(sys.executable, "<PYTHON>")
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    body = script_body(text)
    # the setup lines, the file's then the flags', run first; then the training via srun
    assert body[:2] == ["module load cuda/12.1", "source ~/venvs/nd/bin/activate"]
    assert body[-1].startswith("srun ")
    # values are shell-quoted as submitit does; sbatch strips the quotes of a directive
    assert "#SBATCH --exclude='node[01-02]'" in text and "#SBATCH --mail-type=END" in text
    assert "#SBATCH --time=90" in text and "#SBATCH --mem=16G" in text
    assert executor.poll(job_ids) == {"4242_0": "RUNNING", "4242_1": "PENDING", "4242_2": "PENDING"}


def test_dry_run_prints_the_whole_script_that_is_then_submitted(store, fake_slurm):
    from audit.launch.slurm import script_text

    params = golden_params()
    shown = script_text(params, store.root, 3)
    make_executor("slurm", store, RunOptions(), params=params).submit(
        [mlp_spec(norm=n) for n in ("none", "bn", "nd")]
    )
    assert shown == (fake_slurm / "submitted.sh").read_text()
    single = script_text(params, store.root, 1)  # one run goes out as a plain job
    assert "--array" not in single and "%j/%j_0_log.out" in single


def test_launch_records_slurm_job_ids_for_reattaching(store, fake_slurm):
    executor = make_executor("slurm", store, RunOptions(), params=slurm_params({}, {}))
    specs = [mlp_spec(norm=n) for n in ("none", "bn")]
    launch(specs, store, executor, detach=True, say=lambda m: None)
    jobs = {run_id(s): store.read_job(run_id(s))["job_id"] for s in specs}
    assert sorted(jobs.values()) == ["4242_0", "4242_1"]
    states = sacct_states(list(jobs.values()))
    assert store.state(run_id(specs[0]), states).status == "running"
    assert store.state(run_id(specs[1]), states).status == "queued"
    # a second `audit run` re-attaches instead of submitting again
    (fake_slurm / "submitted.sh").unlink()
    launch(specs, store, executor, detach=True, say=lambda m: None)
    assert not (fake_slurm / "submitted.sh").exists()


def test_slurm_without_sbatch_or_srun_and_unknown_executor(store, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(AuditError, match="needs SLURM's sbatch on PATH"):
        make_executor("slurm", store, RunOptions())
    bindir = fakeslurm.install(tmp_path / "no-srun", commands=("sbatch",))
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(AuditError, match="found sbatch but not srun on PATH"):
        make_executor("slurm", store, RunOptions())
    with pytest.raises(AuditError, match="unknown executor 'pbs'; choose one of local, slurm"):
        make_executor("pbs", store, RunOptions())


def test_sbatch_refusals_are_one_line_with_sbatchs_reason(store, fake_slurm):
    executor = make_executor("slurm", store, RunOptions(), params=slurm_params({}, {}))
    (fake_slurm / "sbatch-error.txt").write_text(
        "sbatch: error: invalid partition specified: nope\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    with pytest.raises(AuditError) as refused:
        executor.submit([mlp_spec()])
    assert str(refused.value) == (
        "sbatch refused the job: Batch job submission failed: Invalid partition name specified"
    )
    (fake_slurm / "sbatch-error.txt").unlink()
    (fake_slurm / "sbatch-out.txt").write_text("queued somewhere, no number\n")
    with pytest.raises(AuditError, match="sbatch printed no job id: Could not make sense"):
        executor.submit([mlp_spec()])


def _audit_slurm(tmp_path, *args: str) -> subprocess.CompletedProcess:
    claims = str(Path(__file__).resolve().parent.parent / "claims.yaml")
    base = ["run", "--claims", claims, "--profile", "ci", "--executor", "slurm"]
    return _audit(*base, "--store", str(tmp_path / "s"), *args, cwd=tmp_path)


def test_cli_sbatch_refusal_and_srun_missing_exit_2_without_traceback(
    tmp_path, fake_slurm, monkeypatch
):
    (fake_slurm / "sbatch-error.txt").write_text(
        "sbatch: error: Batch job submission failed: Invalid account or account/partition "
        "combination specified\n"
    )
    out = _audit_slurm(tmp_path, "--account", "nobody", "--no-report")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [
        "audit run: error: sbatch refused the job: Batch job submission failed: Invalid "
        "account or account/partition combination specified"
    ]
    (fake_slurm / "bin" / "srun").unlink()
    tools = tmp_path / "tools"  # what the fakes use, without the machine's own SLURM
    tools.mkdir()
    for tool in ("cat", "cp"):
        (tools / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", f"{fake_slurm / 'bin'}{os.pathsep}{tools}")
    out = _audit_slurm(tmp_path, "--no-report")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "found sbatch but not srun on PATH" in out.stderr


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--partition", "cpu\nhostname"], "--partition: control character '\\n'"),
        (["--account", "lab\r#SBATCH --wrap=id"], "--account: control character '\\r'"),
        (["--constraint", "a100\nrm -rf ~"], "--constraint: control character '\\n'"),
        (["--qos", "normal;id"], "--qos: 'normal;id' is not a valid SLURM qos name"),
        (["--partition", "gpu partition"], "--partition: 'gpu partition' is not a valid"),
        (["--sbatch", "comment=$(id)"], "--sbatch: comment='$(id)' holds characters"),
        (["--sbatch", "exclude=n1\n#SBATCH --x"], "--sbatch: control character '\\n'"),
        (["--sbatch", "partition=gpu"], "--sbatch: partition has a flag of its own"),
        (["--sbatch", "array=0-9"], "--sbatch: #SBATCH --array is written by the harness"),
        (["--sbatch", "Bad Key=1"], "--sbatch: 'Bad Key' is not an sbatch option name"),
        (["--setup", "module load x\nid"], "--setup: control character '\\n'"),
        (["--setup", "#SBATCH --exclusive"], "--setup: '#SBATCH --exclusive': directives go"),
        (["--time", "12h"], "--time: '12h' is not a time; use minutes, MM:SS, HH:MM:SS"),
        (["--mem", "32"], "--mem: '32' is not a SLURM size; give a unit"),
        (["--cpus", "8"], "--cpus 8: the usable nodes of partition cpu offer at most 4 CPUs"),
        (["--gpus", "1"], "--gpus 1: partition cpu has no GPUs"),
    ],
)
def test_every_value_reaching_the_script_is_checked(tmp_path, fake_slurm, args, names):
    out = _audit_slurm(tmp_path, "--dry-run", *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert f"audit run: error: {names}" in out.stderr, out.stderr
    assert "job script" not in out.stdout  # nothing shown as if it would be submitted
    assert not (fake_slurm / "submitted.sh").exists() and not (tmp_path / "s").exists()


def test_config_values_are_checked_and_named_by_key(tmp_path, fake_slurm):
    config = tmp_path / "audit.yaml"
    config.write_text('cluster:\n  constraint: "a100\\necho owned"\n')
    out = _audit_slurm(tmp_path, "--dry-run", "--config", str(config))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert f"cluster.constraint in {config}: control character" in out.stderr
    config.write_text("cluster:\n  time_min: 60\n")
    out = _audit_slurm(tmp_path, "--dry-run", "--config", str(config))
    assert out.returncode == 2
    assert "cluster.time_min is now called time (minutes, or SLURM's forms" in out.stderr


def test_dry_run_prints_choices_and_the_whole_script(tmp_path, fake_slurm):
    out = _audit_slurm(
        tmp_path,
        "--dry-run",
        "--time",
        "0-00:30",
        "--sbatch",
        "exclude=c2",
        "--setup",
        "module load python",
        "--runs-per-gpu",
        "1",  # one run per array task (packs: tests/test_pack.py)
    )
    assert out.returncode == 0, out.stderr
    assert "NOT a reproduction" in out.stdout
    request = out.stdout.split("SLURM request, runs (3):\n")[1].split("job script")[0]
    assert "partition cpu: 1 usable node(s) of 2, up to 4 CPUs" in request  # c2 is drained
    assert "gpus 0: CPU-only runs (mlp) need no GPU" in request
    assert "cpus 2: what the runs need" in request and "mem 4G: what the runs need" in request
    script = out.stdout.split("job script, runs (3) (dry run, nothing submitted):\n")[1]
    assert script.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --time=30", "#SBATCH --array=0-2%3", "#SBATCH --exclude=c2"):
        assert line in script
    assert "gpus" not in script and "gres" not in script
    assert script_body(script)[0] == "module load python"
    assert not (fake_slurm / "submitted.sh").exists() and not (tmp_path / "s").exists()


def test_preflight_choices_on_a_gpu_partition(tmp_path, fake_slurm):
    out = _audit_slurm(tmp_path, "--dry-run", "--partition", "gpu")
    assert out.returncode == 0, out.stderr
    assert "partition gpu: 1 usable node(s) of 2" in out.stdout  # g2 is down*
    assert "time 120 min: the partition's MaxTime" in out.stdout
    assert "gpus 0: CPU-only runs (mlp) need no GPU" in out.stdout  # none asked for
    out = _audit_slurm(tmp_path, "--dry-run", "--partition", "gpu", "--time", "3:00:00")
    assert out.returncode == 2
    assert "--time 180 min: partition gpu allows at most 120 min (MaxTime)" in out.stderr
    out = _audit_slurm(tmp_path, "--dry-run", "--partition", "gpu", "--sbatch", "gres=gpu:v100:1")
    assert out.returncode == 2  # the only v100 node is down
    assert "at most 0 v100 GPUs per node (GPU types: a100)" in out.stderr
    out = _audit_slurm(tmp_path, "--dry-run", "--partition", "maint")
    assert out.returncode == 2 and "partition maint is DOWN" in out.stderr


def test_cpu_only_runs_go_to_the_cpu_partition_without_a_gpu(store, fake_slurm):
    from audit.slurm_preflight import preflight_request

    cifar = effective_spec(
        {"kind": "classify", "dataset": "cifar10", "arch": "vgg16", "norm": "bn", "epochs": 1}
    )
    specs = [mlp_spec(norm="none"), cifar, mlp_spec(norm="nd")]
    params = slurm_params(
        {"partition": "gpu", "sbatch": ["gres=gpu:a100:1"], "runs_per_gpu": 1}, {}
    )
    request, sections = preflight_request(params.with_values(cpu_partition="cpu"), specs)
    assert [title for title, _, _ in sections] == [
        "GPU runs (1)",
        "CPU-only runs on --cpu-partition (2)",
    ]
    assert (request.partition, request.cpu_only.partition) == ("gpu", "cpu")
    assert dict(request.cpu_only.sbatch) == {}  # the GPU request stays with the GPU runs
    assert (request.cpu_only.cpus, request.cpu_only.mem) == (2, "4G")
    assert (request.cpus, request.mem) == (8, "16G")  # a CIFAR run's loader and memory
    ids = make_executor("slurm", store, RunOptions(), params=request).submit(specs)
    assert ids == ["4242_0", "4242", "4242_1"]  # a CPU array of two, one GPU job; in order
    scripts = (fake_slurm / "submitted-all.sh").read_text().split("#!/bin/bash")[1:]
    assert "--partition=gpu" in scripts[0] and "--gres=gpu:a100:1" in scripts[0]
    assert "--partition=cpu" in scripts[1] and "gpu" not in scripts[1].replace("nd-audit", "")


def test_the_preflight_is_skipped_with_a_note_where_the_scheduler_does_not_answer(
    tmp_path, fake_slurm
):
    (fake_slurm / "bin" / "scontrol").write_text(
        "#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller' >&2\nexit 1\n"
    )
    out = _audit_slurm(tmp_path, "--dry-run", "--cpus", "64")
    assert out.returncode == 0, out.stderr
    assert "preflight skipped: scontrol show failed: slurm_load_partitions: Unable to contact" in (
        out.stdout
    )
    assert "#SBATCH --cpus-per-task=64" in out.stdout


def _audit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audit.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    claims = str(Path(__file__).resolve().parent.parent / "claims.yaml")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (["run", "--claims", claims, "--executor", "pbs"], "unknown executor 'pbs'"),
        (["run", "--claims", claims, "--profile", "huge"], "unknown profile 'huge'"),
        (
            ["run", "--claims", claims, "--profile", "ci", "--store", str(blocker / "s")],
            "cannot write to the store directory",
        ),
        (["status", "--store", str(tmp_path / "none")], "no result store at"),
        (["run", "--claims", claims, "--detach"], "--detach needs --executor slurm"),
        (["run", "--claims", claims, "--poll", "-1"], "argument --poll: '-1' is outside"),
        (["run", "--claims", claims, "--poll", "nan"], "argument --poll: 'nan' is outside"),
        (
            ["run", "--claims", claims, "--parallel", "0"],
            "argument --parallel: 0 is outside 1..256",
        ),
    ]
    for args, message in cases:
        out = _audit(*args, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_progress_lines_when_not_on_a_terminal(store, data_dir):
    import io

    from audit.progress import Progress

    spec = mlp_spec(norm="none", epochs=2)
    stream = io.StringIO()
    progress = Progress(store, 1, stream=stream)
    executor = make_executor("debug", store, RunOptions(data_dir=str(data_dir)))
    launch([spec], store, executor, poll_s=0, say=lambda m: None, on_poll=progress.update)
    assert stream.getvalue().splitlines() == ["runs 1/1 done; epochs 2/2"]


def test_two_launches_on_one_store_train_each_run_once(store, data_dir):
    import threading
    import time

    specs = [mlp_spec(norm="nd", epochs=4), mlp_spec(norm="none", epochs=1)]
    options = RunOptions(data_dir=str(data_dir))
    reports = {}

    def audit_run(name):
        executor = make_executor("debug", store, options)
        reports[name] = launch(specs, store, executor, poll_s=0.2, say=lambda m: None)

    first = threading.Thread(target=audit_run, args=("first",))
    first.start()
    deadline = time.monotonic() + 60
    while not store.is_locked(run_id(specs[0])) and time.monotonic() < deadline:
        time.sleep(0.05)
    audit_run("second")  # starts while the first trains specs[0]
    first.join()
    expected = {run_id(s): "done" for s in specs}
    assert reports["first"].settled == expected == reports["second"].settled
    for spec in specs:
        outcomes = [a["outcome"] for a in store.read_job(run_id(spec))["attempts"]]
        assert outcomes.count("done") == 1, outcomes
        assert len(read_jsonl(store.run_dir(run_id(spec)) / "metrics.jsonl")) == spec["epochs"]


# ----------------------------------------------------------------------------- local, killed

# Loaded by every Python process of the killed audit below (through PYTHONPATH): each epoch's
# log line, written after its checkpoint, is followed by a pause, so the test can kill
# `audit run` between epochs without racing them.
SLOW_EPOCHS = """\
import os, time
from runners.rundir import RunLog
_say = RunLog.__call__
def _slow_say(self, message):
    _say(self, message)
    if message.startswith("epoch "):
        time.sleep(float(os.environ["ND_TEST_EPOCH_PAUSE_S"]))
RunLog.__call__ = _slow_say
"""


def _local_audit_run(store_dir: Path, data_dir: Path, env: dict | None = None):
    claims = str(Path(__file__).resolve().parent.parent / "claims.yaml")
    cmd = [sys.executable, "-m", "audit.cli", "run", "--claims", claims, "--profile", "ci"]
    cmd += ["--id", "mlp.fashion-mnist.nd-not-worse.vs-bn"]  # two runs: nd, then bn
    cmd += ["--executor", "local", "--store", str(store_dir), "--data-dir", str(data_dir)]
    cmd += ["--poll", "0.2", "--no-report"]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def _wait_for(predicate, what: str, timeout: float = 60.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
def test_a_killed_local_audit_run_resumes_without_retraining(tmp_path):
    """SIGKILL of `audit run --executor local` while a run trains: its trainer dies with it
    (the lock is free, no orphan writes on), and the next `audit run` keeps the finished run
    and resumes the interrupted one at its checkpoint."""
    data_dir = write_fashion_mnist(tmp_path / "data", n_train=128, n_test=128)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_EPOCHS)
    path = os.pathsep.join([str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])])
    slow = {**os.environ, "PYTHONPATH": path, "ND_TEST_EPOCH_PAUSE_S": "0.1"}
    store_dir = tmp_path / "store"
    first = _local_audit_run(store_dir, data_dir, env=slow)
    store = _wait_for(lambda: (store_dir / "runs").is_dir() and Store(store_dir), "the store")

    def finished() -> list[str]:
        return [r for r in store.run_ids() if (store.run_dir(r) / "result.json").exists()]

    def training() -> str | None:  # a run past its second checkpoint, its trainer alive
        for rid in store.run_ids():
            log = store.run_dir(rid) / "log.txt"
            if rid not in finished() and log.exists() and "epoch 2/20:" in log.read_text():
                return rid if store.is_locked(rid) else None
        return None

    _wait_for(finished, "the first run to finish")
    rid = _wait_for(training, "the second run to train")
    first.kill()  # SIGKILL: `audit run` gets no chance to stop its children
    first.communicate()
    done_before = {r: (store.run_dir(r) / "result.json").stat().st_mtime_ns for r in finished()}
    assert len(done_before) == 1 and rid not in done_before

    # the trainer got SIGTERM from the kernel when its parent died: the lock is free and
    # nothing writes to the run any more
    _wait_for(lambda: not store.is_locked(rid), "the orphaned trainer to die", timeout=10)
    saved = len(read_jsonl(store.run_dir(rid) / "metrics.jsonl"))
    trainer = store.read_job(rid)["attempts"][-1]
    assert "end" not in trainer  # killed mid-attempt
    assert not Path(f"/proc/{trainer['pid']}/cwd").exists()  # gone (or a zombie), not training
    state = store.state(rid)
    assert (state.status, state.epochs_done) == ("interrupted", saved)
    assert 2 <= saved < 20

    second = _local_audit_run(store_dir, data_dir)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    assert "audit run: 2 run(s): 2 done" in out
    assert "mlp.fashion-mnist.nd-not-worse.vs-bn" in out  # the check table
    for r, mtime in done_before.items():  # not retrained
        assert (store.run_dir(r) / "result.json").stat().st_mtime_ns == mtime
        assert [a["outcome"] for a in store.read_job(r)["attempts"]] == ["done"]
    attempts = store.read_job(rid)["attempts"]
    assert [a.get("outcome") for a in attempts] == [None, "done"]
    assert attempts[1]["start_epoch"] == saved
    log = (store.run_dir(rid) / "log.txt").read_text()
    resumed = [int(n) for n in re.findall(r"resuming after epoch (\d+) of 20", log)]
    # the epoch of the last checkpoint: the metrics lines kept, less the line of an epoch
    # whose checkpoint the kill may have cut short (the runner writes that line first)
    assert len(resumed) == 1 and 2 <= resumed[0] <= saved <= resumed[0] + 1, log
    epochs = [m["epoch"] for m in read_jsonl(store.run_dir(rid) / "metrics.jsonl")]
    assert epochs == list(range(1, 21))
    for r in store.run_ids():
        assert store.state(r).status == "done"


def test_slurm_cluster_script_rejects_an_unknown_verb():
    script = Path(__file__).resolve().parent.parent / "scripts" / "slurm-cluster.sh"
    out = subprocess.run(["bash", str(script), "strat"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "usage: slurm-cluster.sh [start|stop|status] (got strat)" in out.stderr
