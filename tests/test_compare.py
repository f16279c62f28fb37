"""The comparator: t quantiles, statistics, matching, verdicts, the store loader, and the
recovery of the seed study's Figure 3 percentage differences."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from audit.claims import load_claims
from audit.compare import COLUMNS, compare, summarise, t_cdf, t_quantile
from audit.results import load_results, load_results_csv
from runners.rundir import RunResult, atomic_write_yaml, write_result

ROOT = Path(__file__).resolve().parent.parent
SPEC_FIELDS = ("kind", "dataset", "arch", "norm", "epochs")

CLAIMS = """\
schema_version: 1
tables:
  - id: tab
    group: t1
    metric: test_top1
    experiment: {kind: classify, dataset: cifar10}
    layout: [arch, BN20, ND20]
    columns:
      BN20: {norm: bn, epochs: 20}
      ND20: {norm: nd, epochs: 20}
    tolerance: {abs: 1.0}
    rows:
      - [vgg16, 90.00, 93.00]
  - id: bound
    group: bounds
    type: threshold
    metric: test_top1
    experiment: {kind: classify, dataset: mnist, arch: mlp, epochs: 20}
    layout: [norm, value]
    columns:
      value: {}
    tolerance: {abs: 0}
    rows:
      - [nd, 99.50]
relations:
  - id: beats
    group: rel
    statement: ND beats BN
    tables: [tab]
    cases:
      e20: {ND20: 1, BN20: -1}
    op: ">"
"""


@pytest.fixture
def claims(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(CLAIMS, encoding="utf-8")
    return load_claims(path)


def results_csv(tmp_path: Path, rows: list[dict], name: str = "results.csv") -> Path:
    header = ["kind", "dataset", "arch", "norm", "epochs", "seed", "status", "test_top1"]
    header += sorted({k for row in rows for k in row} - set(header))
    path = tmp_path / name
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def run(norm: str, seed: int, value: float | str, **extra) -> dict:
    row = {"kind": "classify", "dataset": "cifar10", "arch": "vgg16", "norm": norm}
    return {**row, "epochs": 20, "seed": seed, "status": "done", "test_top1": value, **extra}


def outcome(claims, tmp_path, rows) -> dict[str, dict]:
    table = compare(claims, load_results_csv(results_csv(tmp_path, rows)))
    return {row["claim_id"]: row for row in table.to_dict("records")}


# --------------------------------------------------------------------------- t and stats


@pytest.mark.parametrize(
    ("df", "expected"),
    [
        (1, 12.706204736),
        (2, 4.302652730),
        (3, 3.182446305),
        (5, 2.570581836),
        (10, 2.228138852),
        (30, 2.042272456),
        (120, 1.979930405),
        (1e9, 1.959963985),
    ],
)
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-8)


def test_t_quantile_other_levels_and_fractional_df():
    assert t_quantile(0.95, 4) == pytest.approx(2.131846786, abs=1e-8)
    assert t_quantile(0.995, 7) == pytest.approx(3.499483297, abs=1e-8)
    q = t_quantile(0.975, 2.5)  # Welch degrees of freedom are not integers
    assert t_quantile(0.975, 3) < q < t_quantile(0.975, 2)
    assert t_cdf(q, 2.5) == pytest.approx(0.975, abs=1e-12)
    assert t_cdf(-1.3, 6) == pytest.approx(1 - t_cdf(1.3, 6), abs=1e-14)
    with pytest.raises(ValueError):
        t_quantile(0.3, 4)


def test_summarise_gives_mean_std_and_t_interval():
    stats = summarise([1.0, 2.0, 3.0])
    assert (stats.mean, stats.std, stats.n) == (2.0, 1.0, 3)
    half = 4.302652730 / math.sqrt(3)
    assert stats.ci_low == pytest.approx(2 - half, abs=1e-8)
    assert stats.ci_high == pytest.approx(2 + half, abs=1e-8)
    single = summarise([5.0])
    assert single.n == 1 and single.mean == 5.0 and math.isnan(single.ci_low)


# --------------------------------------------------------------------------- Figure 3


def test_seed_study_figure3_percent_differences_are_recovered(tmp_path):
    """The seed's reproduced values as results -> rel_dev == its printed diff_pct (36 cells)."""
    claims = load_claims(ROOT / "claims.yaml")
    seed = {r.id: r for r in claims.reference_sources}["comp6248"]
    by_id = claims.by_id()
    rows = [
        {**by_id[cid].experiment, "seed": 0, "status": "done", "test_top1": value.text}
        for cid, value in seed.values.items()
    ]
    table = compare(claims.select(groups=["table1"]), load_results_csv(results_csv(tmp_path, rows)))
    table = table[table["claim_id"].isin(seed.values)]
    assert len(table) == 36
    assert {a for a in table["arch"]} == {"vgg16", "resnext29", "densenet121"}
    for row in table.itertuples():
        printed = float(seed.values[row.claim_id].extra["diff_pct"])
        assert row.rel_dev == pytest.approx(printed, abs=0.01), row.claim_id
        assert row.abs_dev == pytest.approx(row.reproduced_mean - row.claimed)


# --------------------------------------------------------------------------- verdicts


def test_columns_are_the_documented_contract():
    """docs/architecture.md ("Comparison") is the contract the report and check rely on."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()
    listing = doc.split("## Comparison", 1)[1].split("columns:\n`", 1)[1].split("`", 1)[0]
    documented = re.findall(r"[a-z_]+", listing)
    assert documented == COLUMNS


def test_output_has_the_contract_columns(claims, tmp_path):
    table = compare(claims, load_results_csv(results_csv(tmp_path, [run("bn", 0, 90.0)])))
    assert list(table.columns[: len(COLUMNS)]) == COLUMNS
    assert len(table) == len(claims)


def test_value_within_tolerance_is_reproduced(claims, tmp_path):
    rows = [run("bn", s, v) for s, v in enumerate((90.4, 90.6, 90.5))]
    row = outcome(claims, tmp_path, rows)["tab.vgg16.bn20"]
    assert row["verdict"] == "reproduced"
    assert row["n"] == 3
    assert row["reproduced_mean"] == pytest.approx(90.5)
    assert row["reproduced_std"] == pytest.approx(0.1)
    assert row["ci_low"] == pytest.approx(90.5 - 4.302652730 * 0.1 / math.sqrt(3))
    assert row["abs_dev"] == pytest.approx(0.5)
    assert row["rel_dev"] == pytest.approx(0.5 / 90 * 100)
    assert row["values"] == [90.4, 90.6, 90.5]


def test_value_outside_tolerance_is_not_reproduced(claims, tmp_path):
    row = outcome(claims, tmp_path, [run("bn", 0, 88.5)])["tab.vgg16.bn20"]
    assert row["verdict"] == "not_reproduced"
    assert "outside [89.00, 91.00]" in row["reason"]


def test_interval_straddling_an_edge_is_inconclusive(claims, tmp_path):
    rows = [run("bn", s, v) for s, v in enumerate((89.0, 91.0, 90.6))]
    row = outcome(claims, tmp_path, rows)["tab.vgg16.bn20"]
    assert row["verdict"] == "inconclusive"
    assert "straddles" in row["reason"]


def test_no_result_is_missing_and_failed_runs_are_failed(claims, tmp_path):
    rows = [run("nd", 0, "", reason="NaN loss at epoch 3") | {"status": "diverged"}]
    table = outcome(claims, tmp_path, rows)
    assert table["tab.vgg16.bn20"]["verdict"] == "missing"
    assert table["tab.vgg16.nd20"]["verdict"] == "failed"
    assert "diverged (NaN loss at epoch 3)" in table["tab.vgg16.nd20"]["reason"]


def test_some_seeds_failed_uses_done_runs_and_says_so(claims, tmp_path):
    rows = [run("nd", 0, 93.1), run("nd", 1, "", reason="OOM") | {"status": "failed"}]
    row = outcome(claims, tmp_path, rows)["tab.vgg16.nd20"]
    assert row["verdict"] == "reproduced"
    assert row["n"] == 1
    assert "done runs only (n=1)" in row["reason"] and "failed (OOM)" in row["reason"]
    assert len(row["run_ids"]) == 2


def test_deviations_are_listed(claims, tmp_path):
    rows = [run("bn", 0, 90.1, deviations="train_subset=500 (protocol: None)")]
    row = outcome(claims, tmp_path, rows)["tab.vgg16.bn20"]
    assert row["deviations"] == ["train_subset=500 (protocol: None)"]


def test_protocol_runs_are_never_averaged_with_deviating_variants(claims, tmp_path):
    head = "nd.head=channel_deconv (authors' code: delinear)"
    subset = "train_subset=256 (protocol: None)"
    rows = [
        run("nd", 0, 93.0),
        run("nd", 1, 93.2),
        run("nd", 0, 10.0, deviations=head),  # an ablation of the head
        run("nd", 0, 40.0, deviations=subset),  # a CPU smoke run
    ]
    row = outcome(claims, tmp_path, rows)["tab.vgg16.nd20"]
    assert row["values"] == [93.0, 93.2]
    assert row["deviations"] == []
    # Without protocol runs, the most numerous deviating variant stands alone, labelled.
    rows = [
        run("nd", 0, 40.0, deviations=subset),
        *(run("nd", s, 11.0, deviations=head) for s in (0, 1)),
    ]
    row = outcome(claims, tmp_path, rows)["tab.vgg16.nd20"]
    assert row["values"] == [11.0, 11.0]
    assert row["deviations"] == [head]


def test_relative_tolerance_and_at_least_direction(tmp_path):
    text = CLAIMS.replace(
        "tolerance: {abs: 1.0}", "tolerance: {abs: 0.5, rel: 2, direction: at-least}"
    )
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    claims = load_claims(path)
    # band = max(0.5 pt, 2% of 90 = 1.8 pt): 88.3 passes, 88.1 does not; above never fails
    rows = [run("bn", 0, 88.3), run("nd", 0, 99.9)]
    table = outcome(claims, tmp_path, rows)
    assert table["tab.vgg16.bn20"]["verdict"] == "reproduced"
    assert table["tab.vgg16.nd20"]["verdict"] == "reproduced"
    table = outcome(claims, tmp_path, [run("bn", 0, 88.1)])
    assert table["tab.vgg16.bn20"]["verdict"] == "not_reproduced"


def test_threshold_is_a_lower_bound(claims, tmp_path):
    mlp = {"kind": "classify", "dataset": "mnist", "arch": "mlp", "norm": "nd", "epochs": 20}
    for value, verdict in ((99.7, "reproduced"), (98.0, "not_reproduced")):
        rows = [{**mlp, "seed": 0, "status": "done", "test_top1": value}]
        assert outcome(claims, tmp_path, rows)["bound.nd.value"]["verdict"] == verdict


# --------------------------------------------------------------------------- relations


def test_relation_pairs_runs_by_seed(claims, tmp_path):
    rows = [run("bn", s, 90 + s) for s in range(3)] + [
        run("nd", s, 92 + s + 0.1 * s) for s in range(3)
    ]
    row = outcome(claims, tmp_path, rows)["tab.vgg16.beats.e20"]
    assert row["verdict"] == "reproduced"
    assert row["paired"]
    assert row["seeds"] == [0, 1, 2]
    assert row["values"] == pytest.approx([2.0, 2.1, 2.2])
    assert row["claimed"] == pytest.approx(3.0)
    assert row["abs_dev"] == pytest.approx(2.1 - 3.0)
    assert row["reason"] == "difference +2.10 > 0: holds; paired over 3 common seed(s)"


def test_relation_flipped_and_inconclusive(claims, tmp_path):
    flipped = [run("bn", s, 93 + s) for s in range(3)] + [run("nd", s, 91 + s) for s in range(3)]
    assert (
        outcome(claims, tmp_path, flipped)["tab.vgg16.beats.e20"]["verdict"] == "relation_flipped"
    )
    noisy = [run("bn", s, 92.0) for s in range(3)]
    noisy += [run("nd", s, v) for s, v in enumerate((91.0, 93.5, 92.2))]
    row = outcome(claims, tmp_path, noisy)["tab.vgg16.beats.e20"]
    assert row["verdict"] == "inconclusive"


def test_relation_without_common_seeds_combines_means(claims, tmp_path):
    rows = [run("bn", s, 90 + 0.1 * s) for s in (0, 1)] + [
        run("nd", s, 92.5 + 0.1 * s) for s in (5, 6)
    ]
    row = outcome(claims, tmp_path, rows)["tab.vgg16.beats.e20"]
    assert not row["paired"]
    assert row["reproduced_mean"] == pytest.approx(3.0)
    assert row["ci_low"] < 3.0 < row["ci_high"]
    assert row["verdict"] == "reproduced"


def test_relation_missing_side_is_missing(claims, tmp_path):
    row = outcome(claims, tmp_path, [run("bn", 0, 90.0)])["tab.vgg16.beats.e20"]
    assert row["verdict"] == "missing"
    assert "norm=nd" in row["reason"]


# --------------------------------------------------------------------------- store


def make_run(store: Path, name: str, spec: dict, result: RunResult | None) -> Path:
    run_dir = store / "runs" / name
    run_dir.mkdir(parents=True)
    atomic_write_yaml(run_dir / "spec.yaml", spec)
    if result is not None:
        write_result(run_dir, result)
    return run_dir


def test_store_results_are_matched_and_corrupt_files_reported(claims, tmp_path):
    store = tmp_path / "store"
    spec = {**dict(zip(SPEC_FIELDS, ("classify", "cifar10", "vgg16", "bn", 20), strict=True))}
    make_run(
        store,
        "bn-s0",
        {**spec, "seed": 0, "lr": 0.1, "nd": {"block": 64}},
        RunResult("bn-s0", "done", metrics={"test_top1": 90.2}, deviations=["x (protocol: y)"]),
    )
    make_run(store, "bn-s1", {**spec, "seed": 1}, None)  # still running: not a result
    corrupt = make_run(store, "nd-s0", {**spec, "norm": "nd", "seed": 0}, None)
    (corrupt / "result.json").write_text("{not json", encoding="utf-8")
    results = load_results(store)
    assert sorted(results["run_id"]) == ["bn-s0", "nd-s0"]
    assert dict(zip(results["run_id"], results["status"], strict=True))["nd-s0"] == "corrupt"
    assert any("corrupt result file" in p for p in results.attrs["problems"])
    table = {r["claim_id"]: r for r in compare(claims, results).to_dict("records")}
    assert table["tab.vgg16.bn20"]["verdict"] == "reproduced"
    assert table["tab.vgg16.bn20"]["deviations"] == ["x (protocol: y)"]
    assert table["tab.vgg16.nd20"]["verdict"] == "corrupt"
    assert "corrupt" in table["tab.vgg16.nd20"]["reason"]
    json.dumps(table["tab.vgg16.nd20"]["run_ids"])  # plain Python lists


def test_hand_made_table_without_bookkeeping_columns(claims):
    import pandas as pd

    table = pd.DataFrame(
        {"kind": ["classify"], "dataset": ["cifar10"], "arch": ["vgg16"], "norm": ["nd"]}
        | {"epochs": [20], "test_top1": [93.4]}
    )
    row = compare(claims, table).set_index("claim_id").loc["tab.vgg16.nd20"]
    assert row["verdict"] == "reproduced" and row["n"] == 1


# --------------------------------------------------------------------------- ImageNet

# lamps-lab's reproduced ImageNet values (repro-claims.yaml, imagenet_table2_reproduced):
# one 90-epoch run per row; on DenseNet-121 their BN beat their ND.
LAMPS_IMAGENET = [
    ("vgg11", "none", 69.61, 89.08),
    ("vgg11", "bn", 71.35, 90.25),
    ("vgg11", "nd", 71.95, 90.60),
    ("resnet18", "bn", 70.72, 89.73),
    ("resnet18", "nd", 71.58, 90.27),
    ("densenet121", "bn", 75.88, 92.96),
    ("densenet121", "nd", 75.67, 92.69),
]


def imagenet_csv(tmp_path: Path) -> Path:
    rows = [
        {"kind": "classify", "dataset": "imagenet", "arch": arch, "norm": norm, "epochs": 90}
        | {"seed": 0, "status": "done", "test_top1": top1, "test_top5": top5}
        for arch, norm, top1, top5 in LAMPS_IMAGENET
    ]
    return results_csv(tmp_path, rows, "imagenet.csv")


def test_imagenet_relations_from_a_csv_of_lamps_lab_values(tmp_path):
    claims = load_claims(ROOT / "claims.yaml").select(groups=["imagenet-nd-beats-bn"])
    table = compare(claims, load_results_csv(imagenet_csv(tmp_path)))
    rows = {row["claim_id"]: row for row in table.to_dict("records")}
    assert len(rows) == 8
    dense = rows["table2.densenet121.nd-beats-bn.top1"]
    assert dense["verdict"] == "relation_flipped"
    assert dense["reproduced_mean"] == pytest.approx(75.67 - 75.88)
    assert dense["claimed"] == pytest.approx(75.73 - 74.65)
    assert dense["paired"] and dense["seeds"] == [0]
    assert rows["table2.densenet121.nd-beats-bn.top5"]["verdict"] == "relation_flipped"
    resnet = rows["table2.resnet18.nd-beats-bn.top1"]
    assert resnet["verdict"] == "reproduced"
    assert resnet["reproduced_mean"] == pytest.approx(71.58 - 70.72)
    assert rows["table2.resnet18.nd-beats-bn.top5"]["verdict"] == "reproduced"
    assert rows["table2.vgg11.nd-beats-no-bn.top1"]["reproduced_mean"] == pytest.approx(
        71.95 - 69.61
    )
    assert rows["table2.vgg11.nd-beats-bn.top1"]["norm"] == "nd/bn"
    assert "model-zoo" in dense["note"]


def test_audit_check_lists_imagenet_relations_missing_without_a_csv(tmp_path, capsys):
    from audit import cli

    cifar = results_csv(tmp_path, [run("nd", 0, 93.0)])
    args = ["check", "--claims", str(ROOT / "claims.yaml"), "--group", "imagenet-nd-beats-bn"]
    assert cli.main([*args, "--results", str(cifar)]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("table2.")]
    assert len(lines) == 8 and all(line.rstrip().endswith("missing") for line in lines)
    assert cli.main([*args, "--results", str(cifar), "--allow-missing"]) == 0
    capsys.readouterr()
    # with ImageNet results the DenseNet-121 relation flips, so the gate fails for that
    assert cli.main([*args, "--results", str(imagenet_csv(tmp_path)), "--json"]) == 1
    verdicts = {c["claim_id"]: c["verdict"] for c in json.loads(capsys.readouterr().out)["claims"]}
    assert verdicts["table2.densenet121.nd-beats-bn.top1"] == "relation_flipped"
    assert verdicts["table2.resnet18.nd-beats-bn.top1"] == "reproduced"
