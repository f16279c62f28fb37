"""The results table: one row per run, from a store's run directories or from a CSV.

Columns (docs/architecture.md, "Results table"): `run_id, status, reason, kind, dataset,
arch, norm, epochs, seed, deviations`, then one column per metric (`test_top1`, ...), then
any other scalar spec field a claim may match on (e.g. `source` of a kernels run).

`status` is `done | failed | diverged` as in result.json, plus `corrupt` for a run whose
result.json cannot be read: such a run is reported (never silently used or dropped).
Runs without a result.json (queued or still running) are not results and are left out.
Problems that are not a run (an unreadable spec.yaml) go to `table.attrs["problems"]`.

This module never imports torch.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from audit.claims import ARCHS as KNOWN_ARCHS
from audit.claims import DATASETS, KINDS, METRICS, NORMS
from audit.errors import AuditError, read_utf8
from runners.catalogue import RECORDED_METRICS
from runners.rundir import STATUSES, read_result, read_spec

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
# Columns of a CSV that are neither spec fields nor metrics.
_CSV_META = ("run_id", "status", "reason", "deviations")
_NAMES = {"kind": KINDS, "dataset": DATASETS, "arch": KNOWN_ARCHS, "norm": NORMS}


def empty_results() -> pd.DataFrame:
    return _frame([], [], {})


# --------------------------------------------------------------------------- store


def load_results(store_dir: str | Path) -> pd.DataFrame:
    """Every finished run under `<store_dir>/runs/`, one row each."""
    store = Path(store_dir)
    if not store.is_dir():
        raise AuditError(
            f"{store}: no such store directory; pass --store DIR (the directory `audit run` "
            "wrote to) or --results FILE.csv"
        )
    runs = store / "runs"
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        if run_dir.is_dir():
            row = _store_row(run_dir, problems)
            if row is not None:
                rows.append(row)
    return _frame(rows, problems, {"source": str(store)})


def _store_row(run_dir: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        spec = read_spec(run_dir)
    except FileNotFoundError:
        return None  # a directory the store created but no runner has written to yet
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # yaml errors are ValueErrors
        problems.append(f"{run_dir}/spec.yaml: unreadable ({exc}); the run is ignored")
        return None
    row = _spec_fields(spec)
    row["run_id"] = run_dir.name
    try:
        result = read_result(run_dir)
    except ValueError as exc:
        problems.append(f"{exc}; counted as a failed run")
        return {**row, "status": "corrupt", "reason": str(exc), "deviations": []}
    if result is None:
        return None
    row.update(status=result.status, reason=result.reason, deviations=list(result.deviations))
    for key, value in result.metrics.items():
        row[key] = _float_or_nan(value)
    return row


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
    data["epochs"] = _integers(path, line, raw["epochs"], "epochs", minimum=1)
    data["seed"] = _integers(path, line, raw["seed"], "seed", minimum=0)
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
    return _frame_from_columns(
        {k: v.tolist() if isinstance(v, pd.Series) else v for k, v in data.items()},
        len(raw),
        [],
        {"source": str(path)},
    )


def _read_csv(path: Path) -> pd.DataFrame:
    """Every cell as stripped text ("" when empty); header checked."""
    text = read_utf8(path, "the results CSV", encoding="utf-8-sig")  # spreadsheets add a BOM
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
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError):
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
    path: Path, line: list[int], column: pd.Series, name: str, minimum: int
) -> list[int | None]:
    bad = (column != "") & ~column.str.fullmatch(r"\d+")
    _fail_first(path, line, bad, f"{name} must be a whole number >= {minimum}")
    values = [int(v) if v else None for v in column.tolist()]
    small = pd.Series([v is not None and v < minimum for v in values], index=column.index)
    _fail_first(path, line, small, f"{name} must be >= {minimum}")
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
