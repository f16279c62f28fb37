"""The files that travel with the report so that its folder stands alone: `results.csv` (one
row per run), `comparison.csv` (one row per claim: the all-claims table), the claims file
used, and `environment.json` (commit, package versions, the claims file's hash). The HTML
links each of them; `verdicts.json` joins them when the caller passes it."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from audit.report.common import as_list, missing_any

RESULTS_CSV = "results.csv"
COMPARISON_CSV = "comparison.csv"
ENVIRONMENT_JSON = "environment.json"
VERDICTS_JSON = "verdicts.json"
CLAIMS_COPY = "claims.yaml"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FORMULA = ("=", "+", "@", "\t", "\r")  # a spreadsheet would run a cell starting so
COMPARISON_COLUMNS = (
    "claim_id", "group", "type", "dataset", "arch", "norm", "epochs", "metric", "claimed",
    "claimed_text", "reproduced_mean", "reproduced_std", "n", "ci_low", "ci_high", "abs_dev",
    "rel_dev", "tolerance", "verdict", "reason", "run_ids", "deviations", "source",
)  # fmt: skip
DESCRIPTIONS = {
    RESULTS_CSV: "every run, one row each",
    COMPARISON_CSV: "every claim with its verdict (the all-claims table)",
    VERDICTS_JSON: "the verdicts, machine-readable",
    CLAIMS_COPY: "the claims file used",
    ENVIRONMENT_JSON: "commit, package versions, the claims file's SHA-256",
}


def archive_files(
    results: pd.DataFrame,
    comparison: pd.DataFrame,
    claims_path: Path | None,
    environment: dict[str, Any],
) -> dict[str, bytes]:
    """name -> content of each archive file (the claims copy only when it can be read)."""
    files = {
        RESULTS_CSV: table_csv(results, list(results.columns)),
        COMPARISON_CSV: table_csv(comparison, [c for c in COMPARISON_COLUMNS if c in comparison]),
        ENVIRONMENT_JSON: (json.dumps(environment, indent=2, sort_keys=True) + "\n").encode(),
    }
    if claims_path is not None:
        # unreadable: the methods section says so next to its checksum
        with contextlib.suppress(OSError):
            files[CLAIMS_COPY] = Path(claims_path).read_bytes()
    return files


def table_csv(frame: pd.DataFrame, columns: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in frame[columns].itertuples(index=False) if columns else []:
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue().encode("utf-8")


def csv_cell(value: Any) -> str:
    """A cell as text: lists joined by "; ", no control characters, and text that a
    spreadsheet would run as a formula prefixed with a quote."""
    if isinstance(value, list | tuple):
        value = "; ".join(as_list(value))
    elif missing_any(value):
        return ""
    elif isinstance(value, float):
        return repr(value)
    text = _CONTROL.sub("", str(value))
    return "'" + text if isinstance(value, str) and text.startswith(_FORMULA) else text


def link_list(names: list[str]) -> list[dict[str, str]]:
    """The archive's files as the HTML lists them, in a fixed order."""
    return [{"name": n, "about": DESCRIPTIONS.get(n, "")} for n in DESCRIPTIONS if n in names]
