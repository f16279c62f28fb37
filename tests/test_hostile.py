"""The hostile corpus: bad input of every kind ends in one line on stderr that names the file
or flag, the documented exit code and no traceback; read-only verbs never change a byte of
the store; damaged runs are `corrupt` rows, never a crash or a silent "missing"; no run is
counted twice; outputs are whole or absent; untrusted text is inert in every sink.

Inputs are built by tests/hostile/inputs.py. The verbs run in this process (cli.main)
unless a case needs a process of its own (a closed pipe, a full disk).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from audit import cli
from audit.errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_CLOSED_STDOUT, EXIT_INTERRUPTED
from tests.hostile import inputs

ROOT = Path(__file__).resolve().parent.parent


def audit(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `audit ARGS` run in this process."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, expected: int, *names: object) -> str:
    """The checks every bad-input case shares; returns the line."""
    assert code == expected, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def warnings(err: str) -> list[str]:
    """stderr's lines without the note naming the store's plan (which claims are judged)."""
    return [line for line in err.strip().splitlines() if "--all-claims judges every" not in line]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for a folder)."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() else hashlib.sha256(p.read_bytes()).digest())
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def claims(tmp_path: Path) -> Path:
    path = tmp_path / "claims.yaml"
    path.write_text(inputs.claims_text(), encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "store"
    return root, inputs.make_store(root)


# =========================================================================== claims files

CLAIMS_FILES: dict[str, tuple[str | bytes, str]] = {
    "alias bomb": (inputs.alias_bomb(), "alias bomb"),
    "merge-key bomb": (inputs.merge_bomb(), "alias bomb"),
    "deep flow nesting": (inputs.deep_flow(), ":2:"),
    "deep block nesting": (inputs.deep_block(), "nested more than"),
    "latin-1 byte": ("schema_version: 1\n# caf\xe9\n".encode("latin-1"), "byte 23: 0xe9"),
    "NUL byte": (b"schema_version: 1\x00\n", ":1:"),
    "python object tag": (
        "schema_version: !!python/object/apply:os.system ['echo pwned']\n",
        "no !! tags",
    ),
    "python name tag": ("schema_version: !!python/name:os.system\n", "no !! tags"),
    "empty": ("", "empty"),
    "comments only": ("# nothing\n", "only comments"),
    "tab indentation": ("schema_version: 1\ntables:\n\t- id: x\n", "tabs"),
    "unknown top-level field": ("schema_version: 1\nclaimz: []\n", "unknown field 'claimz'"),
    "duplicate key": ("schema_version: 1\nschema_version: 1\n", "duplicate key"),
    "epochs beyond the range": (
        inputs.CLAIMS.replace("epochs: 20}", "epochs: 100000000000000000000}", 1),
        "epochs must be a whole number from 1 to 10000",
    ),
    "claimed value out of range": (inputs.CLAIMS.replace("90.00", "930.50"), "outside the range"),
    "claimed NaN": (inputs.CLAIMS.replace("90.00", ".nan"), "finite"),
    "reference value negative": (inputs.claims_text("-78.52"), "prior tab.vgg16.bn20"),
    "reference value too large": (inputs.claims_text("178520"), "outside the range"),
    "boolean as text": (inputs.CLAIMS.replace("group: t1", "group: yes"), "quote it"),
    "5000-digit number": (inputs.CLAIMS.replace("90.00", "9" * 5000), "too long to read"),
    "set tag": ("schema_version: !!set {a, b}\n", "unsupported tag"),
    "two documents": ("schema_version: 1\n---\nschema_version: 1\n", ":2:"),
}


@pytest.mark.parametrize("case", sorted(CLAIMS_FILES))
def test_bad_claims_file_is_one_line_naming_it(tmp_path, capsys, case):
    content, message = CLAIMS_FILES[case]
    path = tmp_path / "claims.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    code, out, err = audit(capsys, "validate", path)
    one_line_error(code, err, EXIT_BAD_INPUT, path, message)
    assert out == ""
    assert len(err) < 2000  # a bomb never becomes a giant message


@pytest.mark.parametrize("verb", ["check", "report"])
def test_claims_bomb_is_refused_by_every_verb(tmp_path, capsys, verb):
    path = tmp_path / "bomb.yaml"
    path.write_text(inputs.alias_bomb(), encoding="utf-8")
    results = tmp_path / "r.csv"
    results.write_text(inputs.CSV_GOOD)
    code, _, err = audit(capsys, verb, "--claims", path, "--results", results)
    one_line_error(code, err, EXIT_BAD_INPUT, path, "alias bomb")


@pytest.mark.parametrize("kind", ["folder", "absent", "too large"])
def test_claims_path_that_is_not_a_readable_file(tmp_path, capsys, kind):
    path = tmp_path / "claims.yaml"
    if kind == "folder":
        path.mkdir()
    elif kind == "too large":
        with open(path, "wb") as handle:  # sparse: 17 MiB that take no disk
            handle.truncate(17 * 2**20)
    code, _, err = audit(capsys, "validate", path)
    one_line_error(code, err, EXIT_BAD_INPUT, path)


# =========================================================================== config files

CONFIGS: dict[str, tuple[str | bytes, str]] = {
    "alias bomb": ("cluster:\n  partition: x\n" + inputs.alias_bomb(), "alias bomb"),
    "deep nesting": ("cluster:\n  partition: " + "[" * 5000 + "]" * 5000 + "\n", ":2:"),
    "latin-1": ("cluster:\n  partition: caf\xe9\n".encode("latin-1"), "byte 25"),
    "syntax error at a line": ("cluster:\n  partition: [gpu\n  qos: x\n", ":3:"),
    "python tag": ("cluster:\n  partition: !!python/name:os.system\n", "python/name"),
    "cluster not a mapping": ("cluster: [1, 2]\n", "must be a mapping"),
    "non-text key": ("cluster:\n  1: 2\n", "unknown cluster key"),
    "time beyond the range": ("cluster:\n  time: 100000000000000000000\n", "cluster.time"),
    "5000-digit number": ("cluster:\n  time: " + "9" * 5000 + "\n", "cannot be read"),
    "huge value in an error": (
        "cluster:\n  partition: [" + ", ".join(["x" * 50] * 20000) + "]\n",
        "must be a string, got [",
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_cluster_config_is_one_line_naming_it(tmp_path, capsys, case):
    content, message = CONFIGS[case]
    path = tmp_path / "cluster.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    code, _, err = audit(
        capsys,
        *("run", "--claims", ROOT / "claims.yaml", "--profile", "ci", "--executor", "slurm"),
        *("--dry-run", "--config", path, "--store", tmp_path / "store"),
    )
    line = one_line_error(code, err, EXIT_BAD_INPUT, message)
    assert "<unicode string>" not in line and len(line) <= 2100
    assert str(path) in line or case in ("huge value in an error", "time beyond the range")


# =========================================================================== flags

FLAGS = {
    "--seeds 1000000000": (["plan", "--profile", "ci", "--seeds", "1000000000"], "--seeds"),
    "--seeds 0": (["plan", "--profile", "ci", "--seeds", "0"], "--seeds"),
    "--poll inf": (["run", "--profile", "ci", "--poll", "inf"], "--poll"),
    "--poll nan": (["run", "--profile", "ci", "--poll", "nan"], "--poll"),
    "--poll -1": (["run", "--profile", "ci", "--poll", "-1"], "--poll"),
    "--parallel 0": (["run", "--profile", "ci", "--parallel", "0"], "--parallel"),
    "--parallel 100000": (["run", "--profile", "ci", "--parallel", "100000"], "--parallel"),
    "--retries -1": (["run", "--profile", "ci", "--retries", "-1"], "--retries"),
    "train --epochs 1e20": (["train", "--epochs", "1e20"], "--epochs"),
    "train --epochs 0": (["train", "--epochs", "0"], "--epochs"),
    "train --seed -1": (["train", "--epochs", "1", "--seed", "-1"], "--seed"),
    "train --threads 0": (["train", "--epochs", "1", "--threads", "0"], "--threads"),
    "train --workers 100000": (["train", "--epochs", "1", "--workers", "100000"], "--workers"),
    "train --train-subset 0": (["train", "--epochs", "1", "--train-subset", "0"], "--train-subset"),
    "check --epochs 1e20": (["check", "--epochs", "1e20"], "--epochs"),
    "check --epochs huge": (["check", "--epochs", "9" * 5000], "--epochs"),
    "unknown flag": (["check", "--allow-everything"], "--allow-everything"),
    "unknown verb": (["pwn"], "pwn"),
    "report --name ../outside": (["report", "--name", "../outside"], "--name"),
    "report --name /abs": (["report", "--name", "/tmp/abs"], "--name"),
    "run --max-seeds 10**9": (["run", "--escalate", "--max-seeds", "1000000000"], "--max-seeds"),
}


@pytest.mark.parametrize("case", sorted(FLAGS))
def test_flag_outside_its_range_is_one_line_naming_it(tmp_path, capsys, case):
    args, flag = FLAGS[case]
    if args[0] == "train":
        args = [*args, "--arch", "mlp", "--norm", "nd", "--dataset", "mnist"]
        args += ["--out", str(tmp_path / "run")]
    code, _, err = audit(capsys, *args)
    one_line_error(code, err, EXIT_BAD_INPUT, flag)
    assert not (tmp_path / "run").exists()


# =========================================================================== results CSVs


def _json_check(capsys, claims: Path, *args: object) -> tuple[int, dict, str]:
    code, out, err = audit(capsys, "check", "--claims", claims, "--group", "t1", "--json", *args)
    rows = {c["claim_id"]: c for c in json.loads(out)["claims"]} if out else {}
    return code, rows, err


def test_a_duplicated_csv_row_is_counted_once_with_a_warning(tmp_path, capsys, claims):
    csv = tmp_path / "r.csv"
    csv.write_text(inputs.CSV_GOOD + "cifar10,vgg16,nd,20,0,93.1\n")
    code, rows, err = _json_check(capsys, claims, "--results", csv, "--id", "tab.vgg16.*")
    assert code == 0 and rows["tab.vgg16.nd20"]["n"] == 1
    line = one_line_error(0, err, 0, f"{csv}:4", f"{csv}:3")
    assert "counted once" in line


def test_the_same_csv_twice_adds_no_seed(tmp_path, capsys, claims):
    csv = tmp_path / "r.csv"
    csv.write_text(inputs.CSV_GOOD)
    code, rows, err = _json_check(
        capsys, claims, "--results", csv, "--results", csv, "--id", "tab.vgg16.*"
    )
    assert code == 0 and rows["tab.vgg16.bn20"]["n"] == 1 and rows["tab.vgg16.nd20"]["n"] == 1
    assert err.count("counted once") == 2 and "Traceback" not in err


def test_a_conflicting_duplicate_names_both_lines(tmp_path, capsys, claims):
    csv = tmp_path / "r.csv"
    csv.write_text(inputs.CSV_GOOD + "cifar10,vgg16,nd,20,0,85.0\n")
    code, _, err = audit(capsys, "check", "--claims", claims, "--results", csv)
    one_line_error(code, err, EXIT_BAD_INPUT, f"{csv}:4", f"{csv}:3", "same run")


def test_a_repeated_run_id_with_other_values_is_an_error(tmp_path, capsys, claims):
    csv = tmp_path / "r.csv"
    csv.write_text(
        "run_id,dataset,arch,norm,epochs,seed,test_top1\n"
        "r1,cifar10,vgg16,nd,20,0,93.1\nr1,cifar10,vgg16,nd,20,1,93.3\n"
    )
    code, _, err = audit(capsys, "check", "--claims", claims, "--results", csv)
    one_line_error(code, err, EXIT_BAD_INPUT, f"{csv}:3", f"{csv}:2")


def test_store_plus_csv_of_the_same_runs_counts_each_run_once(tmp_path, capsys, claims, store):
    root, dirs = store
    csv = tmp_path / "export.csv"
    csv.write_text(CSV_HEADER_SEEDS + "cifar10,vgg16,nd,20,0,93.2\n")
    code, _, err = audit(
        capsys,
        "report",
        "--claims",
        claims,
        "--store",
        root,
        "--results",
        csv,
        "--out",
        tmp_path / "reports",
        "--no-pdf",
        "--group",
        "t1",
    )
    assert code == 0 and "Traceback" not in err, err
    assert f"{csv}:2 repeats {dirs[('nd', 0)]}" in err
    from audit.claims import load_claims
    from audit.commands.check import load_results_table
    from audit.compare import compare

    table = compare(load_claims(claims), load_results_table(root, [csv]))
    assert table.set_index("claim_id").loc["tab.vgg16.nd20", "n"] == 3  # not 4


CSV_HEADER_SEEDS = inputs.CSV_HEADER


def test_store_plus_a_csv_that_disagrees_is_an_error(tmp_path, capsys, claims, store):
    root, dirs = store
    csv = tmp_path / "export.csv"
    csv.write_text(inputs.CSV_HEADER + "cifar10,vgg16,nd,20,1,99.0\n")
    code, _, err = audit(
        capsys,
        "report",
        "--claims",
        claims,
        "--store",
        root,
        "--results",
        csv,
        "--out",
        tmp_path / "reports",
        "--no-pdf",
    )
    one_line_error(code, err, EXIT_BAD_INPUT, f"{csv}:2", dirs[("nd", 1)])
    assert not (tmp_path / "reports").exists()


BAD_CSVS = {
    "latin-1": ((inputs.CSV_HEADER + "cifar10,vgg\xe9,bn,20,0,90\n").encode("latin-1"), "byte"),
    "epochs beyond the range": (inputs.CSV_HEADER + "cifar10,vgg16,bn,100000,0,90\n", "epochs"),
    "epochs with 30 digits": (
        inputs.CSV_HEADER + "cifar10,vgg16,bn," + "9" * 30 + ",0,90\n",
        "epochs",
    ),
    "seed beyond the range": (inputs.CSV_HEADER + "cifar10,vgg16,bn,20,99999999999,90\n", "seed"),
    "NaN in a done run": (inputs.CSV_HEADER + "cifar10,vgg16,bn,20,0,nan\n", "diverged"),
    "NUL byte": (inputs.CSV_HEADER + "cifar10,vgg16,bn,20,0,9\x000\n", ":2:"),
    "unclosed quote": (inputs.CSV_GOOD + 'cifar10,vgg16,bn,20,1,"90\n' + inputs.CSV_GOOD, ":4:"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_results_csv_is_one_line_naming_file_and_line(tmp_path, capsys, claims, case):
    content, message = BAD_CSVS[case]
    csv = tmp_path / "r.csv"
    csv.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    code, _, err = audit(capsys, "check", "--claims", claims, "--results", csv)
    one_line_error(code, err, EXIT_BAD_INPUT, csv, message)


def test_results_csv_that_is_a_folder(tmp_path, capsys, claims):
    code, _, err = audit(capsys, "validate", claims, "--results", tmp_path)
    one_line_error(code, err, EXIT_BAD_INPUT, tmp_path, "folder")


# =========================================================================== stores


@pytest.mark.parametrize("verb", ["check", "report", "status"])
@pytest.mark.parametrize("kind", ["project folder", "no runs folder", "a file", "runs of junk"])
def test_a_folder_that_is_not_a_store_is_refused(tmp_path, capsys, claims, verb, kind):
    folder = tmp_path / "folder"
    folder.mkdir()
    if kind == "project folder":  # `--store .` in a checkout
        (folder / "README.md").write_text("hello")
        (folder / "runs").mkdir()
        (folder / "runs" / "runs").mkdir()  # the real store one level down
    elif kind == "a file":
        folder.rmdir()
        folder.write_text("x")
    elif kind == "runs of junk":
        (folder / "runs" / "photos").mkdir(parents=True)
    before = snapshot(tmp_path)
    args = [verb, "--store", folder]
    if verb != "status":
        args += ["--claims", claims, "--allow-missing"] if verb == "check" else ["--claims", claims]
        args += ["--out", tmp_path / "reports", "--no-pdf"] if verb == "report" else []
    code, out, err = audit(capsys, *args)
    one_line_error(code, err, EXIT_BAD_INPUT, folder, "not a result store")
    assert "PASS" not in out and snapshot(tmp_path) == before


def test_run_refuses_to_make_a_store_inside_another_folder(tmp_path, capsys):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    code, _, err = audit(
        capsys, "run", "--claims", ROOT / "claims.yaml", "--profile", "ci", "--store", folder
    )
    one_line_error(code, err, EXIT_BAD_INPUT, folder, "not a result store")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


# =========================================================================== damaged runs


@pytest.mark.parametrize("damage", sorted(inputs.DAMAGES))
def test_a_damaged_run_fails_the_claim_it_serves(capsys, claims, store, damage):
    root, dirs = store
    damaged = dirs[("nd", 0)]
    inputs.DAMAGES[damage](damaged)
    before = snapshot(root)
    code, rows, err = _json_check(capsys, claims, "--store", root, "--id", "tab.vgg16.*")
    assert code == 1 and "Traceback" not in err
    assert rows["tab.vgg16.nd20"]["verdict"] == "corrupt", rows["tab.vgg16.nd20"]
    assert damaged.name in rows["tab.vgg16.nd20"]["reason"]
    assert rows["tab.vgg16.bn20"]["verdict"] == "reproduced"
    lines = warnings(err)  # one warning, naming the damaged run directory
    assert len(lines) == 1 and str(damaged) in lines[0] and "corrupt" in lines[0]
    assert snapshot(root) == before


@pytest.mark.parametrize("damage", sorted(inputs.DAMAGES))
def test_status_shows_a_damaged_run_as_corrupt(capsys, store, damage):
    root, dirs = store
    inputs.DAMAGES[damage](dirs[("nd", 0)])
    before = snapshot(root)
    code, out, err = audit(capsys, "status", "--store", root)
    assert code == 0 and err == ""
    row = next(line for line in out.splitlines() if line.startswith(dirs[("nd", 0)].name))
    assert " corrupt " in row
    assert "6 run(s): 1 corrupt, 5 done" in out
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "damage",
    ["result.json nested 100000 deep", "metrics.jsonl bad middle line", "spec.yaml missing"],
)
def test_report_on_a_damaged_store_lists_the_run(tmp_path, capsys, claims, store, damage):
    root, dirs = store
    inputs.DAMAGES[damage](dirs[("nd", 0)])
    before = snapshot(root)
    out_dir = tmp_path / "reports"
    code, _, err = audit(
        capsys, "report", "--claims", claims, "--store", root, "--out", out_dir, "--no-pdf"
    )
    assert code == 0 and "Traceback" not in err and str(dirs[("nd", 0)]) in err
    html = (out_dir / "latest" / "index.html").read_text()
    assert dirs[("nd", 0)].name in html and "corrupt" in html
    assert snapshot(root) == before


def test_a_damaged_run_outside_the_plan_is_matched_by_its_run_id(capsys, claims, store):
    root, dirs = store
    inputs.DAMAGES["spec.yaml invalid YAML"](dirs[("nd", 0)])
    (root / "plan.json").unlink()  # only the run id says which claim it served
    code, rows, err = _json_check(capsys, claims, "--store", root, "--allow-missing")
    assert code == 1 and rows["tab.vgg16.nd20"]["verdict"] == "corrupt"
    assert str(dirs[("nd", 0)]) in err and "damaged" in err


def test_a_damaged_folder_no_claim_can_be_matched_to_is_never_silent(capsys, claims, store):
    root, dirs = store
    odd = dirs[("nd", 0)].rename(root / "runs" / "hand-made")
    inputs.DAMAGES["spec.yaml invalid YAML"](odd)
    (root / "plan.json").unlink()
    code, rows, err = _json_check(capsys, claims, "--store", root, "--id", "tab.vgg16.*")
    assert code == 0 and rows["tab.vgg16.nd20"]["n"] == 2  # judged on the other two seeds
    assert str(odd) in err and "no claim can be matched to it" in err


def test_a_run_folder_named_with_escape_codes_is_shown_inert(capsys, store):
    root, dirs = store
    evil = root / "runs" / "x\x1b]0;pwned\x07\x1b[2J-0123456789ab"
    dirs[("nd", 0)].rename(evil)
    code, out, err = audit(capsys, "status", "--store", root)
    assert code == 0 and err == "" and "\x1b" not in out and "\x07" not in out
    assert "x\\x1b]0;pwned\\x07\\x1b[2J" in out


def test_a_torn_job_json_nested_deep_leaves_status_working(capsys, store):
    root, dirs = store
    (dirs[("bn", 1)] / "job.json").write_text(inputs.nested_json())
    before = snapshot(root)
    code, out, err = audit(capsys, "status", "--store", root)
    assert code == 0 and err == "" and "6 run(s): 6 done" in out and snapshot(root) == before


def test_bookkeeping_files_that_are_folders_leave_every_verb_working(capsys, claims, store):
    root, dirs = store
    for (norm, seed), name in {
        ("nd", 0): "lock",
        ("bn", 0): "log.txt",
        ("bn", 1): "job.json",
        ("bn", 2): "checkpoint.pt",
    }.items():
        (dirs[(norm, seed)] / name).unlink(missing_ok=True)
        (dirs[(norm, seed)] / name).mkdir()
    (root / "plan.json").unlink()
    (root / "plan.json").mkdir()
    before = snapshot(root)
    code, out, err = audit(capsys, "status", "--store", root)
    assert code == 0 and err == "" and "6 run(s): 6 done" in out
    code, rows, err = _json_check(capsys, claims, "--store", root, "--id", "tab.vgg16.*")
    assert code == 0 and err == "" and rows["tab.vgg16.nd20"]["n"] == 3
    assert snapshot(root) == before


def test_launcher_and_check_agree_on_what_is_done(store):
    from audit.store import Store, result_is_finished

    root, dirs = store
    for name in ("result.json NaN metric", "spec.yaml missing"):
        inputs.DAMAGES[name](dirs[("nd", 0)])
        assert not result_is_finished(Store(root), dirs[("nd", 0)].name)
    assert result_is_finished(Store(root), dirs[("nd", 1)].name)


# =========================================================================== output sinks

HOSTILE_REASON = "<script>alert(1)</script></td></table> | **bold** [x](http://e) \x00\x1b[31m"


def _hostile_csv(tmp_path: Path) -> Path:
    csv = tmp_path / "r.csv"
    csv.write_text(
        "dataset,arch,norm,epochs,seed,status,reason,test_top1\n"
        "cifar10,vgg16,bn,20,0,done,,90.1\n"
        f'cifar10,vgg16,nd,20,0,failed,"{HOSTILE_REASON}",\n',
        encoding="utf-8",
    )
    return csv


def test_junit_is_valid_xml_whatever_the_text(tmp_path, capsys, claims):
    junit = tmp_path / "junit.xml"
    code, _, _ = audit(
        capsys, "check", "--claims", claims, "--results", _hostile_csv(tmp_path), "--junit", junit
    )
    assert code == 1
    text = junit.read_text(encoding="utf-8")
    assert "\x00" not in text and "\x1b" not in text
    failure = ET.fromstring(text).find(".//testcase[@name='tab.vgg16.nd20']/failure")
    assert "\\x00\\x1b[31m" in failure.text and "<script>" in failure.text


def test_markdown_summary_holds_no_markup_from_results(tmp_path, capsys, claims):
    md = tmp_path / "summary.md"
    audit(
        capsys, "check", "--claims", claims, "--results", _hostile_csv(tmp_path), "--markdown", md
    )
    text = md.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if "tab.vgg16.nd20" in line)
    assert "<script>" not in text and "</td>" not in text and "\x1b" not in text
    assert row.count(" | ") == 7  # eight cells, whatever the reason held (its | is escaped)
    assert "&lt;script&gt;" in row and "\\*\\*bold\\*\\*" in row


@pytest.mark.parametrize("flag", ["--junit", "--markdown"])
def test_an_output_that_cannot_be_written_is_one_line_and_leaves_the_old_file(
    tmp_path, capsys, claims, flag
):
    target = tmp_path / "out"
    target.mkdir()  # a folder where the file should go
    csv = tmp_path / "r.csv"
    csv.write_text(inputs.CSV_GOOD)
    code, _, err = audit(capsys, "check", "--claims", claims, "--results", csv, flag, target)
    one_line_error(code, err, EXIT_BAD_INPUT, target)
    assert list(target.iterdir()) == []


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path` (root only): a real full disk, not a simulated one."""
    path.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
    ):
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(disk: Path) -> None:
    with contextlib.suppress(OSError), open(disk / "filler", "wb", buffering=0) as handle:
        while True:
            handle.write(b"\0" * 4096)


@pytest.mark.parametrize("flag", ["--junit", "--markdown"])
def test_full_disk_keeps_the_previous_output_whole(tmp_path, capsys, claims, flag):
    csv = tmp_path / "r.csv"
    csv.write_text(inputs.CSV_GOOD)
    with small_disk(tmp_path / "disk", "256k") as disk:
        out = disk / "out.txt"
        out.write_text("previous output\n")
        _fill(disk)
        code, _, err = audit(capsys, "check", "--claims", claims, "--results", csv, flag, out)
        one_line_error(code, err, EXIT_BAD_INPUT, f"no space left on device: {out}")
        assert out.read_text() == "previous output\n"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "out.txt"]  # no temp file


# =========================================================================== the boundary


def _claims_with_many_lines(path: Path, rows: int = 3000) -> Path:
    body = "".join(f"      - [vgg16, {n}, 90.00, 93.00]\n" for n in range(1, rows + 1))
    path.write_text(
        inputs.CLAIMS.split("references:")[0]
        .replace("layout: [arch, BN20, ND20]", "layout: [arch, epochs, BN20, ND20]")
        .replace("{norm: bn, epochs: 20}", "{norm: bn}")
        .replace("{norm: nd, epochs: 20}", "{norm: nd}")
        .split("    rows:")[0]
        + "    rows:\n"
        + body
    )
    return path


def test_a_closed_stdout_ends_quietly(tmp_path):
    claims = _claims_with_many_lines(tmp_path / "claims.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "audit.cli", "validate", str(claims), "--list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    code = proc.wait(timeout=60)
    err = proc.stderr.read().decode()
    assert code == EXIT_CLOSED_STDOUT and err == ""


def test_a_bug_is_one_line_with_the_traceback_in_a_file(capsys, store, monkeypatch, tmp_path):
    import audit.commands.status as status

    def broken(store):
        raise ZeroDivisionError("a harness bug")

    monkeypatch.setattr(status, "collect", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, _, err = audit(capsys, "status", "--store", store[0])
    line = one_line_error(code, err, EXIT_BUG, "internal error", "ZeroDivisionError")
    saved = Path(line.split("saved in ")[1])
    assert saved.parent == tmp_path and "a harness bug" in saved.read_text()
    assert "Traceback" in saved.read_text()


def test_ctrl_c_is_one_line_and_exit_130(capsys, store, monkeypatch):
    import audit.commands.status as status

    def interrupted(store):
        raise KeyboardInterrupt

    monkeypatch.setattr(status, "collect", interrupted)
    code, _, err = audit(capsys, "status", "--store", store[0])
    one_line_error(code, err, EXIT_INTERRUPTED, "interrupted")


def test_error_messages_from_files_cannot_drive_the_terminal(tmp_path, capsys):
    path = tmp_path / "claims.yaml"
    path.write_text("schema_version: 1\nzzz\x1b[2J\x1b]0;pwned\x07: 1\n", encoding="utf-8")
    code, _, err = audit(capsys, "validate", path)
    line = one_line_error(code, err, EXIT_BAD_INPUT, path)
    assert "\x1b" not in line and "\x07" not in line


@pytest.mark.slow
def test_training_on_a_full_disk_stops_in_one_line_and_resumes_once_freed(tmp_path):
    from tests.fakedata import write_fashion_mnist

    data = write_fashion_mnist(tmp_path / "data", n_train=64, n_test=32)
    # an MLP checkpoint is about 1 MB: epoch 1's fits, epoch 2's temporary copy beside it not
    with small_disk(tmp_path / "disk", "1536k") as disk:
        args = [sys.executable, "-m", "audit.cli", "train", "--arch", "mlp", "--norm", "nd"]
        args += ["--dataset", "fashion-mnist", "--epochs", "2", "--threads", "1"]
        args += ["--data-dir", str(data), "--out", str(disk / "run")]
        first = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
        assert first.returncode == EXIT_BAD_INPUT and "Traceback" not in first.stderr
        assert first.stderr.strip().splitlines()[-1] == (
            f"audit train: error: no space left on device: {disk / 'run'}; free some space "
            "(or choose another folder) and run the command again"
        )
        assert not list((disk / "run").glob("*.tmp")) and not list((disk / "run").glob(".*"))
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        second = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
        assert second.returncode == 0, second.stderr
        assert "resuming after epoch 1 of 2" in second.stderr
        result = json.loads((disk / "run" / "result.json").read_text())
        assert result["status"] == "done" and result["epochs_completed"] == 2


MINI_MLP_CLAIMS = """\
schema_version: 1
tables:
  - id: mini
    group: mini
    metric: test_top1
    experiment: {kind: classify, dataset: fashion-mnist, arch: mlp}
    layout: [norm, E2]
    columns:
      E2: {epochs: 2}
    tolerance: {abs: 100}
    rows:
      - [nd, 50.0]
"""


@pytest.mark.slow
def test_audit_run_on_a_full_disk_is_one_line_and_resumes_once_freed(tmp_path):
    from tests.fakedata import write_fashion_mnist

    data = write_fashion_mnist(tmp_path / "data", n_train=64, n_test=32)
    claims = tmp_path / "mini.yaml"  # one 2-epoch MLP run
    claims.write_text(MINI_MLP_CLAIMS, encoding="utf-8")
    with small_disk(tmp_path / "disk", "1536k") as disk:
        args = [sys.executable, "-m", "audit.cli", "run", "--claims", str(claims)]
        args += ["--profile", "ci", "--no-report", "--poll", "0.5"]
        args += ["--data-dir", str(data), "--store", str(disk / "store")]
        first = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
        assert first.returncode == EXIT_BAD_INPUT and "Traceback" not in first.stderr
        assert (
            first.stderr.strip()
            .splitlines()[-1]
            .startswith(f"audit run: error: no space left on device: {disk / 'store'}")
        )
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        second = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
        assert second.returncode == 0, second.stderr
        (run_dir,) = (disk / "store" / "runs").iterdir()
        assert "resuming after epoch" in (run_dir / "log.txt").read_text()
        assert json.loads((run_dir / "result.json").read_text())["status"] == "done"


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["result.json NaN metric", "spec.yaml python tag"])
def test_audit_run_repairs_a_damaged_run_that_check_fails(tmp_path, capsys, damage):
    """`audit run` and `audit check` agree: what the check calls corrupt, run trains again
    (resuming from the checkpoint), and then both call it done."""
    from tests.fakedata import write_fashion_mnist

    data = write_fashion_mnist(tmp_path / "data", n_train=64, n_test=32)
    claims = tmp_path / "mini.yaml"
    claims.write_text(MINI_MLP_CLAIMS, encoding="utf-8")
    store = tmp_path / "store"
    run = ("run", "--claims", claims, "--profile", "ci", "--executor", "debug", "--no-report")
    run += ("--data-dir", data, "--store", store)
    assert audit(capsys, *run)[0] == 0
    (run_dir,) = (store / "runs").iterdir()
    inputs.DAMAGES[damage](run_dir)
    code, out, err = audit(capsys, "check", "--claims", claims, "--store", store)
    assert code == 1 and "corrupt" in out and str(run_dir) in err
    code, out, err = audit(capsys, *run)
    assert code == 0 and "1 done" in out, err
    if damage.startswith("result.json"):  # a damaged spec is written again from the plan
        assert list(run_dir.glob("result.json.corrupt-*"))  # kept aside, trained again
    assert audit(capsys, "check", "--claims", claims, "--store", store)[0] == 0


# =========================================================================== the helpers


def test_escape_makes_every_sink_inert():
    from audit import escape

    text = "a\x1b[2J\u202eb\x00|<i>_x_</i>\nnext"
    assert escape.terminal(text) == "a\\x1b[2J\\u202eb\\x00|<i>_x_</i>\\x0anext"
    assert escape.terminal(text, keep_newlines=True).endswith("</i>\nnext")
    assert escape.one_line("first\n\n  second  \n") == "first | second"
    assert escape.markdown(text) == (
        "a\\\\x1b\\[2J\\\\u202eb\\\\x00\\|&lt;i&gt;\\_x\\_&lt;/i&gt; next"
    )
    assert escape.xml("ok\x00\x1b\ud800\ufffe\t\n") == "ok\\x00\\x1b\\ud800\\ufffe\t\n"


def test_safe_yaml_loads_plain_documents_and_refuses_the_rest():
    from runners import safe_yaml

    assert safe_yaml.load("a: [1, {b: 2.5}]\nc: &x yes\nd: *x\n") == {
        "a": [1, {"b": 2.5}],
        "c": True,
        "d": True,
    }
    assert safe_yaml.load("") is None
    for text, line in ((inputs.alias_bomb(), 7), (inputs.deep_block(60), 51)):
        with pytest.raises(safe_yaml.YamlLimitError) as caught:
            safe_yaml.load(text)
        assert caught.value.line == line
    with pytest.raises(yaml_error()) as caught:
        safe_yaml.load("x: !!python/name:os.system\n")
    assert "python/name" in safe_yaml.problem(caught.value)


def yaml_error() -> type:
    import yaml

    return yaml.YAMLError


def test_limits_parse_whole_numbers_in_their_range_only():
    import argparse

    from audit.limits import float_in, int_in, parse_int

    assert parse_int(" 7 ", 1, 10) == 7
    for text in ("0", "11", "1e1", "7.0", "", "9" * 21, "٣"):
        with pytest.raises(ValueError):
            parse_int(text, 1, 10)
    assert float_in(0, 5)("2.5") == 2.5
    for text in ("inf", "nan", "-0.1", "5.01", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            float_in(0, 5)(text)
    with pytest.raises(argparse.ArgumentTypeError, match=r"outside 1\.\.3"):
        int_in(1, 3)("4")


def test_outputs_to_special_files_and_links_are_written_in_place(tmp_path, capsys, claims):
    csv = tmp_path / "r.csv"
    csv.write_text(inputs.CSV_GOOD)
    code, _, err = audit(capsys, "check", "--claims", claims, "--results", csv, "--junit",
                         "/dev/full")  # fmt: skip
    one_line_error(code, err, EXIT_BAD_INPUT, "no space left on device: /dev/full")
    assert Path("/dev/full").is_char_device()  # written to, never replaced by a file
    real = tmp_path / "real.md"
    real.write_text("old")
    (tmp_path / "link.md").symlink_to(real)
    audit(capsys, "check", "--claims", claims, "--results", csv, "--markdown",
          tmp_path / "link.md")  # fmt: skip
    assert (tmp_path / "link.md").is_symlink() and "## Claims check" in real.read_text()
