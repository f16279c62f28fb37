"""Claims linked to their source: the paper's URL and each prior reproduction's DOI in the
claims file (validated by the loader), each claim's table, row, column and quoted text in
the report, and prior values judged by the comparator's own band check."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from audit import report
from audit.claims import load_claims
from audit.compare import compare
from audit.errors import AuditError
from audit.report.priors import judge_prior

ROOT = Path(__file__).resolve().parent.parent
MINI = """\
schema_version: 1
paper:
  title: Network Deconvolution
  url: https://openreview.net/forum?id=rkeu30EtvS
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
    provenance: {table: Table 1, transcribed_from: [S1, S2]}
    rows:
      - [vgg16, "VGG-16", 90.07, 93.25]
relations:
  - id: beats
    group: rel
    statement: ND beats BN
    tables: [tab]
    cases:
      e20: {ND20: 1, BN20: -1}
    op: ">"
    provenance: {table: abstract, quote: performance improvement in all cases}
references:
  - id: prior
    title: A prior study
    source: R2
    url: https://zenodo.org/records/15321683
    doi: 10.5281/zenodo.15321683
    caveats: [one run per cell]
    columns: [BN20, ND20]
    series:
      reproduced:
        tab.vgg16: [89.07, 93.00]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "claims.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_real_claims_file_links_the_paper_and_the_prior_articles():
    claims = load_claims(ROOT / "claims.yaml")
    assert claims.meta["paper"]["url"].startswith("https://openreview.net/")
    by_id = {s.id: s for s in claims.reference_sources}
    assert by_id["lamps-lab"].doi == "10.5281/zenodo.15321683"
    assert by_id["lamps-lab-imagenet"].doi == by_id["lamps-lab"].doi
    assert by_id["comp6248"].url.startswith("https://github.com/COMP6248")


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("doi: 10.5281/zenodo.15321683", "doi: javascript:alert(1)", "doi"),
        ("url: https://zenodo.org/records/15321683", "url: javascript:alert(1)", "url"),
        ("url: https://zenodo.org/records/15321683", "url: https://a.org/x y", "url"),
        ("url: https://openreview.net/forum?id=rkeu30EtvS", "url: data:text/html,x", "url"),
        ("doi: 10.5281/zenodo.15321683", "doi: [10.1/x]", "doi"),
    ],
)
def test_the_loader_refuses_a_link_that_is_not_one_plain_url_or_doi(tmp_path, old, new, key):
    text = MINI.replace(old, new)
    path = write(tmp_path, text)
    with pytest.raises(AuditError) as error:
        load_claims(path)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.strip() == new)
    assert f"{path}:{line}:" in str(error.value) and key in str(error.value)


def test_each_claim_shows_its_table_row_column_quote_and_links_the_paper(tmp_path):
    path = write(tmp_path, MINI)
    claims = load_claims(path)
    results = pd.DataFrame(
        {"dataset": ["cifar10"] * 2, "arch": ["vgg16"] * 2, "norm": ["bn", "nd"],
         "epochs": [20, 20], "seed": [0, 0], "test_top1": [90.1, 93.2], "status": "done",
         "kind": "classify", "run_id": ["a", "b"], "deviations": [[], []]}
    )  # fmt: skip
    model = report.build_model(claims, compare(claims, results), results, None, claims_path=path)
    rows = {r["id"]: r for r in model["claims"]}
    cell = rows["tab.vgg16.nd20"]
    assert cell["source"] == {"where": "Table 1 · row VGG-16 · column ND20", "quote": "93.25",
                              "from": "S1, S2"}  # fmt: skip
    assert cell["link"] == "https://openreview.net/forum?id=rkeu30EtvS"
    assert rows["tab.vgg16.beats.e20"]["source"]["quote"] == "performance improvement in all cases"
    html = report.render_html(model)
    row = html.split('id="claim-tab.vgg16.nd20"')[1].split("</tr>")[0]
    assert '<a href="https://openreview.net/forum?id=rkeu30EtvS" rel="noreferrer">' in row
    assert "<q>93.25</q>" in row
    (source,) = model["priors"]["sources"]
    assert source["href"] == "https://doi.org/10.5281/zenodo.15321683"
    assert '<a href="https://doi.org/10.5281/zenodo.15321683"' in html


def test_a_prior_on_the_band_edge_is_judged_as_the_comparator_judges_a_run(tmp_path):
    """89.07 lies on the lower edge of 90.07 ± 1.0 (in floats, a hair outside): the
    report's judgement of the prior equals the comparator's verdict for a run of 89.07."""
    claims = load_claims(write(tmp_path, MINI))
    claim = claims.by_id()["tab.vgg16.bn20"]
    results = pd.DataFrame(
        {"dataset": ["cifar10"], "arch": ["vgg16"], "norm": ["bn"], "epochs": [20],
         "seed": [0], "test_top1": [89.07], "status": ["done"], "kind": ["classify"],
         "run_id": ["a"], "deviations": [[]]}
    )  # fmt: skip
    row = compare(claims, results).set_index("claim_id").loc["tab.vgg16.bn20"]
    assert judge_prior(89.07, claim.claimed, claim.tolerance) == row["verdict"] == "reproduced"
    assert judge_prior(89.06, claim.claimed, claim.tolerance) == "worse_than_claimed"
    assert judge_prior(89.07, claim.claimed, None) is None
