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
