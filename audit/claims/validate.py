"""Loading a claims file: its blocks validated and expanded into a `ClaimSet`."""

from __future__ import annotations

from pathlib import Path

from audit.claims.fields import (
    CLAIM_FIELDS,
    OVERRIDE_FIELDS,
    REFERENCE_FIELDS,
    TOP_FIELDS,
    Block,
    as_number,
    as_str,
    check_id,
    check_link,
    check_range,
    claim_type,
    final_tolerance,
    free_mapping,
    group_tolerances,
    list_of,
    merge_tolerances,
    parse_experiment,
    parse_metric,
    parse_tolerance,
    require_fields,
    seq,
    tolerance_of,
)
from audit.claims.model import SCHEMA_VERSION, Claim, ClaimSet, ReferenceSource, ReferenceValue
from audit.claims.reader import Reader, Y
from audit.claims.relations import parse_relation
from audit.claims.tables import Table, parse_table

# --------------------------------------------------------------------------- loading


def load_claims(path: str | Path) -> ClaimSet:
    """Read and validate a claims file; every claim expanded, overrides applied."""
    reader = Reader(Path(path))
    return _build(reader, reader.load(), reader.path)


def _build(reader: Reader, root: Y, path: Path) -> ClaimSet:
    top = Block(reader, root, "the claims file", TOP_FIELDS)
    version, _ = as_number(reader, top.get("schema_version"), "schema_version")
    if version != SCHEMA_VERSION:
        raise reader.fail(
            top.get("schema_version").line,
            f"schema_version {version:g} is not supported; this harness reads {SCHEMA_VERSION}",
        )
    group_tols = group_tolerances(reader, top)
    claims: list[Claim] = []
    tables: dict[str, Table] = {}
    for node in list_of(reader, top, "tables"):
        table = parse_table(reader, node, group_tols)
        if table.id in tables:
            raise reader.fail(node.line, f"duplicate table id {table.id!r}")
        tables[table.id] = table
        claims.extend(c for row in table.rows for c in row.cells.values())
    claims.extend(_parse_claim(reader, n, group_tols) for n in list_of(reader, top, "claims"))
    for node in list_of(reader, top, "relations"):
        claims.extend(parse_relation(reader, node, tables, group_tols))
    by_id = _unique_ids(reader, claims)
    if top.has("overrides"):
        _apply_overrides(reader, top.get("overrides"), by_id)
    references = [_parse_reference(reader, n, by_id) for n in list_of(reader, top, "references")]
    if not claims:
        raise reader.fail(
            root.line, "the file defines no claim; add a `tables:` or `claims:` block"
        )
    paper = top.node.value.get("paper")
    for key in ("url", "pdf") if paper is not None and isinstance(paper.value, dict) else ():
        check_link(reader, paper.value.get(key), key)
    meta = {"paper": free_mapping(reader, paper)}
    meta["sources"] = free_mapping(reader, top.node.value.get("sources"))
    return ClaimSet(claims, references, path, meta)


def _parse_claim(reader: Reader, node: Y, group_tols: dict) -> Claim:
    """A single claim that fits no table (e.g. the kernel claim)."""
    block = Block(reader, node, "a claim", CLAIM_FIELDS)
    claim_id = check_id(reader, block.get("id"), block.text("id"))
    block.what = f"claim {claim_id!r}"
    group = block.text("group")
    kind = claim_type(reader, block, ("value", "threshold"))
    metric = parse_metric(reader, block.get("metric"), f"{claim_id} metric")
    experiment = parse_experiment(reader, block.get("experiment"), f"{claim_id} experiment")
    require_fields(reader, block.get("experiment").line, experiment, claim_id)
    value, text = as_number(reader, block.get("claimed"), f"{claim_id} claimed")
    check_range(reader, block.get("claimed"), metric, value, claim_id)
    parts = tolerance_of(reader, block, group, group_tols)
    return Claim(
        id=claim_id,
        group=group,
        type=kind,
        metric=metric,
        experiment=experiment,
        claimed=value,
        claimed_text=text,
        tolerance=final_tolerance(reader, block, kind, parts),
        provenance=free_mapping(reader, node.value.get("provenance")),
        note=block.text("note", ""),
        gate=block.flag("gate", True),
        runnable=block.flag("runnable", True),
        line=node.line,
    )


def _unique_ids(reader: Reader, claims: list[Claim]) -> dict[str, Claim]:
    by_id: dict[str, Claim] = {}
    for claim in claims:
        if claim.id in by_id:
            raise reader.fail(
                claim.line,
                f"duplicate claim id {claim.id!r} (first defined on line {by_id[claim.id].line}); "
                "rename one of them",
            )
        by_id[claim.id] = claim
    return by_id


def _apply_overrides(reader: Reader, node: Y, by_id: dict[str, Claim]) -> None:
    """Per-claim changes, keyed by claim id; a tolerance override replaces only its fields."""
    if not isinstance(node.value, dict):
        raise reader.fail(node.line, "overrides must map a claim id to {tolerance, note, gate}")
    for claim_id, spec in node.value.items():
        if claim_id not in by_id:
            raise reader.fail(
                spec.line,
                f"override for unknown claim id {claim_id!r}; `audit validate --list` prints ids",
            )
        claim = by_id[claim_id]
        block = Block(reader, spec, f"override of {claim_id}", OVERRIDE_FIELDS)
        if block.has("tolerance"):
            part = parse_tolerance(reader, block.get("tolerance"), f"override of {claim_id}")
            current = {"abs": claim.tolerance.abs, "rel": claim.tolerance.rel}
            current["direction"] = claim.tolerance.direction
            claim.tolerance = merge_tolerances(current, part)
        if block.has("note"):
            claim.note = block.text("note")
        claim.gate = block.flag("gate", claim.gate)


def _parse_reference(reader: Reader, node: Y, by_id: dict[str, Claim]) -> ReferenceSource:
    """A prior reproduction's numbers, laid out like the tables: row prefix -> values."""
    block = Block(reader, node, "a reference source", REFERENCE_FIELDS)
    ref_id = check_id(reader, block.get("id"), block.text("id"))
    block.what = f"reference {ref_id!r}"
    columns = [as_str(reader, n, "column") for n in seq(reader, block.get("columns"))]
    series_node = block.get("series")
    if not isinstance(series_node.value, dict) or "reproduced" not in series_node.value:
        raise reader.fail(series_node.line, f"{ref_id}: series needs a `reproduced:` mapping")
    series = {
        name: _reference_series(reader, ref_id, name, rows, columns, by_id)
        for name, rows in series_node.value.items()
    }
    values = {}
    for claim_id, (value, text) in series["reproduced"].items():
        extra = {name: s[claim_id][1] for name, s in series.items() if claim_id in s}
        extra.pop("reproduced")
        values[claim_id] = ReferenceValue(value, text, extra)
    caveats = [as_str(reader, n, "caveat") for n in seq(reader, block.get("caveats"))]
    return ReferenceSource(
        id=ref_id,
        title=block.text("title"),
        source=block.text("source"),
        runs_per_cell=block.text("runs_per_cell", "not stated"),
        caveats=caveats,
        values=values,
        url=check_link(reader, node.value.get("url"), "url"),
        doi=check_link(reader, node.value.get("doi"), "doi"),
    )


def _reference_series(
    reader: Reader, ref_id: str, name: str, rows: Y, columns: list[str], by_id: dict
) -> dict[str, tuple[float, str]]:
    if not isinstance(rows.value, dict):
        raise reader.fail(rows.line, f"{ref_id}.{name} must map a row (claim id prefix) to values")
    out = {}
    for prefix, row in rows.value.items():
        cells = seq(reader, row)
        if len(cells) != len(columns):
            raise reader.fail(row.line, f"{prefix}: {len(cells)} values for {len(columns)} columns")
        for column, cell in zip(columns, cells, strict=True):
            claim_id = f"{prefix}.{column.lower()}"
            if claim_id not in by_id:
                raise reader.fail(cell.line, f"{ref_id}: no claim {claim_id!r} for this value")
            if cell.value is not None:  # null: the source did not reproduce this cell
                out[claim_id] = as_number(reader, cell, f"{ref_id} {claim_id}")
                metric = by_id[claim_id].metric
                if name == "reproduced" and metric:  # it lies where the claim's value may
                    check_range(reader, cell, metric, out[claim_id][0], f"{ref_id} {claim_id}")
    return out
