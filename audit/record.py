"""The verdict record, `verdicts.json`: what was judged, against what, by which harness, and
every claim's verdict with its numbers (docs/verdicts.md; schema: audit/verdicts.schema.json).

`audit check` and `audit report` write it, `audit check --json` prints it, `audit diff`
reads two of them. Numbers stay numbers (NaN and infinities become null), never only text.

This module never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import socket
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from audit import PROJECT_ROOT, verdicts
from audit.errors import AuditError

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("verdicts.schema.json")
RECORD_NAME = "verdicts.json"
KIND = "nd-audit verdict record"

# comparison column -> record field, per claim (the rest is assembled below)
_NUMBERS = {
    "claimed": "claimed",
    "reproduced_mean": "mean",
    "reproduced_std": "std",
    "ci_low": "ci_low",
    "ci_high": "ci_high",
    "level": "level",
    "pi_low": "pi_low",
    "pi_high": "pi_high",
    "abs_dev": "abs_dev",
    "rel_dev": "rel_dev",
    "p_value": "p_value",
    "q_value": "q_value",
    "prob_improvement": "prob_improvement",
    "p_perm": "p_perm",
    "gap_recovered": "gap_recovered",
    "gap_low": "gap_low",
    "gap_high": "gap_high",
}


def build_verdict_record(
    table: pd.DataFrame,
    allowed: set[str] | None = None,
    *,
    claims: Any = None,
    claims_path: Path | None = None,
    store: Path | None = None,
    results: Iterable[Path] = (),
    results_table: pd.DataFrame | None = None,
    command: str | None = None,
    design: Any = None,
) -> dict[str, Any]:
    """The record of one comparison `table` (audit.compare.compare) gated with `allowed`."""
    from audit.check import exit_code, gate_failures
    from audit.compare import fdr_summary

    allowed = verdicts.passing_verdicts() if allowed is None else set(allowed)
    by_id = claims.by_id() if claims is not None else {}
    failing = set(gate_failures(table, allowed)["claim_id"])
    rows = [
        _claim_record(row, by_id.get(row["claim_id"]), allowed, row["claim_id"] in failing)
        for row in table.to_dict("records")
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else " ".join(["audit", *sys.argv[1:]]),
        "harness": harness_info(),
        "claims_file": _file_info(claims_path),
        "inputs": {
            "store": str(store) if store is not None else None,
            "results": [_file_info(Path(p)) for p in results],
        },
        "hardware": hardware_summary(store),
        "design": _design_info(design),
        "gate": {
            "passing_verdicts": sorted(allowed),
            "exit_code": exit_code(table, allowed),
            "failing": sorted(failing),
        },
        "summary": {
            "claims": len(table),
            "counts": dict(Counter(str(v) for v in table["verdict"])),
            "fdr": fdr_summary(table) if "q_value" in table else None,
        },
        "runs": _runs(results_table),
        "claims": rows,
    }


def write_verdict_record(path: Path, table: pd.DataFrame, allowed: set[str] | None = None,
                         **context: Any) -> dict[str, Any]:  # fmt: skip
    """Build the record and write it to `path` atomically; returns the record."""
    from runners.rundir import atomic_write_text

    record = build_verdict_record(table, allowed, **context)
    try:
        atomic_write_text(Path(path), record_json(record))
    except OSError as exc:
        raise AuditError(
            f"{path}: cannot write the verdict record ({exc.strerror or exc}); "
            "check the directory, or pass another path"
        ) from None
    return record


def record_json(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def load_verdict_record(path: Path) -> dict[str, Any]:
    """A verdict record from `path`, validated against the schema (AuditError if not one)."""
    from audit.schema import SchemaError, validate

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: cannot read the verdict record ({exc})") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuditError(
            f"{path}:{exc.lineno}: not JSON ({exc.msg}); give a verdicts.json that "
            "`audit check` or `audit report` wrote"
        ) from None
    try:
        validate(record, load_schema())
    except SchemaError as exc:
        raise AuditError(f"{path}: not a verdict record: {exc}") from None
    return record


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- per claim


def _claim_record(
    row: dict[str, Any], claim: Any, allowed: set[str], failing: bool
) -> dict[str, Any]:
    verdict = str(row["verdict"])
    out: dict[str, Any] = {
        "claim_id": str(row["claim_id"]),
        "group": str(row["group"]),
        "type": str(row["type"]),
        "metric": _text(row.get("metric")),
        "experiment": {k: _plain(row.get(k)) for k in ("dataset", "arch", "norm", "epochs")},
        "statement": _text(row.get("statement")),
        "claimed_text": _text(row.get("claimed_text")),
        "n": int(row.get("n") or 0),
        "verdict": verdict,
        "label": verdicts.label(verdict),
        "rule": _text(row.get("rule")),
        "gate": bool(row.get("gate", True)),
        "passes_gate": not failing,
        "allowed": verdict in allowed,
        "single_run": bool(row.get("single_run") or False),
        "low_power": bool(row.get("low_power") or False),
        "escalated": bool(row.get("escalated") or False),
        "paired": bool(row.get("paired") or False),
        "tolerance": _tolerance(row, claim),
        "seeds": [int(s) for s in row.get("seeds") or []],
        "values": [_number(v) for v in row.get("values") or []],
        "run_ids": [str(r) for r in row.get("run_ids") or []],
        "deviations": [str(d) for d in row.get("deviations") or []],
        "reason": _text(row.get("reason")),
        "source": _text(row.get("source")),
        "references": {
            k[4:]: _number(v) for k, v in row.items() if k.startswith("ref_") and _finite(v)
        },
    }
    for column, name in _NUMBERS.items():
        out[name] = _number(row.get(column))
    return out


def _tolerance(row: dict[str, Any], claim: Any) -> dict[str, Any]:
    tolerance = getattr(claim, "tolerance", None)
    return {
        "text": _text(row.get("tolerance")),
        "low": _number(row.get("tol_low")),
        "high": _number(row.get("tol_high")),
        "abs": getattr(tolerance, "abs", None),
        "rel": getattr(tolerance, "rel", None),
        "direction": getattr(tolerance, "direction", None),
        "op": getattr(claim, "op", None),
    }


def _runs(results: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    """Every result row, so `audit diff` can tell runs that appeared or vanished."""
    if results is None:
        return None
    columns = [c for c in ("run_id", "status", "dataset", "arch", "norm", "epochs", "seed")
               if c in results]  # fmt: skip
    return [
        {k: _plain(v) for k, v in zip(columns, values, strict=True)}
        for values in results[columns].itertuples(index=False, name=None)
    ]


# --------------------------------------------------------------------------- context


def harness_info() -> dict[str, Any]:
    from runners.rundir import project_commit

    return {"name": "nd-audit", "version": harness_version(), **project_commit()}


def harness_version() -> str | None:
    import tomllib
    from importlib import metadata

    try:
        return metadata.version("nd-audit")
    except metadata.PackageNotFoundError:  # a checkout, not installed: pyproject says
        try:
            with (PROJECT_ROOT / "pyproject.toml").open("rb") as handle:
                return str(tomllib.load(handle)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return None


def hardware_summary(store: Path | None) -> dict[str, Any]:
    """Where the verdicts were computed, and the devices the store's runs trained on."""
    devices: Counter[str] = Counter()
    runs = Path(store) / "runs" if store is not None else None
    for run_dir in sorted(runs.iterdir()) if runs is not None and runs.is_dir() else []:
        try:
            data = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("device"):
            devices[str(data["device"])] += 1
    return {
        "checked_on": {
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        },
        "run_devices": dict(devices),
    }


def _file_info(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        digest = None
    return {"path": str(path), "sha256": digest}


def _design_info(design: Any) -> dict[str, Any]:
    from audit.compare import SINGLE_LOOK

    design = design or SINGLE_LOOK
    return {
        "rule": design.rule,
        "confidence": design.confidence,
        "interim": design.interim,
        "max_seeds": design.max_seeds or None,
        "escalated_claims": sorted(design.escalated_claims),
    }


# --------------------------------------------------------------------------- values


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _plain(value: Any) -> Any:
    """A JSON-safe scalar: numpy and pandas scalars to Python, NaN and NA to None."""
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, str | int | float | bool) else str(value)
