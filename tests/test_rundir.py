"""The run-directory contract: atomic writes, torn JSON lines, result schema, provenance."""

import json
import os

import pytest

from runners import rundir
from runners.errors import RunnerInputError
from runners.rundir import RunResult


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "sub" / "result.json"
    rundir.atomic_write_json(target, {"a": 1})
    rundir.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert os.listdir(target.parent) == ["result.json"]


def test_atomic_write_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        rundir.atomic_write_text(tmp_path / "log.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "log.txt").stat().st_mode & 0o777 == 0o644


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.json"
    rundir.atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        rundir.atomic_write_json(target, {"a": float("nan")})  # NaN is refused before renaming
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["result.json"]


def test_read_jsonl_skips_a_torn_last_line_only(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rundir.append_jsonl(path, {"epoch": 1})
    rundir.append_jsonl(path, {"epoch": 2})
    with open(path, "a") as handle:
        handle.write('{"epoch": 3, "tes')  # a crash in the middle of a write
    assert [r["epoch"] for r in rundir.read_jsonl(path)] == [1, 2]
    path.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON line"):
        rundir.read_jsonl(path)


def test_result_round_trip_and_validation(tmp_path):
    result = RunResult(run_id="r1", status="done", metrics={"test_top1": 93.25}, epochs_completed=2)
    rundir.write_result(tmp_path, result)
    assert rundir.read_result(tmp_path) == result
    with pytest.raises(ValueError, match="status must be one of"):
        rundir.write_result(tmp_path, RunResult(run_id="r1", status="finished"))


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"run_id": "r", "status": "odd"}'])
def test_corrupt_result_is_reported_not_used(tmp_path, content):
    (tmp_path / rundir.RESULT_FILE).write_text(content)
    with pytest.raises(ValueError, match="corrupt result file"):
        rundir.read_result(tmp_path)


def test_missing_result_is_none(tmp_path):
    assert rundir.read_result(tmp_path) is None


def test_provenance_names_the_commit_packages_and_host():
    prov = rundir.collect_provenance(seed=3)
    assert prov["seed"] == 3
    assert set(prov["project"]) == {"commit", "dirty"}
    assert len(prov["project"]["commit"]) == 40  # this test runs inside the git checkout
    assert prov["packages"]["pyyaml"]
    assert prov["host"]


def test_write_spec_refuses_a_directory_of_another_spec(tmp_path):
    def effective(spec: dict) -> dict:
        return {"lr": 0.1, **spec}  # a spec class filling one default

    rundir.write_spec(tmp_path, {"lr": 0.1, "epochs": 1}, effective)
    rundir.write_spec(tmp_path, {"lr": 0.1, "epochs": 1}, effective)  # the same: rewritten
    (tmp_path / rundir.SPEC_FILE).write_text("epochs: 1\n")  # implicit default: still the same
    rundir.write_spec(tmp_path, {"lr": 0.1, "epochs": 1}, effective)
    with pytest.raises(RunnerInputError, match="different spec"):
        rundir.write_spec(tmp_path, {"lr": 0.1, "epochs": 2}, effective)
    (tmp_path / rundir.SPEC_FILE).write_text("[not, a, mapping]\n")
    with pytest.raises(RunnerInputError, match="different spec"):
        rundir.write_spec(tmp_path, {"lr": 0.1, "epochs": 1}, effective)


def test_read_run_of_a_whole_run_directory(tmp_path):
    from tests.hostile.inputs import make_store

    run_dir = make_store(tmp_path)[("nd", 0)]
    record = rundir.read_run(run_dir)
    assert (record.status, record.problem, record.damaged) == ("done", None, ())
    assert record.spec["norm"] == "nd" and record.result.metrics == {"test_top1": 93.2}
    assert record.metrics == [{"epoch": 1, "test_top1": 50.0}]


def test_read_run_never_raises_and_names_the_damaged_file(tmp_path):
    from tests.hostile.inputs import DAMAGES, make_store

    for index, (name, damage) in enumerate(sorted(DAMAGES.items())):
        run_dir = make_store(tmp_path / str(index))[("nd", 0)]
        damage(run_dir)
        record = rundir.read_run(run_dir)
        assert record.status == "corrupt" and record.problem, name
        assert record.damaged and all(
            d in ("spec.yaml", "result.json", "metrics.jsonl") for d in record.damaged
        )
        assert name.split()[0] in record.damaged, (name, record.damaged)


def test_read_run_of_an_unfinished_run_has_no_status(tmp_path):
    rundir.write_spec(tmp_path, {"kind": "classify", "epochs": 2}, lambda spec: spec)
    with open(tmp_path / "metrics.jsonl", "w") as handle:
        handle.write('{"epoch": 1}\n{"epo')  # killed while writing epoch 2
    record = rundir.read_run(tmp_path)
    assert record.status is None and record.problem is None and len(record.metrics) == 1


def test_log_tail_reads_only_the_end_of_a_large_log(tmp_path):
    log = tmp_path / "log.txt"
    log.write_bytes(b"x" * (2 * rundir.LOG_TAIL_BYTES) + b"\nbad \xff byte\nlast line\n")
    assert rundir.log_tail(log, 2) == ["bad \ufffd byte", "last line"]
    assert rundir.log_tail(tmp_path / "absent.txt") == []
    assert rundir.log_tail(tmp_path) == []  # a folder
