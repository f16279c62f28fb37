"""The reproduction report: claims, comparison and store in; one folder out that stands alone:
a self-contained `index.html`, its PDF, and the archive it links (results.csv,
comparison.csv, the claims file, environment.json, verdicts.json when given).

One module per report section, matching templates/partials/ (headline, table1, table2,
priors, relations, deviations, curves, cost, kernels, mlp, problems, methods,
claims_table), plus the shared parts: `vocabulary` (the one verdict mapping), `common`
(formatting, labels), `facts` (what every sentence about the harness is generated from),
`rundata` (what is read from run directories), `build` (the model), `render` (jinja2,
escaping, PDF), `archive` and `output` (the all-or-nothing write). This package never
imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from audit.report.archive import archive_files, link_list
from audit.report.build import DEFAULT_TITLE, build_model
from audit.report.kernels import kernels_section
from audit.report.output import HTML_FILE, PDF_FILE, write_all
from audit.report.render import pdf_bytes, render_fragment, render_html
from audit.report.vocabulary import VERDICTS

__all__ = [
    "DEFAULT_TITLE",
    "VERDICTS",
    "ReportPaths",
    "build_model",
    "kernels_section",
    "render_fragment",
    "render_html",
    "render_report",
]


@dataclass(frozen=True)
class ReportPaths:
    """Where `render_report` wrote the report."""

    html: Path
    pdf: Path | None
    folder: Path | None = None


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
    extra_files: Mapping[str, bytes] | None = None,
) -> ReportPaths:
    """Write `out_dir/index.html`, `report.pdf` (unless `pdf=False`) and the archive, as one
    set. `extra_files` (name -> bytes, e.g. {"verdicts.json": ...}) join the set and are
    linked from the page."""
    out_dir = Path(out_dir)
    kwargs = dict(title=title, scope=scope, command=command, claims_path=claims_path)
    files = {}
    model = build_model(claims, comparison, results, store_dir, **kwargs)
    files.update(archive_files(results, comparison, claims_path, model["environment"]))
    files.update(extra_files or {})
    model = {**model, "archive": link_list(list(files))}
    html = render_html(model)
    files[HTML_FILE] = html.encode("utf-8")
    if pdf:
        files[PDF_FILE] = pdf_bytes(html)
    write_all(out_dir, files)
    return ReportPaths(
        html=out_dir / HTML_FILE, pdf=out_dir / PDF_FILE if pdf else None, folder=out_dir
    )
