"""The store: per-run locks, run states from files, corrupt files detected and moved aside."""

import json
import subprocess
import sys
import zipfile

import pytest

from audit.errors import AuditError
from audit.store import Store, checkpoint_is_corrupt, result_is_finished
from runners.rundir import RunResult, append_jsonl, write_result

RID = "classify-mlp-nd-fashionmnist-e3-s0-0123456789ab"


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store")
    store.write_spec(RID, {"kind": "classify", "epochs": 3})
    return store


def _hold_lock(store: Store) -> subprocess.Popen:
    """Another process holding the run's lock (as a trainer would), until killed."""
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom audit.store import Store\n"
        f"store = Store(Path({str(store.root)!r}))\n"
        f"with store.try_lock({RID!r}) as got:\n"
        "    print('held' if got else 'busy', flush=True)\n    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_lock_held_by_another_process_excludes_and_dies_with_it(store):
    holder = _hold_lock(store)
    try:
        assert store.is_locked(RID)
        assert store.state(RID).status == "running"
        with store.try_lock(RID) as got:
            assert got is False
    finally:
        holder.kill()
        holder.wait()
    # the kernel drops the lock of a dead process: no stale lock to clean up
    assert not store.is_locked(RID)
    with store.try_lock(RID) as got:
        assert got is True
        assert store.is_locked(RID)  # even from this process, through another open file


def test_probing_the_lock_leaves_its_holders_record(store):
    """`audit status` probes locks; the lock file keeps naming the process that trained."""
    holder = _hold_lock(store)
    lock = store.run_dir(RID) / "lock"
    try:
        written = lock.read_text()
        assert written.split()[0] == str(holder.pid)
        assert store.is_locked(RID)
    finally:
        holder.kill()
        holder.wait()
    assert not store.is_locked(RID)  # free again: the probe took and dropped it
    assert lock.read_text() == written
    assert not store.is_locked("never-trained") and not store.run_dir("never-trained").exists()


def test_states_from_files_and_scheduler(store):
    assert store.state(RID).status == "new"
    store.update_job(
        RID, lambda job: job.update(executor="slurm", job_id="7_1", submissions=[{"job_id": "7_1"}])
    )
    assert store.state(RID).status == "queued"  # sacct has not reported it yet
    assert store.state(RID, {"7_1": "PENDING"}).status == "queued"
    state = store.state(RID, {"7_1": "RUNNING"})
    assert (state.status, state.job_id, state.scheduler_state) == ("running", "7_1", "RUNNING")
    append_jsonl(store.run_dir(RID) / "metrics.jsonl", {"epoch": 1})
    state = store.state(RID, {"7_1": "CANCELLED by 0"})
    assert (state.status, state.epochs_done, state.epochs_planned) == ("interrupted", 1, 3)
    write_result(store.run_dir(RID), RunResult(RID, "diverged", reason="loss is nan"))
    assert store.state(RID).status == "diverged"
    assert result_is_finished(store, RID)


def test_a_corrupt_result_is_reported_never_used(store):
    (store.run_dir(RID) / "result.json").write_text('{"run_id": "x", "status": "do')
    state = store.state(RID)
    assert state.status == "corrupt" and "corrupt result file" in state.reason
    assert not result_is_finished(store, RID)
    moved = store.quarantine(RID, "result.json")
    assert moved.name.startswith("result.json.corrupt-") and moved.exists()
    assert not (store.run_dir(RID) / "result.json").exists()


def test_checkpoint_corruption_is_found_without_torch(store, tmp_path):
    run_dir = store.run_dir(RID)
    assert checkpoint_is_corrupt(run_dir) is None  # absent is fine
    with zipfile.ZipFile(run_dir / "checkpoint.pt", "w") as archive:
        archive.writestr("archive/data.pkl", b"x" * 4000)
    assert checkpoint_is_corrupt(run_dir) is None
    data = (run_dir / "checkpoint.pt").read_bytes()
    (run_dir / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # torn copy
    assert "not a readable checkpoint" in checkpoint_is_corrupt(run_dir)


def test_archive_keeps_everything_of_a_forced_rerun(store):
    run_dir = store.run_dir(RID)
    write_result(run_dir, RunResult(RID, "done", metrics={"test_top1": 50.0}))
    (run_dir / "checkpoint.pt").write_bytes(b"ck")
    target = store.archive(RID)
    assert json.loads((target / "result.json").read_text())["status"] == "done"
    assert (target / "checkpoint.pt").read_bytes() == b"ck"
    assert (run_dir / "spec.yaml").exists() and not (run_dir / "result.json").exists()


def test_failure_record_and_log_tail(store):
    (store.run_dir(RID) / "log.txt").write_text("".join(f"line {i}\n" for i in range(50)))
    store.record_failure(RID, "job 7 ended CANCELLED")
    state = store.state(RID)
    assert (state.status, state.reason) == ("failed", "job 7 ended CANCELLED")
    tail = store.log_tail(RID, lines=3)
    assert tail == "[log.txt] line 47 | line 48 | line 49"


def test_a_torn_job_file_loses_bookkeeping_not_results(store):
    (store.run_dir(RID) / "job.json").write_text('{"job_id": "1')
    assert store.read_job(RID) == {}
    assert list(store.run_dir(RID).glob("job.json.corrupt-*"))


def test_unwritable_store_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(AuditError, match=r"cannot write to the store directory .*--store DIR"):
        Store(blocker / "store")
    with pytest.raises(AuditError, match="not a result store"):
        Store(tmp_path / "nothing", create=False)


def test_audit_status_reads_the_store_without_torch(store):
    store.update_job(RID, lambda job: job.update(executor="local", job_id="local-1-1"))
    append_jsonl(store.run_dir(RID) / "metrics.jsonl", {"epoch": 1})
    store.write_plan({"profile": "quick", "label": "quick profile: NOT a reproduction"})
    other = "classify-mlp-bn-fashionmnist-e3-s0-ba9876543210"
    store.write_spec(other, {"kind": "classify", "epochs": 3})
    store.record_failure(other, "dataset mnist not found in the data directory")
    code = (
        "import sys\nfrom audit.cli import main\n"
        f"rc = main(['status', '--store', {str(store.root)!r}, '--json'])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\nsys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["label"] == "quick profile: NOT a reproduction"
    states = {
        r["run_id"]: (r["status"], r["epochs_done"], r["epochs_planned"]) for r in data["runs"]
    }
    assert states == {RID: ("interrupted", 1, 3), other: ("failed", 0, 3)}
    text = subprocess.run(
        [sys.executable, "-m", "audit.cli", "status", "--store", str(store.root)],
        capture_output=True,
        text=True,
    ).stdout
    assert text.startswith("NOTE: quick profile: NOT a reproduction")
    assert "epoch 1 of 3" in text and "dataset mnist not found" in text
    assert "2 run(s): 1 failed, 1 interrupted" in text


def test_status_of_a_store_with_torn_files_is_a_table_not_a_traceback(store, tmp_path):
    """A hand-edited or torn spec.yaml / metrics.jsonl leaves the other runs' states intact."""
    torn_spec, torn_metrics = "torn-spec", "torn-metrics"
    store.run_dir(torn_spec).mkdir()
    (store.run_dir(torn_spec) / "spec.yaml").write_text("epochs: [\n")
    store.write_spec(torn_metrics, {"kind": "classify", "epochs": "many"})
    (store.run_dir(torn_metrics) / "metrics.jsonl").write_text('{"epoch": 1}\n{bad\n{"epoch": 3}\n')
    (store.run_dir(torn_metrics) / "job.json").write_text('{"job_id": "1')
    assert store.epochs_done(torn_metrics) == 2  # the lines that parse
    state = store.state(torn_spec)
    assert state.status == "corrupt" and "spec.yaml:2: not a valid spec" in state.reason
    state = store.state(torn_metrics)
    assert (state.status, state.epochs_done, state.epochs_planned) == ("corrupt", 2, 0)
    assert "epochs must be int" in state.reason and "metrics.jsonl:2" in state.reason
    out = subprocess.run(
        [sys.executable, "-m", "audit.cli", "status", "--store", str(store.root)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "3 run(s): 2 corrupt, 1 new" in out.stdout
    # reading the store changes nothing in it: the torn job.json is left for a writer
    assert (store.run_dir(torn_metrics) / "job.json").read_text() == '{"job_id": "1'
