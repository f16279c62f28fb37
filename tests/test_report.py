"""The reproduction report: content, escaping, self-containment, PDF text, golden fragments,
and a headless-Chromium screenshot in which the main table is visible."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from audit import figures, report
from audit.claims import Claim, ClaimSet, ReferenceSource, ReferenceValue, Tolerance
from audit.compare import COLUMNS, VERDICTS
from runners.rundir import RunResult, append_jsonl, atomic_write_yaml, write_result

GOLDEN = Path(__file__).parent / "golden"
HOSTILE = '<script>alert("x")</script>'
# (dataset, arch, norm, epochs) -> paper value, as printed in Table 1
PAPER = {
    ("cifar10", "vgg16", "bn", 20): "90.07",
    ("cifar10", "vgg16", "nd", 20): "93.25",
    ("cifar10", "resnet18", "bn", 20): "92.64",
    ("cifar10", "resnet18", "nd", 20): "94.07",
    ("cifar100", "vgg16", "bn", 20): "63.22",
    ("cifar100", "vgg16", "nd", 20): "71.97",
}
# Per-seed test accuracies of our fake runs (the third vgg16 bn cifar100 seed is missing).
OURS = {
    ("cifar10", "vgg16", "bn", 20): [90.31, 89.95, 90.12],
    ("cifar10", "vgg16", "nd", 20): [93.08, 93.31, 92.86],
    ("cifar10", "resnet18", "bn", 20): [91.02, 91.40, 90.77],
    ("cifar10", "resnet18", "nd", 20): [94.10, 94.22, 93.95],
    ("cifar100", "vgg16", "nd", 20): [72.18, 71.55, 72.40],
}


def _verdict(claimed: float, values: list[float]) -> str:
    return "reproduced" if abs(np.mean(values) - claimed) <= 1.0 else "not_reproduced"


def make_comparison() -> pd.DataFrame:
    rows = []
    for (dataset, arch, norm, epochs), text in PAPER.items():
        claimed, values = float(text), OURS.get((dataset, arch, norm, epochs), [])
        mean = float(np.mean(values)) if values else np.nan
        claim_id = f"table1.{dataset}.{arch}.{norm}{epochs}"
        rows.append(
            dict(
                claim_id=claim_id,
                group="table1",
                type="value",
                dataset=dataset,
                arch=arch,
                norm=norm,
                epochs=epochs,
                metric="test_top1",
                claimed=claimed,
                claimed_text=text,
                reproduced_mean=mean,
                reproduced_std=float(np.std(values, ddof=1)) if values else np.nan,
                n=len(values),
                ci_low=np.nan,
                ci_high=np.nan,
                abs_dev=mean - claimed,
                rel_dev=(mean - claimed) / claimed * 100,
                tolerance=Tolerance(abs=1.0),
                verdict=_verdict(claimed, values) if values else "missing",
                reason="" if values else "no run of this experiment in the store",
                run_ids=[f"run-{dataset}-{arch}-{norm}{epochs}-s{s}" for s in range(len(values))],
                deviations=[],
                source="Table 1",
            )
        )
    rows.append(
        dict(
            claim_id="table1.cifar10.vgg16.nd-beats-bn.e20",
            group="relations",
            type="relation",
            dataset="cifar10",
            arch="vgg16",
            norm=None,
            epochs=20,
            metric="test_top1",
            claimed=3.18,
            claimed_text="93.25 - 90.07",
            reproduced_mean=2.96,
            reproduced_std=0.3,
            n=3,
            ci_low=np.nan,
            ci_high=np.nan,
            abs_dev=np.nan,
            rel_dev=np.nan,
            tolerance="> -0",
            verdict="reproduced",
            reason=HOSTILE,
            run_ids=[],
            deviations=[],
            source="abstract",
            statement="ND beats BN (ND20 - BN20 > 0)",
            paired=True,
            gate=False,
            values=list(
                np.subtract(
                    OURS[("cifar10", "vgg16", "nd", 20)], OURS[("cifar10", "vgg16", "bn", 20)]
                )
            ),
        )
    )
    extras = ["statement", "paired", "values", "gate"]  # some of compare's extra columns
    return pd.DataFrame(rows, columns=[*COLUMNS, *extras])


def make_claims() -> ClaimSet:
    """A ClaimSet of the real data model: notes (one hostile) and two prior reproductions."""
    claims = [
        Claim(
            id=row["claim_id"],
            group=row["group"],
            type=row["type"],
            metric="test_top1",
            experiment=None,
            claimed=row["claimed"],
            claimed_text=row["claimed_text"],
            tolerance=Tolerance(abs=1.0) if row["type"] == "value" else Tolerance(abs=0.0),
            provenance={"table": "Table 1", "transcribed_from": ["S1", "S2"], "line": 7},
            note=HOSTILE if row["claim_id"].endswith("vgg16.nd20") else "",
        )
        for row in make_comparison().to_dict("records")
    ]
    seed_study = ReferenceSource(
        id="comp6248",
        title="COMP6248 seed study",
        source="R1",
        runs_per_cell="1",
        caveats=["one run per cell " + HOSTILE],
        values={
            "table1.cifar10.vgg16.nd20": ReferenceValue(93.08, "93.08"),
            "table1.cifar10.vgg16.bn20": ReferenceValue(90.35, "90.35"),
        },
    )
    lamps = ReferenceSource(
        id="lamps-lab",
        title="lamps-lab, mean of 3",
        source="R2",
        runs_per_cell="3",
        caveats=["looks like training accuracy"],
        values={"table1.cifar10.resnet18.bn20": ReferenceValue(92.35, "92.35")},
    )
    return ClaimSet(claims=claims, reference_sources=[seed_study, lamps])


def make_store(root: Path) -> pd.DataFrame:
    """Run directories for OURS (3 seeds, 20 epochs each), a failed run, MLP runs, and
    the matching results table, as audit.results would read it."""
    rows = []
    for (dataset, arch, norm, epochs), values in OURS.items():
        for seed, final in enumerate(values):
            run_id = f"run-{dataset}-{arch}-{norm}{epochs}-s{seed}"
            _write_run(root, run_id, final, epochs, seconds=12.0 if norm == "bn" else 30.0)
            rows.append(
                dict(
                    run_id=run_id,
                    status="done",
                    reason=None,
                    kind="classify",
                    dataset=dataset,
                    arch=arch,
                    norm=norm,
                    epochs=epochs,
                    seed=seed,
                    deviations="train_subset=500 (protocol: None)",
                    test_top1=final,
                )
            )
    for norm, final in (("bn", 97.9), ("nd", 98.2)):
        run_id = f"run-mlp-mnist-{norm}"
        _write_run(root, run_id, final, 5, seconds=1.0)
        rows.append(
            dict(
                run_id=run_id,
                status="done",
                kind="classify",
                dataset="mnist",
                arch="mlp",
                norm=norm,
                epochs=5,
                seed=0,
                test_top1=final,
            )
        )
    kernels = root / "runs" / "kernels-run"
    kernels.mkdir(parents=True)
    write_result(kernels, RunResult("kernels-run", "done", metrics={"centre_surround_score": 1.0}))
    (kernels / "kernels.svg").write_text(  # shown as a data: URL image, in the PDF too
        '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
        '<rect width="20" height="20" fill="#c8571b"/>'
        '<image href="http://example.com/x.png" width="5" height="5"/></svg>'
    )
    rows.append(dict(run_id="kernels-run", status="done", kind="kernels", source="skimage"))
    failed = "run-cifar100-vgg16-bn20-s0"
    (root / "runs" / failed).mkdir(parents=True)
    write_result(root / "runs" / failed, RunResult(failed, "failed", reason="CUDA out of memory"))
    (root / "runs" / failed / "log.txt").write_text(f"epoch 1 ok\nTraceback {HOSTILE}\n")
    rows.append(
        dict(
            run_id=failed,
            status="failed",
            reason="CUDA out of memory",
            kind="classify",
            dataset="cifar100",
            arch="vgg16",
            norm="bn",
            epochs=20,
            seed=0,
        )
    )
    return pd.DataFrame(rows)


def _write_run(root: Path, run_id: str, final: float, epochs: int, seconds: float) -> None:
    run_dir = root / "runs" / run_id
    run_dir.mkdir(parents=True)
    norm = "nd" if "-nd" in run_id else "bn"
    atomic_write_yaml(run_dir / "spec.yaml", {"norm": norm, "nd": {"block": 64, "n_iter": 5}})
    for epoch in range(1, epochs + 1):
        top1 = final * (1 - 0.5**epoch)  # a monotone curve ending near `final`
        append_jsonl(
            run_dir / "metrics.jsonl", {"epoch": epoch, "test_top1": top1, "seconds": seconds}
        )
    result = RunResult(
        run_id,
        "done",
        metrics={"test_top1": final},
        epochs_completed=epochs,
        epochs_planned=epochs,
        gpu_seconds=seconds * epochs,
        wall_seconds=seconds * epochs + 60,  # a minute of start-up and evaluation per run
        device="cuda:0 (Test GPU)",
    )
    write_result(run_dir, result)
    (run_dir / "log.txt").write_text("training finished\n")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> SimpleNamespace:
    """One report (HTML and PDF) over the fake store, shared by the tests below."""
    root = tmp_path_factory.mktemp("store")
    results = make_store(root)
    claims_file = root / "claims.yaml"
    claims_file.write_text("schema_version: 1\n")
    paths = report.render_report(
        make_claims(),
        make_comparison(),
        results,
        root,
        root / "reports" / "test",
        scope={"profile": "unit-test", "label": "reduced data " + HOSTILE},
        command="audit report --store STORE",
        claims_path=claims_file,
    )
    html = paths.html.read_text(encoding="utf-8")
    model = report.build_model(
        make_claims(),
        make_comparison(),
        results,
        root,
        scope={"profile": "unit-test"},
        command="audit report --store STORE",
        claims_path=claims_file,
    )
    return SimpleNamespace(paths=paths, html=html, results=results, root=root, model=model)


class _Collector(HTMLParser):
    """Collects element ids and every URL-bearing attribute; fails on unbalanced tables."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.depth = {"table": 0, "section": 0}

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id":
                self.ids.append(value)
            if name in ("href", "src", "xlink:href", "action", "srcset"):
                self.urls.append(value)
        if tag in self.depth:
            self.depth[tag] += 1

    def handle_endtag(self, tag):
        if tag in self.depth:
            self.depth[tag] -= 1
            assert self.depth[tag] >= 0, f"unbalanced </{tag}>"


def _parse(html: str) -> _Collector:
    parser = _Collector()
    parser.feed(html)
    parser.close()
    return parser


# ---------------------------------------------------------------- the HTML


def test_html_parses_and_anchors_every_claim_once(rendered):
    parsed = _parse(rendered.html)
    assert parsed.depth == {"table": 0, "section": 0}
    expected = {f"claim-{cid}" for cid in make_comparison()["claim_id"]}
    assert expected <= set(parsed.ids)
    duplicates = {i for i in parsed.ids if parsed.ids.count(i) > 1}
    assert not duplicates, duplicates
    # every in-page link points at an anchor that exists
    targets = {u[1:] for u in parsed.urls if u.startswith("#")}
    assert targets <= set(parsed.ids)


def test_html_makes_no_request_to_any_host(rendered):
    parsed = _parse(rendered.html)
    for url in parsed.urls:
        assert url.startswith(("#", "data:")), url
    # The only "http" text allowed is an SVG namespace name, which is never fetched.
    leftovers = re.sub(r'xmlns(:xlink)?="http://www\.w3\.org/[^"]*"', "", rendered.html)
    assert "http://" not in leftovers and "https://" not in leftovers
    assert "@import" not in rendered.html and "url(" not in leftovers.replace("url(#", "")
    assert "<link" not in rendered.html and "<script" not in rendered.html


def test_hostile_text_from_claims_specs_and_logs_is_escaped(rendered):
    assert HOSTILE not in rendered.html
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    # the claim note, the relation's reason, the prior study's caveat, the log tail and
    # the profile's label
    assert rendered.html.count(escaped) >= 5
    assert '<p class="banner" role="note">reduced data &lt;script' in rendered.html


def test_headline_counts_every_verdict_compare_can_give():
    assert sorted(report.VERDICTS) == sorted(VERDICTS)


def test_headline_counts_verdicts_per_group_and_states_the_scope(rendered):
    model = _model(rendered)
    counts = {
        g["group"]: dict(zip(model["headline"]["verdicts"], g["counts"], strict=True))
        for g in model["headline"]["groups"]
    }
    assert counts["table1"]["reproduced"] == 4
    assert counts["table1"]["not_reproduced"] == 1
    assert counts["table1"]["missing"] == 1
    assert counts["relations"]["reproduced"] == 1
    scope = dict(model["scope"])
    assert scope["profile"] == "unit-test"
    assert scope["seeds"] == "0, 1, 2"
    assert scope["runs"] == "18 done, 1 failed"
    assert "cuda:0 (Test GPU)" in scope["hardware"]
    # 15 runs x 20 epochs x (12 s BN or 30 s ND) + 2 MLP runs x 5 s, in hours
    assert scope["GPU-hours"] == f"{(6 * 20 * 12 + 9 * 20 * 30 + 2 * 5) / 3600:.2f}"
    assert (
        scope["wall-clock hours"] == f"{(6 * 20 * 12 + 9 * 20 * 30 + 2 * 5 + 17 * 60) / 3600:.2f}"
    )


def test_table1_mirrors_the_paper_with_mean_std_n_and_both_deviations(rendered):
    table = _model(rendered)["table1"]
    assert table["headers"] == ["BN20", "ND20"]
    c10, c100 = table["datasets"]
    assert [row["arch"] for row in c10["rows"]] == ["VGG-16", "ResNet-18"]
    nd20 = c10["rows"][0]["cells"][1]
    values = OURS[("cifar10", "vgg16", "nd", 20)]
    assert nd20["claimed"] == "93.25"
    assert nd20["reproduced"] == f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} (n=3)"
    assert nd20["abs_dev"] == f"{np.mean(values) - 93.25:+.2f} pp"
    assert nd20["rel_dev"] == f"{(np.mean(values) - 93.25) / 93.25 * 100:+.2f} %"
    assert c10["rows"][1]["cells"][0]["verdict"] == "not_reproduced"
    assert c100["rows"][0]["cells"][0]["verdict"] == "missing"
    assert 'class="cell v-not_reproduced"' in rendered.html


def test_prior_reproductions_are_judged_by_the_claims_tolerance(rendered):
    priors = _model(rendered)["priors"]
    assert [s["id"] for s in priors["sources"]] == ["comp6248", "lamps-lab"]
    by_id = {row["id"]: row for row in priors["rows"]}
    resnet = by_id["table1.cifar10.resnet18.bn20"]["priors"]
    assert resnet[0] is None  # the seed study did not run ResNet-18
    # lamps-lab 92.35 is within 1 pt of 92.64, ours (91.06) is not: they differ
    assert resnet[1]["verdict"] == "reproduced"
    assert resnet[1]["agreement"] == "differs from us"
    assert by_id["table1.cifar10.vgg16.nd20"]["priors"][0]["agreement"] == "agrees with us"


def test_relations_show_the_paired_differences_per_seed(rendered):
    (relation,) = _model(rendered)["relations"]
    assert relation["id"] == "table1.cifar10.vgg16.nd-beats-bn.e20"
    assert relation["claimed"] == "93.25 - 90.07 = +3.18"
    bn, nd = OURS[("cifar10", "vgg16", "bn", 20)], OURS[("cifar10", "vgg16", "nd", 20)]
    assert relation["per_seed"] == ", ".join(f"{d:+.2f}" for d in np.subtract(nd, bn))
    assert relation["paired"] is True
    assert "ND beats BN" in rendered.html.split('id="relations"')[1]


def test_cost_section_reports_seconds_per_epoch_gpu_hours_and_ratio(rendered):
    rows = {row["label"]: row for row in _model(rendered)["cost"]["rows"]}
    vgg = rows["VGG-16 · CIFAR-10"]
    assert (vgg["bn_seconds"], vgg["nd_seconds"], vgg["ratio"]) == ("12.0", "30.0", "2.50×")
    assert vgg["bn_gpu_hours"] == f"{3 * 20 * 12 / 3600:.3f}"
    assert "<svg" in rendered.html.split('id="cost"')[1]


def test_learning_curves_and_mlp_section_are_drawn_from_metrics_jsonl(rendered):
    model = _model(rendered)
    assert [f["dataset"] for f in model["curves"]] == ["CIFAR-10", "CIFAR-100"]
    assert "VGG-16, 20 epochs" in str(model["curves"][0]["svg"])
    assert "ND (n=3)" in str(model["curves"][0]["svg"])
    svg = str(model["curves"][0]["svg"])
    assert svg.index("VGG-16, 20 epochs") < svg.index("ResNet-18, 20 epochs")  # paper order
    assert [(r["dataset"], r["norm"], r["accuracy"]) for r in model["mlp"]["rows"]] == [
        ("MNIST", "BN", "97.90 (n=1)"),
        ("MNIST", "ND", "98.20 (n=1)"),
    ]


def test_claims_table_marks_claims_that_never_gate(rendered):
    rows = {row["id"]: row for row in _model(rendered)["claims"]}
    assert rows["table1.cifar10.vgg16.nd-beats-bn.e20"]["gated"] is False
    assert rows["table1.cifar10.vgg16.nd20"]["gated"] is True  # gate column empty: gated
    row = rendered.html.split('id="claim-table1.cifar10.vgg16.nd-beats-bn.e20"')[1]
    assert "not gated" in row.split("</tr>")[0]


def test_failed_runs_show_reason_and_log_tail(rendered):
    section = rendered.html.split('id="problems"')[1].split("</section>")[0]
    assert "run-cifar100-vgg16-bn20-s0" in section
    assert "CUDA out of memory" in section
    assert "epoch 1 ok" in section
    assert "table1.cifar100.vgg16.bn20" in section  # the claim left without results
    (unmet,) = _model(rendered)["problems"]["claims"]
    assert (unmet["group"], unmet["verdict"], unmet["ids"]) == (
        "table1",
        "missing",
        ["table1.cifar100.vgg16.bn20"],
    )
    assert unmet["reasons"] == ["no run of this experiment in the store"]


def test_methods_state_checksum_deviations_and_command(rendered):
    methods = _model(rendered)["methods"]
    assert methods["claims_sha256"] == hashlib.sha256(b"schema_version: 1\n").hexdigest()
    assert methods["deviations"] == ["train_subset=500 (protocol: None)"]
    assert methods["command"] == "audit report --store STORE"
    assert methods["nd_options"] == [("block=64, n_iter=5", 10)]  # 9 CNN + 1 MLP ND runs
    assert {"group": "table1", "type": "value", "tolerance": "±1 pt"} in methods["tolerances"]


def _model(rendered) -> dict:
    return rendered.model


# ---------------------------------------------------------------- figures and kernels


def test_figures_are_deterministic_inline_svg():
    curves = pd.DataFrame(
        [
            dict(panel="p", norm=n, seed=s, epoch=e, test_top1=e + s + (n == "nd"))
            for n in ("bn", "nd")
            for s in range(3)
            for e in range(1, 6)
        ]
    )
    first = figures.learning_curves_svg(curves, title="t & <b>")
    assert first == figures.learning_curves_svg(curves, title="t & <b>")
    assert first.startswith("<svg") and "<?xml" not in first and "<metadata" not in first
    assert 'aria-label="t &amp; &lt;b>"' in first
    assert "BN (n=3)" in first  # text stays text


def test_kernels_runner_figure_is_embedded_as_an_inert_image(tmp_path):
    run_dir = tmp_path / "runs" / "kernels-run"
    run_dir.mkdir(parents=True)
    (run_dir / "kernels.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    )
    results = pd.DataFrame(
        [
            dict(
                run_id="kernels-run",
                kind="kernels",
                status="done",
                source="skimage",
                centre_surround_score=0.667,
            )
        ]
    )
    section = report.kernels_section(results, tmp_path)
    assert section[0]["scores"] == [("centre_surround_score", "0.667")]  # from the table
    figure = str(section[0]["figure"])
    assert figure.startswith('<img class="kernels"') and "data:image/svg+xml;base64," in figure
    assert "<script" not in figure
    metrics = {"ring_red": -3.0847, "centre_surround_score": 1.0, "n_patches": 388800.0}
    write_result(run_dir, RunResult("kernels-run", "done", metrics={**metrics, "eps": 1.46e-12}))
    assert report.kernels_section(results, tmp_path)[0]["scores"] == [
        ("centre_surround_score", "1"),  # the claim's metric first, then by name
        ("eps", "1.46e-12"),
        ("n_patches", "388800"),
        ("ring_red", "-3.085"),
    ]
    (run_dir / "kernels.svg").unlink()
    np.savez(run_dir / "kernels.npz", kernels=np.random.default_rng(0).normal(size=(3, 5, 5)))
    assert str(report.kernels_section(results, tmp_path)[0]["figure"]).startswith("<svg")


@pytest.mark.parametrize("content", [b"", b"not an archive", "empty"])
def test_a_torn_kernels_archive_leaves_the_scores_and_no_figure(tmp_path, content):
    run_dir = tmp_path / "runs" / "kernels-run"
    run_dir.mkdir(parents=True)
    if content == "empty":
        np.savez(run_dir / "kernels.npz")  # an archive without an array
    else:
        (run_dir / "kernels.npz").write_bytes(content)
    results = pd.DataFrame(
        [dict(run_id="kernels-run", kind="kernels", status="done", centre_surround_score=1.0)]
    )
    section = report.kernels_section(results, tmp_path)
    assert section[0]["scores"] == [("centre_surround_score", "1")]
    assert section[0]["figure"] is None


# ---------------------------------------------------------------- golden fragments


@pytest.mark.parametrize("fragment", ["headline", "table1", "priors"])
def test_stable_fragments_match_golden_files(rendered, fragment):
    """Set UPDATE_GOLDEN=1 to rewrite tests/golden/report_<fragment>.html after a
    deliberate change, then review the diff."""
    text = report.render_fragment(f"partials/{fragment}.html.j2", _model(rendered))
    golden = GOLDEN / f"report_{fragment}.html"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


# ---------------------------------------------------------------- the PDF and the screen


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_pdf_carries_headline_and_table_values(rendered):
    assert rendered.paths.pdf.read_bytes().startswith(b"%PDF")
    text = subprocess.run(
        ["pdftotext", "-layout", str(rendered.paths.pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Headline" in text and "all claims" in text
    # reproduced, not reproduced, flipped, inconclusive, missing, failed, corrupt, total
    assert re.search(r"table1\s+4\s+1\s+0\s+0\s+1\s+0\s+0\s+6", text), "headline row of table1"
    values = OURS[("cifar10", "vgg16", "nd", 20)]
    assert f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} (n=3)" in text
    assert "paper 93.25" in text and "-0.17 pp" in text
    assert "Kernel experiment" in text and "centre_surround_score = 1" in text
    # Table 1 is not split: its title and its last row are on the same page
    page = next(p for p in text.split("\f") if "CIFAR-10 · top-1 test accuracy" in p)
    assert "94.09 ± 0.14 (n=3)" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_chromium_screenshot_shows_the_main_table(rendered, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,1000",
            f"--screenshot={shot}",
            rendered.paths.html.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 1000)
    # The first screen must show Table 1's coloured cells: count pixels of the
    # reproduced and not-reproduced colours (templates/report.css) below the headline.
    pixels = np.asarray(image)[450:]
    green = np.all(pixels == (0xCD, 0xEB, 0xC9), axis=-1).sum()
    red = np.all(pixels == (0xF5, 0xC6, 0xC0), axis=-1).sum()
    assert green > 20_000 and red > 5_000, (green, red)


# ---------------------------------------------------------------- the command, real claims


def test_audit_report_command_renders_the_real_claims_from_a_csv(tmp_path):
    """`audit report` end to end: claims.yaml, a results CSV, the real comparator."""
    csv_file = tmp_path / "results.csv"
    csv_file.write_text(
        "dataset,arch,norm,epochs,seed,test_top1,reason\n"
        "cifar10,vgg16,bn,20,0,90.35,\n"
        "cifar10,vgg16,nd,20,0,93.08,\n"
        f'cifar10,vgg16,nd,20,1,92.90,"{HOSTILE.replace(chr(34), chr(34) * 2)}"\n'
    )
    out = _audit_report(
        "--claims", "claims.yaml", "--results-csv", str(csv_file), "--out", str(tmp_path),
        "--name", "r", "--no-pdf", "--group", "table1,nd-beats-bn",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert not (tmp_path / "r" / "report.pdf").exists()
    from audit.claims import load_claims

    claims = load_claims(Path(__file__).parent.parent / "claims.yaml")
    selected = {f"claim-{c.id}" for c in claims if c.group in ("table1", "nd-beats-bn")}
    others = {f"claim-{c.id}" for c in claims} - selected
    anchors = set(_parse(html).ids)
    assert selected <= anchors and not others & anchors
    assert "92.99 ± 0.13 (n=2)" in html  # two seeds of ND20 on VGG-16, CIFAR-10
    assert "--results-csv" in html  # the exact command is recorded
    assert "not gated" not in html  # every table1 / nd-beats-bn claim gates
    assert HOSTILE not in html
    assert out.stdout.strip().endswith("NO_TORCH")  # the report never imports torch


def _audit_report(*args: str) -> subprocess.CompletedProcess:
    """`audit report ARGS` in a fresh interpreter that says whether torch got imported."""
    code = (
        "import sys\nfrom audit.cli import main\n"
        f"sys.argv = ['audit', 'report', *{list(args)!r}]\n"
        "rc = main(sys.argv[1:])\n"
        "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH')\nsys.exit(rc)\n"
    )
    root = Path(__file__).parent.parent
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)


def test_audit_report_reports_a_missing_store_in_one_line(tmp_path):
    out = _audit_report("--store", str(tmp_path / "nowhere"), "--out", str(tmp_path), "--no-pdf")
    assert out.returncode == 2
    assert "audit report: error:" in out.stderr and "Traceback" not in out.stderr


def test_audit_report_reports_an_unwritable_out_directory_in_one_line(tmp_path):
    csv_file = tmp_path / "results.csv"
    csv_file.write_text("dataset,arch,norm,epochs,seed,test_top1\ncifar10,vgg16,bn,20,0,90.35\n")
    (tmp_path / "taken").write_text("a file where the report directory should go")
    out = _audit_report(
        "--claims", "claims.yaml", "--results-csv", str(csv_file), "--out", str(tmp_path / "taken"),
        "--no-pdf", "--group", "table1",
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "audit report: error:" in out.stderr and "cannot write the report" in out.stderr
    assert "taken" in out.stderr and "Traceback" not in out.stderr


def test_a_store_without_results_gives_a_report_of_missing_claims(tmp_path):
    """No run at all: every claim is missing, every data section says so, nothing fails."""
    from audit.compare import compare
    from audit.results import empty_results

    claims = make_claims()
    claims.claims = [c for c in claims.claims if c.type == "value"]
    for claim in claims.claims:
        dataset, arch, cell = claim.id.split(".")[1:]
        claim.experiment = {"kind": "classify", "dataset": dataset, "arch": arch,
                            "norm": cell[:2], "epochs": int(cell[2:])}  # fmt: skip
    (tmp_path / "runs").mkdir()
    results = empty_results()
    paths = report.render_report(
        claims, compare(claims, results), results, tmp_path, tmp_path / "out", pdf=False
    )
    html = paths.html.read_text(encoding="utf-8")
    assert paths.pdf is None
    assert re.search(r"<th scope=\"row\">all claims</th>\s*(<td class=\"num\">0</td>\s*){4}"
                     r"<td class=\"num\">6</td>", html)  # fmt: skip
    assert "No BN/ND CNN run with per-epoch metrics" in html and "No timing was recorded" in html


# ---------------------------------------------------------------- Table 2 (ImageNet)

# lamps-lab's reproduced ImageNet values (repro-claims.yaml), one run per row.
LAMPS_IMAGENET = """\
dataset,arch,norm,epochs,seed,test_top1,test_top5
imagenet,vgg11,none,90,0,69.61,89.08
imagenet,vgg11,bn,90,0,71.35,90.25
imagenet,vgg11,nd,90,0,71.95,90.60
imagenet,resnet18,bn,90,0,70.72,89.73
imagenet,resnet18,nd,90,0,71.58,90.27
imagenet,densenet121,bn,90,0,75.88,92.96
imagenet,densenet121,nd,90,0,75.67,92.69
"""


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> SimpleNamespace:
    """The real claims of Table 2 and its relations, judged on lamps-lab's values."""
    from audit.claims import load_claims
    from audit.compare import compare
    from audit.results import load_results_csv

    root = tmp_path_factory.mktemp("imagenet")
    (root / "imagenet.csv").write_text(LAMPS_IMAGENET, encoding="utf-8")
    claims = load_claims(Path(__file__).parent.parent / "claims.yaml").select(
        groups=["imagenet", "imagenet-nd-beats-bn"]
    )
    results = load_results_csv(root / "imagenet.csv")
    comparison = compare(claims, results)
    paths = report.render_report(claims, comparison, results, None, root / "out", pdf=False)
    model = report.build_model(claims, comparison, results, None)
    return SimpleNamespace(html=paths.html.read_text(encoding="utf-8"), model=model, claims=claims)


def test_table2_mirrors_the_paper_rows_with_the_prior_beside_ours(imagenet):
    table = imagenet.model["table2"]
    assert table["metrics"] == ["top-1", "top-5"]
    assert table["sources"] == ["lamps-lab-imagenet"]  # only the studies covering Table 2
    assert table["epochs"] == "90"
    assert [(r["model"], r["variant"]) for r in table["rows"]] == [
        ("VGG-11", "original (no BN)"),
        ("VGG-11", "BN"),
        ("VGG-11", "Deconv"),
        ("ResNet-18", "BN"),
        ("ResNet-18", "Deconv"),
        ("DenseNet-121", "BN"),
        ("DenseNet-121", "Deconv"),
    ]
    top1, top5 = table["rows"][5]["cells"]  # DenseNet-121 BN
    assert top1["id"] == "table2.densenet121.bn.top1"
    assert (top1["claimed"], top1["reproduced"]) == ("74.65", "75.88 (n=1)")
    assert (top1["abs_dev"], top1["rel_dev"]) == ("+1.23 pp", f"{1.23 / 74.65 * 100:+.2f} %")
    assert top1["verdict"] == "not_reproduced"  # the retrained BN beats the model-zoo one
    (prior,) = top1["priors"]
    assert (prior["value"], prior["verdict"], prior["agreement"]) == (
        "75.88",
        "not_reproduced",
        "agrees with us",
    )
    assert top5["id"] == "table2.densenet121.bn.top5" and top5["verdict"] == "reproduced"
    assert any("model-zoo" in note for note in table["notes"])


def test_table2_and_imagenet_relations_render_with_each_anchor_once(imagenet):
    parsed = _parse(imagenet.html)
    assert parsed.depth == {"table": 0, "section": 0}
    anchors = [i for i in parsed.ids if i.startswith("claim-")]
    assert sorted(anchors) == sorted(f"claim-{c.id}" for c in imagenet.claims)
    assert len(anchors) == len(set(anchors)) == 22
    assert {u[1:] for u in parsed.urls if u.startswith("#")} <= set(parsed.ids)
    section = imagenet.html.split('<section id="table2" class="filled">')[1].split("</section>")[0]
    assert 'href="#claim-table2.densenet121.bn.top1"' in section
    assert 'class="cell v-not_reproduced"' in section and "original (no BN)" in section
    assert "lamps-lab-imagenet" in section


def test_imagenet_relations_flip_on_densenet_and_state_the_baseline_caveat_once(imagenet):
    rows = {r["id"]: r for r in imagenet.model["relations"]}
    dense = rows["table2.densenet121.nd-beats-bn.top1"]
    assert dense["verdict"] == "relation_flipped"
    assert dense["claimed"] == "75.73 - 74.65 = +1.08"
    assert dense["cell"] == "ImageNet · DenseNet-121 · ND/BN · 90 ep"
    assert rows["table2.densenet121.nd-beats-bn.top5"]["cell"].endswith("· test_top5")
    assert rows["table2.resnet18.nd-beats-bn.top1"]["verdict"] == "reproduced"
    (note,) = imagenet.model["relation_notes"]  # one caveat, shared by all eight
    assert {r["note_mark"] for r in rows.values()} == {1}
    section = imagenet.html.split('<section id="relations">')[1].split("</section>")[0]
    assert section.count('id="relation-note-1"') == 1
    assert section.count('href="#relation-note-1"') == 8
    # the note quotes arXiv v1 ("against reference models from 'model zoo'"): escaped
    assert "&#34;against reference models from &#39;model zoo&#39;&#34;" in section
    assert "model-zoo" in note and "cosine" in note


def test_table2_section_says_so_when_no_imagenet_claim_is_selected(rendered):
    assert _model(rendered)["table2"]["rows"] == []
    section = rendered.html.split('<section id="table2">')[1].split("</section>")[0]
    assert "No Table 2 (ImageNet) claim was selected." in section
