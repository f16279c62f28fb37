"""Relation blocks of a claims file: ND - BN style statements expanded over table rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from audit.claims.fields import (
    RELATION_FIELDS,
    ROW_FIELDS,
    Block,
    as_number,
    as_str,
    check_id,
    free_mapping,
    merge_tolerances,
    seq,
    tolerance_of,
)
from audit.claims.model import RELATION_OPS, Claim, Term, Tolerance
from audit.claims.reader import Reader, Y
from audit.claims.tables import Table


def parse_relation(
    reader: Reader, node: Y, tables: dict[str, Table], group_tols: dict
) -> list[Claim]:
    """A relation template, expanded over the rows of the named tables and every case.

    Without `across`, a case names columns of one row (ND20 - BN20, per architecture).
    With `across: <field>` (a field the layout sets per row), the rows that differ only in
    that field form one unit and a case names cells as `<value>.<column>` (nd.top1 -
    bn.top1, per model of Table 2, whose rows are (model, variant) pairs). A unit that
    lacks a row a case names gets no claim for that case (only VGG-11 has a no-BN row).
    """
    block = Block(reader, node, "a relation", RELATION_FIELDS)
    rel_id = check_id(reader, block.get("id"), block.text("id"))
    block.what = f"relation {rel_id!r}"
    group = block.text("group")
    op = block.text("op")
    if op not in RELATION_OPS:
        raise reader.fail(block.get("op").line, f"op must be one of {', '.join(RELATION_OPS)}")
    # A relation without a tolerance anywhere is strict: slack 0.
    parts = tolerance_of(reader, block, group, {group: {"abs": 0.0}, **group_tols})
    tol = merge_tolerances(*parts)
    if tol.rel is not None or tol.direction != "two-sided":
        raise reader.fail(node.line, f"{rel_id}: a relation's tolerance takes only abs (a slack)")
    across = _across(reader, block)
    cases = _parse_cases(reader, block)
    common = {
        "statement": block.text("statement"),
        "provenance": free_mapping(reader, node.value.get("provenance")),
        "note": block.text("note", ""),
        "gate": block.flag("gate", True),
    }
    out = []
    for table_node in seq(reader, block.get("tables")):
        table_id = as_str(reader, table_node, "relation table")
        if table_id not in tables:
            raise reader.fail(
                table_node.line,
                f"{rel_id}: unknown table {table_id!r}; tables: {', '.join(tables)}",
            )
        table = tables[table_id]
        units = _relation_units(reader, table, across, rel_id, table_node.line)
        for case, (coefs, line) in cases.items():
            _check_case_cells(reader, f"{rel_id}.{case}", coefs, line, table, across, units)
        for unit_key, cells in units.items():
            for case, (coefs, line) in cases.items():
                if not all(name in cells for name in coefs):
                    continue  # checked above: some other unit has every cell of this case
                claim_id = f"{table_id}.{unit_key}.{rel_id}.{case}"
                terms = [(coef, cells[name], name) for name, coef in coefs.items()]
                out.append(_relation_claim(claim_id, group, op, tol, terms, table, common, line))
    return out


def _across(reader: Reader, block: Block) -> str | None:
    if not block.has("across"):
        return None
    across = block.text("across")
    if across not in ROW_FIELDS:
        raise reader.fail(
            block.get("across").line,
            f"across must name an experiment field a table row sets ({', '.join(ROW_FIELDS)}), "
            f"got {across!r}",
        )
    return across


def _relation_units(
    reader: Reader, table: Table, across: str | None, rel_id: str, line: int
) -> dict[str, dict[str, Claim]]:
    """unit key -> {cell name -> claim}: a row's columns, or with `across` the cells of the
    rows that share every row field but that one, named `<value>.<column>`."""
    if across is None:
        return {row.key: dict(row.cells) for row in table.rows}
    units: dict[str, dict[str, Claim]] = {}
    for row in table.rows:
        if across not in row.fields:
            raise reader.fail(
                line,
                f"{rel_id}: table {table.id} does not set {across!r} per row (its layout has "
                f"no {across!r}), so `across: {across}` cannot relate its rows",
            )
        key = ".".join(str(v) for k, v in row.fields.items() if k != across)
        unit = units.setdefault(key, {})
        for column, cell in row.cells.items():
            unit[f"{row.fields[across]}.{column}"] = cell
    return units


def _check_case_cells(
    reader: Reader,
    where: str,
    coefs: dict[str, float],
    line: int,
    table: Table,
    across: str | None,
    units: dict[str, dict[str, Claim]],
) -> None:
    """Every name a case uses must exist in the table, and some unit must have them all:
    a typo must fail here rather than expand silently into no claim."""
    if across is None:
        missing = [c for c in coefs if c not in table.columns]
        if missing:
            raise reader.fail(line, f"{where}: table {table.id} has no column {missing[0]!r}")
        return
    values = {str(row.fields[across]) for row in table.rows}
    for name in coefs:
        value, dot, column = name.rpartition(".")
        if not dot or column not in table.columns or value not in values:
            raise reader.fail(
                line,
                f"{where}: {name!r} names no cell of table {table.id}; with `across: "
                f"{across}` write <{across}>.<column>, {across} one of "
                f"{', '.join(sorted(values))} and column one of {', '.join(table.columns)}",
            )
    if not any(all(name in cells for name in coefs) for cells in units.values()):
        raise reader.fail(
            line, f"{where}: no group of rows of table {table.id} has all of {', '.join(coefs)}"
        )


def _parse_cases(reader: Reader, block: Block) -> dict[str, tuple[dict[str, float], int]]:
    node = block.get("cases")
    if not isinstance(node.value, dict) or not node.value:
        raise reader.fail(node.line, "cases must map a case name to {column: coefficient, ...}")
    cases = {}
    for case, spec in node.value.items():
        check_id(reader, spec, case, "case name")  # it ends each claim id
        if not isinstance(spec.value, dict) or not spec.value:
            raise reader.fail(
                spec.line, f"case {case!r} must be a mapping like {{ND1: 1, BN1: -1}}"
            )
        coefs = {
            col: as_number(reader, c, f"case {case} {col}")[0] for col, c in spec.value.items()
        }
        cases[case] = (coefs, spec.line)
    return cases


def _relation_claim(
    claim_id: str,
    group: str,
    op: str,
    tol: Tolerance,
    terms: list[tuple[float, Claim, str]],
    table: Table,
    common: dict[str, Any],
    line: int,
) -> Claim:
    """One relation claim; each term is (coefficient, table cell, its name in the case)."""
    metrics = {cell.metric for _, cell, _ in terms}
    printed = table.type == "value"
    claimed = round(sum(c * cell.claimed for c, cell, _ in terms), 6) if printed else None
    first = terms[0][1]
    # Printed names every term shares (model, table); the column, and across rows the
    # variant, differ per term and are named in `columns` instead.
    display = {
        k: v
        for k, v in first.display.items()
        if k != "column" and all(cell.display.get(k) == v for _, cell, _ in terms)
    }
    rows = ", ".join(dict.fromkeys(str(cell.provenance["row"]) for _, cell, _ in terms))
    return Claim(
        id=claim_id,
        group=group,
        type="relation",
        metric=metrics.pop() if len(metrics) == 1 else "",
        experiment=None,
        claimed=claimed,
        claimed_text=_signed_sum((c, cell.claimed_text) for c, cell, _ in terms) if printed else "",
        tolerance=tol,
        provenance={**common["provenance"], "cells": f"{table.id}, {rows}"},
        note=common["note"],
        gate=common["gate"],
        runnable=all(cell.runnable for _, cell, _ in terms),
        display={**display, "columns": " ".join(name for _, _, name in terms)},
        terms=tuple(
            Term(c, dict(cell.experiment), cell.id, cell.claimed, cell.claimed_text)
            for c, cell, _ in terms
        ),
        op=op,
        statement=f"{common['statement']} ({_relation_formula(terms, op, tol)})",
        line=line,
    )


def _relation_formula(terms: list[tuple[float, Claim, str]], op: str, tol: Tolerance) -> str:
    bound = f"-{tol.abs:g}" if tol.abs else "0"
    return f"{_signed_sum((c, name) for c, _, name in terms)} {op} {bound}"


def _signed_sum(parts: Iterable[tuple[float, str]]) -> str:
    out = ""
    for coef, text in parts:
        scale = "" if abs(coef) == 1 else f"{abs(coef):g}·"
        sign = ("- " if coef < 0 else "+ ") if out else ("-" if coef < 0 else "")
        out += f"{' ' if out else ''}{sign}{scale}{text}"
    return out
