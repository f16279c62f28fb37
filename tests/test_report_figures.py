"""The report's figures: legends outside every panel (never over data or a title), and each
figure no wider than an A4 landscape page's text, so WeasyPrint never shrinks its 8-pt text."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from audit import figures

A4_TEXT_WIDTH_PT = (297 - 2 * 12) / 25.4 * 72  # templates/report.css: @page margins 12 mm


def _forest_rows(panels: int, rows: int, relation: bool) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    out = []
    for p in range(panels):
        for r in range(rows):
            mean = float(rng.normal(0, 2))
            out.append(dict(panel=f"panel {p}", label=f"arch {r} ND20", mean=mean,
                            ci_low=mean - 0.5, ci_high=mean + 0.5,
                            band_low=0.0 if relation else -1.0,
                            band_high=math.inf if relation else 1.0,
                            claimed=3.0 if relation else 0.0,
                            seeds=[mean - 0.3, mean, mean + 0.3],
                            colour="#2e7d32" if r % 2 else "#c0392b",
                            verdict="reproduced" if r % 2 else "not reproduced",
                            proxy=r == 3))  # fmt: skip
    return pd.DataFrame(out)


def _curves(panels: int) -> pd.DataFrame:
    return pd.DataFrame(
        [dict(panel=f"VGG-16, {p} epochs", norm=n, seed=s, epoch=e, test_top1=e + s)
         for p in range(panels) for n in ("bn", "nd", "none") for s in range(3)
         for e in range(1, 6)]
    )  # fmt: skip


DRAWINGS = {
    "forest, values, 2 panels": lambda: figures.forest_svg(
        _forest_rows(2, 40, False), title="Deviations of claim group table1", x_label="pp"
    ),
    "forest, relations, 1 panel": lambda: figures.forest_svg(
        _forest_rows(1, 4, True), title="Deviations of claim group mlp", relation=True
    ),
    "learning curves, 12 panels": lambda: figures.learning_curves_svg(
        _curves(12), title="CIFAR-10: test accuracy per epoch, BN vs ND"
    ),
    "learning curves, 1 panel": lambda: figures.learning_curves_svg(_curves(1), title="MLP"),
    "cost bars": lambda: figures.cost_bars_svg(
        pd.DataFrame(
            {
                "label": ["VGG-16 · CIFAR-10", "MLP · MNIST"],
                "bn_seconds": [12.0, 1.0],
                "nd_seconds": [30.0, 2.0],
            }
        ),
        title="Training seconds per epoch",
    ),
    "cost estimate": lambda: figures.cost_estimate_svg(
        pd.DataFrame(
            {
                "estimated": [0.1, 0.2, 1.0],
                "measured": [0.12, 0.3, 0.8],
                "device": ["cpu", "cpu", "cuda:0 (H100)"],
            }
        ),
        title="Measured",
    ),
}


@pytest.mark.parametrize("name", list(DRAWINGS))
def test_legends_sit_outside_every_panel_and_the_figure_fits_a4(name, monkeypatch):
    captured = []
    original = figures.figure_to_svg

    def keep(fig, *, label):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        panels = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()]
        legends = [legend.get_window_extent(renderer) for legend in fig.legends]
        legends += [ax.get_legend().get_window_extent(renderer) for ax in fig.axes
                    if ax.get_legend()]  # fmt: skip
        title = fig._suptitle.get_window_extent(renderer) if fig._suptitle else None
        captured.append((panels, legends, title))
        return original(fig, label=label)

    monkeypatch.setattr(figures, "figure_to_svg", keep)
    svg = DRAWINGS[name]()
    ((panels, legends, title),) = captured
    assert legends, "a figure with more than one series has a legend"
    for legend in legends:
        for panel in panels:
            assert not legend.overlaps(panel), (legend, panel)
        assert title is None or not legend.overlaps(title), (legend, title)
    width = float(re.search(r'<svg[^>]* width="([\d.]+)pt"', svg).group(1))
    assert width <= A4_TEXT_WIDTH_PT, width


def test_a_large_group_draws_at_most_four_figures_with_the_farthest_claims():
    """10,000 claims must not become 250 figures: 160 rows at most, those farthest outside
    their band, and the caption says how many were left to the table."""
    from audit.report.deviations import MAX_FIGURES, MAX_ROWS, deviation_figures

    n = 200
    deviation = np.r_[np.full(n - 1, 0.1), 7.0]  # one claim far outside its ±1 band
    comparison = pd.DataFrame(
        {"claim_id": [f"t.arch{i}.nd20" for i in range(n)], "group": "t", "type": "value",
         "dataset": "cifar10", "arch": [f"arch{i}" for i in range(n)], "norm": "nd",
         "epochs": 20, "metric": "test_top1", "claimed": 90.0,
         "reproduced_mean": 90.0 + deviation, "n": 1, "ci_low": np.nan, "ci_high": np.nan,
         "tol_low": 89.0, "tol_high": 91.0,
         "verdict": np.where(deviation > 1, "not_reproduced", "reproduced"),
         "values": [[90.0 + d] for d in deviation], "deviations": [[] for _ in range(n)]}
    )  # fmt: skip
    drawn = deviation_figures(comparison)
    assert len(drawn) == MAX_FIGURES
    assert drawn[-1]["title"].endswith(
        f"; the {n - MAX_ROWS * MAX_FIGURES} claims nearest the paper are in the all-claims table"
    )
    assert sum("arch199 ND20" in str(f["svg"]) for f in drawn) == 1  # the far one is drawn
