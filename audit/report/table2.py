"""Table 2, mirrored (ImageNet): a row per (model, variant) as printed, the columns top-1 and
top-5, each cell beside the prior reproductions that report it. The sentence above it says,
from the model registry and the runs, whether this harness can train these models and where
the shown numbers came from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from audit.report.common import NORM_LABELS, arch_label, as_list, epochs_value, get, text
from audit.report.facts import models_for
from audit.report.priors import prior_cell
from audit.report.table1 import cell
from runners.catalogue import in_paper_table

TABLE2_METRICS = {"test_top1": "top-1", "test_top5": "top-5"}  # Table 2's columns, in order


def table2(
    comparison: pd.DataFrame, sources: list[Any], index: Mapping[str, Any], store_ids: set[str]
) -> dict[str, Any]:
    """The rows as printed; `store_ids` are the run ids read from run directories."""
    mask = (
        (comparison["type"] == "value")
        & comparison["dataset"].isin(in_paper_table(2))
        & comparison["metric"].isin(list(TABLE2_METRICS))
    )
    cells = comparison[mask].drop_duplicates(["dataset", "arch", "norm", "epochs", "metric"])
    metrics = [m for m in TABLE2_METRICS if m in set(cells["metric"])]
    ids = {str(i) for i in cells["claim_id"]}
    priors = [s for s in sources if ids & set(s.values)]  # only studies that cover Table 2
    rows: dict[tuple, dict[str, Any]] = {}  # file order is the paper's row order
    for r in cells.to_dict("records"):
        claim = index.get(str(r["claim_id"]))
        key = (r["dataset"], r["arch"], r["norm"], epochs_value(r["epochs"]))
        row = rows.setdefault(key, {**_names(r, claim), "cells": {}})
        tolerance = get(claim, "tolerance", None)
        row["cells"][r["metric"]] = {
            **cell(r),
            "priors": [prior_cell(s.values.get(str(r["claim_id"])), r, tolerance) for s in priors],
        }
    notes = dict.fromkeys(text(r.get("note")) for r in cells.to_dict("records"))
    return {
        "metrics": [TABLE2_METRICS[m] for m in metrics],
        "sources": [s.id for s in priors],
        "rows": [{**row, "cells": [row["cells"].get(m) for m in metrics]} for row in rows.values()],
        "epochs": ", ".join(dict.fromkeys(str(key[3]) for key in rows if key[3] is not None)),
        "notes": [note for note in notes if note],
        "origin": origin_sentence(cells, store_ids),
    }


def origin_sentence(cells: pd.DataFrame, store_ids: set[str]) -> str:
    """What the harness can run for ImageNet and where these cells' numbers came from."""
    models = [m for name in in_paper_table(2) for m in models_for(name)]
    runner = (
        f"This harness trains the ImageNet models {', '.join(models)} (the authors' "
        "main_imagenet.py protocol); ImageNet itself is not shipped."
        if models
        else "This harness has no ImageNet model."
    )
    run_ids = {r for ids in cells["run_ids"] for r in as_list(ids)} if len(cells) else set()
    own = len(run_ids & store_ids)
    imported = len(run_ids) - own
    if not run_ids:
        where = "No run of these cells was given: every cell is missing."
    else:
        where = (
            f"The numbers below come from {own} run{'' if own == 1 else 's'} of this store "
            f"and {imported} imported row{'' if imported == 1 else 's'}."
        )
    return f"{runner} {where}"


def _names(row: Mapping[str, Any], claim: Any) -> dict[str, str]:
    """The model and variant as printed (the claims file's display text), else our labels."""
    display = get(claim, "display", None) or {}
    norm = text(row.get("norm"))
    return {
        "model": display.get("name") or arch_label(row.get("arch")),
        "variant": display.get("variant") or NORM_LABELS.get(norm, norm),
    }
