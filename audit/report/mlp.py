"""The MLP experiment: final test accuracy per dataset and norm, and its learning curves."""

from __future__ import annotations

from typing import Any

import pandas as pd

from audit.report.common import NORM_LABELS, classify_done, dataset_label, mean_text, std
from audit.report.curves import curve_figures


def mlp_section(results: pd.DataFrame, curves: pd.DataFrame) -> dict[str, Any]:
    done = classify_done(results)
    runs = done[done["arch"] == "mlp"] if "arch" in done else done.iloc[0:0]
    rows = []
    for (dataset, norm, epochs), cell in runs.groupby(["dataset", "norm", "epochs"]):
        values = cell["test_top1"].to_numpy(dtype=float)
        rows.append(
            {
                "dataset": dataset_label(dataset),
                "norm": NORM_LABELS.get(str(norm), str(norm)),
                "epochs": int(epochs),
                "accuracy": mean_text(values.mean(), std(values), len(values)),
            }
        )
    what = "MLP test accuracy per epoch by normalisation"
    shown = curve_figures(curves, lambda arch: arch == "mlp", what) if len(curves) else []
    return {"rows": rows, "curves": shown}
