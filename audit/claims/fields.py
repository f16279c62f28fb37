"""Typed access to the values of a claims file and the checks of single fields (names,
numbers, ranges, tolerances, ids); each problem is an AuditError naming file:line and a fix."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from audit.claims.model import DIRECTIONS, ID_RE, NAME_CHOICES, Tolerance
from audit.claims.reader import Reader, Y
from audit.limits import EPOCHS
from runners.catalogue import METRICS

# --------------------------------------------------------------------------- typed access


class Block:
    """Typed access to one mapping of the file, with errors naming file, line and fix."""

    def __init__(self, reader: Reader, node: Y, what: str, allowed: Iterable[str]):
        if not isinstance(node.value, dict):
            raise reader.fail(node.line, f"{what} must be a mapping (key: value lines)")
        self.reader, self.node, self.what = reader, node, what
        unknown = sorted(set(node.value) - set(allowed))
        if unknown:
            key = unknown[0]
            raise reader.fail(
                node.value[key].line,
                f"unknown field {key!r} in {what}; allowed fields: {', '.join(sorted(allowed))}",
            )

    def has(self, key: str) -> bool:
        return key in self.node.value and self.node.value[key].value is not None

    def get(self, key: str) -> Y:
        if key not in self.node.value:
            raise self.reader.fail(self.node.line, f"{self.what} is missing the field {key!r}")
        return self.node.value[key]

    def text(self, key: str, default: str | None = None) -> str:
        if default is not None and not self.has(key):
            return default
        return as_str(self.reader, self.get(key), f"{self.what}: {key}")

    def flag(self, key: str, default: bool) -> bool:
        if not self.has(key):
            return default
        node = self.get(key)
        if not isinstance(node.value, bool):
            raise self.reader.fail(node.line, f"{key} must be true or false, got {node.text!r}")
        return node.value


def as_str(reader: Reader, node: Y, what: str) -> str:
    value = node.value
    if isinstance(value, bool):
        raise reader.fail(
            node.line,
            f"{what}: {node.text!r} is read as the boolean {value} (YAML 1.1 reads "
            f"yes/no/on/off as booleans); quote it: '{node.text}'",
        )
    if isinstance(value, dict | list) or value is None:
        raise reader.fail(node.line, f"{what} must be text, got {_kind(value)}")
    return str(value) if isinstance(value, str) else str(node.text)


def as_number(reader: Reader, node: Y, what: str) -> tuple[float, str]:
    """(value, text as written). Rejects booleans, NaN, infinities and unit suffixes."""
    value, text = node.value, node.text
    if isinstance(value, bool) or not isinstance(value, int | float | str) or node.quoted:
        raise reader.fail(node.line, f"{what} must be a number, got {_kind(value)} {text!r}")
    if isinstance(value, str):
        if re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value):
            raise reader.fail(
                node.line,
                f"{what}: {value!r} is read as text (YAML 1.1 needs a dot in the mantissa); "
                f"write {float(value):g} in plain decimals or {_dotted_exponent(value)}",
            )
        hint = "; drop the % sign" if value.rstrip().endswith("%") else ""
        raise reader.fail(node.line, f"{what} must be a number, got the text {value!r}{hint}")
    number = float(value)
    if not math.isfinite(number):
        raise reader.fail(node.line, f"{what} must be a finite number, got {text!r}")
    return number, str(text)


def _dotted_exponent(text: str) -> str:
    mantissa, _, exponent = text.lower().partition("e")
    return f"{mantissa}.0e{exponent}" if "." not in mantissa else text


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    return "text" if isinstance(value, str) else "a number"


# --------------------------------------------------------------------------- fields


def parse_tolerance(reader: Reader, node: Y, what: str) -> dict[str, Any]:
    """A partial tolerance (only the fields written); merged later, field by field."""
    block = Block(reader, node, what, ("abs", "rel", "direction"))
    out: dict[str, Any] = {}
    for key in ("abs", "rel"):
        if block.has(key):
            value, text = as_number(reader, block.get(key), f"{what}: {key}")
            if value < 0:
                raise reader.fail(
                    block.get(key).line,
                    f"{what}: {key} must be >= 0, got {text}; a tolerance is a distance "
                    "(use direction: at-least for a one-sided bound)",
                )
            out[key] = value
    if block.has("direction"):
        direction = block.text("direction")
        if direction not in DIRECTIONS:
            raise reader.fail(
                block.get("direction").line,
                f"{what}: direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}",
            )
        out["direction"] = direction
    return out


def merge_tolerances(*parts: dict[str, Any]) -> Tolerance:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return Tolerance(**merged)


def parse_experiment(reader: Reader, node: Y, what: str) -> dict[str, Any]:
    Block(reader, node, what, _any_key(node))  # checks that it is a mapping
    return {key: experiment_value(reader, key, value, what) for key, value in node.value.items()}


def _any_key(node: Y) -> Iterable[str]:
    return node.value.keys() if isinstance(node.value, dict) else ()


def experiment_value(reader: Reader, key: str, node: Y, what: str) -> Any:
    """Validate one experiment field: known names for kind/dataset/arch/norm, epochs > 0."""
    if key == "seed":
        raise reader.fail(node.line, f"{what}: a claim's experiment has no seed (runs vary it)")
    if key in NAME_CHOICES:
        value = as_str(reader, node, f"{what}: {key}")
        choices = NAME_CHOICES[key]
        if value not in choices:
            close = [c for c in choices if _squash(c) == _squash(value)]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise reader.fail(
                node.line,
                f"unknown {key} {value!r}{hint}; known: {', '.join(choices)}",
            )
        return value
    if key == "epochs":
        value, text = as_number(reader, node, f"{what}: epochs")
        low, high = EPOCHS
        if not isinstance(node.value, int) or not low <= value <= high:
            raise reader.fail(
                node.line, f"epochs must be a whole number from {low} to {high}, got {text}"
            )
        return int(value)
    if isinstance(node.value, dict | list):
        raise reader.fail(node.line, f"{what}: experiment field {key!r} must be a plain value")
    return node.value


def _squash(name: str) -> str:
    """cifar-10, CIFAR10 and cifar_10 all squash to cifar10 (for "did you mean")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def parse_metric(reader: Reader, node: Y, what: str) -> str:
    metric = as_str(reader, node, what)
    if metric not in METRICS:
        raise reader.fail(node.line, f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    return metric


def check_range(reader: Reader, node: Y, metric: str, value: float, where: str) -> None:
    low, high = METRICS[metric]
    if not low <= value <= high:
        raise reader.fail(
            node.line,
            f"{where}: {node.text} is outside the range of {metric} [{low:g}, {high:g}]; "
            "check the transcription (percent, not fraction?)",
        )


def check_id(reader: Reader, node: Y, value: str, what: str = "id") -> str:
    if not ID_RE.match(value):
        raise reader.fail(
            node.line, f"{what} {value!r} may hold only letters, digits, '.', '_' and '-'"
        )
    return value


def free_mapping(reader: Reader, node: Y | None) -> dict[str, Any]:
    """A mapping of descriptive text (provenance, paper), kept as plain values."""
    if node is None or node.value is None:
        return {}
    if not isinstance(node.value, dict):
        raise reader.fail(node.line, "expected a mapping (key: value lines)")
    return {key: plain(value) for key, value in node.value.items()}


def plain(node: Y) -> Any:
    if isinstance(node.value, dict):
        return {k: plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [plain(v) for v in node.value]
    return node.value


# --------------------------------------------------------------------------- blocks

TOP_FIELDS = (
    "schema_version",
    "paper",
    "sources",
    "tolerances",
    "tables",
    "claims",
    "relations",
    "references",
    "overrides",
)
TABLE_FIELDS = (
    "id",
    "group",
    "title",
    "type",
    "metric",
    "experiment",
    "layout",
    "columns",
    "rows",
    "decimals",
    "tolerance",
    "column_tolerances",
    "provenance",
    "note",
    "gate",
    "runnable",
)
CLAIM_FIELDS = (
    "id",
    "group",
    "type",
    "metric",
    "experiment",
    "claimed",
    "tolerance",
    "provenance",
    "note",
    "gate",
    "runnable",
)
RELATION_FIELDS = (
    "id",
    "group",
    "statement",
    "tables",
    "across",
    "cases",
    "op",
    "tolerance",
    "provenance",
    "note",
    "gate",
)
REFERENCE_FIELDS = (
    *("id", "title", "source", "runs_per_cell", "caveats", "columns", "series"),
    *("url", "doi"),
)
# Links the report may show (a reference's `url`/`doi`, the paper's `url`/`pdf`): one plain
# http(s) URL or one DOI, nothing a browser would run or fetch on its own.
LINKS = {
    "url": (re.compile(r"https?://[^\s<>\"'`\x00-\x1f\x7f]+"), "an http(s) URL"),
    "pdf": (re.compile(r"https?://[^\s<>\"'`\x00-\x1f\x7f]+"), "an http(s) URL"),
    "doi": (re.compile(r"10\.\d{4,9}/[^\s<>\"'`\x00-\x1f\x7f]+"), "a DOI like 10.5281/zenodo.123"),
}


def check_link(reader: Reader, node: Y | None, key: str) -> str:
    """A `url`/`pdf`/`doi` value as LINKS allows it ("" when absent)."""
    if node is None:
        return ""
    text = as_str(reader, node, key)
    pattern, what = LINKS[key]
    if not pattern.fullmatch(text):
        raise reader.fail(node.line, f"{key} {text!r} is not {what}; write exactly one link")
    return text


OVERRIDE_FIELDS = ("tolerance", "note", "gate")
# Experiment fields a table's layout may set per row; other layout entries are printed text.
ROW_FIELDS = ("kind", "dataset", "arch", "norm", "epochs")
REQUIRED_FIELDS = {"classify": ("dataset", "arch", "norm", "epochs"), "kernels": ()}


def list_of(reader: Reader, block: Block, key: str) -> list[Y]:
    if not block.has(key):
        return []
    node = block.get(key)
    if not isinstance(node.value, list):
        raise reader.fail(node.line, f"{key} must be a list of blocks (lines starting with '- ')")
    return node.value


def group_tolerances(reader: Reader, top: Block) -> dict[str, dict[str, Any]]:
    if not top.has("tolerances"):
        return {}
    node = top.get("tolerances")
    if not isinstance(node.value, dict):
        raise reader.fail(node.line, "tolerances must map a group name to {abs, rel, direction}")
    return {
        group: parse_tolerance(reader, tol, f"tolerance of group {group!r}")
        for group, tol in node.value.items()
    }


def tolerance_of(
    reader: Reader, block: Block, group: str, group_tols: dict, *more: dict
) -> list[dict[str, Any]]:
    parts = [group_tols.get(group, {})]
    if block.has("tolerance"):
        parts.append(parse_tolerance(reader, block.get("tolerance"), f"{block.what} tolerance"))
    if not any(parts) and not any(more):
        raise reader.fail(
            block.node.line,
            f"{block.what} has no tolerance; add `tolerance: {{abs: 1.0}}` to it or a default "
            f"for group {group!r} under `tolerances:`",
        )
    return [*parts, *more]


def require_fields(reader: Reader, line: int, experiment: dict[str, Any], where: str) -> None:
    kind = experiment.get("kind")
    if kind is None:
        raise reader.fail(line, f"{where}: the experiment has no kind; add kind: classify")
    missing = [f for f in REQUIRED_FIELDS[kind] if f not in experiment]
    if missing:
        raise reader.fail(
            line, f"{where}: a {kind} experiment needs {', '.join(missing)}; add it to the block"
        )


def claim_type(reader: Reader, block: Block, allowed: tuple[str, ...]) -> str:
    kind = block.text("type", "value")
    if kind not in allowed:
        raise reader.fail(
            block.get("type").line, f"type must be one of {', '.join(allowed)}, got {kind!r}"
        )
    return kind


def final_tolerance(
    reader: Reader, block: Block, kind: str, parts: list[dict[str, Any]]
) -> Tolerance:
    """The merged tolerance of a value or threshold claim; it must give a band size."""
    # A threshold is a bound, not a measurement: only falling below it fails.
    extra = [{"direction": "at-least"}] if kind == "threshold" else []
    tolerance = merge_tolerances(*parts, *extra)
    if tolerance.abs is None and tolerance.rel is None:
        raise reader.fail(
            block.node.line,
            f"{block.what}: its tolerance gives a direction but no size; add abs (points) "
            "or rel (percent) to it or to the group's default under `tolerances:`",
        )
    return tolerance


def table_decimals(reader: Reader, block: Block) -> int | None:
    """The table's printed precision, a whole number >= 0 (None: not checked)."""
    if not block.has("decimals"):
        return None
    node = block.get("decimals")
    value, text = as_number(reader, node, "decimals")
    if not isinstance(node.value, int) or value < 0:
        raise reader.fail(
            node.line, f"decimals must be a whole number >= 0 (digits after the dot), got {text}"
        )
    return int(value)


def seq(reader: Reader, node: Y) -> list[Y]:
    if not isinstance(node.value, list):
        raise reader.fail(
            node.line, f"expected a list ([a, b, ...] or '- ' lines), got {_kind(node.value)}"
        )
    return node.value
