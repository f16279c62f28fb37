"""claims.yaml and its loader: the transcription, the expansion, selection, and bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from audit import cli
from audit.claims import Tolerance, load_claims
from audit.errors import AuditError

ROOT = Path(__file__).resolve().parent.parent
CLAIMS = ROOT / "claims.yaml"
# The transcription sources claims.yaml was written from (tests/reference/README.md).
REFERENCE = Path(__file__).resolve().parent / "reference"
ARCHS = ("vgg16", "resnet18", "preact", "densenet121", "resnext29")
ARCHS += ("mobilev2", "dpn", "pnasnetA", "senet", "efficient")

MINI = """\
schema_version: 1
tolerances:
  t1: {abs: 1.0}
tables:
  - id: tab
    group: t1
    metric: test_top1
    experiment: {kind: classify, dataset: cifar10}
    layout: [arch, name, BN20, ND20]
    columns:
      BN20: {norm: bn, epochs: 20}
      ND20: {norm: nd, epochs: 20}
    decimals: 2
    rows:
      - [vgg16, "VGG-16", 90.07, 93.25]
      - [resnet18, "ResNet-18", 16.10, 94.07]
relations:
  - id: beats
    group: rel
    statement: ND beats BN
    tables: [tab]
    cases:
      e20: {ND20: 1, BN20: -1}
    op: ">"
"""


@pytest.fixture(scope="module")
def claims():
    return load_claims(CLAIMS)


def write(tmp_path: Path, text: str | bytes, name: str = "claims.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the file


def test_claims_file_has_every_printed_number(claims):
    groups = [c.group for c in claims]
    assert groups.count("table1") == 120
    assert groups.count("imagenet") == 14
    assert groups.count("imagenet-nd-beats-bn") == 8
    assert {c.type for c in claims if c.group in ("table1", "imagenet")} == {"value"}
    assert all(c.gate for c in claims if c.group == "table1")


def test_printed_precision_is_kept(claims):
    by_id = claims.by_id()
    assert by_id["table1.cifar100.resnet18.bn1"].claimed_text == "16.10"
    assert by_id["table1.cifar100.resnet18.bn1"].claimed == pytest.approx(16.1)
    assert by_id["table1.cifar10.dpn.bn1"].claimed_text == "34.00"
    assert by_id["table1.cifar10.resnet18.nd100"].claimed_text == "95.40"
    assert all(re.fullmatch(r"\d+\.\d\d", c.claimed_text) for c in claims if c.group == "table1")


def _reference_table1() -> dict[str, str]:
    """claim id -> printed text, read from the raw text of paper-claims.yaml."""
    text = (REFERENCE / "paper-claims.yaml").read_text(encoding="utf-8")
    arch_ids = {
        "VGG-16": "vgg16",
        "ResNet-18": "resnet18",
        "Preact-18": "preact",
        "DenseNet-121": "densenet121",
        "ResNeXt-29": "resnext29",
        "MobileNet v2": "mobilev2",
        "DPN-92": "dpn",
        "PNASNetA": "pnasnetA",
        "SENet-18": "senet",
        "EfficientNet": "efficient",
    }
    out = {}
    table = text.split("table_2_imagenet:")[0]
    for block in re.split(r"\n    - name: ", table)[1:]:
        arch = arch_ids[block.splitlines()[0].strip()]
        for dataset in ("cifar10", "cifar100"):
            cells = re.search(rf"\n      {dataset}:\s*\{{([^}}]*)\}}", block).group(1)
            for cell in cells.split(","):
                column, value = (x.strip() for x in cell.split(":"))
                out[f"table1.{dataset}.{arch}.{column.lower()}"] = value
    return out


def test_table1_transcription_matches_the_reference_text(claims):
    expected = _reference_table1()
    by_id = claims.by_id()
    assert len(expected) == 120
    assert {k: by_id[k].claimed_text for k in expected} == expected


def test_imagenet_and_seed_values_match_the_reference(claims):
    paper = yaml.safe_load((REFERENCE / "paper-claims.yaml").read_text(encoding="utf-8"))
    by_id = claims.by_id()
    norms = {"original (no BN)": "none", "BN": "bn", "Deconv": "nd"}
    archs = {"VGG-11": "vgg11", "ResNet-18": "resnet18", "DenseNet-121": "densenet121"}
    for row in paper["table_2_imagenet"]["rows"]:
        prefix = f"table2.{archs[row['model']]}.{norms[row['variant']]}"
        assert by_id[f"{prefix}.top1"].claimed == row["top1"]
        assert by_id[f"{prefix}.top5"].claimed == row["top5"]
    repro = yaml.safe_load((REFERENCE / "repro-claims.yaml").read_text(encoding="utf-8"))
    figure3 = repro["comp6248_sbandati_stein_wang"]["figure3_table"]
    seed = {r.id: r for r in claims.reference_sources}["comp6248"]
    arch_ids = {"VGG-16": "vgg16", "ResNeXt-29": "resnext29", "DenseNet-121": "densenet121"}
    for name, arch in arch_ids.items():
        for dataset in ("cifar10", "cifar100"):
            for column, cell in figure3[name][dataset].items():
                value = seed.values[f"table1.{dataset}.{arch}.{column.lower()}"]
                assert value.value == cell["repro"]
                assert float(value.extra["diff_pct"]) == cell["diff_pct"]


def test_claim_carries_experiment_provenance_and_display(claims):
    claim = claims.by_id()["table1.cifar10.vgg16.nd20"]
    assert claim.experiment == {
        "kind": "classify",
        "dataset": "cifar10",
        "arch": "vgg16",
        "norm": "nd",
        "epochs": 20,
    }
    assert claim.metric == "test_top1"
    assert claim.provenance["table"] == "Table 1"
    assert claim.provenance["column"] == "ND20"
    assert claim.provenance["transcribed_from"] == ["S1", "S2", "S3"]
    assert claim.display["name"] == "VGG-16"
    assert claim.display["net_size"] == "14.71M"
    assert claim.provenance["line"] == claim.line > 0


def test_tolerances_resolve_group_column_and_override(claims):
    by_id = claims.by_id()
    assert by_id["table1.cifar10.vgg16.nd20"].tolerance == Tolerance(abs=1.0)
    assert by_id["table1.cifar10.vgg16.nd1"].tolerance == Tolerance(abs=5.0)
    assert by_id["mlp.mnist.nd"].tolerance.direction == "at-least"
    assert "EfficientNet" in by_id["table1.cifar10.efficient.nd100"].note


def test_relations_expand_per_cell_with_printed_differences(claims):
    by_id = claims.by_id()
    beats = [c for c in claims if c.group == "nd-beats-bn"]
    assert len(beats) == 60
    claim = by_id["table1.cifar10.vgg16.nd-beats-bn.e1"]
    assert claim.claimed == pytest.approx(74.18 - 14.12)
    assert [t.coef for t in claim.terms] == [1, -1]
    assert [t.experiment["norm"] for t in claim.terms] == ["nd", "bn"]
    faster = by_id["table1.cifar100.efficient.nd-converges-faster.gap"]
    assert faster.claimed == pytest.approx((22.40 - 19.03) - (62.37 - 59.09))
    assert by_id["mlp.mnist.nd-not-worse.vs-none"].tolerance.abs == 0.3
    assert by_id["mlp.mnist.nd-not-worse.vs-none"].claimed is None


def test_imagenet_relations_compare_rows_of_table2(claims):
    by_id = claims.by_id()
    imagenet = [c for c in claims if c.group == "imagenet-nd-beats-bn"]
    # ND beats BN on top-1 and top-5 for three models, and the no-BN VGG-11 row
    assert sorted(c.id for c in imagenet) == sorted(
        [f"table2.{a}.nd-beats-bn.{m}" for a in ("vgg11", "resnet18", "densenet121")
         for m in ("top1", "top5")]
        + ["table2.vgg11.nd-beats-no-bn.top1", "table2.vgg11.nd-beats-no-bn.top5"]
    )  # fmt: skip
    assert all(c.type == "relation" and c.gate and c.runnable for c in imagenet)
    dense = by_id["table2.densenet121.nd-beats-bn.top1"]
    assert dense.metric == "test_top1"
    assert [t.claim_id for t in dense.terms] == [
        "table2.densenet121.nd.top1",
        "table2.densenet121.bn.top1",
    ]
    assert [t.coef for t in dense.terms] == [1, -1]
    assert dense.terms[1].experiment == {
        "kind": "classify",
        "dataset": "imagenet",
        "epochs": 90,
        "arch": "densenet121",
        "norm": "bn",
    }
    assert dense.claimed == pytest.approx(75.73 - 74.65)
    assert dense.claimed_text == "75.73 - 74.65"
    assert dense.statement == "ND (Deconv) beats BN on ImageNet (nd.top1 - bn.top1 > 0)"
    # shared printed names are kept; the variant differs between the two rows, so it is not
    assert dense.display["name"] == "DenseNet-121" and "variant" not in dense.display
    assert by_id["table2.vgg11.nd-beats-no-bn.top5"].claimed == pytest.approx(90.49 - 88.63)
    assert "model-zoo" in dense.note and "cosine" in dense.note and "step" in dense.note
    # runnable: the relations need the seven Table 2 runs, and nothing else
    experiments = claims.select(groups=["imagenet-nd-beats-bn"]).experiments()
    assert len(experiments) == 7
    assert {e["dataset"] for e in experiments} == {"imagenet"}


ACROSS = MINI.replace(
    """relations:""",
    """  - id: inet
    group: t2
    metric: test_top1
    experiment: {kind: classify, dataset: imagenet, epochs: 90}
    layout: [arch, norm, top1]
    columns:
      top1: {}
    rows:
      - [vgg11, none, 69.02]
      - [vgg11, bn, 70.38]
      - [vgg11, nd, 71.95]
      - [resnet18, bn, 69.76]
      - [resnet18, nd, 71.24]
relations:
  - id: across
    group: rel
    statement: ND beats the others
    tables: [inet]
    across: norm
    cases:
      bn: {nd.top1: 1, bn.top1: -1}
      none: {nd.top1: 1, none.top1: -1}
    op: ">"
""",
).replace("  t1: {abs: 1.0}", "  t1: {abs: 1.0}\n  t2: {abs: 1.0}")


def test_runnable_false_keeps_a_table_and_its_relations_out_of_the_experiments(tmp_path):
    """For results that only come by CSV (e.g. another paper's table without a runner)."""
    text = ACROSS.replace(
        "    layout: [arch, norm, top1]", "    runnable: false\n    layout: [arch, norm, top1]"
    )
    loaded = load_claims(write(tmp_path, text))
    table = [c for c in loaded if c.id.startswith("inet.") and c.type == "value"]
    relations = [c for c in loaded if c.id.startswith("inet.") and c.type == "relation"]
    assert len(table) == 5 and len(relations) == 3
    assert not any(c.runnable for c in table + relations)
    assert not [e for e in loaded.experiments() if e.get("dataset") == "imagenet"]
    assert load_claims(write(tmp_path, ACROSS)).experiments() != loaded.experiments()


def test_relation_across_rows_pairs_the_rows_of_one_model(tmp_path):
    loaded = load_claims(write(tmp_path, ACROSS))
    relations = [c.id for c in loaded if c.type == "relation"]
    # file order, then row-major; only vgg11 has a `none` row: resnet18 gets no `none` case
    assert relations == [
        "inet.vgg11.across.bn",
        "inet.vgg11.across.none",
        "inet.resnet18.across.bn",
        "tab.vgg16.beats.e20",
        "tab.resnet18.beats.e20",
    ]
    claim = loaded.by_id()["inet.resnet18.across.bn"]
    assert [(t.coef, t.experiment["norm"]) for t in claim.terms] == [(1, "nd"), (-1, "bn")]
    assert claim.claimed == pytest.approx(71.24 - 69.76)


def test_reference_sources_are_not_claims(claims):
    ids = {r.id for r in claims.reference_sources}
    assert ids == {"comp6248", "lamps-lab", "lamps-lab-imagenet"}
    seed = {r.id: r for r in claims.reference_sources}["comp6248"]
    assert len(seed.values) == 36
    assert seed.caveats
    assert seed.values["table1.cifar10.resnext29.bn1"].text == "23.81"


def test_experiments_are_deduplicated_and_cover_both_sides(claims):
    selected = claims.select(groups=["nd-beats-bn"], datasets=["cifar10"], archs=["vgg16"])
    experiments = selected.experiments()
    assert len(selected) == 3
    assert len(experiments) == 6
    assert {(e["norm"], e["epochs"]) for e in experiments} == {
        (n, e) for n in ("bn", "nd") for e in (1, 20, 100)
    }
    everything = claims.experiments()
    assert len(everything) == len({tuple(sorted(e.items())) for e in everything})
    assert len([e for e in everything if e.get("dataset") == "imagenet"]) == 7  # Table 2 rows
    assert {"kind": "kernels"} in everything  # the spec's default source: the paper's ImageNet


def test_select_by_ids_glob_and_epochs(claims):
    picked = claims.select(ids=["table1.cifar10.*"], epochs=[100], groups=["table1"])
    assert {c.id for c in picked} == {
        f"table1.cifar10.{a}.{n}100" for a in ARCHS for n in ("bn", "nd")
    }


def test_selection_errors_name_the_problem(claims):
    with pytest.raises(AuditError, match=r"unknown claim group.*tabel1"):
        claims.select(groups=["tabel1"])
    with pytest.raises(AuditError, match="matches no claim"):
        claims.select(ids=["nothing.*"])


def test_minimal_file_loads(tmp_path):
    loaded = load_claims(write(tmp_path, MINI))
    assert [c.id for c in loaded] == [
        "tab.vgg16.bn20",
        "tab.vgg16.nd20",
        "tab.resnet18.bn20",
        "tab.resnet18.nd20",
        "tab.vgg16.beats.e20",
        "tab.resnet18.beats.e20",
    ]


# --------------------------------------------------------------------------- bad input


def expect_error(tmp_path: Path, text: str | bytes, *patterns: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(AuditError) as info:
        load_claims(path)
    message = str(info.value)
    assert message.startswith(str(path))
    for pattern in patterns:
        assert re.search(pattern, message), message
    return message


BAD_INPUTS = {
    "malformed YAML": (
        MINI.replace('op: ">"', 'op: [">"'),
        [r":\d+: malformed YAML"],
    ),
    "tab indentation": (
        MINI.replace("    group: t1", "\tgroup: t1"),
        [r":6: ", "tabs", "spaces"],
    ),
    "wrong type (number as text)": (
        MINI.replace("16.10", '"16.10"'),
        [r":16: ", "must be a number"],
    ),
    "percent sign": (MINI.replace("16.10", "16.10 %"), [r":16: ", "drop the %"]),
    "unknown dataset": (
        MINI.replace("dataset: cifar10", "dataset: cifar-10"),
        [r":8: ", "unknown dataset 'cifar-10'", "did you mean 'cifar10'"],
    ),
    "unknown architecture": (MINI.replace("[vgg16,", "[vgg19,"), [r":15: ", "unknown arch"]),
    "unknown norm": (MINI.replace("norm: bn,", "norm: gn,"), [r":11: ", "unknown norm 'gn'"]),
    "missing field": (MINI.replace("    metric: test_top1\n", ""), ["has no metric"]),
    "missing table field": (
        MINI.replace("    layout: [arch, name, BN20, ND20]\n", ""),
        ["missing the field 'layout'"],
    ),
    "duplicate claim id": (
        MINI.replace("[resnet18,", "[vgg16,"),
        [r":16: ", "duplicate claim id 'tab.vgg16.bn20'", "first defined on line 15"],
    ),
    "duplicate key": (
        MINI.replace("    decimals: 2\n", "    decimals: 2\n    decimals: 2\n"),
        [r":14: ", "duplicate key 'decimals'", "line 13"],
    ),
    "negative tolerance": (MINI.replace("abs: 1.0", "abs: -1.0"), [r":3: ", "must be >= 0"]),
    "NaN value": (MINI.replace("16.10", ".nan"), [r":16: ", "finite number"]),
    "out-of-range value": (MINI.replace("16.10", "161.0"), [r":16: ", r"outside the range"]),
    "empty file": ("", [r":1: ", "empty"]),
    "only comments": ("# nothing here\n", [r":1: ", "only comments"]),
    "non-UTF-8": (MINI.replace("VGG-16", "VGG\xe9").encode("latin-1"), [r":15: ", "UTF-8"]),
    "boolean instead of text": (
        MINI.replace("group: t1", "group: on"),
        [r":6: ", "boolean", "quote it: 'on'"],
    ),
    "exponent read as text": (
        MINI.replace("abs: 1.0", "abs: 1e-3"),
        [r":3: ", "read as text", "0.001"],
    ),
    "lost trailing zero": (
        MINI.replace("16.10", "16.1"),
        [r":16: ", "1 decimal", "16.10"],
    ),
    "row length": (MINI.replace(", 93.25]", "]"), [r":15: ", "3 entries but the layout has 4"]),
    "unknown field": (
        MINI.replace("    decimals: 2", "    decimal: 2"),
        ["unknown field 'decimal'"],
    ),
    "unknown top-level block": (
        "schema_version: 1\nclaim: []\n",
        [r":2: ", "unknown field 'claim'"],
    ),
    "wrong schema version": (
        MINI.replace("schema_version: 1", "schema_version: 2"),
        ["not supported"],
    ),
    "seed in experiment": (
        MINI.replace("dataset: cifar10}", "dataset: cifar10, seed: 0}"),
        ["has no seed"],
    ),
    "bad relation op": (MINI.replace('op: ">"', 'op: "=>"'), ["op must be one of"]),
    "relation on unknown table": (
        MINI.replace("tables: [tab]", "tables: [tabb]"),
        ["unknown table"],
    ),
    "relation on unknown column": (
        MINI.replace("{ND20: 1, BN20: -1}", "{ND100: 1, BN20: -1}"),
        ["no column 'ND100'"],
    ),
    "override of unknown claim": (
        MINI + "overrides:\n  tab.vgg99.bn20: {note: x}\n",
        [r":26: ", "unknown claim id"],
    ),
    "bad direction": (MINI.replace("{abs: 1.0}", "{abs: 1.0, direction: up}"), ["direction"]),
    "tolerance without a size": (
        MINI.replace("{abs: 1.0}", "{direction: at-least}"),
        [r":5: ", "table 'tab': its tolerance gives a direction but no size", "add abs"],
    ),
    "decimals not a whole number": (
        MINI.replace("decimals: 2", "decimals: 2.5"),
        [r":13: ", "decimals must be a whole number >= 0", "got 2.5"],
    ),
    "negative decimals": (MINI.replace("decimals: 2", "decimals: -1"), [r":13: ", ">= 0"]),
    "case name that cannot end a claim id": (
        MINI.replace("      e20: {", "      e 20: {"),
        [r":\d+: ", "case name 'e 20' may hold only letters"],
    ),
}


BAD_ACROSS = {
    "across a field no row sets": (
        ACROSS.replace("across: norm", "across: epochs"),
        ["table inet does not set 'epochs' per row"],
    ),
    "across a field that is not an experiment field": (
        ACROSS.replace("across: norm", "across: variant"),
        ["across must name an experiment field", "got 'variant'"],
    ),
    "across cell with a typo in the value": (
        ACROSS.replace("{nd.top1: 1, bn.top1: -1}", "{nd.top1: 1, nb.top1: -1}"),
        [r":\d+: ", "across.bn: 'nb.top1' names no cell of table inet", "norm one of bn, nd, none"],
    ),
    "across cell without a column": (
        ACROSS.replace("{nd.top1: 1, bn.top1: -1}", "{nd: 1, bn.top1: -1}"),
        ["'nd' names no cell", "column one of top1"],
    ),
    "across case no row group satisfies": (
        ACROSS.replace("[vgg11, none, 69.02]", "[preact, none, 69.02]"),
        ["across.none: no group of rows of table inet has all of nd.top1, none.top1"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ACROSS))
def test_bad_across_relation_gets_one_clear_message(tmp_path, case):
    text, patterns = BAD_ACROSS[case]
    expect_error(tmp_path, text, *patterns)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_claims_file_gets_one_clear_message(tmp_path, case):
    text, patterns = BAD_INPUTS[case]
    expect_error(tmp_path, text, *patterns)


def test_validate_reports_bad_input_with_exit_2_and_no_traceback(tmp_path, capsys):
    path = write(tmp_path, MINI.replace("dataset: cifar10", "dataset: svhn"))
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audit validate: error: ")
    assert f"{path}:8: unknown dataset 'svhn'" in err
    assert "Traceback" not in err


def test_validate_checks_experiments_against_the_runner_specs(tmp_path, capsys):
    # 'mlp' is a known architecture name, but the MLP does not run on CIFAR images.
    path = write(tmp_path, MINI.replace("- [resnet18,", "- [mlp,"))
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "claim tab.mlp.bn20: its experiment" in err
    assert "does not run on dataset 'cifar10'" in err
    assert "Traceback" not in err


def test_validate_accepts_the_real_file(capsys):
    assert cli.main(["validate", str(CLAIMS), "--list"]) == 0
    out = capsys.readouterr().out
    assert "233 claims OK" in out
    assert "imagenet-nd-beats-bn (8)" in out
    assert "table1.cifar100.resnet18.bn1  value  16.10" in out


def test_validate_does_not_import_torch():
    code = (
        "import sys\nfrom audit.cli import main\n"
        f"rc = main(['validate', {str(CLAIMS)!r}])\n"
        "print('torch' in sys.modules)\nsys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("False")


def test_anchors_and_merge_keys_reuse_a_block(tmp_path):
    text = MINI.replace("  - id: tab\n", "  - &base\n    id: tab\n").replace(
        "relations:",
        "  - <<: *base\n    id: tab100\n    experiment: {kind: classify, dataset: cifar100}\n"
        "relations:",
    )
    loaded = load_claims(write(tmp_path, text))
    merged = loaded.by_id()["tab100.vgg16.nd20"]
    assert merged.experiment["dataset"] == "cifar100"  # the explicit key wins over the merge
    assert merged.claimed_text == "93.25"


def test_duplicate_key_in_a_flow_mapping(tmp_path):
    expect_error(
        tmp_path,
        MINI.replace("{norm: bn, epochs: 20}", "{norm: bn, norm: nd, epochs: 20}"),
        r":11: ",
        "duplicate key 'norm'",
    )


def test_lamps_lab_values_match_the_reference(claims):
    repro = yaml.safe_load((REFERENCE / "repro-claims.yaml").read_text(encoding="utf-8"))
    lamps = repro["lamps_lab_obadage_et_al"]
    sources = {r.id: r for r in claims.reference_sources}
    arch_ids = {c.display["name"]: c.experiment["arch"] for c in claims if c.group == "table1"}
    arch_ids["ResNeXt-29"] = arch_ids.pop("ResNext-29")  # the file keeps the printed spelling
    expected = {}
    for entry in lamps["table1_reproduced_mean_of_3"]["architectures"]:
        for dataset in ("cifar10", "cifar100"):
            for column, value in entry[dataset].items():
                expected[f"table1.{dataset}.{arch_ids[entry['name']]}.{column.lower()}"] = value
    assert {k: v.value for k, v in sources["lamps-lab"].values.items()} == expected
    imagenet = {}
    norms = {"original (no BN)": "none", "BN": "bn", "Deconv": "nd"}
    models = {"VGG-11": "vgg11", "ResNet-18": "resnet18", "DenseNet-121": "densenet121"}
    for row in lamps["imagenet_table2_reproduced"]["rows"]:
        prefix = f"table2.{models[row['model']]}.{norms[row['variant']]}"
        imagenet[f"{prefix}.top1"], imagenet[f"{prefix}.top5"] = row["top1"], row["top5"]
    assert {k: v.value for k, v in sources["lamps-lab-imagenet"].values.items()} == imagenet
