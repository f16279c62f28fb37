"""The results table: one row per run, from a store's run directories or from a CSV.

Columns (docs/architecture.md, "Results table"): `run_id, status, reason, kind, dataset,
arch, norm, epochs, seed, deviations`, then one column per metric (`test_top1`, ...), then
any other scalar spec field a claim may match on (e.g. `source` of a kernels run).

`status` is `done | failed | diverged` as in result.json, plus `corrupt` for a damaged run
directory (runners.rundir.read_run says why): such a run is reported, never silently used or
dropped. Runs without a result.json (queued or still running) are not results and are left
out. Every damaged run is also listed in `table.attrs["problems"]` (printed as warnings).

This module never imports torch.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit import limits
from audit.claims import ARCHS as KNOWN_ARCHS
from audit.claims import DATASETS, KINDS, METRICS, NORMS
from audit.errors import AuditError, read_utf8
from runners.catalogue import RECORDED_METRICS
from runners.rundir import STATUSES, RunRecord, read_run

BASE_COLUMNS = (
    "run_id",
    "status",
    "reason",
    "kind",
    "dataset",
    "arch",
    "norm",
    "epochs",
    "seed",
    "deviations",
)
CSV_REQUIRED = ("dataset", "arch", "norm", "epochs", "seed")
CSV_STATUSES = STATUSES  # a CSV cannot say "corrupt"
CSV_MAX_BYTES = 256 * 2**20  # 30,000 rows are about 1 MiB
# Columns of a CSV that are neither spec fields nor metrics.
_CSV_META = ("run_id", "status", "reason", "deviations")
_NAMES = {"kind": KINDS, "dataset": DATASETS, "arch": KNOWN_ARCHS, "norm": NORMS}


def empty_results() -> pd.DataFrame:
    return _frame([], [], {})


# --------------------------------------------------------------------------- store


def load_results(store_dir: str | Path) -> pd.DataFrame:
    """Every finished or damaged run under `<store_dir>/runs/`, one row each.

    A damaged run directory (runners.rundir.read_run) is a row with status `corrupt` and the
    reason, matched to claims through its spec, or when that is unreadable through the spec
    the store's plan.json recorded for its run id; it is also listed in attrs["problems"]."""
    from audit.store import open_store

    store = open_store(Path(store_dir))
    planned = _planned_specs(store.read_plan())
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for run_id in store.run_ids():
        record = read_run(store.run_dir(run_id))
        row = _store_row(record, planned.get(run_id))
        if row is None:
            continue
        rows.append(row)
        if record.problem is not None:
            serves = (
                "fails the claims it serves"
                if row.get("kind")
                else "no claim can be matched to it (no readable spec, no plan entry, not a run id)"
            )
            problems.append(
                f"{record.run_dir}: damaged run directory ({record.problem}); it is a corrupt "
                f"run and {serves}; `audit run` moves the damaged files aside and trains it again"
            )
    return _frame(rows, problems, {"source": str(store.root), "store": True})


def _planned_specs(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """run id -> spec, from the store's plan.json (a torn or hand-edited plan gives {})."""
    matrix = plan.get("matrix")
    if not isinstance(matrix, list):
        return {}
    return {
        str(entry["run_id"]): entry["spec"]
        for entry in matrix
        if isinstance(entry, dict) and isinstance(entry.get("spec"), dict) and "run_id" in entry
    }


def _store_row(record: RunRecord, planned: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run's row; None for a run without a result yet (queued, running, interrupted)."""
    if record.problem is None and record.result is None:
        return None
    row = _spec_fields(record.spec or planned or _fields_from_run_id(record.run_id))
    row["run_id"] = record.run_id
    if record.problem is not None or record.result is None:
        return {**row, "status": "corrupt", "reason": record.problem, "deviations": []}
    result = record.result
    row.update(status=result.status, reason=result.reason, deviations=list(result.deviations))
    for key, value in result.metrics.items():
        row[key] = _float_or_nan(value)
    return row


# A classification run id: classify-<arch>-<norm>-<dataset>-e<epochs>-s<seed>-<hash>
_CLASSIFY_ID = re.compile(
    r"classify-([A-Za-z0-9.]+)-([a-z]+)-([a-z0-9]+)-e(\d{1,5})-s(\d{1,10})-[0-9a-f]{12}"
)


def _fields_from_run_id(run_id: str) -> dict[str, Any]:
    """The experiment a damaged classification run served, read from its id (runners.specs
    .run_id) when neither its spec.yaml nor the plan says; {} for any other name."""
    match = _CLASSIFY_ID.fullmatch(run_id)
    if match is None:
        return {}
    arch, norm, slug, epochs, seed = match.groups()
    datasets = [d for d in DATASETS if re.sub(r"[^A-Za-z0-9.]+", "", d) == slug]
    if arch not in KNOWN_ARCHS or norm not in NORMS or len(datasets) != 1:
        return {}
    fields = {"kind": "classify", "arch": arch, "norm": norm, "dataset": datasets[0]}
    return {**fields, "epochs": int(epochs), "seed": int(seed)}


def _spec_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's top-level plain fields (nested option blocks like `nd` are left out)."""
    return {
        key: value
        for key, value in spec.items()
        if not isinstance(value, dict | list) and key not in ("status", "reason", "run_id")
    }


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------- CSV

# Metrics a runner writes besides the claimable ones (RunResult.metrics of classify runs).
_EXTRA_METRICS = RECORDED_METRICS  # recorded by the runner, never claimed (catalogue)
METRIC_COLUMNS = (*METRICS, *_EXTRA_METRICS)  # the numeric columns of a result row


def load_results_csv(path: str | Path) -> pd.DataFrame:
    """External results (anyone's numbers), one run per line; see docs/claims.md.

    Validated column by column (vectorised: 30,000 rows take milliseconds); an error names
    the first offending line.
    """
    path = Path(path)
    raw = _read_csv(path)
    raw = raw[(raw != "").any(axis=1)]  # blank lines
    line = (raw.index + 2).tolist()  # header is line 1; one record per line
    data: dict[str, Any] = {}
    for name in ("kind", "status"):
        default = "classify" if name == "kind" else "done"
        column = raw[name] if name in raw else pd.Series("", index=raw.index)
        data[name] = column.where(column != "", default)
    _check_choice(path, line, "status", data["status"], CSV_STATUSES)
    _check_choice(path, line, "kind", data["kind"], KINDS)
    for name in ("dataset", "arch", "norm"):
        _check_choice(path, line, name, raw[name], _NAMES[name], allow_empty=True)
    classify = data["kind"] == "classify"
    for name in ("dataset", "arch", "norm", "epochs"):
        _fail_first(path, line, classify & (raw[name] == ""), f"a classify run needs a {name}")
    _fail_first(path, line, raw["seed"] == "", "seed is empty; number the runs 0, 1, 2, ...")
    data["epochs"] = _integers(path, line, raw["epochs"], "epochs", limits.EPOCHS)
    data["seed"] = _integers(path, line, raw["seed"], "seed", limits.SEED)
    for name in ("dataset", "arch", "norm"):
        data[name] = [v or None for v in raw[name].tolist()]
    for metric in [c for c in raw.columns if c in METRICS or c in _EXTRA_METRICS]:
        data[metric] = _metric(path, line, metric, raw[metric], data["status"])
    extras = [c for c in raw.columns if c not in data and c not in _CSV_META]
    for name in extras:
        data[name] = [v or None for v in raw[name].tolist()]
    run_ids = raw["run_id"] if "run_id" in raw else pd.Series("", index=raw.index)
    data["run_id"] = [r or f"{path.name}:{n}" for r, n in zip(run_ids.tolist(), line, strict=True)]
    reasons = raw["reason"] if "reason" in raw else pd.Series("", index=raw.index)
    data["reason"] = [r or None for r in reasons.tolist()]
    deviations = raw["deviations"] if "deviations" in raw else pd.Series("", index=raw.index)
    data["deviations"] = [
        [d.strip() for d in t.split(";") if d.strip()] if t else [] for t in deviations.tolist()
    ]
    # Where each row came from, for audit/duplicates.py. Arrays, not lists: pandas deep-copies
    # attrs on every column access, and copying an array is one memcpy.
    lines = np.array(line, dtype=np.int64)
    given = (run_ids != "").to_numpy(dtype=bool)
    return _frame_from_columns(
        {k: v.tolist() if isinstance(v, pd.Series) else v for k, v in data.items()},
        len(raw),
        [],
        {"source": str(path), "lines": lines, "given_ids": given},
    )


def _read_csv(path: Path) -> pd.DataFrame:
    """Every cell as stripped text ("" when empty); header checked."""
    # utf-8-sig: spreadsheets add a byte-order mark
    text = read_utf8(path, "the results CSV", encoding="utf-8-sig", limit=CSV_MAX_BYTES)
    if not text.strip():
        raise AuditError(f"{path}:1: the results CSV is empty; it needs a header line first")
    header = [h.strip() for h in next(csv.reader([text.splitlines()[0]]))]
    _check_header(path, header)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # surplus values
            table = pd.read_csv(
                io.StringIO(text),
                dtype=object,  # plain Python strings: iterating them is 10x faster than "str"
                keep_default_na=False,
                skip_blank_lines=False,
                header=0,
                index_col=False,
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as exc:
        unclosed = re.search(r"EOF inside string starting at row (\d+)", str(exc))
        if unclosed:  # pandas counts rows from 0, the header included
            raise AuditError(
                f"{path}:{int(unclosed.group(1)) + 1}: a quote opened on this line is never "
                'closed; close it (") or remove it'
            ) from None
        raise AuditError(
            f"{path}:{_first_ragged_line(text, len(header))}: more values than the header has "
            f"columns ({len(header)}); malformed CSV: fix the line or quote values with commas"
        ) from None
    table.columns = header
    return table.apply(lambda column: column.str.strip())


def _first_ragged_line(text: str, width: int) -> int | str:
    """Only on the error path: the first line with too many values (or "?")."""
    for number, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        if len(cells) > width:
            return number
    return "?"


def _check_header(path: Path, header: list[str]) -> None:
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise AuditError(
            f"{path}:1: the results CSV lacks column(s) {', '.join(missing)}; the header needs "
            f"{', '.join(CSV_REQUIRED)} and a metric column such as test_top1"
        )
    if not any(h in METRICS for h in header):
        raise AuditError(
            f"{path}:1: the results CSV has no metric column; add one of {', '.join(METRICS)}"
        )
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise AuditError(f"{path}:1: the header repeats column(s) {', '.join(duplicates)}")


def _fail_first(path: Path, line: list[int], bad: pd.Series, message: str) -> None:
    if bad.any():
        raise AuditError(f"{path}:{line[int(bad.to_numpy().argmax())]}: {message}")


def _check_choice(
    path: Path,
    line: list[int],
    name: str,
    column: pd.Series,
    choices: tuple[str, ...],
    allow_empty: bool = False,
) -> None:
    bad = ~column.isin(choices) & ~((column == "") & allow_empty)
    if bad.any():
        first = int(bad.to_numpy().argmax())
        raise AuditError(
            f"{path}:{line[first]}: unknown {name} {column.iloc[first]!r}; "
            f"known: {', '.join(choices)}"
        )


def _integers(
    path: Path, line: list[int], column: pd.Series, name: str, bounds: tuple[int, int]
) -> list[int | None]:
    low, high = bounds
    bad = (column != "") & ~column.str.fullmatch(r"\d{1,18}")
    _fail_first(path, line, bad, f"{name} must be a whole number from {low} to {high}")
    values = [int(v) if v else None for v in column.tolist()]
    outside = pd.Series([v is not None and not low <= v <= high for v in values], column.index)
    _fail_first(path, line, outside, f"{name} must be from {low} to {high}")
    return values


def _metric(
    path: Path, line: list[int], metric: str, column: pd.Series, status: pd.Series
) -> list[float]:
    values = pd.to_numeric(column.str.rstrip("%"), errors="coerce")
    not_number = (column != "") & values.isna() & ~column.str.lower().isin(("nan", "-nan"))
    _fail_first(path, line, not_number, f"{metric} must be a number (or empty)")
    not_finite = (column != "") & ~values.abs().lt(float("inf"))
    _fail_first(
        path,
        line,
        not_finite & (status == "done"),
        f"{metric} is not a finite number in a done run; write the value, or set status "
        "to diverged",
    )
    values = values.where(~not_finite)
    low, high = METRICS.get(metric, (-math.inf, math.inf))
    outside = values.notna() & ((values < low) | (values > high))
    _fail_first(path, line, outside, f"{metric} is outside [{low:g}, {high:g}] (percent?)")
    return values.astype(float).tolist()


# --------------------------------------------------------------------------- table


def _frame(rows: list[dict[str, Any]], problems: list[str], attrs: dict) -> pd.DataFrame:
    columns = list(BASE_COLUMNS)
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    data = {c: [row.get(c) for row in rows] for c in columns}
    return _frame_from_columns(data, len(rows), problems, attrs)


def _frame_from_columns(
    data: dict[str, list[Any]], size: int, problems: list[str], attrs: dict
) -> pd.DataFrame:
    columns = [*BASE_COLUMNS, *(c for c in data if c not in BASE_COLUMNS)]
    for name in BASE_COLUMNS:
        data.setdefault(name, [None] * size)
    for metric in columns:
        if metric in METRICS or metric in _EXTRA_METRICS:
            data[metric] = [math.nan if v is None else v for v in data[metric]]
    table = pd.DataFrame(data, columns=columns)
    for name in ("epochs", "seed"):
        table[name] = pd.array(table[name].tolist(), dtype="Int64")
    table.attrs.update(attrs, problems=problems)
    return table
