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

from audit import verdicts
from audit.errors import AuditError
from runners.rundir import read_run

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
    rows = _claim_records(table, by_id, allowed, failing)
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


def record_file(table: pd.DataFrame, allowed: set[str] | None = None,
                **context: Any) -> dict[str, bytes]:  # fmt: skip
    """{RECORD_NAME: bytes} for a report folder, written with the report as one set."""
    record = build_verdict_record(table, allowed, **context)
    return {RECORD_NAME: record_json(record).encode("utf-8")}


def record_json(record: dict[str, Any]) -> str:
    # One line: without `indent`, json uses its C encoder (10,000 claims in 0.1 s, not 6 s).
    return json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"


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


def _claim_records(
    table: pd.DataFrame, by_id: dict[str, Any], allowed: set[str], failing: set[str]
) -> list[dict[str, Any]]:
    """Every claim's record, built column-wise (10,000 claims: a tenth of a second)."""
    size = len(table)

    def col(name: str, convert: Any = None) -> list[Any]:
        if name not in table:
            return [None] * size
        values = table[name].astype(object).tolist()
        return [convert(v) for v in values] if convert else values

    numbers = {name: _numbers(table[c]) for c, name in _NUMBERS.items() if c in table}
    low, high = _numbers(table["tol_low"]), _numbers(table["tol_high"])
    text = {c: col(c, _text) for c in ("metric", "statement", "claimed_text", "rule",
                                      "tolerance", "reason", "source")}  # fmt: skip
    flags = {c: col(c, bool) for c in ("single_run", "low_power", "escalated", "paired")}
    facets = {c: col(c, _plain) for c in ("dataset", "arch", "norm", "epochs")}
    refs = [c for c in table.columns if c.startswith("ref_")]
    ref_numbers = {c[4:]: _numbers(table[c]) for c in refs}
    ids, gates, verdict_names = col("claim_id", str), col("gate"), col("verdict", str)
    lists = {c: col(c) for c in ("seeds", "values", "run_ids", "deviations")}
    groups, types, ns = col("group", str), col("type", str), col("n")
    out = []
    for i, claim_id in enumerate(ids):
        verdict, claim = verdict_names[i], by_id.get(claim_id)
        tolerance = getattr(claim, "tolerance", None)
        record = {
            "claim_id": claim_id,
            "group": groups[i],
            "type": types[i],
            "metric": text["metric"][i],
            "experiment": {k: v[i] for k, v in facets.items()},
            "statement": text["statement"][i],
            "claimed_text": text["claimed_text"][i],
            "n": int(ns[i] or 0) if ns[i] == ns[i] else 0,
            "verdict": verdict,
            "label": verdicts.label(verdict),
            "rule": text["rule"][i],
            "gate": True if gates[i] is None else bool(gates[i]),
            "passes_gate": claim_id not in failing,
            "allowed": verdict in allowed,
            **{k: v[i] for k, v in flags.items()},
            "tolerance": {
                "text": text["tolerance"][i],
                "low": low[i],
                "high": high[i],
                "abs": getattr(tolerance, "abs", None),
                "rel": getattr(tolerance, "rel", None),
                "direction": getattr(tolerance, "direction", None),
                "op": getattr(claim, "op", None),
            },
            "seeds": [int(s) for s in lists["seeds"][i] or ()],
            "values": [_number(v) for v in lists["values"][i] or ()],
            "run_ids": [str(r) for r in lists["run_ids"][i] or ()],
            "deviations": [str(d) for d in lists["deviations"][i] or ()],
            "reason": text["reason"][i],
            "source": text["source"][i],
            "references": {k: v[i] for k, v in ref_numbers.items() if v[i] is not None},
        }
        record.update((name, column[i]) for name, column in numbers.items())
        out.append(record)
    return out


def _numbers(column: pd.Series) -> list[float | None]:
    """A column as floats with None for NaN, infinities and text (JSON null)."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=math.nan)
    return [v if math.isfinite(v) else None for v in values.tolist()]


def _runs(results: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    """Every result row (id, status, seed), so `audit diff` can tell runs that appeared or
    vanished."""
    if results is None:
        return None
    size = len(results)
    ids = results["run_id"].astype(object).tolist() if "run_id" in results else [None] * size
    status = results["status"].astype(object).tolist() if "status" in results else ["done"] * size
    seeds = _numbers(results["seed"]) if "seed" in results else [None] * size
    return [
        {"run_id": str(r), "status": str(s), "seed": None if seed is None else int(seed)}
        for r, s, seed in zip(ids, status, seeds, strict=True)
    ]


# --------------------------------------------------------------------------- context


def harness_info() -> dict[str, Any]:
    from audit import DISTRIBUTION, version
    from runners.rundir import project_commit

    return {"name": DISTRIBUTION, "version": version(), **project_commit()}


def hardware_summary(store: Path | None) -> dict[str, Any]:
    """Where the verdicts were computed, and the devices the store's runs trained on."""
    devices: Counter[str] = Counter()
    runs = Path(store) / "runs" if store is not None else None
    for run_dir in sorted(runs.iterdir()) if runs is not None and runs.is_dir() else []:
        result = read_run(run_dir).result  # the one reader: a damaged run is skipped here
        if result is not None and result.device:
            devices[str(result.device)] += 1
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
