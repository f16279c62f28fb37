"""No run counted twice: results from a store and CSVs merged into one table.

The same run can reach the comparison twice: a duplicated CSV line, the same CSV given
twice, a store's run also exported to a CSV. Counted twice it would be another seed (two
seeds where there is one narrow the interval and can turn `inconclusive` into
`reproduced`). So two rows are the same run when they carry the same run id (a store's
directory name or a CSV's `run_id` column) or the same experiment and seed:
RUN_KEY fields, seed and protocol deviations. Identical rows are merged with a warning;
rows that disagree are an error naming both places (file:line or run directory).

This module never imports torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from audit.errors import AuditError
from audit.results import METRIC_COLUMNS

# The fields that name an experiment in results from any source (a CSV has no others).
RUN_KEY = ("kind", "dataset", "arch", "norm", "epochs", "seed", "source")
_BOOKKEEPING = ("run_id", "deviations", "reason")
_NA = -1  # a missing epochs or seed (both are >= 0 when given)
WARN_LIMIT = 20  # merged duplicates named one by one; the rest are counted


def merge_results(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One table of every row of `tables`, each run once; attrs["problems"] gathers the
    tables' problems and a warning per merged duplicate."""
    problems = [p for t in tables for p in t.attrs.get("problems", [])]
    origins = [o for t in tables for o in _origins(t)]
    given = [bool(g) for t in tables for g in t.attrs.get("given_ids", [True] * len(t))]
    table = (
        pd.concat([_bare(t) for t in tables], ignore_index=True) if len(tables) != 1 else tables[0]
    )
    pairs = _same_runs(table, given)
    compared = _columns(table) if pairs else {}
    drop: list[int] = []
    for first, later in pairs:
        if not _same_values(compared, first, later):
            what = _describe(table, first)
            raise AuditError(
                f"{origins[later]} and {origins[first]} are the same run ({what}) with "
                "different values; a run counts once: remove one of them"
            )
        drop.append(later)
        if len(drop) <= WARN_LIMIT:
            problems.append(
                f"{origins[later]} repeats {origins[first]} (the same run, the same values); "
                "counted once"
            )
    if len(drop) > WARN_LIMIT:
        problems.append(f"... and {len(drop) - WARN_LIMIT} more repeated run(s), counted once")
    merged = (
        table.drop(index=table.index[drop]).reset_index(drop=True)
        if drop
        else table.copy(deep=False)
    )
    merged.attrs = {"problems": problems, "source": "; ".join(_sources(tables))}
    return merged


def _bare(table: pd.DataFrame) -> pd.DataFrame:
    """`table` without attrs (pd.concat compares them, and arrays do not compare as bools)."""
    bare = table.copy(deep=False)
    bare.attrs = {}
    return bare


def _origins(table: pd.DataFrame) -> list[str]:
    """Where each row came from: `file.csv:LINE`, or the store's run directory."""
    source = table.attrs.get("source", "results")
    if "lines" in table.attrs and len(table.attrs["lines"]) == len(table):
        return [f"{source}:{n}" for n in table.attrs["lines"].tolist()]
    if table.attrs.get("store"):
        return [str(Path(source) / "runs" / str(rid)) for rid in table["run_id"].tolist()]
    return [f"{source} row {i + 1}" for i in range(len(table))]


def _sources(tables: list[pd.DataFrame]) -> list[str]:
    return list(dict.fromkeys(str(t.attrs["source"]) for t in tables if "source" in t.attrs))


def _same_runs(table: pd.DataFrame, given: list[bool]) -> list[tuple[int, int]]:
    """(first row, later row) positions that are the same run, in table order.

    Keys are tuples of plain Python values, zipped at C speed; the row-by-row pass runs only
    when some key repeats (30,000 distinct rows take milliseconds)."""
    run_ids = [
        r if g else (None, row)
        for row, (r, g) in enumerate(zip(table["run_id"].tolist(), given, strict=True))
    ]
    columns = [_plain(table[c]) for c in RUN_KEY if c in table]
    deviations = [tuple(sorted(d)) if d else () for d in table["deviations"].tolist()]
    seeds = _plain(table["seed"])
    keys = [
        k if seed != _NA else (None, row)
        for row, (k, seed) in enumerate(
            zip(zip(*columns, deviations, strict=True), seeds, strict=True)
        )
    ]
    if len(set(run_ids)) == len(run_ids) and len(set(keys)) == len(keys):
        return []
    first_by_id: dict[Any, int] = {}
    first_by_key: dict[Any, int] = {}
    pairs = []
    for row in range(len(table)):
        first = first_by_id.setdefault(run_ids[row], row)
        if first == row:
            first = first_by_key.setdefault(keys[row], row)
        if first != row:
            pairs.append((first, row))
    return pairs


def _plain(column: pd.Series) -> list[Any]:
    """A column as plain Python values; a nullable-integer column (epochs, seed) with _NA for
    missing values (its own tolist() is 20 times slower)."""
    if isinstance(column.dtype, pd.Int64Dtype):
        return column.to_numpy(dtype="int64", na_value=_NA).tolist()
    return column.tolist()


def _columns(table: pd.DataFrame) -> dict[str, list[Any]]:
    """The compared columns as plain lists (fast to index row by row)."""
    return {c: table[c].tolist() for c in table.columns if c not in _BOOKKEEPING}


def _same_values(columns: dict[str, list[Any]], first: int, later: int) -> bool:
    """Whether two rows say the same: the status and every metric (NaN equal to NaN), and
    every other field both rows know (a CSV knows fewer spec fields than a store)."""
    for column, values in columns.items():
        a, b = values[first], values[later]
        if _missing(a) and _missing(b):
            continue
        if _missing(a) or _missing(b):
            if column in METRIC_COLUMNS or column == "status":
                return False
            continue
        if a != b:
            return False
    return True


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _describe(table: pd.DataFrame, row: int) -> str:
    values = {c: table[c].iat[row] for c in RUN_KEY if c in table}
    fields = [f"{c}={v}" for c, v in values.items() if not _missing(v)]
    return " ".join(fields) or f"run id {table['run_id'].iat[row]}"
