"""Table 1, mirrored: per dataset a row per architecture and the BN/ND columns per epoch
budget, each cell with the paper's value, ours (mean ± std, n), both deviations and the
claim's verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from audit.report.common import (
    NORM_LABELS,
    arch_label,
    arch_order,
    claimed_text,
    dataset_label,
    epochs_value,
    fmt,
    is_proxy,
    mean_text,
    missing,
)
from runners.catalogue import in_paper_table


def value_cells(comparison: pd.DataFrame) -> pd.DataFrame:
    """Value claims on test accuracy of BN/ND image classifiers: the cells of Table 1."""
    mask = (
        (comparison["type"] == "value")
        & comparison["dataset"].isin(in_paper_table(1))
        & comparison["norm"].isin(["bn", "nd"])
        & (comparison["metric"] == "test_top1")
    )
    # A cell claimed twice (e.g. by two groups) is shown once; all claims are listed below.
    return comparison[mask].drop_duplicates(["dataset", "arch", "norm", "epochs"])


def table1(comparison: pd.DataFrame) -> dict[str, Any]:
    """Table 1 as the paper prints it: per dataset, a row per architecture, BN/ND columns."""
    cells = value_cells(comparison)
    epochs = sorted({int(e) for e in cells["epochs"].dropna()})
    columns = [(norm, e) for e in epochs for norm in ("bn", "nd")]
    lookup = {
        (r["dataset"], r["arch"], r["norm"], epochs_value(r["epochs"])): r
        for r in cells.to_dict("records")
    }
    datasets = []
    for dataset in [d for d in in_paper_table(1) if d in set(cells["dataset"])]:
        archs = sorted(set(cells.loc[cells["dataset"] == dataset, "arch"]), key=arch_order)
        rows = [
            {
                "arch": arch_label(arch),
                "cells": [cell(lookup.get((dataset, arch, n, e))) for n, e in columns],
            }
            for arch in archs
        ]
        datasets.append({"id": dataset, "label": dataset_label(dataset), "rows": rows})
    headers = [f"{NORM_LABELS[n]}{e}" for n, e in columns]
    return {"headers": headers, "datasets": datasets}


def cell(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """One mirrored cell (also Table 2's)."""
    if row is None:
        return None
    return {
        "id": str(row["claim_id"]),
        "claimed": claimed_text(row),
        "reproduced": mean_text(row["reproduced_mean"], row["reproduced_std"], row["n"]),
        "n": 0 if missing(row["n"]) else int(row["n"]),
        "abs_dev": fmt(row["abs_dev"], signed=True, suffix=" pp"),
        "rel_dev": fmt(row["rel_dev"], signed=True, suffix=" %"),
        "verdict": str(row["verdict"]),
        "proxy": is_proxy(row),
    }
