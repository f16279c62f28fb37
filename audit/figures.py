"""The report's figures: matplotlib (Agg) drawings returned as inline SVG strings.

Every function takes plain pandas/numpy data and returns the text of one `<svg>` element,
ready to be placed in the HTML as is: no XML prolog, no DOCTYPE, no external reference,
text kept as text (so pdftotext and a reader's search find the labels) and ids derived
from a fixed salt (so the same data gives the same bytes, which the golden tests rely on).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on the machines that render reports

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

# Colours are shared with templates/report.css so a figure and its table read alike.
NORM_COLOURS = {"bn": "#1f5fa8", "nd": "#c8571b", "none": "#5b5b5b"}
NORM_LABELS = {"bn": "BN", "nd": "ND", "none": "no norm"}

_RC = {
    "svg.fonttype": "none",  # keep text as <text>, searchable and small
    "svg.hashsalt": "nd-audit",  # deterministic clip-path ids
    "text.parse_math": False,  # labels come from data; a "$" must not start mathtext
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_ID = re.compile(r'\b(id)="([^"]+)"')
_HREF = re.compile(r'((?:xlink:)?href)="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")


def figure_to_svg(fig: plt.Figure, *, label: str) -> str:
    """Serialise `fig` as an inline `<svg>` and close it.

    `label` becomes the SVG's accessible name. The metadata block (creator, date) is
    dropped: it would make identical reports differ byte-wise.
    """
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    svg = _METADATA.sub("", _PROLOG.sub("", buffer.getvalue(), count=1))
    svg = _prefix_ids(svg, "f" + hashlib.sha1((label + svg).encode()).hexdigest()[:8] + "-")
    # Width/height in pt make the figure too large on a phone; CSS scales it instead.
    safe_label = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{safe_label}" ', 1)


def _prefix_ids(svg: str, prefix: str) -> str:
    """Matplotlib numbers ids per figure (`line2d_1`, clip paths): with several figures
    inline in one page they would collide, so each figure's ids get its own prefix."""
    svg = _ID.sub(lambda m: f'{m.group(1)}="{prefix}{m.group(2)}"', svg)
    svg = _HREF.sub(lambda m: f'{m.group(1)}="#{prefix}{m.group(2)}"', svg)
    return _URL.sub(lambda m: f"url(#{prefix}{m.group(1)})", svg)


def learning_curves_svg(
    curves: pd.DataFrame, *, title: str = "", panels: Sequence[str] | None = None
) -> str:
    """Test accuracy against epoch, one panel per (arch, epochs) budget, BN against ND.

    `curves` has one row per (run, epoch): columns `panel` (panel title), `norm`,
    `seed`, `epoch`, `test_top1`; `panels` orders the panels. Each norm is drawn as the
    mean over seeds with the min-max band of the seeds around it, so the spread is
    visible, not averaged away.
    """
    panels = list(panels or dict.fromkeys(curves["panel"]))  # given order, else first seen
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.0 * rows), squeeze=False)
        for ax, panel in zip(axes.flat, panels, strict=False):
            _draw_curve_panel(ax, curves[curves["panel"] == panel], panel)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        axes.flat[0].legend(loc="lower right", frameon=False)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return figure_to_svg(fig, label=title or "learning curves")


def _draw_curve_panel(ax: plt.Axes, data: pd.DataFrame, panel: str) -> None:
    for norm, by_norm in data.groupby("norm", sort=True):
        table = by_norm.pivot_table(index="epoch", columns="seed", values="test_top1")
        colour = NORM_COLOURS.get(str(norm), "#333333")
        n = table.shape[1]
        label = f"{NORM_LABELS.get(str(norm), norm)} (n={n})"
        ax.plot(table.index, table.mean(axis=1), color=colour, lw=1.2, label=label)
        if n > 1:
            ax.fill_between(
                table.index, table.min(axis=1), table.max(axis=1), color=colour, alpha=0.2, lw=0
            )
    ax.set_title(panel)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 (%)")
    ax.grid(alpha=0.3, lw=0.5)


def cost_bars_svg(cost: pd.DataFrame, *, title: str = "") -> str:
    """Seconds per epoch, BN and ND side by side per row label, with the ND/BN ratio.

    `cost` has columns `label`, `bn_seconds`, `nd_seconds` (NaN where not measured).
    """
    labels = list(cost["label"])
    positions = np.arange(len(labels))
    width = 0.38
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(max(3.0, 0.9 * len(labels) + 1.5), 2.4))
        for offset, norm in ((-width / 2, "bn"), (width / 2, "nd")):
            ax.bar(
                positions + offset,
                cost[f"{norm}_seconds"].to_numpy(dtype=float),
                width,
                color=NORM_COLOURS[norm],
                label=NORM_LABELS[norm],
            )
        for x, (bn, nd) in enumerate(zip(cost["bn_seconds"], cost["nd_seconds"], strict=True)):
            if bn and nd and not (math.isnan(bn) or math.isnan(nd)):
                ax.annotate(f"×{nd / bn:.2f}", (x, max(bn, nd)), ha="center", va="bottom")
        ax.set_xticks(positions, labels, rotation=20, ha="right")
        ax.set_ylabel("seconds per epoch")
        ax.legend(frameon=False)
        ax.margins(y=0.15)
        if title:
            ax.set_title(title)
        fig.tight_layout()
        return figure_to_svg(fig, label=title or "cost per epoch")


def kernels_svg(kernels: np.ndarray, *, names: Sequence[str] = (), title: str = "") -> str:
    """Show 2-D kernels side by side (e.g. the first-layer deconvolution kernel per channel).

    `kernels` is an array of shape (k, h, w) or (h, w); each kernel gets its own
    symmetric colour scale around zero, so a centre-surround sign pattern is visible.
    """
    array = np.asarray(kernels, dtype=float)
    # Any leading axes (channels, blocks) are flattened; at most 6 kernels are shown.
    kernels = array.reshape(-1, *array.shape[-2:])[:6] if array.ndim >= 2 else array[None, None]
    count = kernels.shape[0]
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, count, figsize=(1.6 * count, 1.8), squeeze=False)
        for index, ax in enumerate(axes.flat):
            limit = float(np.abs(kernels[index]).max()) or 1.0
            ax.imshow(kernels[index], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(names[index] if index < len(names) else f"kernel {index}")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return figure_to_svg(fig, label=title or "kernels")
