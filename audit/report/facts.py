"""Facts about this audit and this harness, gathered once, from which every sentence that
describes them is generated: where the results came from, the profile, the seeds, the
hardware, the runners and models the harness has, and the documents it ships.

Nothing here is written by hand about the harness: a sentence that would go stale (e.g.
"no ImageNet runner exists") is instead computed from the registry it talks about."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.report.common import arch_label, arch_order, column
from audit.report.rundata import stored_plan
from runners import catalogue

REPO_ROOT = Path(__file__).resolve().parents[2]
METHOD_DOC = "docs/method.md"  # the method and every fidelity option, as the harness runs it


@dataclass
class Facts:
    store_runs: int  # results rows read from run directories
    imported_runs: int  # results rows from CSV files
    csv_paths: list[str]
    profile: str | None  # the profile the store's runs were planned with
    profile_label: str | None  # that profile's own warning, when its runs deviate
    seeds: list[int]
    devices: list[tuple[str, int]]  # device name -> runs that recorded it
    extra_scope: dict[str, str] = field(default_factory=dict)

    def origin_text(self) -> str:
        parts = []
        if self.store_runs:
            parts.append(f"{self.store_runs} run{_s(self.store_runs)} from the store")
        if self.imported_runs:
            where = ", ".join(self.csv_paths) or "a results CSV"
            parts.append(f"{self.imported_runs} imported row{_s(self.imported_runs)} ({where})")
        return "; ".join(parts) or "no results"

    def profile_text(self) -> str:
        if not self.store_runs:
            return "none (every result was imported)" if self.imported_runs else "none"
        name = self.profile or "not recorded"
        scope = "its" if not self.imported_runs else f"the store's {self.store_runs}"
        text = f"{name} ({scope} runs)" if self.imported_runs else name
        return f"{text}: {self.profile_label}" if self.profile_label else text

    def seeds_text(self) -> str:
        """`3 seeds (0, 1, 2)`; `1 seed (0)`; never a bare number that reads as a count."""
        if not self.seeds:
            return "none"
        listed = ", ".join(map(str, self.seeds))
        return f"{len(self.seeds)} seed{_s(len(self.seeds))} ({listed})"

    def hardware_text(self) -> str:
        shown = "; ".join(f"{name} ({n} run{_s(n)})" for name, n in self.devices)
        if not shown:
            return "not recorded (results imported without run directories)"
        if self.imported_runs:
            shown += f"; not recorded for the {self.imported_runs} imported"
        return shown


def gather_facts(
    results: pd.DataFrame,
    details: pd.DataFrame,
    store_dir: Path | None,
    scope: Mapping[str, Any],
) -> Facts:
    """The facts of one report: the results table, run details, the store's plan, `scope`."""
    in_store = set(details["run_id"]) if len(details) else set()
    ids = results["run_id"].astype(str) if "run_id" in results else pd.Series(dtype=str)
    store_runs = int(ids.isin(in_store).sum())
    plan = stored_plan(store_dir) if store_runs else {}
    csvs = [p.strip() for p in str(scope.get("results") or "").split(",") if p.strip()]
    shown = {"profile", "label", "results", "hardware", "gpu_hours"}
    return Facts(
        store_runs=store_runs,
        imported_runs=len(results) - store_runs,
        csv_paths=csvs,
        profile=_text(scope.get("profile") or plan.get("profile")),
        profile_label=_text(scope.get("label") or plan.get("label")),
        seeds=_seeds(results),
        devices=_devices(details, scope.get("hardware")),
        extra_scope={k: str(v) for k, v in scope.items() if k not in shown and v is not None},
    )


def _seeds(results: pd.DataFrame) -> list[int]:
    classify = results[column(results, "kind", "classify") == "classify"]
    return sorted({int(s) for s in classify.get("seed", pd.Series(dtype=float)).dropna()})


def _devices(details: pd.DataFrame, given: Any) -> list[tuple[str, int]]:
    if given:
        return [(str(given), len(details))]
    devices = details["device"].replace("", np.nan).dropna() if len(details) else pd.Series()
    return [(str(name), int(n)) for name, n in devices.value_counts().items()]


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _s(count: int) -> str:
    return "" if count == 1 else "s"


# -- the harness itself


def runner_kinds() -> list[str]:
    from runners.registry import RUNNERS

    return sorted(RUNNERS)


def models_for(dataset: str) -> list[str]:
    """The paper names of the architectures this harness can build for `dataset`."""
    kind = catalogue.input_kind_of(dataset)
    names = [n for n, entry in catalogue.ARCHS.items() if kind in entry.input_kinds]
    return [arch_label(name) for name in sorted(names, key=arch_order)]


def runners_text() -> str:
    """`classify (CIFAR-10/CIFAR-100: VGG-16, ...; ImageNet: VGG-11, ...), kernels`, from the
    catalogue (datasets grouped by input kind) and the runner registry."""
    per_kind = []
    for kind in catalogue.INPUT_KINDS:
        datasets = [d for d in catalogue.DATASETS.values() if d.input_kind == kind]
        if datasets:
            names = models_for(datasets[0].name)
            label = "/".join(d.label for d in datasets)
            per_kind.append(f"{label}: {', '.join(names) or 'no model'}")
    kinds = [f"{k} ({'; '.join(per_kind)})" if k == "classify" else k for k in runner_kinds()]
    return ", ".join(kinds)


def doc_exists(relative: str) -> bool:
    """Whether this checkout ships the document (a report cites only what exists)."""
    return (REPO_ROOT / relative).is_file()
