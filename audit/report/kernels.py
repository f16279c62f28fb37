"""The kernel experiment: each run's metrics (the centre-surround score first) and the
runner's figure when it wrote one."""

from __future__ import annotations

import base64
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from audit import figures
from audit.report.common import missing, number, text
from audit.report.render import clean_text
from audit.report.rundata import read_json, run_dirs
from runners.rundir import RESULT_FILE


def kernels_section(results: pd.DataFrame, store_dir: Path | None) -> list[dict[str, Any]]:
    if "kind" not in results:
        return []
    runs = results[results["kind"] == "kernels"]
    dirs = run_dirs(store_dir, runs)
    score_columns = [c for c in runs.columns if "centre_surround" in c or c.endswith("score")]
    out = []
    for run in runs.to_dict("records"):
        run_dir = dirs.get(str(run.get("run_id")))
        # result.json holds every metric the runner wrote; a CSV row only its score columns
        metrics = read_json(run_dir / RESULT_FILE).get("metrics", {}) if run_dir else {}
        if not isinstance(metrics, dict) or not metrics:
            metrics = {c: run.get(c) for c in score_columns if not missing(run.get(c))}
        out.append(
            {
                "run_id": text(run.get("run_id")),
                "status": text(run.get("status")) or "done",
                "source": text(run.get("source") or run.get("dataset")),
                "scores": [(k, number(v)) for k, v in sorted(metrics.items(), key=_score_first)],
                "figure": _figure(run_dir) if run_dir else None,
            }
        )
    return out


def _score_first(item: tuple[str, Any]) -> tuple[bool, str]:
    return (item[0] != "centre_surround_score", item[0])


def _figure(run_dir: Path) -> Markup | None:
    """The runner's kernels.svg as an <img> data URL (its scripts, if any, never run and
    it cannot fetch anything), else a figure drawn here from kernels.npz."""
    svg_path, npz_path = run_dir / "kernels.svg", run_dir / "kernels.npz"
    if svg_path.is_file():
        data = base64.b64encode(svg_path.read_bytes()).decode("ascii")
        return Markup(
            '<img class="kernels" alt="deconvolution kernels" src="data:image/svg+xml;base64,{}">'
        ).format(data)
    if npz_path.is_file():
        try:
            with np.load(npz_path) as archive:
                name = archive.files[0]
                kernels = archive[name]
        except (OSError, ValueError, IndexError, EOFError, zipfile.BadZipFile):
            return None  # an empty or torn archive: the run's scores are still shown
        title = clean_text(f"{name} ({run_dir.name})")  # a directory name is untrusted text
        return Markup(figures.kernels_svg(kernels, title=title))
    return None
