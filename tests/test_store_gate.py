"""A store is judged on its own plan: `audit check` and `audit report` on a store take the
claims of the plan recorded in it (and its runs only), as `audit run` does; --all-claims
widens the check to every selected claim. The store is written by hand (no training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit import PROJECT_ROOT
from audit.claims import load_claims
from audit.plan import build_plan, spec_deviations
from audit.profiles import get_profile
from audit.store import PLAN_FILE
from runners.rundir import RunResult, write_result, write_spec
from runners.specs import effective_spec
from tests import fakedata

CLAIMS = PROJECT_ROOT / "claims.yaml"
TOP1 = {"none": 80.0, "bn": 84.0, "nd": 86.0}  # ND not worse than either: both relations hold


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """The store a `ci` audit leaves: its plan.json and its three finished MLP runs, plus a
    finished run of another plan that fails its claim (it must not count)."""
    root = tmp_path_factory.mktemp("store")
    data = fakedata.write_fashion_mnist(root / "data", n_train=10, n_test=10)
    plan = build_plan(load_claims(CLAIMS), get_profile("ci"), data_dir=data)
    (root / PLAN_FILE).write_text(json.dumps({**plan.to_json(), "executor": "debug"}))
    others = {**plan.runs[0].spec, "train_subset": 256, "norm": "nd"}  # another profile's run
    for spec, top1 in [*((r.spec, TOP1[r.spec["norm"]]) for r in plan.runs), (others, 10.0)]:
        write_run(root, effective_spec(spec), top1)
    return root


def write_run(store: Path, spec: dict, top1: float) -> None:
    from runners.specs import run_id

    rid = run_id(spec)
    run_dir = store / "runs" / rid
    run_dir.mkdir(parents=True)
    write_spec(run_dir, spec, effective_spec)
    epochs = spec["epochs"]
    deviations = spec_deviations(spec)  # as the runner records them
    result = RunResult(
        rid,
        "done",
        metrics={"test_top1": top1},
        epochs_completed=epochs,
        epochs_planned=epochs,
        deviations=deviations,
    )
    write_result(run_dir, result)


def audit(*args: str, cwd: Path):
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_DATA_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "audit", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_check_judges_the_claims_of_the_stores_plan(store, tmp_path):
    out = audit("check", "--store", str(store), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 claims: 2 holds. Gate: PASS" in out.stdout
    assert "judging the 2 claim(s) of the plan of" in out.stderr and "(profile ci)" in out.stderr


def test_all_claims_widens_the_check_to_every_claim(store, tmp_path):
    out = audit("check", "--store", str(store), "--all-claims", cwd=tmp_path)
    assert out.returncode == 1
    assert "missing" in out.stdout and "judging the" not in out.stderr


def test_a_selection_is_taken_within_the_plan(store, tmp_path):
    out = audit("check", "--store", str(store), "--id", "mlp.*.vs-bn", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert [c["claim_id"] for c in json.loads(out.stdout)["claims"]] == [
        "mlp.fashion-mnist.nd-not-worse.vs-bn"
    ]
    out = audit("check", "--store", str(store), "--group", "table1", cwd=tmp_path)
    assert out.returncode == 2
    assert "matches none of the 2 claim(s) of the plan" in out.stderr
    assert "--all-claims" in out.stderr


def test_report_judges_the_same_claims(store, tmp_path):
    out = audit("report", "--store", str(store), "--no-pdf", "--out", "r", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "judging the 2 claim(s) of the plan" in out.stderr
    html = (tmp_path / "r" / "latest" / "index.html").read_text(encoding="utf-8")
    assert "mlp.fashion-mnist.nd-not-worse.vs-bn" in html
    assert "table1.cifar10.vgg16.nd1" not in html  # outside the plan: not judged


def test_a_store_without_a_plan_is_judged_on_every_selected_claim(store, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "runs").symlink_to(store / "runs")
    out = audit("check", "--store", str(bare), "--group", "mlp", cwd=tmp_path)
    assert "judging the" not in out.stderr and "mlp.mnist.nd-not-worse.vs-bn" in out.stdout
