"""The data preflight of `audit plan` and `audit run` (runners/datafiles.py, asked on the
submitting host before anything is queued or trained), the per-user data directory, and the
safe default profile. Datasets are tiny synthetic files in the real formats (tests/fakedata)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit import PROJECT_ROOT
from audit.claims import load_claims
from audit.errors import AuditError
from audit.plan import build_plan, preflight
from audit.profiles import get_profile
from tests import fakedata

CLAIMS = PROJECT_ROOT / "claims.yaml"
# Two Table 1 cells (CIFAR-10 and CIFAR-100)
SELECTION = ["--id", "table1.cifar10.vgg16.nd1", "--id", "table1.cifar100.vgg16.nd1"]
MLP = ["--id", "mlp.fashion-mnist.nd-not-worse.vs-bn"]  # 2 runs: BN, ND


def audit(*args: str, cwd: Path, env: dict[str, str] | None = None):
    env = {"XDG_CACHE_HOME": str(cwd / "cache"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "audit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**_clean_environ(), **env},
    )


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "AUDIT_DATA_DIR"}


def test_plan_shows_per_dataset_whether_its_data_are_here(tmp_path):
    claims = load_claims(CLAIMS).select(ids=["table1.cifar10.vgg16.nd1", "table1.cifar100.*"])
    fakedata.write_cifar10(tmp_path, n_train=10, n_test=10)
    plan = build_plan(claims, get_profile("full"), data_dir=tmp_path)
    assert plan.data["cifar10"] is None
    assert "dataset cifar100 not found" in plan.data["cifar100"]
    assert "cifar-100-python" in plan.data["cifar100"]  # with its fix
    shown = json.loads(json.dumps(plan.to_json()))["data"]
    assert shown["dir"] == str(tmp_path)
    assert shown["datasets"]["cifar10"] == {"present": True, "problem": None}
    assert shown["datasets"]["cifar100"]["present"] is False


def test_preflight_lists_every_missing_dataset_at_once_or_drops_their_runs(tmp_path):
    claims = load_claims(CLAIMS).select(ids=["table1.cifar*.vgg16.nd1", "table1.cifar10.dpn.bn1"])
    fakedata.write_cifar10(tmp_path, n_train=10, n_test=10)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    plan = build_plan(claims, get_profile("full"), data_dir=tmp_path)
    with pytest.raises(AuditError) as err:
        preflight(plan, skip_missing=False)
    message = str(err.value)
    assert "data missing for 2 dataset(s) of the plan (cifar10, cifar100)" in message
    assert "missing cifar-10-batches-py/test_batch" in message and "cifar-100-python/" in message
    assert "--skip-missing-data" in message and "nothing was submitted" in message
    assert len(plan.runs) == 9  # refused: the plan is unchanged
    fakedata.write_cifar10(tmp_path, n_train=10, n_test=10)
    plan = build_plan(claims, get_profile("full"), data_dir=tmp_path)
    lines = preflight(plan, skip_missing=True)
    assert len(lines) == 1 and "left out 3 run(s) of cifar100" in lines[0]
    assert {r.spec["dataset"] for r in plan.runs} == {"cifar10"} and len(plan.runs) == 6
    assert lines[0].count("classify-vgg16-nd-cifar100-e1-s") == 3  # each run named


@pytest.mark.parametrize("executor", ["slurm", "local"])
def test_audit_run_refuses_to_start_without_data_and_submits_nothing(tmp_path, executor):
    bindir = tmp_path / "bin"  # SLURM's commands, each recording a call (none may come)
    bindir.mkdir()
    for name in ("sbatch", "srun", "sacct", "squeue"):
        (bindir / name).write_text(f"#!/bin/sh\necho {name} >> {tmp_path}/called\nexit 1\n")
        (bindir / name).chmod(0o755)
    args = ["--executor", executor, "--data-dir", "empty", "--store", "store"]
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    out = audit("run", "--profile", "full", *SELECTION, *args, cwd=tmp_path, env=env)
    assert not (tmp_path / "called").exists()
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("audit run: error: data missing for 2 dataset(s)")
    assert "Traceback" not in out.stderr
    assert str(tmp_path / "empty") in out.stderr  # where it looked
    assert not (tmp_path / "store").exists()  # nothing submitted or trained, no store made
    assert "MISSING: dataset cifar10 not found" in out.stdout  # the plan's data lines


def test_audit_plan_and_dry_run_show_missing_data_without_failing(tmp_path):
    for verb in (["plan"], ["run", "--dry-run"]):
        out = audit(*verb, "--profile", "full", *SELECTION, "--data-dir", "d", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "data (checked here, in d):" in out.stdout
        assert "cifar10        MISSING: dataset cifar10 not found" in out.stdout


@pytest.mark.slow  # trains two MLPs (64 synthetic images, in process)
def test_skip_missing_data_runs_the_rest_and_says_which_were_left_out(tmp_path):
    fakedata.write_fashion_mnist(tmp_path / "d", n_train=64, n_test=32)
    out = audit(
        "run",
        "--profile",
        "full",
        *MLP,
        *SELECTION,
        "--executor",
        "debug",
        "--data-dir",
        "d",
        "--store",
        "s",
        "--no-report",
        "--skip-missing-data",
        "--seeds",
        "1",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "--skip-missing-data: left out 1 run(s) of cifar10" in out.stdout
    assert "--skip-missing-data: left out 1 run(s) of cifar100" in out.stdout
    assert "audit run: 2 run(s): 2 done" in out.stdout
    ran = sorted(p.name for p in (tmp_path / "s" / "runs").iterdir())
    assert len(ran) == 2 and all("fashionmnist" in name for name in ran)


def test_without_a_profile_plan_and_run_take_the_quick_one_and_say_so(tmp_path):
    out = audit("plan", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["profile"] == "quick"
    assert "no --profile given: the quick profile" in out.stderr
    out = audit("run", "--dry-run", "--executor", "slurm", cwd=tmp_path)
    assert "profile quick:" in out.stdout and "no --profile given" in out.stderr


def test_the_data_directory_defaults_to_a_per_user_cache_never_the_cwd(tmp_path):
    out = audit("plan", "--profile", "full", "--id", "table1.cifar10.vgg16.nd1", cwd=tmp_path)
    assert f"in {tmp_path / 'cache' / 'nd-audit' / 'data'}" in out.stdout
    out = audit(
        "plan",
        "--profile",
        "full",
        "--id",
        "table1.cifar10.vgg16.nd1",
        cwd=tmp_path,
        env={"AUDIT_DATA_DIR": "/elsewhere"},
    )
    assert "in /elsewhere" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made in the cwd
