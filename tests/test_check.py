"""`audit check`, the CI gate: exit codes, the renderings, results CSV bad input, no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from audit import cli
from tests.mini import mini_claims_text

ROOT = Path(__file__).resolve().parent.parent

CLAIMS = mini_claims_text("tab", "extra")  # a gated table and an informative value
HEADER = "dataset,arch,norm,epochs,seed,test_top1\n"
GOOD = HEADER + "cifar10,vgg16,bn,20,0,90.5\ncifar10,vgg16,nd,20,0,93.2\n"
ALL_GOOD = GOOD + "cifar10,resnet18,bn,20,0,92.1\ncifar10,resnet18,nd,20,0,94.4\n"


@pytest.fixture
def files(tmp_path):
    claims = tmp_path / "claims.yaml"
    claims.write_text(CLAIMS, encoding="utf-8")

    def results(text: str | bytes, name: str = "results.csv") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return claims, results


def check(claims: Path, *args: str) -> int:
    return cli.main(["check", "--claims", str(claims), *args])


def test_exit_0_when_every_gated_claim_is_reproduced(files, capsys):
    claims, results = files
    assert check(claims, "--results", str(results(ALL_GOOD)), "--group", "t1") == 0
    out = capsys.readouterr().out
    assert "tab.vgg16.bn20" in out and "+0.50" in out and "+0.56" in out  # both deviations
    assert "Gate: PASS" in out


def test_not_gated_claims_never_fail_the_gate(files, capsys):
    claims, results = files
    assert check(claims, "--results", str(results(ALL_GOOD))) == 0  # mlp claim missing
    assert "(not gated)" in capsys.readouterr().out


def test_exit_1_when_a_claim_is_out_of_tolerance(files, capsys):
    claims, results = files
    bad = ALL_GOOD.replace("90.5", "85.0")
    assert check(claims, "--results", str(results(bad))) == 1
    out = capsys.readouterr().out
    assert "worse_than_claimed" in out and "Gate: FAIL (1 gated claim(s)" in out
    # one run: no p-value, so the failure cannot survive a false-discovery rate
    assert "0 of 1 failures survive a 5 % false-discovery rate" in out


def test_only_failures_when_nothing_fails_prints_the_header_and_the_summary(files, capsys):
    claims, results = files
    path = str(results(ALL_GOOD))
    assert check(claims, "--results", path, "--group", "t1", "--only-failures") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("claim ") and lines[0].endswith("verdict")
    assert set(lines[1]) == {"-", " "}  # the rule under the header, then no claim line
    assert len(lines) == 3 and "Gate: PASS" in lines[-1]


def test_missing_results_fail_unless_allowed(files):
    claims, results = files
    path = str(results(GOOD))
    assert check(claims, "--results", path) == 1
    assert check(claims, "--results", path, "--allow-missing") == 0


def test_selection_by_id_and_arch(files, capsys):
    claims, results = files
    path = str(results(GOOD))
    assert check(claims, "--results", path, "--arch", "vgg16", "--group", "t1") == 0
    assert check(claims, "--results", path, "--id", "tab.resnet18.*") == 1
    out = capsys.readouterr().out
    assert "tab.resnet18.bn20" in out


def test_junit_has_one_testcase_per_claim_with_both_deviations(files, tmp_path):
    claims, results = files
    junit = tmp_path / "junit.xml"
    bad = ALL_GOOD.replace("90.5", "85.0")
    assert check(claims, "--results", str(results(bad)), "--junit", str(junit)) == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "tab.vgg16.bn20",
        "tab.vgg16.nd20",
        "tab.resnet18.bn20",
        "tab.resnet18.nd20",
        "extra.nd.value",
    ]
    assert suite.get("failures") == "1" and suite.get("skipped") == "1"
    message = cases[0].find("failure").get("message")
    for part in ("claimed 90.00", "reproduced 85.00 (n=1)", "-5.00 pt", "-5.56% rel"):
        assert part in message
    assert cases[4].find("skipped") is not None  # not gated, no result


def test_markdown_and_json_outputs(files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the verdict record goes by default
    claims, results = files
    summary = tmp_path / "summary.md"
    bad = ALL_GOOD.replace("92.1", "80.0")
    code = check(claims, "--results", str(results(bad)), "--markdown", str(summary), "--json")
    assert code == 1
    document = json.loads(capsys.readouterr().out)
    assert document["gate"]["exit_code"] == 1
    assert document["gate"]["failing"] == ["tab.resnet18.bn20"]
    counts = {"reproduced": 3, "worse_than_claimed": 1, "missing": 1}
    assert document["summary"]["counts"] == counts
    row = {c["claim_id"]: c for c in document["claims"]}["tab.resnet18.bn20"]
    assert row["abs_dev"] == pytest.approx(-12.0) and row["rel_dev"] == pytest.approx(
        -100 * 12 / 92
    )
    assert row["tolerance"]["high"] == pytest.approx(93.0)
    assert row["tolerance"]["abs"] == 1.0 and row["tolerance"]["direction"] == "two-sided"
    assert row["rule"] == "single-run" and row["single_run"] and not row["passes_gate"]
    # --json prints the record that ./verdicts.json holds
    written = json.loads((tmp_path / "verdicts.json").read_text(encoding="utf-8"))
    assert written["claims"] == document["claims"]
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## Claims check")
    assert "| `tab.resnet18.bn20` | 92.00 | 80.00 (n=1) | -12.00 | -13.04 |" in text
    assert "**worse than claimed**" in text
    assert "| t1 | 3 | 1 |" in text


def test_store_directory_is_read(files, tmp_path, capsys):
    claims, _ = files
    assert check(claims, "--store", str(tmp_path / "absent")) == 2
    assert "not a result store (no such folder)" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad CSV input

BAD_CSV = {
    "missing columns": (
        "dataset,arch,norm,test_top1\ncifar10,vgg16,bn,90\n",
        [":1: ", "lacks column(s) epochs, seed"],
    ),
    "no metric column": (
        "dataset,arch,norm,epochs,seed\ncifar10,vgg16,bn,20,0\n",
        [":1: ", "no metric column"],
    ),
    "empty file": ("", [":1: ", "empty"]),
    "non-UTF-8": ((HEADER + "cifar10,vgg\xe9,bn,20,0,90\n").encode("latin-1"), [":2: ", "UTF-8"]),
    "unknown architecture": (HEADER + "cifar10,vgg19,bn,20,0,90\n", [":2: ", "unknown arch"]),
    "unknown status": (
        "dataset,arch,norm,epochs,seed,status,test_top1\ncifar10,vgg16,bn,20,0,ok,90\n",
        [":2: ", "unknown status 'ok'", "done, failed, diverged"],
    ),
    "text in a number column": (
        HEADER + GOOD[len(HEADER) :] + "cifar10,vgg16,bn,20,1,abc\n",
        [":4: ", "number"],
    ),
    "NaN in a done run": (HEADER + "cifar10,vgg16,bn,20,0,nan\n", [":2: ", "diverged"]),
    "out of range": (HEADER + "cifar10,vgg16,bn,20,0,930.5\n", [":2: ", "outside"]),
    "fractional epochs": (
        HEADER + "cifar10,vgg16,bn,2.5,0,90\n",
        [":2: ", "epochs must be a whole"],
    ),
    "empty seed": (HEADER + "cifar10,vgg16,bn,20,,90\n", [":2: ", "seed is empty"]),
    "ragged line": (GOOD + "cifar10,vgg16,bn,20,0,90,7\n", [":4: ", "malformed CSV"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_results_csv_is_exit_2_with_file_and_line(files, capsys, case):
    claims, results = files
    text, patterns = BAD_CSV[case]
    path = results(text)
    assert check(claims, "--results", str(path)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"audit check: error: {path}")
    for pattern in patterns:
        assert pattern in err, err
    assert "Traceback" not in err


def test_bad_claims_file_is_exit_2(files, capsys):
    claims, results = files
    claims.write_text(CLAIMS.replace("norm: bn", "norm: batchnorm"), encoding="utf-8")
    assert check(claims, "--results", str(results(GOOD))) == 2
    assert f"{claims}:9: unknown norm 'batchnorm'" in capsys.readouterr().err


def test_check_does_not_import_torch(files, tmp_path):
    claims, results = files
    code = (
        "import sys\nfrom audit.cli import main\n"
        f"rc = main(['check', '--claims', {str(claims)!r}, '--results', "
        f"{str(results(ALL_GOOD))!r}])\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH')\nsys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the checkout's audit, run from elsewhere
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("NO_TORCH")


def test_csv_example_of_the_docs_loads(tmp_path):
    from audit.results import load_results_csv

    text = (ROOT / "docs" / "claims.md").read_text(encoding="utf-8")
    example = text.split("```csv\n")[1].split("```")[0]
    path = tmp_path / "example.csv"
    path.write_text(example, encoding="utf-8")
    table = load_results_csv(path)
    assert list(table["status"]) == ["done", "done", "diverged", "done", "done"]
    assert list(table["kind"])[-1] == "kernels"
    assert table["centre_surround_score"].iloc[-1] == 1.0


def test_store_runs_gate_end_to_end(files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the verdict record goes by default
    from runners.rundir import RunResult, atomic_write_yaml, write_result

    claims, _ = files
    store = tmp_path / "store"
    cells = {("vgg16", "bn"): 90.3, ("vgg16", "nd"): 93.4, ("resnet18", "bn"): 92.2}
    cells[("resnet18", "nd")] = 93.6
    for (arch, norm), value in cells.items():
        run_id = f"classify-{arch}-{norm}-cifar10-e20-s0"
        run_dir = store / "runs" / run_id
        run_dir.mkdir(parents=True)
        spec = {"kind": "classify", "dataset": "cifar10", "arch": arch, "norm": norm}
        atomic_write_yaml(run_dir / "spec.yaml", {**spec, "epochs": 20, "seed": 0})
        write_result(run_dir, RunResult(run_id, "done", metrics={"test_top1": value}))
    assert check(claims, "--store", str(store), "--group", "t1") == 0
    assert "4 claims: 4 reproduced. Gate: PASS" in capsys.readouterr().out
    assert not (store / "verdicts.json").exists()  # a check changes nothing in the store
    record = json.loads((tmp_path / "verdicts.json").read_text(encoding="utf-8"))
    assert record["inputs"]["store"] == str(store) and record["gate"]["exit_code"] == 0
    assert {r["run_id"] for r in record["runs"]} == {
        f"classify-{arch}-{norm}-cifar10-e20-s0" for arch, norm in cells
    }
