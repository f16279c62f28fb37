"""`audit run --escalate`: the two-look design declared in the store, seeds added once and
only to the cells the first look left undecided, the second look trained for real (debug
executor, MLPs on 128 synthetic Fashion-MNIST images), escalated claims marked, the design
fixed once declared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit import cli
from audit.escalate import read_declaration
from audit.stats import pocock_alpha as record_level
from runners.rundir import RunResult, atomic_write_yaml, write_result
from tests.fakedata import write_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
CLAIM = "mlp.fashion-mnist.nd-not-worse.vs-bn"  # ND >= BN - 0.3 on Fashion-MNIST
FIRST_LOOK = {"bn": (80.0, 82.0), "nd": (81.0, 80.0)}  # differences +1, -2: unresolved


def audit(*args: str) -> int:
    return cli.main([args[0], "--claims", str(ROOT / "claims.yaml"), *args[1:]])


@pytest.fixture
def first_look(tmp_path, capsys):
    """A store whose first look (seeds 0, 1) is finished with known accuracies."""
    store = tmp_path / "store"
    assert audit("plan", "--profile", "ci", "--id", CLAIM, "--seeds", "2", "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    for run in plan["matrix"]:
        spec = run["spec"]
        run_dir = store / "runs" / run["run_id"]
        run_dir.mkdir(parents=True)
        atomic_write_yaml(run_dir / "spec.yaml", spec)
        value = FIRST_LOOK[spec["norm"]][spec["seed"]]
        result = RunResult(run["run_id"], "done", metrics={"test_top1": value})
        result.deviations = run["deviations"]  # the ci profile's, as a real run records
        write_result(run_dir, result)
    data = write_fashion_mnist(tmp_path / "data", n_train=128, n_test=128)
    args = ["--profile", "ci", "--id", CLAIM, "--seeds", "2", "--executor", "debug"]
    args += ["--store", str(store), "--data-dir", str(data), "--poll", "0"]
    args += ["--reports", str(tmp_path / "reports"), "--no-pdf"]
    return store, args


@pytest.mark.slow  # trains, or starts processes that import torch
def test_escalation_adds_seeds_once_to_the_undecided_cell(
    first_look, capsys, tmp_path, monkeypatch
):
    store, args = first_look
    code = audit("run", *args, "--escalate", "--max-seeds", "3")
    out = capsys.readouterr().out
    assert code in (0, 1), out
    assert "two-look design: 2 -> 3 seeds, each look at" in out
    assert "escalation: 1 undecided claim(s) get seeds 2..2: 2 run(s)" in out
    declaration = read_declaration(store)
    assert declaration.results_at_declaration == 4  # declared after the first look's runs
    escalation = declaration.escalation
    assert escalation["triggered"] == {CLAIM: "unresolved"}
    assert CLAIM in escalation["claims"]
    runs = escalation["runs"]
    # both terms of the relation get the same new seeds, so they stay paired
    assert sorted((r["spec"]["norm"], r["spec"]["seed"]) for r in runs) == [("bn", 2), ("nd", 2)]
    for run in runs:  # the second look really trained
        assert (store / "runs" / run["run_id"] / "result.json").is_file()
    # audit run's report folder holds the record of the final look
    beside = json.loads((tmp_path / "reports" / "ci" / "verdicts.json").read_text())
    assert beside["design"]["rule"] == "pocock-2" and beside["design"]["escalated_claims"]
    # audit check on the store judges by the declared design and marks the escalated claim
    monkeypatch.chdir(tmp_path)  # the check's record goes to the current directory
    assert audit("check", "--store", str(store), "--id", CLAIM) in (0, 1)
    record = json.loads((tmp_path / "verdicts.json").read_text())
    assert record["design"]["rule"] == "pocock-2" and not record["design"]["interim"]
    claim = {c["claim_id"]: c for c in record["claims"]}[CLAIM]
    assert claim["escalated"] and claim["n"] == 3 and claim["seeds"] == [0, 1, 2]
    assert claim["level"] == pytest.approx(1 - record_level(2, 3), abs=1e-9)
    assert claim["verdict"] in ("holds", "flipped", "unresolved")

    # a repeat never chooses again: the same runs, nothing new trained
    capsys.readouterr()
    assert audit("run", *args, "--escalate", "--max-seeds", "3") in (0, 1)
    assert "escalation:" not in capsys.readouterr().out
    assert read_declaration(store).escalation == escalation
    # the design cannot change once declared
    assert audit("run", *args, "--escalate", "--max-seeds", "6") == 2
    assert "a design cannot change once declared" in capsys.readouterr().err


def test_escalate_needs_two_first_look_seeds_and_no_detach(first_look, capsys):
    store, args = first_look
    one = [a if a != "2" else "1" for a in args]
    assert audit("run", *one, "--escalate") == 2
    assert "at least 2 seeds at the first look" in capsys.readouterr().err
    assert audit("run", *args, "--max-seeds", "4") == 2
    assert "pass --escalate too" in capsys.readouterr().err
    assert not (store / "escalation.json").exists()
