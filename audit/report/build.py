"""The report model: everything the templates show, as plain data with every number already
formatted, built section by section (one module per section, as templates/partials/)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from audit.report import archive
from audit.report.claims_table import claim_rows, paper_link
from audit.report.common import get, text
from audit.report.cost import cost_section
from audit.report.curves import cnn_curves
from audit.report.deviations import deviation_figures
from audit.report.facts import gather_facts
from audit.report.headline import headline, scope_items
from audit.report.kernels import kernels_section
from audit.report.methods import environment, methods
from audit.report.mlp import mlp_section
from audit.report.priors import prior_reproductions
from audit.report.problems import problems
from audit.report.relations import relation_notes, relation_rows
from audit.report.rundata import load_curves, load_run_details, planned_hours
from audit.report.table1 import table1
from audit.report.table2 import table2

DEFAULT_TITLE = "Reproduction audit of “Network Deconvolution” (Ye et al., ICLR 2020)"


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
    archive_names: list[str] | None = None,
) -> dict[str, Any]:
    """`claims` is the ClaimSet the comparison was made from (notes, provenance, prior
    reproductions); `scope` adds what the store cannot tell (profile, executor, ...);
    `archive_names` are the files written beside index.html, which the page links."""
    comparison = comparison.reset_index(drop=True)
    details = load_run_details(store_dir, results)
    curves = load_curves(store_dir, results)
    index = {str(claim.id): claim for claim in getattr(claims, "claims", None) or []}
    sources = list(getattr(claims, "reference_sources", None) or [])
    paper = (getattr(claims, "meta", None) or {}).get("paper") or {}
    facts = gather_facts(results, details, store_dir, scope or {})
    env = environment(claims_path)
    store_ids = set(details["run_id"]) if len(details) else set()
    return {
        "title": title,
        "generated": (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command or "not recorded",
        "paper": {"title": text(get(paper, "title", "")), "link": paper_link(paper)},
        "headline": headline(comparison),
        "scope": scope_items(facts, results, details),
        "deviation_figures": deviation_figures(comparison),
        "table1": table1(comparison),
        "table2": table2(comparison, sources, index, store_ids),
        "priors": prior_reproductions(comparison, sources, index),
        "relations": relation_rows(comparison),
        "relation_notes": relation_notes(comparison),
        "curves": cnn_curves(curves),
        "cost": cost_section(results, details, planned_hours(store_dir)),
        "kernels": kernels_section(results, store_dir),
        "mlp": mlp_section(results, curves),
        "problems": problems(comparison, results, details),
        "methods": methods(comparison, results, details, facts, claims_path, command, env),
        "claims": claim_rows(comparison, index, paper),
        "archive": archive.link_list(archive_names or []),
        "environment": env,
    }
