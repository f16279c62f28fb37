"""Table blocks of a claims file: one claim per printed cell (docs/claims.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit.claims.fields import (
    ROW_FIELDS,
    TABLE_FIELDS,
    Block,
    as_number,
    as_str,
    check_id,
    check_range,
    claim_type,
    experiment_value,
    final_tolerance,
    free_mapping,
    parse_experiment,
    parse_metric,
    parse_tolerance,
    require_fields,
    seq,
    table_decimals,
    tolerance_of,
)
from audit.claims.model import Claim, Tolerance
from audit.claims.reader import Reader, Y


@dataclass
class _Row:
    """One printed row of a table block."""

    key: str  # the row's experiment fields joined: "vgg16", or "vgg11.nd" (Table 2)
    fields: dict[str, Any]  # the experiment fields the row sets, e.g. {arch: vgg11, norm: nd}
    cells: dict[str, Claim]  # column -> claim


@dataclass
class Table:
    """A parsed table block: its rows' cells, which relations refer to by column (or, with
    `across`, by row value and column)."""

    id: str
    type: str
    rows: list[_Row]
    columns: list[str]  # the value columns, in layout order


def parse_table(reader: Reader, node: Y, group_tols: dict) -> Table:
    """A table block: `layout` names each row position, `columns` the claims among them."""
    block = Block(reader, node, "a table block", TABLE_FIELDS)
    table_id = check_id(reader, block.get("id"), block.text("id"))
    block.what = f"table {table_id!r}"
    group = block.text("group")
    kind = claim_type(reader, block, ("value", "threshold"))
    base = parse_experiment(reader, block.get("experiment"), f"table {table_id} experiment")
    columns = _parse_columns(reader, block)
    layout = [as_str(reader, n, "layout entry") for n in seq(reader, block.get("layout"))]
    _check_layout(reader, block, layout, columns)
    col_tols = _column_tolerances(reader, block, columns)
    tolerances = {  # one per column: the group's, the block's, then the column's own
        column: final_tolerance(
            reader, block, kind, tolerance_of(reader, block, group, group_tols, col_tols[column])
        )
        for column in columns
    }
    decimals = table_decimals(reader, block)
    common = {
        "group": group,
        "type": kind,
        "provenance": free_mapping(reader, node.value.get("provenance")),
        "note": block.text("note", ""),
        "gate": block.flag("gate", True),
        "runnable": block.flag("runnable", True),
        "title": block.text("title", table_id),
    }
    rows = []
    for row in seq(reader, block.get("rows")):
        parsed = _parse_row(reader, block, row, layout, columns, base, common)
        for column, claim in parsed.cells.items():
            claim.tolerance = tolerances[column]
            if decimals is not None:
                _check_decimals(reader, row, claim, decimals)
        rows.append(parsed)
    if not rows:
        raise reader.fail(node.line, f"table {table_id!r} has no rows")
    value_columns = [name for name in layout if name in columns]
    return Table(table_id, kind, rows, value_columns)


def _parse_columns(reader: Reader, block: Block) -> dict[str, tuple[dict[str, Any], str]]:
    """column -> (experiment fields it adds, metric)."""
    node = block.get("columns")
    if not isinstance(node.value, dict) or not node.value:
        raise reader.fail(node.line, "columns must map each value column to its experiment fields")
    default_metric = block.get("metric") if block.has("metric") else None
    out = {}
    for column, spec in node.value.items():
        if not isinstance(spec.value, dict):
            raise reader.fail(spec.line, f"column {column!r} must be a mapping like {{norm: bn}}")
        fields = dict(spec.value)
        metric_node = fields.pop("metric", default_metric)
        if metric_node is None:
            raise reader.fail(spec.line, f"column {column!r} has no metric; add metric: test_top1")
        metric = parse_metric(reader, metric_node, f"column {column} metric")
        what = f"column {column}"
        experiment = {k: experiment_value(reader, k, v, what) for k, v in fields.items()}
        out[column] = (experiment, metric)
    return out


def _check_layout(reader: Reader, block: Block, layout: list[str], columns: dict) -> None:
    line = block.get("layout").line
    for column in columns:
        if column not in layout:
            raise reader.fail(line, f"column {column!r} is defined in columns but not in layout")
    duplicates = {x for x in layout if layout.count(x) > 1}
    if duplicates:
        raise reader.fail(line, f"layout repeats {', '.join(sorted(duplicates))}")
    if not any(entry in ROW_FIELDS for entry in layout):
        raise reader.fail(
            line, f"layout needs an experiment field ({', '.join(ROW_FIELDS)}) to name the rows"
        )


def _column_tolerances(reader: Reader, block: Block, columns: dict) -> dict[str, dict]:
    """column -> its partial tolerance ({} for a column without one)."""
    out: dict[str, dict] = {column: {} for column in columns}
    if not block.has("column_tolerances"):
        return out
    node = block.get("column_tolerances")
    if not isinstance(node.value, dict):
        raise reader.fail(node.line, "column_tolerances must map a column to {abs, rel, direction}")
    for column, tol in node.value.items():
        if column not in columns:
            raise reader.fail(tol.line, f"column_tolerances names unknown column {column!r}")
        out[column] = parse_tolerance(reader, tol, f"tolerance of column {column}")
    return out


def _parse_row(
    reader: Reader,
    block: Block,
    row: Y,
    layout: list[str],
    columns: dict,
    base: dict[str, Any],
    common: dict[str, Any],
) -> _Row:
    cells = seq(reader, row)
    if len(cells) != len(layout):
        raise reader.fail(
            row.line,
            f"row has {len(cells)} entries but the layout has {len(layout)} "
            f"({', '.join(layout)}); add or remove values",
        )
    fields: dict[str, Any] = {}
    display: dict[str, str] = {}
    for name, cell in zip(layout, cells, strict=True):
        if name in ROW_FIELDS:
            fields[name] = experiment_value(reader, name, cell, f"row on line {row.line}")
        elif name not in columns:
            display[name] = as_str(reader, cell, name) if cell.text is None else str(cell.text)
    row_key = ".".join(str(fields[n]) for n in layout if n in fields)
    table_id = block.text("id")
    claims = {}
    for name, cell in zip(layout, cells, strict=True):
        if name not in columns:
            continue
        extra, metric = columns[name]
        claim_id = f"{table_id}.{row_key}.{name.lower()}"
        value, text = as_number(reader, cell, f"{claim_id} ({name})")
        check_range(reader, cell, metric, value, claim_id)
        experiment = {**base, **fields, **extra}
        require_fields(reader, cell.line, experiment, claim_id)
        claims[name] = Claim(
            id=claim_id,
            group=common["group"],
            type=common["type"],
            metric=metric,
            experiment=experiment,
            claimed=value,
            claimed_text=text,
            tolerance=Tolerance(),
            provenance={
                **common["provenance"],
                "row": display.get("name", row_key),
                "column": name,
                "line": cell.line,
            },
            note=common["note"],
            gate=common["gate"],
            runnable=common["runnable"],
            display={"table": common["title"], "column": name, **display},
            line=cell.line,
        )
    return _Row(row_key, fields, claims)


def _check_decimals(reader: Reader, row: Y, claim: Claim, decimals: int) -> None:
    text = claim.claimed_text
    written = len(text.partition(".")[2]) if "." in text else 0
    if written != decimals:
        raise reader.fail(
            claim.line,
            f"{claim.id}: {text} has {written} decimal(s) but the table prints {decimals} "
            f"(decimals: {decimals}); copy the printed text, e.g. {claim.claimed:.{decimals}f} "
            "(a spreadsheet may have dropped a trailing zero)",
        )
