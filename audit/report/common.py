"""Formatting and labels shared by the report's sections: numbers as text, the names the paper
prints, and small readers of pandas cells that may be NaN, None or pd.NA."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from runners import catalogue

# One label per norm, used by tables and figures alike (the catalogue's).
NORM_LABELS = {name: norm.label for name, norm in catalogue.NORMS.items()}


def fmt(value: Any, digits: int = 2, *, signed: bool = False, suffix: str = "") -> str:
    """A number as text; "–" for a missing one. ASCII signs so a PDF search for -0.18 works."""
    if missing(value):
        return "–"
    text = f"{float(value):+.{digits}f}" if signed else f"{float(value):.{digits}f}"
    return text + suffix


def mean_text(mean: Any, std: Any, n: Any) -> str:
    """`93.08 ± 0.12 (n=3)`; a single run shows no spread rather than a fake zero."""
    if missing(mean):
        return "–"
    n_int = 0 if missing(n) else int(n)
    if n_int > 1 and not missing(std):  # ddof=1 std of a single run would be NaN
        return f"{fmt(mean)} ± {fmt(std)} (n={n_int})"
    return f"{fmt(mean)} (n={n_int})"


def missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def missing_any(value: Any) -> bool:
    """Like `missing`, for a cell that may also hold a list."""
    return value is None or (not isinstance(value, list | tuple | np.ndarray) and missing(value))


def text(value: Any) -> str:
    return "" if missing(value) else str(value)


def get(obj: Any, key: str, default: Any) -> Any:
    """`key` of a mapping or attribute of an object (claims may be dataclasses or dicts)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def norm_label(norm: Any) -> str:
    """BN, ND, no norm; a relation's "nd/bn" becomes "ND/BN"."""
    return "/".join(NORM_LABELS.get(part, part) for part in str(norm).split("/"))


def dataset_label(dataset: Any) -> str:
    """The name the paper prints (the catalogue's), else the name as given."""
    entry = catalogue.DATASETS.get(str(dataset))
    return entry.label if entry else str(dataset)


def arch_label(arch: Any) -> str:
    """The name the paper prints (the catalogue's), else the name as given."""
    entry = catalogue.ARCHS.get(str(arch))
    return entry.paper_name if entry else str(arch)


def arch_order(arch: Any) -> tuple[int, str]:
    """The paper's row order (the catalogue lists the architectures in print order)."""
    names = list(catalogue.ARCHS)
    return (names.index(arch), "") if arch in names else (len(names), str(arch))


def epochs_value(value: Any) -> int | str | None:
    """An epoch budget; a relation over several budgets has the text "1/100"."""
    if missing(value):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def experiment_text(row: Mapping[str, Any]) -> str:
    """`CIFAR-10 · VGG-16 · ND · 20 ep` from a comparison or results row."""
    parts = [
        dataset_label(row.get("dataset")) if not missing(row.get("dataset")) else None,
        arch_label(row.get("arch")) if not missing(row.get("arch")) else None,
        norm_label(row.get("norm")) if not missing(row.get("norm")) else None,
        f"{epochs_value(row.get('epochs'))} ep" if not missing(row.get("epochs")) else None,
    ]
    return " · ".join(p for p in parts if p) or "–"


def metric_suffix(row: Mapping[str, Any]) -> str:
    metric = text(row.get("metric"))
    return f" · {metric}" if metric and metric != catalogue.PRIMARY_METRIC else ""


def claimed_text(row: Mapping[str, Any]) -> str:
    return text(row.get("claimed_text")) or fmt(row.get("claimed"))


def as_list(value: Any) -> list[str]:
    """A list cell, or a `;`-separated text cell (CSV), as a list of strings."""
    if missing_any(value):
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    return [str(value)]


def as_values(value: Any) -> list[float]:
    if missing_any(value) or isinstance(value, str):
        return []
    return [float(v) for v in value]


def std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def column(results: pd.DataFrame, name: str, default: str) -> pd.Series:
    """A results column with `default` where it is empty (or for every row when a hand-made
    CSV lacks it): runs are classification runs and done unless they say otherwise."""
    return results.get(name, pd.Series(default, index=results.index)).fillna(default)


def classify_done(results: pd.DataFrame) -> pd.DataFrame:
    if results.empty or "test_top1" not in results:
        return results.iloc[0:0]
    kind, status = column(results, "kind", "classify"), column(results, "status", "done")
    return results[(kind == "classify") & (status == "done") & results["test_top1"].notna()]


def number(value: Any) -> str:
    """A metric of any size in four significant digits (1e-12 and 388800 alike)."""
    if missing(value):
        return "–"
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.4g}"


def is_proxy(row: Mapping[str, Any]) -> bool:
    """A claim judged on runs that depart from the paper's protocol (comparison `deviations`)."""
    return bool(as_list(row.get("deviations")))
