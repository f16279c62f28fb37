"""Learning curves: BN against ND for the same cell (dataset, architecture, epoch budget),
one figure per dataset, a panel per cell, mean over seeds with the seeds' min-max band."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from markupsafe import Markup

from audit import figures
from audit.report.common import arch_label, arch_order, dataset_label

MAX_CURVE_PANELS = 12  # per dataset: 3 rows of 4 fill half an A4 page


def curve_figures(
    curves: pd.DataFrame, keep_arch: Callable[[Any], bool], what: str
) -> list[dict[str, Any]]:
    """A figure per dataset, panels in the paper's architecture order, shortest budget first."""
    if len(curves):
        curves = curves[curves["arch"].map(keep_arch).astype(bool)]
        curves = curves[curves["epochs"].astype(float) > 1]  # one point is not a curve
    out = []
    for dataset in sorted(set(curves["dataset"]), key=str):
        data = curves[curves["dataset"] == dataset]
        keys = _panels(data)
        panels = [panel_title(a, e) for _, e, a in keys]
        data = data.assign(
            panel=[panel_title(a, e) for a, e in zip(data["arch"], data["epochs"], strict=True)]
        )
        data = data[data["panel"].isin(panels)].sort_values(["norm", "seed", "epoch"])
        label = f"{dataset_label(dataset)}: {what}"
        svg = figures.learning_curves_svg(data, title=label, panels=panels)
        out.append({"dataset": dataset_label(dataset), "svg": Markup(svg)})
    return out


def _panels(data: pd.DataFrame) -> list[tuple[Any, int, Any]]:
    """(order, epochs, arch) of the panels shown: every cell when they fit, else the
    longest budget of each architecture first (where BN and ND part most visibly)."""
    pairs = zip(data["arch"], data["epochs"].astype(int), strict=True)
    keys = sorted({(arch_order(a), e, a) for a, e in pairs})
    if len(keys) <= MAX_CURVE_PANELS:
        return keys
    longest = {}
    for key in keys:
        longest[key[2]] = key  # sorted by budget within an architecture: the last wins
    chosen = list(longest.values())[:MAX_CURVE_PANELS]
    rest = [k for k in keys if k not in chosen][: MAX_CURVE_PANELS - len(chosen)]
    return sorted(chosen + rest)


def panel_title(arch: Any, epochs: Any) -> str:
    return f"{arch_label(arch)}, {int(epochs)} epochs"


def cnn_curves(curves: pd.DataFrame) -> list[dict[str, Any]]:
    return curve_figures(curves, lambda arch: arch != "mlp", "test accuracy per epoch, BN vs ND")
