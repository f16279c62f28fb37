"""The report folder: written all or nothing (a full disk leaves the previous report whole,
from one render, with no temporary file), standing alone (results.csv, comparison.csv, the
claims file, environment.json, linked from the page), untrusted text made safe for HTML
(escaped, bidi controls shown, no NUL), and every sentence about the harness generated from
the facts it states."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from audit import report
from audit.errors import AuditError
from audit.report import facts, output
from audit.report.render import clean_text
from tests.test_report import make_claims, make_comparison, make_store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    results = make_store(root)
    claims_file = root / "claims.yaml"
    claims_file.write_text("schema_version: 1\n# the claims used\n", encoding="utf-8")
    return root, results, claims_file


def _render(store, out: Path, *, pdf: bool = False, title: str = "first", **kwargs):
    root, results, claims_file = store
    return report.render_report(
        make_claims(), make_comparison(), results, root, out, title=title,
        claims_path=claims_file, pdf=pdf, **kwargs,
    )  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------- the archive


def test_the_folder_stands_alone_and_the_page_links_every_file(store, tmp_path):
    _, results, claims_file = store
    paths = _render(store, tmp_path / "r", extra_files={"verdicts.json": b'{"claims": []}\n'})
    names = {p.name for p in paths.folder.iterdir()}
    assert names == {"index.html", "results.csv", "comparison.csv", "claims.yaml",
                     "environment.json", "verdicts.json"}  # fmt: skip
    html = paths.html.read_text(encoding="utf-8")
    for name in names - {"index.html"}:
        assert f'<a href="{name}"' in html, name
    runs = list(csv.DictReader(io.StringIO((paths.folder / "results.csv").read_text())))
    assert len(runs) == len(results)  # one row per run
    assert {r["run_id"] for r in runs} == set(results["run_id"])
    failed = next(r for r in runs if r["status"] == "failed")
    assert failed["reason"] == "CUDA out of memory"
    claims_rows = list(csv.DictReader(io.StringIO((paths.folder / "comparison.csv").read_text())))
    assert [r["claim_id"] for r in claims_rows] == list(make_comparison()["claim_id"])
    assert (paths.folder / "claims.yaml").read_bytes() == claims_file.read_bytes()
    env = json.loads((paths.folder / "environment.json").read_text())
    assert {"commit", "dirty", "packages", "claims_sha256"} <= set(env)
    assert env["packages"]["pandas"] == pd.__version__


def test_csv_exports_carry_no_control_characters_and_no_spreadsheet_formula(tmp_path):
    from audit.report.archive import csv_cell

    assert csv_cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert csv_cell("run\x00-id\x1b[31m") == "run-id[31m"
    assert csv_cell(-0.5) == "-0.5" and csv_cell(["a", "b"]) == "a; b"


# ---------------------------------------------------------------- all or nothing


def test_a_full_disk_leaves_the_previous_report_whole_and_no_temp_file(store, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    """The disk fills while the third file of the new render is written: the folder keeps
    the previous render's files, byte for byte, and nothing else."""
    out = tmp_path / "r"
    _render(store, out, title="first")
    before = _snapshot(out)
    calls = {"n": 0}
    real_fsync = os.fsync

    def filling_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(output.os, "fsync", filling_fsync)
    with pytest.raises(AuditError, match=r"^no space left on device: .*r/\S+"):
        _render(store, out, title="second")
    assert _snapshot(out) == before


def test_a_render_without_pdf_removes_the_previous_pdf(store, tmp_path):
    """A folder never mixes renders: the old report.pdf would not match the new page."""
    out = tmp_path / "r"
    (out).mkdir()
    (out / "report.pdf").write_bytes(b"%PDF old render")
    (out / "verdicts.json").write_text("{}")
    _render(store, out, pdf=False)
    assert not (out / "report.pdf").exists() and not (out / "verdicts.json").exists()


TMPFS = Path(f"/tmp/nd-audit-full-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def tiny_disk():
    """A real 256 KiB tmpfs, where the system allows mounting one (root in a container)."""
    TMPFS.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(TMPFS)], capture_output=True
        ).returncode
        == 0
    )
    try:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (needs root); the fault-injection test ran")
        yield TMPFS
    finally:
        if mounted:
            subprocess.run(["umount", str(TMPFS)], check=False)
        with contextlib.suppress(OSError):
            TMPFS.rmdir()


def test_audit_report_on_a_real_full_disk_says_so_in_one_line(store, tiny_disk):
    """`audit report` end to end on a 256 KiB file system: the report (about 600 KiB) does
    not fit: one line, exit 2, the previous (small) report untouched, no temp file."""
    csv_file = tiny_disk / "results.csv"
    csv_file.write_text("dataset,arch,norm,epochs,seed,test_top1\ncifar10,vgg16,bn,20,0,90.35\n")
    previous = tiny_disk / "out" / "r"
    previous.mkdir(parents=True)
    (previous / "index.html").write_text("<p>the previous report</p>")
    code = (
        "import sys\nfrom audit.cli import main\n"
        f"sys.exit(main(['report', '--claims', 'claims.yaml', '--results-csv', '{csv_file}', "
        f"'--out', '{tiny_disk / 'out'}', '--name', 'r', '--no-pdf']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith(f"audit report: error: no space left on device: {previous}/")
    assert [p.name for p in previous.iterdir()] == ["index.html"]
    assert (previous / "index.html").read_text() == "<p>the previous report</p>"


# ---------------------------------------------------------------- untrusted text


HOSTILE_RUN = "run-\u202eexe.txt\x00-\u2067x"


def test_untrusted_text_loses_nul_and_shows_bidi_controls():
    assert clean_text(HOSTILE_RUN) == "run-<U+202E>exe.txt\ufffd-<U+2067>x"
    assert clean_text("tab\tand\nnewline") == "tab\tand\nnewline"


def test_run_ids_csv_text_and_paths_reach_the_page_without_nul_or_bidi_override(tmp_path):
    results = pd.DataFrame(
        [dict(run_id=HOSTILE_RUN, status="failed", reason="bad \u202ereason\x00", kind="classify",
              dataset="cifar10", arch="vgg16", norm="bn", epochs=20, seed=0)]
    )  # fmt: skip
    comparison = make_comparison()
    comparison.loc[0, "reason"] = "\u202e<b>x</b>\x00"
    paths = report.render_report(
        make_claims(), comparison, results, None, tmp_path / "r", pdf=False,
        scope={"results": "/data/\u202ecsv.txt"},
    )  # fmt: skip
    html = paths.html.read_text(encoding="utf-8")
    for bad in ("\x00", "\u202e", "\u2067", "<b>x</b>"):
        assert bad not in html, repr(bad)
    assert "run-&lt;U+202E&gt;exe.txt\ufffd-&lt;U+2067&gt;x" in html
    assert "/data/&lt;U+202E&gt;csv.txt" in html
    assert "unicode-bidi: isolate" in html


# ---------------------------------------------------------------- nothing stale


def test_the_table2_sentence_follows_the_model_registry(monkeypatch):
    from audit.report import table2
    from runners import catalogue

    empty = pd.DataFrame(columns=["run_ids"])
    text = table2.origin_sentence(empty, set())
    assert "trains the ImageNet models ResNet-18, DenseNet-121, VGG-11 (" in text
    assert "No ImageNet runner" not in text
    imagenet_less = {
        name: type(info)(info.name, info.paper_name,
                         {k: b for k, b in info.builders.items() if k != "imagenet"})
        for name, info in catalogue.ARCHS.items()
    }  # fmt: skip
    monkeypatch.setattr(catalogue, "ARCHS", imagenet_less)
    assert table2.origin_sentence(empty, set()).startswith("This harness has no ImageNet model.")


def test_the_table2_sentence_counts_store_runs_and_imported_rows():
    from audit.report.table2 import origin_sentence

    cells = pd.DataFrame({"run_ids": [["a", "b"], ["c"]]})
    assert origin_sentence(cells, {"a"}).endswith(
        "The numbers below come from 1 run of this store and 2 imported rows."
    )


@pytest.mark.parametrize(
    ("seeds", "text"), [([0], "1 seed (0)"), ([0, 1, 2], "3 seeds (0, 1, 2)"), ([], "none")]
)
def test_the_seeds_are_stated_as_a_count_and_a_list(seeds, text):
    fact = facts.Facts(1, 0, [], None, None, seeds, [])
    assert fact.seeds_text() == text


def test_the_profile_is_stated_only_for_the_runs_it_planned():
    """An imported seed study beside a quick store: the quick profile describes the store's
    runs, not the report; with imports only, no profile is claimed at all."""
    mixed = facts.Facts(5, 36, ["seed-study.csv"], "quick", "reduced data", [0], [])
    assert mixed.profile_text() == "quick (the store's 5 runs): reduced data"
    assert "36 imported rows (seed-study.csv)" in mixed.origin_text()
    imported = facts.Facts(0, 36, ["seed-study.csv"], "quick", "reduced data", [0], [])
    assert imported.profile_text() == "none (every result was imported)"


def test_the_methods_cite_the_method_document_only_if_it_exists(store, monkeypatch, tmp_path):
    root, results, _ = store
    model = report.build_model(make_claims(), make_comparison(), results, root)
    exists = (ROOT / facts.METHOD_DOC).is_file()
    assert model["methods"]["method_doc"] == (facts.METHOD_DOC if exists else "")
    html = report.render_html(model)
    assert ("docs/method.md" in html) == exists
    assert "nd-spec.md" not in html  # the reference document is not in a user's clone
    monkeypatch.setattr(facts, "REPO_ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / facts.METHOD_DOC).write_text("# method\n")
    model = report.build_model(make_claims(), make_comparison(), results, root)
    assert model["methods"]["method_doc"] == "docs/method.md"


def test_the_runners_sentence_is_the_registry(store):
    from runners.registry import RUNNERS

    text = facts.runners_text()
    for kind in RUNNERS:
        assert text.count(kind) >= 1
    assert "ImageNet: ResNet-18, DenseNet-121, VGG-11)" in text  # the registry's models


def test_one_label_per_norm_in_tables_and_figures():
    from audit import figures
    from audit.report import common

    assert figures.NORM_LABELS is common.NORM_LABELS
    assert common.norm_label("none") == "no norm" and common.norm_label("nd/bn") == "ND/BN"


def test_an_imported_seed_study_beside_a_quick_store_is_labelled_by_the_facts(tmp_path):
    """The example's make-up: the quick profile describes its own 4 runs, its reduced-data
    MLP claims are proxies (not counted), and the seed study's numbers are judged."""
    from audit.claims import load_claims
    from audit.compare import compare
    from audit.results import load_results, load_results_csv
    from tests.report_fixtures import QUICK_DEVIATION, make_quick_like_store, seed_study_csv

    make_quick_like_store(tmp_path / "store")
    csv_file = seed_study_csv(tmp_path / "seed-study.csv")
    results = pd.concat([load_results(tmp_path / "store"), load_results_csv(csv_file)],
                        ignore_index=True)  # fmt: skip
    claims = load_claims(ROOT / "claims.yaml")
    model = report.build_model(
        claims, compare(claims, results), results, tmp_path / "store",
        scope={"results": str(csv_file)},
    )  # fmt: skip
    scope = dict(model["scope"])
    assert scope["profile"] == "quick (the store's 4 runs): quick profile: reduced data"
    assert scope["results"] == f"4 runs from the store; 36 imported rows ({csv_file})"
    assert scope["seeds"] == "1 seed (0)"
    headline = model["headline"]
    assert headline["overall"].startswith(
        "Of 134 printed numbers, 28 reproduced, 2 better than claimed, 6 worse than claimed, 98 not"
    )
    assert "3 judged only on proxy runs (not counted)" in headline["overall"]
    assert headline["proxy_note"].startswith(f"5 claims rest on runs that depart from the "
                                             f"paper's protocol ({QUICK_DEVIATION})")  # fmt: skip
    mlp = next(g for g in headline["groups"] if g["group"] == "mlp")
    assert mlp["sentence"].startswith("Of 6 stated bounds, 3 not run, 3 judged only on proxy")
    assert [f["title"] for f in model["deviation_figures"]][:2] == ["table1", "mlp"]
    html = report.render_html(model)
    assert "quick profile: reduced data" not in html.split('id="outcome"')[1].split("<ul")[0]


def test_cost_compares_measured_hours_with_the_plans_estimates(tmp_path):
    """plan.json's estimate per run against result.json's GPU seconds; a run estimated at 0
    GPU-hours (plan.json rounds tiny runs) cannot sit on a log-log plot and is left out."""
    from runners.rundir import atomic_write_json

    results = make_store(tmp_path)
    ids = [r for r in results["run_id"] if str(r).startswith("run-cifar10-vgg16")]
    matrix = [{"run_id": r, "gpu_hours": 0.1} for r in ids] + [
        {"run_id": "run-mlp-mnist-bn", "gpu_hours": 0.0}
    ]
    atomic_write_json(tmp_path / "plan.json", {"profile": "full", "matrix": matrix})
    model = report.build_model(make_claims(), make_comparison(), results, tmp_path)
    cost = model["cost"]
    measured = (3 * 20 * 12 + 3 * 20 * 30) / 3600  # BN and ND runs of VGG-16, CIFAR-10
    assert cost["estimate"] == (
        f"6 runs: measured GPU hours {measured:.3f} against 0.600 estimated GPU-hours "
        f"({measured / 0.6:.2f}× the estimate)."
    )
    assert str(cost["estimate_svg"]).startswith("<svg")
    assert "measured = estimated" in str(cost["estimate_svg"])


def test_cost_prefers_the_hours_slurm_accounted_where_audit_run_recorded_them(tmp_path):
    """A run whose job.json holds sacct's allocations is measured by them (its share of each
    job, requeues included), not by the runner's in-process GPU seconds."""
    from runners.rundir import atomic_write_json

    results = make_store(tmp_path)
    ids = sorted(r for r in results["run_id"] if str(r).startswith("run-cifar10-vgg16"))
    atomic_write_json(
        tmp_path / "plan.json",
        {"profile": "full", "matrix": [{"run_id": r, "gpu_hours": 0.1} for r in ids]},
    )
    job = {"executor": "slurm", "allocations": {"77_0": {"elapsed_s": 7200, "gpu_s": 7200}}}
    atomic_write_json(tmp_path / "runs" / ids[0] / "job.json", job)
    model = report.build_model(make_claims(), make_comparison(), results, tmp_path)
    others = (3 * 20 * 12 + 3 * 20 * 30 - 20 * (12 if "bn" in ids[0] else 30)) / 3600
    assert model["cost"]["estimate"] == (
        f"6 runs: measured GPU (SLURM accounting) and GPU hours {2 + others:.3f} against "
        f"0.600 estimated GPU-hours ({(2 + others) / 0.6:.2f}× the estimate)."
    )


def test_a_run_directory_name_in_a_kernel_figure_loses_its_bidi_control(tmp_path):
    import numpy as np

    from audit.report.kernels import kernels_section

    run_id = "kernels-\u202eevil"
    run_dir = tmp_path / "runs" / run_id
    run_dir.mkdir(parents=True)
    np.savez(run_dir / "kernels.npz", kernels=np.ones((2, 5, 5)))
    results = pd.DataFrame([dict(run_id=run_id, kind="kernels", status="done")])
    figure = str(kernels_section(results, tmp_path)[0]["figure"])
    assert "\u202e" not in figure and "kernels-&lt;U+202E&gt;evil" in figure


def test_an_interrupt_between_two_files_leaves_no_temp_file(store, tmp_path, monkeypatch):
    out = tmp_path / "r"
    calls = {"n": 0}
    real_fsync = os.fsync

    def interrupted(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(output.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _render(store, out)
    assert list(out.iterdir()) == []
