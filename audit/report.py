"""The reproduction report: assemble a report model from claims, comparison and store, then
render it to one self-contained HTML file (and a PDF of the same HTML).

`build_model` turns pandas tables into plain dicts and lists (formatted strings, verdict
classes, inline SVG figures); the jinja2 templates under `templates/` only lay them out,
with autoescaping on, so every string that comes from a claims file, a spec or a log is
escaped. Figures are inline SVG and the CSS is inlined, so the HTML makes no request to
any host; the PDF is WeasyPrint's rendering of that same HTML with every fetch refused.

This module never imports torch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from audit import figures
from audit.errors import AuditError
from audit.store import PLAN_FILE
from runners.rundir import (
    LOG_FILE,
    PROVENANCE_PACKAGES,
    RESULT_FILE,
    atomic_write_text,
    log_tail,
    package_versions,
    project_commit,
    read_run,
    read_spec,
)

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
DEFAULT_TITLE = "Reproduction audit of “Network Deconvolution” (Ye et al., ICLR 2020)"

# The verdicts of audit.compare.VERDICTS, in the order the headline shows them.
VERDICTS = (
    "reproduced",
    "not_reproduced",
    "relation_flipped",
    "inconclusive",
    "missing",
    "failed",
    "corrupt",
)
DATASET_LABELS = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "imagenet": "ImageNet",
}
NORM_LABELS = {"bn": "BN", "nd": "ND", "none": "none"}
TABLE1_DATASETS = ("cifar10", "cifar100")
TABLE2_DATASETS = ("imagenet",)
TABLE2_METRICS = {"test_top1": "top-1", "test_top5": "top-5"}  # Table 2's columns, in order
LOG_TAIL_LINES = 20
MAX_CURVE_PANELS = 24  # per dataset; a figure with more panels is unreadable anyway
REPORT_PACKAGES = (*PROVENANCE_PACKAGES, "matplotlib", "weasyprint")


@dataclass(frozen=True)
class ReportPaths:
    """Where `render_report` wrote the report."""

    html: Path
    pdf: Path | None


def render_report(
    claims: Any,
    comparison: pd.DataFrame,
    results: pd.DataFrame,
    store_dir: Path | None,
    out_dir: Path,
    *,
    title: str = DEFAULT_TITLE,
    scope: Mapping[str, Any] | None = None,
    command: str | None = None,
    claims_path: Path | None = None,
    pdf: bool = True,
) -> ReportPaths:
    """Write `out_dir/index.html` (and `out_dir/report.pdf` unless `pdf=False`).

    `claims` is the ClaimSet the comparison was made from (notes, provenance, prior
    reproductions); `scope` adds what the store cannot tell (profile, executor, ...).
    """
    model = build_model(
        claims,
        comparison,
        results,
        store_dir,
        title=title,
        scope=scope,
        command=command,
        claims_path=claims_path,
    )
    html = render_html(model)
    out_dir = Path(out_dir)
    pdf_path = out_dir / "report.pdf" if pdf else None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "index.html", html)
        (out_dir / "index.html").chmod(0o644)  # a published page, not a private temp file
        if pdf_path is not None:
            write_pdf(html, pdf_path)
    except OSError as exc:
        raise AuditError(
            f"{exc.filename or out_dir}: cannot write the report ({exc.strerror}); "
            "choose a writable directory with --out / --name"
        ) from None
    return ReportPaths(html=out_dir / "index.html", pdf=pdf_path)


# ---------------------------------------------------------------- rendering


def template_environment() -> jinja2.Environment:
    """Autoescaping on for every template: escaping is the default, `|safe` the exception."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a typo in a template fails loudly
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["verdict_label"] = verdict_label
    return env


def render_html(model: Mapping[str, Any]) -> str:
    return template_environment().get_template("report.html.j2").render(model)


def render_fragment(template: str, model: Mapping[str, Any]) -> str:
    """One partial (e.g. "partials/table1.html.j2"), for golden tests of stable fragments."""
    return template_environment().get_template(template).render(model)


def write_pdf(html: str, path: Path) -> None:
    """Render the HTML with WeasyPrint, fetching nothing but inline `data:` URLs: any other
    reference is refused (and skipped with a warning) rather than requested."""
    import weasyprint  # slow to import; only needed when a PDF is asked for
    from weasyprint.urls import URLFetcher

    fetcher = URLFetcher(allowed_protocols={"data"}, fail_on_errors=False)
    pdf_bytes = weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()
    tmp = path.with_suffix(".pdf.tmp")
    tmp.write_bytes(pdf_bytes)
    tmp.replace(path)
    path.chmod(0o644)


# ---------------------------------------------------------------- the model


def build_model(
    claims: Any,
    comparison: pd.DataFrame,
    results: pd.DataFrame,
    store_dir: Path | None,
    *,
    title: str = DEFAULT_TITLE,
    scope: Mapping[str, Any] | None = None,
    command: str | None = None,
    claims_path: Path | None = None,
    generated: datetime | None = None,
) -> dict[str, Any]:
    """Everything the templates show, as plain data with every number already formatted."""
    comparison = comparison.reset_index(drop=True)
    details = load_run_details(store_dir, results)
    curves = load_curves(store_dir, results)
    index = claim_index(claims)
    sources = reference_sources(claims)
    scope = {**stored_scope(store_dir), **(scope or {})}
    return {
        "title": title,
        "label": _text(scope.get("label")),
        "generated": (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command or "not recorded",
        "headline": headline(comparison),
        "scope": scope_items(scope, results, details),
        "table1": table1(comparison),
        "table2": table2(comparison, sources, index),
        "priors": prior_reproductions(comparison, sources, index),
        "relations": relation_rows(comparison),
        "relation_notes": relation_notes(comparison),
        "curves": curve_figures(
            curves, lambda arch: arch != "mlp", "test accuracy per epoch, BN against ND"
        ),
        "cost": cost_section(results, details),
        "kernels": kernels_section(results, store_dir),
        "mlp": mlp_section(results, curves),
        "problems": problems(comparison, results, details),
        "methods": methods(comparison, results, details, claims_path, command),
        "claims": claim_rows(comparison, index),
    }


# -- formatting


def fmt(value: Any, digits: int = 2, *, signed: bool = False, suffix: str = "") -> str:
    """A number as text; "–" for a missing one. ASCII signs so a PDF search for -0.18 works."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    text = f"{float(value):+.{digits}f}" if signed else f"{float(value):.{digits}f}"
    return text + suffix


def mean_text(mean: Any, std: Any, n: Any) -> str:
    """`93.08 ± 0.12 (n=3)`; a single run shows no spread rather than a fake zero."""
    if _missing(mean):
        return "–"
    n_int = 0 if _missing(n) else int(n)
    if n_int > 1 and not _missing(std):  # ddof=1 std of a single run would be NaN
        return f"{fmt(mean)} ± {fmt(std)} (n={n_int})"
    return f"{fmt(mean)} (n={n_int})"


def verdict_label(verdict: str) -> str:
    return str(verdict).replace("_", " ")


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def norm_label(norm: Any) -> str:
    """BN, ND, none; a relation's "nd/bn" becomes "ND/BN"."""
    return "/".join(NORM_LABELS.get(part, part) for part in str(norm).split("/"))


def dataset_label(dataset: Any) -> str:
    return DATASET_LABELS.get(str(dataset), str(dataset))


def arch_label(arch: Any) -> str:
    """The name the paper prints (the runners' registry), else the name as given."""
    from runners.models import ARCHS  # the registry of paper names; never imports torch

    info = ARCHS.get(str(arch))
    return info.paper_name if info else str(arch)


def arch_order(arch: Any) -> tuple[int, str]:
    """The paper's row order (the claims vocabulary lists Table 1 in print order)."""
    from audit.claims import ARCHS

    return (ARCHS.index(arch), "") if arch in ARCHS else (len(ARCHS), str(arch))


def _epochs(value: Any) -> int | str | None:
    """An epoch budget; a relation over several budgets has the text "1/100"."""
    if _missing(value):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


# -- claims and prior reproductions


def claim_index(claims: Any) -> dict[str, Any]:
    """claim id -> Claim (for notes and provenance); empty when no ClaimSet is given."""
    return {str(claim.id): claim for claim in getattr(claims, "claims", None) or []}


def reference_sources(claims: Any) -> list[Any]:
    """The prior reproductions of the ClaimSet (audit.claims.ReferenceSource objects)."""
    return list(getattr(claims, "reference_sources", None) or [])


def _get(obj: Any, key: str, default: Any) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


# -- headline


def headline(comparison: pd.DataFrame) -> dict[str, Any]:
    """Counts of verdicts overall and per claim group (every verdict column, zeros kept)."""
    counts = (
        comparison.groupby(["group", "verdict"]).size().unstack(fill_value=0)
        if len(comparison)
        else pd.DataFrame()
    )
    counts = counts.reindex(columns=list(VERDICTS), fill_value=0)
    groups = [
        {"group": group, "counts": [int(row[v]) for v in VERDICTS], "total": int(row.sum())}
        for group, row in counts.iterrows()
    ]
    totals = [int(counts[v].sum()) for v in VERDICTS]
    return {
        "verdicts": list(VERDICTS),
        "totals": totals,
        "total": sum(totals),
        "groups": groups,
    }


def scope_items(
    scope: Mapping[str, Any], results: pd.DataFrame, details: pd.DataFrame
) -> list[tuple[str, str]]:
    """What the audit covered, stated next to the headline: profile, seeds, hardware, cost."""
    statuses = results.get("status", pd.Series(dtype=str)).value_counts()
    gpu_hours = float(details["gpu_seconds"].sum()) / 3600 if len(details) else 0.0
    wall_hours = float(details["wall_seconds"].sum()) / 3600 if len(details) else 0.0
    items = {
        "profile": str(scope.get("profile", "not recorded")),
        "runs": ", ".join(f"{count} {status}" for status, count in statuses.items()) or "none",
        "seeds": _seeds_text(results),
        "hardware": str(scope.get("hardware") or _device_summary(details)),
        "GPU-hours": fmt(scope.get("gpu_hours", gpu_hours), 2),
        # CPU-only audits spend no GPU-hours; the wall-clock total still says what it cost
        "wall-clock hours": fmt(wall_hours, 2),
    }
    shown = {*items, "gpu_hours", "label"}  # the label is a banner of its own
    extras = {k: str(v) for k, v in scope.items() if k not in shown and v is not None}
    return [*items.items(), *extras.items()]


def stored_scope(store_dir: Path | None) -> dict[str, Any]:
    """What the store's plan.json says about the last `audit run` (profile, label)."""
    if store_dir is None:
        return {}
    plan = _read_json(Path(store_dir) / PLAN_FILE)
    return {key: plan[key] for key in ("profile", "label") if plan.get(key)}


def _device_summary(details: pd.DataFrame) -> str:
    """The devices the runs recorded, with how many runs each."""
    devices = details["device"].replace("", np.nan).dropna() if len(details) else pd.Series()
    if devices.empty:
        return "not recorded (results imported without run directories)"
    return "; ".join(f"{name} ({count} runs)" for name, count in devices.value_counts().items())


# -- Table 1


def _value_cells(comparison: pd.DataFrame) -> pd.DataFrame:
    """Value claims on test accuracy of BN/ND image classifiers: the cells of Table 1."""
    mask = (
        (comparison["type"] == "value")
        & comparison["dataset"].isin(TABLE1_DATASETS)
        & comparison["norm"].isin(["bn", "nd"])
        & (comparison["metric"] == "test_top1")
    )
    # A cell claimed twice (e.g. by two groups) is shown once; all claims are listed below.
    return comparison[mask].drop_duplicates(["dataset", "arch", "norm", "epochs"])


def table1(comparison: pd.DataFrame) -> dict[str, Any]:
    """Table 1 as the paper prints it: per dataset, a row per architecture, BN/ND columns."""
    cells = _value_cells(comparison)
    epochs = sorted({int(e) for e in cells["epochs"].dropna()})
    columns = [(norm, e) for e in epochs for norm in ("bn", "nd")]
    lookup = {
        (r["dataset"], r["arch"], r["norm"], _epochs(r["epochs"])): r
        for r in cells.to_dict("records")
    }
    datasets = []
    for dataset in [d for d in TABLE1_DATASETS if d in set(cells["dataset"])]:
        archs = sorted(set(cells.loc[cells["dataset"] == dataset, "arch"]), key=arch_order)
        rows = [
            {
                "arch": arch_label(arch),
                "cells": [_cell(lookup.get((dataset, arch, n, e))) for n, e in columns],
            }
            for arch in archs
        ]
        datasets.append({"id": dataset, "label": dataset_label(dataset), "rows": rows})
    headers = [f"{NORM_LABELS[n]}{e}" for n, e in columns]
    return {"headers": headers, "datasets": datasets}


def _cell(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "id": str(row["claim_id"]),
        "claimed": _claimed_text(row),
        "reproduced": mean_text(row["reproduced_mean"], row["reproduced_std"], row["n"]),
        "n": 0 if _missing(row["n"]) else int(row["n"]),
        "abs_dev": fmt(row["abs_dev"], signed=True, suffix=" pp"),
        "rel_dev": fmt(row["rel_dev"], signed=True, suffix=" %"),
        "verdict": str(row["verdict"]),
    }


# -- Table 2


def table2(
    comparison: pd.DataFrame, sources: list[Any], index: Mapping[str, Any]
) -> dict[str, Any]:
    """Table 2 (ImageNet) as the paper prints it: a row per (model, variant), the columns
    top-1 and top-5, each beside the prior reproductions that report that cell."""
    mask = (
        (comparison["type"] == "value")
        & comparison["dataset"].isin(TABLE2_DATASETS)
        & comparison["metric"].isin(list(TABLE2_METRICS))
    )
    cells = comparison[mask].drop_duplicates(["dataset", "arch", "norm", "epochs", "metric"])
    metrics = [m for m in TABLE2_METRICS if m in set(cells["metric"])]
    ids = {str(i) for i in cells["claim_id"]}
    priors = [s for s in sources if ids & set(s.values)]  # only studies that cover Table 2
    rows: dict[tuple, dict[str, Any]] = {}  # file order is the paper's row order
    for r in cells.to_dict("records"):
        claim = index.get(str(r["claim_id"]))
        key = (r["dataset"], r["arch"], r["norm"], _epochs(r["epochs"]))
        row = rows.setdefault(key, {**_table2_names(r, claim), "cells": {}})
        tolerance = _get(claim, "tolerance", None)
        row["cells"][r["metric"]] = {
            **_cell(r),
            "priors": [_prior(s.values.get(str(r["claim_id"])), r, tolerance) for s in priors],
        }
    notes = dict.fromkeys(_text(r.get("note")) for r in cells.to_dict("records"))
    return {
        "metrics": [TABLE2_METRICS[m] for m in metrics],
        "sources": [s.id for s in priors],
        "rows": [{**row, "cells": [row["cells"].get(m) for m in metrics]} for row in rows.values()],
        "epochs": ", ".join(dict.fromkeys(str(key[3]) for key in rows if key[3] is not None)),
        "notes": [note for note in notes if note],
    }


def _table2_names(row: Mapping[str, Any], claim: Any) -> dict[str, str]:
    """The model and variant as printed (the claims file's display text), else our labels."""
    display = _get(claim, "display", None) or {}
    norm = _text(row.get("norm"))
    return {
        "model": display.get("name") or arch_label(row.get("arch")),
        "variant": display.get("variant") or NORM_LABELS.get(norm, norm),
    }


# -- prior reproductions


def prior_reproductions(
    comparison: pd.DataFrame, sources: list[Any], index: Mapping[str, Any]
) -> dict[str, Any]:
    """Every selected claim some prior reproduction reports a value for: the paper, us,
    and each prior study, each judged by the claim's own tolerance, so the colours show
    who agrees with whom."""
    covered = {claim_id for source in sources for claim_id in source.values}
    rows = []
    for r in comparison[comparison["claim_id"].isin(covered)].to_dict("records"):
        tolerance = _get(index.get(str(r["claim_id"])), "tolerance", None)
        rows.append(
            {
                "id": str(r["claim_id"]),
                "cell": _experiment_text(r) + _metric_suffix(r),
                "claimed": _claimed_text(r),
                "ours": mean_text(r["reproduced_mean"], r["reproduced_std"], r["n"]),
                "ours_rel": fmt(r["rel_dev"], signed=True, suffix=" %"),
                "verdict": str(r["verdict"]),
                "priors": [
                    _prior(source.values.get(str(r["claim_id"])), r, tolerance)
                    for source in sources
                ],
            }
        )
    return {
        "sources": [
            {"id": s.id, "title": s.title, "runs": s.runs_per_cell, "caveats": list(s.caveats)}
            for s in sources
        ],
        "rows": rows,
    }


def _metric_suffix(row: Mapping[str, Any]) -> str:
    metric = _text(row.get("metric"))
    return f" · {metric}" if metric and metric != "test_top1" else ""


def _prior(ref: Any, claim: Mapping[str, Any], tolerance: Any) -> dict[str, Any] | None:
    """A prior value: its deviation from the paper, whether it is within the claim's
    tolerance, and whether that judgement matches ours."""
    if ref is None:
        return None
    value, claimed = float(ref.value), float(claim["claimed"])
    within = _within(value, claimed, tolerance)
    ours = claim["verdict"] in ("reproduced", "not_reproduced")
    same = within == (claim["verdict"] == "reproduced") if ours and within is not None else None
    return {
        "value": str(ref.text or fmt(value)),
        "abs_dev": fmt(value - claimed, signed=True, suffix=" pp"),
        "rel_dev": fmt(
            (value - claimed) / claimed * 100 if claimed else math.nan, signed=True, suffix=" %"
        ),
        "verdict": {True: "reproduced", False: "not_reproduced", None: "inconclusive"}[within],
        "agreement": {True: "agrees with us", False: "differs from us", None: ""}[same],
    }


def _within(value: float, claimed: float, tolerance: Any) -> bool | None:
    """Whether `value` passes the claim's tolerance (None when the tolerance is unknown)."""
    bounds = getattr(tolerance, "bounds", None)
    if bounds is None:
        return None
    low, high = bounds(claimed)
    return bool(low <= value <= high)


def _claimed_text(row: Mapping[str, Any]) -> str:
    return _text(row.get("claimed_text")) or fmt(row.get("claimed"))


# -- relations


def relation_rows(comparison: pd.DataFrame) -> list[dict[str, Any]]:
    """Every relation claim (ND beats BN, faster convergence, ...) with the per-seed
    paired differences compare computed for it (its `values` column)."""
    rows = comparison[comparison["type"] == "relation"]
    marks = {note: i for i, note in enumerate(relation_notes(comparison), start=1)}
    return [
        {
            "id": str(r["claim_id"]),
            "cell": _experiment_text(r) + _metric_suffix(r),
            "statement": _text(r.get("statement")),
            "note_mark": marks.get(_text(r.get("note"))),
            "claimed": _relation_claimed(r),
            "per_seed": ", ".join(fmt(v, signed=True) for v in _as_values(r.get("values"))),
            "paired": bool(r.get("paired")) if not _missing_any(r.get("paired")) else False,
            "reproduced": mean_text(r["reproduced_mean"], r["reproduced_std"], r["n"]),
            "verdict": str(r["verdict"]),
            "reason": _text(r.get("reason")),
        }
        for r in rows.to_dict("records")
    ]


def relation_notes(comparison: pd.DataFrame) -> list[str]:
    """The distinct notes of the relation claims, shown once below their table (the
    ImageNet baseline caveat would otherwise repeat on every ImageNet row)."""
    notes = comparison.loc[comparison["type"] == "relation"].get("note", pd.Series(dtype=object))
    return [note for note in dict.fromkeys(notes.map(_text)) if note]


def _relation_claimed(row: Mapping[str, Any]) -> str:
    """`93.25 - 90.07 = +3.18`: the printed cells and the difference they imply."""
    text, claimed = _text(row.get("claimed_text")), row.get("claimed")
    if _missing(claimed):
        return text or "–"
    return f"{text} = {fmt(claimed, signed=True)}" if text else fmt(claimed, signed=True)


def _as_values(value: Any) -> list[float]:
    if _missing_any(value) or isinstance(value, str):
        return []
    return [float(v) for v in value]


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _column(results: pd.DataFrame, name: str, default: str) -> pd.Series:
    """A results column with `default` where it is empty (or for every row when a hand-made
    CSV lacks it): runs are classification runs and done unless they say otherwise."""
    return results.get(name, pd.Series(default, index=results.index)).fillna(default)


def _classify_done(results: pd.DataFrame) -> pd.DataFrame:
    if results.empty or "test_top1" not in results:
        return results.iloc[0:0]
    kind, status = _column(results, "kind", "classify"), _column(results, "status", "done")
    return results[(kind == "classify") & (status == "done") & results["test_top1"].notna()]


# -- run directories: details and curves


def _run_dirs(store_dir: Path | None, results: pd.DataFrame) -> dict[str, Path]:
    if store_dir is None or "run_id" not in results:
        return {}
    runs = Path(store_dir) / "runs"
    ids = [str(r) for r in results["run_id"].dropna()]
    return {run_id: runs / run_id for run_id in ids if (runs / run_id).is_dir()}


DETAIL_COLUMNS = [
    "run_id",
    "device",
    "wall_seconds",
    "gpu_seconds",
    "seconds_per_epoch",
    "nd_options",
    "log_tail",
]


def load_run_details(store_dir: Path | None, results: pd.DataFrame) -> pd.DataFrame:
    """Per run: device, wall and GPU seconds (result.json), seconds per epoch
    (metrics.jsonl), the ND options (spec.yaml) and, for runs that did not finish, the
    tail of log.txt: what the cost, failure and methods sections need."""
    rows = []
    for run_id, run_dir in _run_dirs(store_dir, results).items():
        record = read_run(run_dir)  # the one reader: a damaged part is left out, never raised
        result = record.result.to_dict() if record.result is not None else {}
        seconds = [m["seconds"] for m in record.metrics if _is_number(m.get("seconds"))]
        rows.append(
            {
                "run_id": run_id,
                "device": str(result.get("device") or ""),
                "wall_seconds": float(result.get("wall_seconds") or 0.0),
                "gpu_seconds": float(result.get("gpu_seconds") or 0.0),
                "seconds_per_epoch": float(np.mean(seconds)) if seconds else math.nan,
                "nd_options": _nd_options(run_dir),
                "log_tail": ""
                if result.get("status") == "done"
                else "\n".join(log_tail(run_dir / LOG_FILE, LOG_TAIL_LINES)),
            }
        )
    return pd.DataFrame(rows, columns=DETAIL_COLUMNS)


def _nd_options(run_dir: Path) -> str:
    """The ND fidelity options of an ND run's effective spec, as `key=value` text."""
    try:
        spec = read_spec(run_dir)
    except (OSError, ValueError):
        return ""
    options = spec.get("nd") if spec.get("norm") == "nd" else None
    if not isinstance(options, Mapping):
        return ""
    return ", ".join(f"{key}={value}" for key, value in sorted(options.items()))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}  # a run without (or with a torn) result.json is reported by status
    return data if isinstance(data, dict) else {}


def load_curves(store_dir: Path | None, results: pd.DataFrame) -> pd.DataFrame:
    """One row per (classification run, epoch) with the run's dataset, arch, norm, seed."""
    dirs = _run_dirs(store_dir, results)
    columns = ["run_id", "dataset", "arch", "norm", "epochs", "seed", "epoch", "test_top1"]
    if not dirs:
        return pd.DataFrame(columns=columns)
    frames = []
    for run in results[results["run_id"].isin(list(dirs))].to_dict("records"):
        metrics = read_run(dirs[run["run_id"]]).metrics
        lines = [m for m in metrics if _is_number(m.get("test_top1")) and "epoch" in m]
        if lines:
            frame = pd.DataFrame(lines)[["epoch", "test_top1"]]
            frames.append(frame.assign(**{k: run.get(k) for k in columns[:6]}))
    return (
        pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    )


# -- figures


def curve_figures(curves: pd.DataFrame, keep_arch: Any, what: str) -> list[dict[str, Any]]:
    """One learning-curve figure per dataset: a panel per (architecture, epoch budget),
    in the paper's architecture order, shortest budget first."""
    if len(curves):
        curves = curves[curves["arch"].map(keep_arch).astype(bool)]
        curves = curves[curves["epochs"].astype(float) > 1]  # one point is not a curve
    out = []
    for dataset in sorted(set(curves["dataset"]), key=str):
        data = curves[curves["dataset"] == dataset]
        pairs = zip(data["arch"], data["epochs"].astype(int), strict=True)
        keys = sorted({(arch_order(a), e, a) for a, e in pairs})[:MAX_CURVE_PANELS]
        panels = [_panel_title(a, e) for _, e, a in keys]
        data = data.assign(
            panel=[_panel_title(a, e) for a, e in zip(data["arch"], data["epochs"], strict=True)]
        )
        data = data[data["panel"].isin(panels)].sort_values(["norm", "seed", "epoch"])
        label = f"{dataset_label(dataset)}: {what}"
        svg = figures.learning_curves_svg(data, title=label, panels=panels)
        out.append({"dataset": dataset_label(dataset), "svg": Markup(svg)})
    return out


def _panel_title(arch: Any, epochs: Any) -> str:
    return f"{arch_label(arch)}, {int(epochs)} epochs"


# -- cost


def cost_section(results: pd.DataFrame, details: pd.DataFrame) -> dict[str, Any]:
    """Seconds per epoch and GPU-hours, BN against ND, per dataset and architecture."""
    runs = _classify_with_details(results, details)
    runs = runs[runs["norm"].isin(["bn", "nd"])] if len(runs) else runs
    if runs.empty or runs["seconds_per_epoch"].isna().all():
        return {"rows": [], "svg": None}
    grouped = runs.groupby(["dataset", "arch", "norm"]).agg(
        seconds=("seconds_per_epoch", "mean"), gpu=("gpu_seconds", "sum"), n=("run_id", "size")
    )
    wide = grouped.unstack("norm")
    rows, bars = [], []
    for (dataset, arch), row in sorted(
        wide.iterrows(), key=lambda i: (i[0][0], arch_order(i[0][1]))
    ):
        bn, nd = row.get(("seconds", "bn"), math.nan), row.get(("seconds", "nd"), math.nan)
        label = f"{arch_label(arch)} · {dataset_label(dataset)}"
        rows.append(
            {
                "label": label,
                "bn_seconds": fmt(bn, 1),
                "nd_seconds": fmt(nd, 1),
                "ratio": fmt(nd / bn if bn and not _missing(bn) else math.nan, 2, suffix="×"),
                "bn_gpu_hours": fmt(row.get(("gpu", "bn"), math.nan) / 3600, 3),
                "nd_gpu_hours": fmt(row.get(("gpu", "nd"), math.nan) / 3600, 3),
                "runs": f"{_count(row, 'bn')} / {_count(row, 'nd')}",
            }
        )
        bars.append({"label": label, "bn_seconds": bn, "nd_seconds": nd})
    svg = figures.cost_bars_svg(pd.DataFrame(bars), title="Training seconds per epoch")
    return {"rows": rows, "svg": Markup(svg)}


def _count(row: pd.Series, norm: str) -> int:
    value = row.get(("n", norm), 0)
    return 0 if _missing(value) else int(value)


def _classify_with_details(results: pd.DataFrame, details: pd.DataFrame) -> pd.DataFrame:
    if details.empty or "run_id" not in results:
        return pd.DataFrame()
    kind = _column(results, "kind", "classify")
    return results[kind == "classify"].merge(details, on="run_id", how="inner")


# -- kernels and MLP


def kernels_section(results: pd.DataFrame, store_dir: Path | None) -> list[dict[str, Any]]:
    """Kernel-experiment runs: their metrics (the centre-surround score first) and the
    runner's figure when it wrote one."""
    if "kind" not in results:
        return []
    runs = results[results["kind"] == "kernels"]
    dirs = _run_dirs(store_dir, runs)
    score_columns = [c for c in runs.columns if "centre_surround" in c or c.endswith("score")]
    out = []
    for run in runs.to_dict("records"):
        run_dir = dirs.get(str(run.get("run_id")))
        # result.json holds every metric the runner wrote; a CSV row only its score columns
        metrics = _read_json(run_dir / RESULT_FILE).get("metrics", {}) if run_dir else {}
        metrics = metrics or {c: run.get(c) for c in score_columns if not _missing(run.get(c))}
        out.append(
            {
                "run_id": _text(run.get("run_id")),
                "status": _text(run.get("status")) or "done",
                "source": _text(run.get("source") or run.get("dataset")),
                "scores": [(k, _number(v)) for k, v in sorted(metrics.items(), key=_score_first)],
                "figure": _kernel_figure(run_dir) if run_dir else None,
            }
        )
    return out


def _score_first(item: tuple[str, Any]) -> tuple[bool, str]:
    return (item[0] != "centre_surround_score", item[0])


def _number(value: Any) -> str:
    """A metric of any size in four significant digits (1e-12 and 388800 alike)."""
    if _missing(value):
        return "–"
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:.4g}"


def _kernel_figure(run_dir: Path) -> Markup | None:
    """The runner's kernels.svg as an <img> data URL (its scripts, if any, never run and
    it cannot fetch anything), else a figure drawn here from kernels.npz."""
    svg_path, npz_path = run_dir / "kernels.svg", run_dir / "kernels.npz"
    if svg_path.is_file():
        data = base64.b64encode(svg_path.read_bytes()).decode("ascii")
        return Markup(
            '<img class="kernels" alt="deconvolution kernels" src="data:image/svg+xml;base64,{}">'
        ).format(data)
    if npz_path.is_file():
        try:
            with np.load(npz_path) as archive:
                name = archive.files[0]
                kernels = archive[name]
        except (OSError, ValueError, IndexError, EOFError, zipfile.BadZipFile):
            return None  # an empty or torn archive: the run's scores are still shown
        return Markup(figures.kernels_svg(kernels, title=f"{name} ({run_dir.name})"))
    return None


def mlp_section(results: pd.DataFrame, curves: pd.DataFrame) -> dict[str, Any]:
    """The MLP experiment: final test accuracy per dataset and norm, and its curves."""
    done = _classify_done(results)
    runs = done[done["arch"] == "mlp"] if "arch" in done else done.iloc[0:0]
    rows = []
    for (dataset, norm, epochs), cell in runs.groupby(["dataset", "norm", "epochs"]):
        values = cell["test_top1"].to_numpy(dtype=float)
        rows.append(
            {
                "dataset": dataset_label(dataset),
                "norm": NORM_LABELS.get(str(norm), str(norm)),
                "epochs": int(epochs),
                "accuracy": mean_text(values.mean(), _std(values), len(values)),
            }
        )
    what = "MLP test accuracy per epoch by normalisation"
    figures_ = curve_figures(curves, lambda arch: arch == "mlp", what) if len(curves) else []
    return {"rows": rows, "curves": figures_}


# -- problems


def problems(
    comparison: pd.DataFrame, results: pd.DataFrame, details: pd.DataFrame
) -> dict[str, Any]:
    """Failed and diverged runs with reason and log tail; claims without usable results."""
    status = _column(results, "status", "done")
    bad = results[status.isin(["failed", "diverged", "corrupt"])]  # corrupt: unreadable result
    tails = dict(zip(details["run_id"], details["log_tail"], strict=True)) if len(details) else {}
    runs = [
        {
            "run_id": _text(r.get("run_id")),
            "status": _text(r.get("status")),
            "experiment": _experiment_text(r),
            "reason": _text(r.get("reason")) or "no reason recorded",
            "log_tail": tails.get(r.get("run_id"), ""),
        }
        for r in bad.to_dict("records")
    ]
    return {"runs": runs, "claims": unmet_claims(comparison)}


MAX_REASONS = 5  # distinct reasons shown per group; the claims table has every one


def unmet_claims(comparison: pd.DataFrame) -> list[dict[str, Any]]:
    """Claims left without a usable result, one line per (group, verdict): how many,
    which (linked), and their distinct reasons. A 200-line list would bury the failures."""
    unmet = comparison[comparison["verdict"].isin(["missing", "failed"])]
    out = []
    for (group, verdict), rows in unmet.groupby(["group", "verdict"], sort=False):
        reasons = list(dict.fromkeys(rows["reason"].map(_text)))
        out.append(
            {
                "group": str(group),
                "verdict": str(verdict),
                "ids": [str(i) for i in rows["claim_id"]],
                "reasons": reasons[:MAX_REASONS],
                "more_reasons": max(0, len(reasons) - MAX_REASONS),
            }
        )
    return out


def _experiment_text(row: Mapping[str, Any]) -> str:
    parts = [
        dataset_label(row.get("dataset")) if not _missing(row.get("dataset")) else None,
        arch_label(row.get("arch")) if not _missing(row.get("arch")) else None,
        norm_label(row.get("norm")) if not _missing(row.get("norm")) else None,
        f"{_epochs(row.get('epochs'))} ep" if not _missing(row.get("epochs")) else None,
    ]
    return " · ".join(p for p in parts if p) or "–"


def _text(value: Any) -> str:
    return "" if _missing(value) else str(value)


# -- methods and provenance


def methods(
    comparison: pd.DataFrame,
    results: pd.DataFrame,
    details: pd.DataFrame,
    claims_path: Path | None,
    command: str | None,
) -> dict[str, Any]:
    """How the numbers were judged and where they came from."""
    commit = project_commit()
    return {
        "tolerances": _tolerances(comparison),
        "deviations": _unique_deviations(comparison, results),
        "nd_options": _counted(details["nd_options"]) if len(details) else [],
        "claims_file": str(claims_path) if claims_path else "not recorded",
        "claims_sha256": _sha256(claims_path) if claims_path else "not recorded",
        "commit": (commit.get("commit") or "unknown")
        + (" (uncommitted changes)" if commit.get("dirty") else ""),
        "packages": [
            (k, v or "not installed") for k, v in package_versions(REPORT_PACKAGES).items()
        ],
        "hardware": _device_summary(details),
        "seeds": _seeds_text(results),
        "command": command or "not recorded",
    }


def _seeds_text(results: pd.DataFrame) -> str:
    seeds = sorted({int(s) for s in results.get("seed", pd.Series(dtype=float)).dropna()})
    return ", ".join(map(str, seeds)) or "none"


def _counted(values: pd.Series) -> list[tuple[str, int]]:
    """Distinct non-empty values with how many runs carry each."""
    counts = values[values != ""].value_counts(sort=False)
    return [(str(value), int(count)) for value, count in counts.items()]


def _tolerances(comparison: pd.DataFrame) -> list[dict[str, str]]:
    pairs = comparison[["group", "type"]].assign(
        tolerance=comparison["tolerance"].map(tolerance_text)
    )
    return list(pairs.drop_duplicates().to_dict("records"))


def tolerance_text(tolerance: Any) -> str:
    """A Tolerance in words (its own `describe()`), or the value as given."""
    describe = getattr(tolerance, "describe", None)
    return describe() if callable(describe) else _text(tolerance)


def provenance_text(provenance: Any) -> str:
    """A claim's provenance mapping as one line: `table: Table 1 · transcribed_from: S1, S2`."""
    if not isinstance(provenance, Mapping):
        return _text(provenance)
    parts = []
    for key, value in provenance.items():
        if key == "line":
            continue  # the claims file line is shown with the claim id instead
        shown = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        parts.append(f"{key}: {shown}")
    return " · ".join(parts)


def _unique_deviations(comparison: pd.DataFrame, results: pd.DataFrame) -> list[str]:
    """Every departure from the authors' protocol that any shown result carries."""
    seen: dict[str, None] = {}
    for frame in (results, comparison):
        for value in frame.get("deviations", pd.Series(dtype=object)).dropna():
            for item in _as_list(value):
                seen.setdefault(item, None)
    return list(seen)


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    return [str(value)]


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


# -- every claim


def claim_rows(comparison: pd.DataFrame, index: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per selected claim, each with its #claim-<id> anchor."""
    rows = []
    for r in comparison.to_dict("records"):
        claim = index.get(str(r["claim_id"]))
        run_ids = _as_list(r["run_ids"]) if not _missing_any(r.get("run_ids")) else []
        rows.append(
            {
                "id": str(r["claim_id"]),
                "group": _text(r.get("group")),
                "type": _text(r.get("type")),
                "experiment": _experiment_text(r),
                "metric": _text(r.get("metric")),
                "claimed": _claimed_text(r),
                "reproduced": mean_text(r["reproduced_mean"], r["reproduced_std"], r["n"]),
                "ci": f"[{fmt(r.get('ci_low'))}, {fmt(r.get('ci_high'))}]"
                if not _missing(r.get("ci_low"))
                else "–",
                "abs_dev": fmt(r.get("abs_dev"), signed=True, suffix=" pp"),
                "rel_dev": fmt(r.get("rel_dev"), signed=True, suffix=" %"),
                "tolerance": tolerance_text(r.get("tolerance")),
                "verdict": str(r["verdict"]),
                "gated": _gated(r.get("gate")),
                "reason": _text(r.get("reason")),
                "runs": run_ids,
                "note": _text(_get(claim, "note", None) or r.get("note")),
                # compare's one-line source; the full provenance mapping when it has none
                "provenance": _text(r.get("source"))
                or provenance_text(_get(claim, "provenance", None)),
            }
        )
    return rows


def _gated(gate: Any) -> bool:
    """A claim gates `audit check` unless compare's `gate` says False (bool or numpy bool)."""
    return True if _missing_any(gate) else bool(gate)


def _missing_any(value: Any) -> bool:
    return value is None or (not isinstance(value, list | tuple | np.ndarray) and _missing(value))
