"""`audit diff A B`: verdicts that changed, deviations that moved beyond their interval, runs
that appeared or vanished; text, markdown and JSON; exit 1 on a gated regression, 2 on bad
input. Records come from real `audit check` runs; stores from real run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit import cli
from runners.rundir import RunResult, atomic_write_yaml, write_result
from tests.mini import mini_claims_text

CLAIMS = mini_claims_text("tab", tolerance=0.5)
HEADER = "dataset,arch,norm,epochs,seed,test_top1\n"


def cells(values: dict[tuple[str, str], list[float]]) -> str:
    return HEADER + "".join(
        f"cifar10,{arch},{norm},20,{seed},{v}\n"
        for (arch, norm), vs in values.items()
        for seed, v in enumerate(vs)
    )


MAIN = {
    ("vgg16", "bn"): [90.1, 89.9, 90.0],
    ("vgg16", "nd"): [93.1, 92.9, 93.0],
    ("resnet18", "bn"): [92.1, 91.9, 92.0],
    ("resnet18", "nd"): [94.0, 94.1, 93.9],
}


@pytest.fixture
def record(tmp_path):
    claims = tmp_path / "claims.yaml"
    claims.write_text(CLAIMS, encoding="utf-8")

    def make(name: str, values: dict) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        csv = folder / "results.csv"
        csv.write_text(cells(values), encoding="utf-8")
        record = folder / "verdicts.json"
        cli.main(["check", "--claims", str(claims), "--results", str(csv), "--record", str(record)])
        return record

    return make


def test_identical_records_show_no_change(record, capsys):
    a, b = record("a", MAIN), record("b", MAIN)
    capsys.readouterr()
    assert cli.main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "0 verdict(s) changed (0 gated regression(s))" in out and "Diff: PASS" in out


def test_a_gated_regression_exits_1_and_is_named(record, capsys, tmp_path):
    worse = dict(MAIN) | {("resnet18", "bn"): [89.1, 88.9, 89.0]}  # 3 points below, tight
    worse.pop(("vgg16", "nd"))
    a, b = record("a", MAIN), record("b", worse)
    capsys.readouterr()
    summary = tmp_path / "diff.md"
    assert cli.main(["diff", str(a), str(b), "--markdown", str(summary)]) == 1
    out = capsys.readouterr().out
    assert "tab.resnet18.bn20" in out and "REGRESSION" in out
    assert "worse than claimed" in out
    assert "Deviations that moved beyond their interval (1)" in out
    assert "Runs that vanished (3)" in out  # the vgg16 nd runs are gone
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## Audit diff") and "| tab.resnet18.bn20 | reproduced |" in text
    assert cli.main(["diff", str(a), str(b), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    # a claim that loses its runs regresses too: missing fails the gate
    assert sorted(document["regressions"]) == ["tab.resnet18.bn20", "tab.vgg16.nd20"]
    changed = {c["claim_id"]: c for c in document["changed"]}
    assert changed["tab.vgg16.nd20"]["after"] == "missing"
    move = document["moved"][0]
    assert move["abs_dev_before"] == pytest.approx(0.0, abs=1e-9)
    assert move["abs_dev_after"] == pytest.approx(-3.0)
    assert move["rel_dev_after"] == pytest.approx(-300 / 92)  # both deviations kept
    # an improvement the other way round is not a regression
    assert cli.main(["diff", str(b), str(a)]) == 0


def test_a_folder_holding_a_record_and_a_store_are_accepted(record, capsys, tmp_path):
    a = record("a", MAIN)
    store = tmp_path / "store"
    for (arch, norm), values in MAIN.items():
        for seed, value in enumerate(values):
            run_id = f"classify-{arch}-{norm}-cifar10-e20-s{seed}"
            run_dir = store / "runs" / run_id
            run_dir.mkdir(parents=True)
            spec = {"kind": "classify", "dataset": "cifar10", "arch": arch, "norm": norm}
            atomic_write_yaml(run_dir / "spec.yaml", {**spec, "epochs": 20, "seed": seed})
            write_result(run_dir, RunResult(run_id, "done", metrics={"test_top1": value}))
    capsys.readouterr()
    claims = str(a.parent.parent / "claims.yaml")
    assert cli.main(["diff", str(a.parent), str(store), "--claims", claims, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["changed"] == [] and len(document["runs_appeared"]) == 12
    assert len(document["runs_vanished"]) == 12  # CSV rows were named <file>:<line>


def test_bad_input_is_exit_2_with_one_line(record, capsys, tmp_path):
    a = record("a", MAIN)
    capsys.readouterr()
    cases = {
        "absent": (tmp_path / "nothing", "neither a verdict record nor a store"),
        "not json": (tmp_path / "x.json", "not JSON"),
        "foreign json": (tmp_path / "y.json", "not a verdict record"),
    }
    (tmp_path / "x.json").write_text("{oops", encoding="utf-8")
    (tmp_path / "y.json").write_text('{"claims": []}', encoding="utf-8")
    for path, message in cases.values():
        assert cli.main(["diff", str(a), str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("audit diff: error: ") and message in err
        assert "Traceback" not in err and err.count("\n") == 1


def test_markdown_escapes_hostile_ids():
    from audit.diff import Change, Diff, render_markdown

    diff = Diff("a", "b", changed=[Change("<img src=x>|`x`", "reproduced", "flipped", True, True)])
    text = render_markdown(diff)
    assert "<" not in text and "&lt;img src=x&gt;\\|\\`x\\`" in text
