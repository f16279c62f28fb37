"""The verdict record (verdicts.json): its JSON Schema (audit/verdicts.schema.json) is
checked against records that `audit check` and `audit report` really write, the small
validator refuses what the schema forbids, and docs/verdicts.md documents every field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit import cli
from audit.record import SCHEMA_PATH, load_schema
from audit.schema import SchemaError, validate

ROOT = Path(__file__).resolve().parent.parent
CSV = (
    "dataset,arch,norm,epochs,seed,test_top1\n"
    "cifar10,vgg16,bn,20,0,90.2\ncifar10,vgg16,bn,20,1,90.0\ncifar10,vgg16,bn,20,2,89.9\n"
    "cifar10,vgg16,nd,20,0,93.1\ncifar10,vgg16,nd,20,1,93.4\ncifar10,vgg16,nd,20,2,93.0\n"
)


@pytest.fixture
def record(tmp_path) -> dict:
    results = tmp_path / "results.csv"
    results.write_text(CSV, encoding="utf-8")
    args = ["check", "--claims", str(ROOT / "claims.yaml"), "--results", str(results)]
    args += ["--group", "table1,nd-beats-bn", "--arch", "vgg16", "--dataset", "cifar10"]
    args += ["--record", str(tmp_path / "out" / "verdicts.json")]
    assert cli.main(args) == 1  # the other epochs are missing
    return json.loads((tmp_path / "out" / "verdicts.json").read_text(encoding="utf-8"))


def test_a_written_record_conforms_to_the_schema(record):
    validate(record, load_schema())
    assert record["schema_version"] == 1 and record["harness"]["version"] == "0.1.0"
    assert len(record["claims_file"]["sha256"]) == 64
    assert record["inputs"]["results"][0]["sha256"]
    assert record["hardware"]["checked_on"]["cpus"] >= 1
    assert record["design"] == {
        "rule": "single-look",
        "confidence": 0.95,
        "interim": False,
        "max_seeds": None,
        "escalated_claims": [],
    }
    by_id = {c["claim_id"]: c for c in record["claims"]}
    nd = by_id["table1.cifar10.vgg16.nd20"]
    assert nd["verdict"] == "reproduced" and nd["n"] == 3 and nd["seeds"] == [0, 1, 2]
    assert nd["tolerance"]["low"] < nd["claimed"] < nd["tolerance"]["high"]
    assert isinstance(nd["p_value"], float) and nd["pi_low"] < nd["claimed"] < nd["pi_high"]
    relation = by_id["table1.cifar10.vgg16.nd-beats-bn.e20"]
    assert relation["verdict"] == "holds" and relation["prob_improvement"] == 1.0
    assert relation["p_perm"] == 0.125 and relation["gap_recovered"] > 0
    assert by_id["table1.cifar10.vgg16.nd1"]["verdict"] == "missing"
    assert record["summary"]["fdr"]["sentence"].endswith("false-discovery rate")


def test_the_validator_refuses_what_the_schema_forbids(record):
    schema = load_schema()
    broken = json.loads(json.dumps(record))
    broken["claims"][0]["verdict"] = "not_reproduced"  # the old vocabulary
    with pytest.raises(SchemaError, match=r"\$\.claims\[0\]\.verdict"):
        validate(broken, schema)
    broken = json.loads(json.dumps(record))
    del broken["claims"][1]["abs_dev"]
    with pytest.raises(SchemaError, match="'abs_dev' is missing"):
        validate(broken, schema)
    broken = json.loads(json.dumps(record))
    broken["claims"][0]["n"] = "3"
    with pytest.raises(SchemaError, match="expected integer"):
        validate(broken, schema)
    broken = json.loads(json.dumps(record))
    broken["surprise"] = 1
    with pytest.raises(SchemaError, match="unknown field 'surprise'"):
        validate(broken, schema)


def test_check_json_prints_the_same_record(tmp_path, capsys, record, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the record would go by default
    results = tmp_path / "results.csv"
    args = ["check", "--claims", str(ROOT / "claims.yaml"), "--results", str(results)]
    args += ["--group", "table1", "--arch", "vgg16", "--dataset", "cifar10", "--json"]
    (tmp_path / "verdicts.json").unlink(missing_ok=True)
    capsys.readouterr()
    assert cli.main([*args, "--no-record"]) == 1
    printed = json.loads(capsys.readouterr().out)
    validate(printed, load_schema())
    assert not (tmp_path / "verdicts.json").exists()  # --no-record


def test_an_explicit_record_path_that_cannot_be_written_is_exit_2(tmp_path, capsys):
    results = tmp_path / "results.csv"
    results.write_text(CSV, encoding="utf-8")
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    args = ["check", "--claims", str(ROOT / "claims.yaml"), "--results", str(results)]
    args += ["--group", "table1", "--record", str(blocker / "verdicts.json")]
    assert cli.main(args) == 2
    assert "cannot write the verdict record" in capsys.readouterr().err


def test_docs_document_every_field_of_a_claim():
    text = (ROOT / "docs" / "verdicts.md").read_text(encoding="utf-8")
    claim_fields = load_schema()["$defs"]["claim"]["properties"]
    for name in [*claim_fields, *load_schema()["properties"]]:
        assert f"`{name}`" in text, name
    assert SCHEMA_PATH.name in text


def test_audit_report_writes_the_record_into_the_report_folder(tmp_path, capsys):
    results = tmp_path / "results.csv"
    results.write_text(CSV, encoding="utf-8")
    args = ["report", "--claims", str(ROOT / "claims.yaml"), "--results-csv", str(results)]
    args += ["--group", "table1,nd-beats-bn", "--arch", "vgg16", "--dataset", "cifar10"]
    assert cli.main([*args, "--out", str(tmp_path), "--name", "r", "--no-pdf"]) == 0
    record = json.loads((tmp_path / "r" / "verdicts.json").read_text(encoding="utf-8"))
    validate(record, load_schema())
    assert record["command"].startswith("audit ")
    verdicts = {c["claim_id"]: c["verdict"] for c in record["claims"]}
    assert verdicts["table1.cifar10.vgg16.nd-beats-bn.e20"] == "holds"
