"""Methods and provenance: definitions, tolerances, departures from the protocol, ND options,
the harness (runners and models, from their registries), the claims file's checksum, the
commit, package versions, hardware, seeds and the command; every item from a fact."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from audit.report.common import as_list, text
from audit.report.facts import METHOD_DOC, Facts, doc_exists, runners_text
from runners.rundir import PROVENANCE_PACKAGES, package_versions, project_commit

REPORT_PACKAGES = (*PROVENANCE_PACKAGES, "matplotlib", "weasyprint")


def methods(
    comparison: pd.DataFrame,
    results: pd.DataFrame,
    details: pd.DataFrame,
    facts: Facts,
    claims_path: Path | None,
    command: str | None,
    environment: dict[str, Any],
) -> dict[str, Any]:
    return {
        "tolerances": _tolerances(comparison),
        "deviations": unique_deviations(comparison, results),
        "nd_options": _counted(details["nd_options"]) if len(details) else [],
        "claims_file": str(claims_path) if claims_path else "not recorded",
        "claims_sha256": sha256(claims_path) if claims_path else "not recorded",
        "commit": environment["commit_text"],
        "packages": list(environment["packages"].items()),
        "hardware": facts.hardware_text(),
        "seeds": facts.seeds_text(),
        "command": command or "not recorded",
        "runners": runners_text(),
        "method_doc": METHOD_DOC if doc_exists(METHOD_DOC) else "",
    }


def environment(claims_path: Path | None) -> dict[str, Any]:
    """What environment.json records: the commit, package versions, the claims file's hash."""
    commit = project_commit()
    packages = {k: v or "not installed" for k, v in package_versions(REPORT_PACKAGES).items()}
    text_ = (commit.get("commit") or "unknown") + (
        " (uncommitted changes)" if commit.get("dirty") else ""
    )
    return {
        "commit": commit.get("commit"),
        "dirty": bool(commit.get("dirty")),
        "commit_text": text_,
        "packages": packages,
        "claims_sha256": sha256(claims_path) if claims_path else None,
    }


def _counted(values: pd.Series) -> list[tuple[str, int]]:
    """Distinct non-empty values with how many runs carry each."""
    counts = values[values != ""].value_counts(sort=False)
    return [(str(value), int(count)) for value, count in counts.items()]


def _tolerances(comparison: pd.DataFrame) -> list[dict[str, str]]:
    pairs = comparison[["group", "type"]].assign(
        tolerance=comparison["tolerance"].map(tolerance_text)
    )
    return list(pairs.drop_duplicates().to_dict("records"))


def tolerance_text(tolerance: Any) -> str:
    """A Tolerance in words (its own `describe()`), or the value as given."""
    describe = getattr(tolerance, "describe", None)
    return describe() if callable(describe) else text(tolerance)


def unique_deviations(comparison: pd.DataFrame, results: pd.DataFrame) -> list[str]:
    """Every departure from the authors' protocol that any shown result carries."""
    seen: dict[str, None] = {}
    for frame in (results, comparison):
        for value in frame.get("deviations", pd.Series(dtype=object)).dropna():
            for item in as_list(value):
                seen.setdefault(item, None)
    return list(seen)


def sha256(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"
