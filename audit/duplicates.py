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
from typing import Any

import pandas as pd

from audit.errors import AuditError
from audit.results import METRIC_COLUMNS

# The fields that name an experiment in results from any source (a CSV has no others).
RUN_KEY = ("kind", "dataset", "arch", "norm", "epochs", "seed", "source")
_BOOKKEEPING = ("run_id", "deviations", "reason")


def merge_results(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One table of every row of `tables`, each run once; attrs["problems"] gathers the
    tables' problems and a warning per merged duplicate."""
    problems = [p for t in tables for p in t.attrs.get("problems", [])]
    origins = [o for t in tables for o in _origins(t)]
    given = [g for t in tables for g in t.attrs.get("given_ids", [True] * len(t))]
    table = pd.concat(tables, ignore_index=True) if len(tables) != 1 else tables[0].copy()
    drop: list[int] = []
    for first, later in _same_runs(table, given):
        if _same_values(table, first, later):
            problems.append(
                f"{origins[later]} repeats {origins[first]} (the same run, the same values); "
                "counted once"
            )
            drop.append(later)
        else:
            what = _describe(table, first)
            raise AuditError(
                f"{origins[later]} and {origins[first]} are the same run ({what}) with "
                "different values; a run counts once: remove one of them"
            )
    merged = table.drop(index=sorted(set(drop))).reset_index(drop=True)
    merged.attrs = {"problems": problems, "source": "; ".join(_sources(tables))}
    return merged


def _origins(table: pd.DataFrame) -> list[str]:
    origins = table.attrs.get("origins")
    if origins is not None and len(origins) == len(table):
        return list(origins)
    source = table.attrs.get("source", "results")
    return [f"{source} row {i + 1}" for i in range(len(table))]


def _sources(tables: list[pd.DataFrame]) -> list[str]:
    return list(dict.fromkeys(str(t.attrs["source"]) for t in tables if "source" in t.attrs))


def _same_runs(table: pd.DataFrame, given: list[bool]) -> list[tuple[int, int]]:
    """(first row, later row) pairs that are the same run, in table order."""
    pairs: dict[int, int] = {}
    ids = table["run_id"].where(pd.Series(given, index=table.index, dtype=bool))
    for key in (ids.astype(object), _experiment_key(table)):
        valid = key.notna()
        repeated = key.duplicated(keep=False) & valid
        if not repeated.any():
            continue
        firsts: dict[Any, int] = {}
        for index in key.index[repeated]:
            first = firsts.setdefault(key[index], index)
            if first != index:
                pairs.setdefault(index, first)
    return sorted(((first, later) for later, first in pairs.items()), key=lambda p: p[1])


def _experiment_key(table: pd.DataFrame) -> pd.Series:
    """Text key of (RUN_KEY fields, deviations) per row; NA where the seed is unknown."""
    parts = [
        table[c].astype(str) if c in table else pd.Series("", index=table.index) for c in RUN_KEY
    ]
    deviations = table["deviations"].map(lambda d: ";".join(sorted(d)) if d else "")
    key = parts[0].str.cat([*parts[1:], deviations], sep="\x1f")
    return key.where(table["seed"].notna())


def _same_values(table: pd.DataFrame, first: int, later: int) -> bool:
    """Whether two rows say the same: the status and every metric (NaN equal to NaN), and
    every other field both rows know (a CSV knows fewer spec fields than a store)."""
    for column in table.columns:
        if column in _BOOKKEEPING:
            continue
        a, b = table.at[first, column], table.at[later, column]
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
    fields = [
        f"{c}={table.at[row, c]}" for c in RUN_KEY if c in table and not _missing(table.at[row, c])
    ]
    return " ".join(fields) or f"run id {table.at[row, 'run_id']}"
