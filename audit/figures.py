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
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on the machines that render reports

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from audit.report.common import NORM_LABELS  # one label per norm, tables and figures alike

NORM_COLOURS = {"bn": "#1f5fa8", "nd": "#c8571b", "none": "#5b5b5b"}
BAND_COLOUR = "#dcdcdc"
# Sizes for an A4 page: a figure is at most this wide (inches) and is scaled down, never up,
# so 8-pt text stays at least 7 pt when printed.
PAGE_WIDTH = 10.0

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
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    with plt.rc_context(_RC):
        size = (2.45 * columns, 2.0 * rows + 0.6)
        fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
        for ax, panel in zip(axes.flat, panels, strict=False):
            _draw_curve_panel(ax, curves[curves["panel"] == panel], panel)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        _legend_above(fig, axes.flat[0], title)
        return figure_to_svg(fig, label=title or "learning curves")


def _draw_curve_panel(ax: plt.Axes, data: pd.DataFrame, panel: str) -> None:
    for norm, by_norm in data.groupby("norm", sort=True):
        table = by_norm.pivot_table(index="epoch", columns="seed", values="test_top1")
        colour = NORM_COLOURS.get(str(norm), "#333333")
        n = table.shape[1]
        label = f"{NORM_LABELS.get(str(norm), norm)} (n={n} seed{'s' if n != 1 else ''})"
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
        ax.margins(y=0.15)
        _legend_above(fig, ax, title)
        return figure_to_svg(fig, label=title or "cost per epoch")


def _legend_above(fig: plt.Figure, ax: plt.Axes, title: str, handles: list | None = None) -> None:
    """The title and one legend above every panel, outside the axes: a legend drawn inside a
    panel covers data, and one per panel repeats itself. The space above the panels is
    reserved in inches, so a short figure gets as much room for them as a tall one."""
    if handles is None:
        found: dict[str, Any] = {}
        for axis in fig.axes:  # every panel's entries, once each
            for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
                found.setdefault(label, handle)
        handles = [h for h in found.values()]
        labels = list(found)
    else:
        labels = [h.get_label() for h in handles]
    columns = min(len(handles), 5) or 1
    legend_rows = math.ceil(len(handles) / columns) if handles else 0
    height = fig.get_figheight()
    title_in, legend_in = (0.3 if title else 0.0), 0.2 * legend_rows + 0.05
    top = 1 - (title_in + legend_in) / height
    fig.tight_layout(rect=(0, 0, 1, top))
    if handles:
        fig.legend(
            handles, labels, loc="lower center", bbox_to_anchor=(0.5, top), ncol=columns,
            frameon=False,
        )  # fmt: skip
    if title:
        fig.suptitle(title, y=1 - 0.05 / height, va="top")


def forest_svg(
    rows: pd.DataFrame, *, title: str = "", x_label: str = "", relation: bool = False
) -> str:
    """A forest plot: one row per claim, a panel per `panel` value, side by side.

    `rows` columns: panel, label, mean, ci_low, ci_high (NaN: no interval), band_low,
    band_high (the tolerance band; +-inf: open), claimed (relations: the printed
    difference, drawn as a diamond), seeds (list of per-seed values), colour (the
    verdict's), verdict (its label), proxy (drawn hollow). Rows run top to bottom in order.
    """
    panels = list(dict.fromkeys(rows["panel"]))
    longest = max(int((rows["panel"] == p).sum()) for p in panels)
    lo, hi = _forest_limits(rows)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(
            1, len(panels), figsize=(min(PAGE_WIDTH, 4.8 * len(panels)), 1.4 + 0.145 * longest),
            squeeze=False, sharex=True,
        )  # fmt: skip
        for ax, panel in zip(axes.flat, panels, strict=True):
            _forest_panel(ax, rows[rows["panel"] == panel], longest, (lo, hi), relation)
            ax.set_title(panel)
            ax.set_xlabel(x_label)
        _legend_above(fig, axes.flat[0], title, _forest_handles(rows, relation))
        return figure_to_svg(fig, label=title or "deviations")


def _forest_limits(rows: pd.DataFrame) -> tuple[float, float]:
    values = [0.0]
    for name in ("mean", "ci_low", "ci_high", "band_low", "band_high", "claimed"):
        values += [v for v in rows[name].astype(float) if math.isfinite(v)]
    values += [v for seeds in rows["seeds"] for v in seeds if math.isfinite(v)]
    lo, hi = min(values), max(values)
    pad = 0.06 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _forest_panel(
    ax: plt.Axes, rows: pd.DataFrame, longest: int, limits: tuple[float, float], relation: bool
) -> None:
    """One call per kind of mark (bands, intervals, seeds, means), not one per row: a
    group of 160 claims draws in a fraction of a second."""
    lo, hi = limits
    y = np.arange(len(rows), dtype=float)
    band_low, band_high = rows["band_low"].to_numpy(float), rows["band_high"].to_numpy(float)
    known = ~(np.isnan(band_low) & np.isnan(band_high))  # NaN both: no band to draw
    left = np.where(np.isfinite(band_low), np.maximum(band_low, lo), lo)
    right = np.where(np.isfinite(band_high), np.minimum(band_high, hi), hi)
    ax.barh(y[known], (right - left)[known], left=left[known], height=0.78, color=BAND_COLOUR,
            lw=0)  # fmt: skip
    ci_low, ci_high = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
    has_ci = np.isfinite(ci_low) & np.isfinite(ci_high)
    colours = rows["colour"].to_numpy()
    ax.hlines(y[has_ci], ci_low[has_ci], ci_high[has_ci], colors=colours[has_ci], lw=1.4)
    seeds_x = [v for seeds in rows["seeds"] for v in seeds]
    seeds_y = [i for i, seeds in enumerate(rows["seeds"]) for _ in seeds]
    if seeds_x:
        ax.plot(seeds_x, seeds_y, "o", ms=2.6, mfc="none", mec="#333333", mew=0.6)
    proxy = rows["proxy"].to_numpy(bool)
    means = rows["mean"].to_numpy(float)
    faces = np.where(proxy, "white", colours)
    ax.scatter(means, y, marker="s", s=20, c=list(faces), edgecolors=list(colours),
               linewidths=1.2, zorder=3)  # fmt: skip
    claimed = rows["claimed"].to_numpy(float)
    if relation and np.isfinite(claimed).any():
        ok = np.isfinite(claimed)
        ax.plot(claimed[ok], y[ok], "D", ms=3.6, mfc="none", mec="black", mew=0.7)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(range(len(rows)), list(rows["label"]))
    ax.set_ylim(longest - 0.5, -0.5)  # first row on top; panels share the row height
    ax.set_xlim(lo, hi)
    ax.grid(axis="x", alpha=0.3, lw=0.5)


def _forest_handles(rows: pd.DataFrame, relation: bool) -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Patch(color=BAND_COLOUR, label="tolerance band"),
        Line2D([], [], color="#333333", marker="o", mfc="none", ls="", ms=3, label="seeds"),
    ]
    if relation:
        handles.append(Line2D([], [], color="black", marker="D", mfc="none", ls="", ms=3,
                              label="paper's difference"))  # fmt: skip
    for name, colour in dict(zip(rows["verdict"], rows["colour"], strict=True)).items():
        handles.append(Line2D([], [], color=colour, marker="s", lw=1.4, ms=4,
                              label=f"mean, 95% CI: {name}"))  # fmt: skip
    if rows["proxy"].any():
        handles.append(Line2D([], [], color="#333333", marker="s", mfc="white", ls="", ms=4,
                              label="proxy (hollow)"))  # fmt: skip
    return handles


def cost_estimate_svg(points: pd.DataFrame, *, title: str = "") -> str:
    """Measured hours against the plan's estimated hours, one dot per run, log-log, with
    the line measured = estimated. `points` columns: estimated, measured, device."""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(4.6, 3.4))
        for index, (device, part) in enumerate(points.groupby("device", sort=True)):
            colour = list(NORM_COLOURS.values())[index % len(NORM_COLOURS)]
            ax.plot(part["estimated"], part["measured"], "o", ms=4, color=colour,
                    alpha=0.8, label=str(device)[:48])  # fmt: skip
        both = np.concatenate([points["estimated"], points["measured"]]).astype(float)
        lo, hi = float(both.min()) / 2, float(both.max()) * 2
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.7, ls="--", label="measured = estimated")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("estimated GPU-hours (audit plan)")
        ax.set_ylabel("measured hours")
        ax.grid(alpha=0.3, lw=0.5)
        _legend_above(fig, ax, title)
        return figure_to_svg(fig, label=title or "measured against estimated cost")


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
