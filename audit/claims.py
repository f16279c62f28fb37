"""The claims file: load `claims.yaml`, validate it, and expand it into one `Claim` per number.

The file is written to be proofread against the printed paper (docs/claims.md): a table
block states once what its columns mean and where it was transcribed from, and each row is
one flow sequence, as printed. Loading expands the blocks into `Claim` objects.

The YAML is read as a node tree (libyaml when available), not with `yaml.safe_load`,
because the tree keeps what a plain loader throws away and a proofreader needs:
- the text of every number as written ("16.10" stays "16.10"; a float loader gives 16.1);
- the line of every value, so each error names file:line;
- duplicate keys, which `safe_load` silently resolves to the last one.

Every problem raises `AuditError("file:line: what is wrong; how to fix it")`.
This module never imports torch.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from audit.errors import AuditError, read_utf8
from runners.catalogue import ARCHS, DATASETS, METRICS, NORMS

SCHEMA_VERSION = 1

# Names a claim may use: runner kinds here; datasets, architectures, norms and metrics (with
# the range a value must lie in) are the catalogue's, which never imports torch.
KINDS = ("classify", "kernels")
CLAIM_TYPES = ("value", "threshold", "relation")
DIRECTIONS = ("two-sided", "at-least")
RELATION_OPS = (">", ">=")
_NAME_CHOICES = {"kind": KINDS, "dataset": DATASETS, "arch": ARCHS, "norm": NORMS}
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
# Links the report may show (a reference's `url`/`doi`, the paper's `url`/`pdf`): one plain
# http(s) URL or one DOI, nothing a browser would run or fetch on its own.
LINKS = {
    "url": (re.compile(r"https?://[^\s<>\"'`\x00-\x1f\x7f]+"), "an http(s) URL"),
    "pdf": (re.compile(r"https?://[^\s<>\"'`\x00-\x1f\x7f]+"), "an http(s) URL"),
    "doi": (re.compile(r"10\.\d{4,9}/[^\s<>\"'`\x00-\x1f\x7f]+"), "a DOI like 10.5281/zenodo.123"),
}

_TAG = "tag:yaml.org,2002:"


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Tolerance:
    """How far a reproduced value may be from the claimed one.

    `abs` is in the metric's units (percentage points for accuracies), `rel` in percent of
    the claimed value. When both are given the allowed deviation is the larger of the two
    (a value passes if it is within either). `direction` "two-sided" bounds both sides;
    "at-least" only bounds from below (doing better than claimed is fine).
    """

    abs: float | None = None
    rel: float | None = None
    direction: str = "two-sided"

    def band(self, claimed: float) -> float:
        """The allowed deviation from `claimed`, in the metric's units."""
        parts = [self.abs or 0.0]
        if self.rel is not None:
            parts.append(self.rel * abs(claimed) / 100.0)
        return max(parts)

    def bounds(self, claimed: float) -> tuple[float, float]:
        """(low, high) limits of a reproduced value that counts as reproduced."""
        band = self.band(claimed)
        high = math.inf if self.direction == "at-least" else claimed + band
        return claimed - band, high

    def describe(self) -> str:
        """The band in words: "±1 pt", "±max(1 pt, 2%)", "≥ claimed − 0 pt"."""
        parts = []
        if self.abs is not None:
            parts.append(f"{self.abs:g} pt")
        if self.rel is not None:
            parts.append(f"{self.rel:g}%")
        size = parts[0] if len(parts) == 1 else f"max({', '.join(parts)})"
        return f"±{size}" if self.direction == "two-sided" else f"≥ claimed − {size}"


@dataclass(frozen=True)
class Term:
    """One side of a relation: `coef` times the mean of `experiment`'s metric."""

    coef: float
    experiment: dict[str, Any]
    claim_id: str | None = None  # the table cell it comes from, if any
    claimed: float | None = None  # that cell's printed value
    claimed_text: str | None = None


@dataclass
class Claim:
    """One checkable statement: a printed value, a bound, or a relation between runs."""

    id: str
    group: str
    type: str  # "value" | "threshold" | "relation"
    metric: str  # a key of RunResult.metrics
    experiment: dict[str, Any] | None  # spec fields without seed; None for relations
    claimed: float | None  # the printed number (relations: the printed difference, if any)
    claimed_text: str  # as printed, e.g. "16.10"
    tolerance: Tolerance
    provenance: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    gate: bool = True  # False: shown, but never fails `audit check`
    runnable: bool = True  # False: no runner on this harness; results only by CSV
    display: dict[str, str] = field(default_factory=dict)  # printed names: arch, column, ...
    terms: tuple[Term, ...] = ()  # relation: sum(coef * mean) `op` -tolerance.abs
    op: str | None = None  # relation operator, ">" or ">="
    statement: str = ""  # relation in words
    line: int = 0  # line of claims.yaml it was written on

    def experiments(self) -> list[dict[str, Any]]:
        """The experiments this claim needs results of."""
        if self.type == "relation":
            return [t.experiment for t in self.terms]
        return [self.experiment] if self.experiment is not None else []

    def facet(self, name: str) -> set[Any]:
        """The values of experiment field `name` over this claim's experiments."""
        return {e[name] for e in self.experiments() if name in e}


@dataclass(frozen=True)
class ReferenceValue:
    """A prior reproduction's number for one claim."""

    value: float
    text: str  # as printed
    extra: dict[str, str] = field(default_factory=dict)  # other series, e.g. diff_pct


@dataclass
class ReferenceSource:
    """A prior reproduction: numbers to show next to ours, never a claim to gate on."""

    id: str
    title: str
    source: str
    runs_per_cell: str
    caveats: list[str]
    values: dict[str, ReferenceValue]  # claim id -> value
    url: str = ""  # where to read it (validated: LINKS)
    doi: str = ""  # its article's DOI, e.g. 10.5281/zenodo.15321683


@dataclass
class ClaimSet:
    """The claims of one file (or a selection of them) with its prior reproductions."""

    claims: list[Claim]
    reference_sources: list[ReferenceSource] = field(default_factory=list)
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # `paper` and `sources` blocks

    def __len__(self) -> int:
        return len(self.claims)

    def __iter__(self) -> Iterator[Claim]:
        return iter(self.claims)

    def by_id(self) -> dict[str, Claim]:
        return {c.id: c for c in self.claims}

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(c.group for c in self.claims))

    def select(
        self,
        groups: Iterable[str] | None = None,
        ids: Iterable[str] | None = None,
        datasets: Iterable[str] | None = None,
        archs: Iterable[str] | None = None,
        norms: Iterable[str] | None = None,
        epochs: Iterable[int] | None = None,
    ) -> ClaimSet:
        """The claims matching every given filter; `ids` may hold glob patterns (`table1.*`).

        A relation matches a dataset/arch/norm/epochs filter when any of its experiments does.
        An empty result is an AuditError (a typo in a selection must not pass CI silently).
        """
        keep = self.claims
        if groups:
            wanted = set(groups)
            unknown = wanted - set(self.groups)
            if unknown:
                raise AuditError(
                    f"unknown claim group(s) {', '.join(sorted(unknown))}; "
                    f"groups in {self.path}: {', '.join(self.groups)}"
                )
            keep = [c for c in keep if c.group in wanted]
        if ids:
            patterns = list(ids)
            keep = [c for c in keep if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
        for name, values in (
            ("dataset", datasets),
            ("arch", archs),
            ("norm", norms),
            ("epochs", epochs),
        ):
            if values:
                wanted_values = {int(v) if name == "epochs" else v for v in values}
                keep = [c for c in keep if c.facet(name) & wanted_values]
        if not keep:
            raise AuditError(
                f"the selection matches no claim of {self.path}; "
                "run `audit validate` to list groups and ids"
            )
        return replace(self, claims=keep)

    def experiments(self) -> list[dict[str, Any]]:
        """Deduplicated experiments (spec fields without seed) the selected gated, runnable
        claims need, in file order. Relations contribute the experiments of both sides."""
        seen: dict[tuple, dict[str, Any]] = {}
        for claim in self.claims:
            if not (claim.gate and claim.runnable):
                continue
            for exp in claim.experiments():
                seen.setdefault(experiment_key(exp), exp)
        return [dict(e) for e in seen.values()]


def experiment_key(experiment: dict[str, Any]) -> tuple:
    """A hashable, order-free key of an experiment's fields (values compared as text)."""
    return tuple(sorted((k, str(v)) for k, v in experiment.items()))


# --------------------------------------------------------------------------- YAML nodes


@dataclass
class Y:
    """A YAML value with its source line: a dict[str, Y], a list[Y] or a scalar."""

    value: Any
    line: int
    text: str | None = None  # a scalar's text as written
    quoted: bool = False


class _Reader:
    """Turns the node tree of one file into `Y` values; knows the file for error messages."""

    def __init__(self, path: Path):
        self.path = path
        self._constructor = yaml.constructor.SafeConstructor()

    def fail(self, line: int, message: str) -> AuditError:
        return AuditError(f"{self.path}:{line}: {message}")

    def load(self) -> Y:
        text = read_utf8(self.path, "the claims file")
        if not text.strip():
            raise AuditError(
                f"{self.path}:1: the claims file is empty; start from the example in docs/claims.md"
            )
        try:
            node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise self._syntax_error(exc, text) from None
        if node is None:
            raise self.fail(
                1, "the claims file holds only comments; add the blocks of docs/claims.md"
            )
        return self.convert(node)

    def _syntax_error(self, exc: yaml.YAMLError, text: str) -> AuditError:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        lines = text.splitlines()
        source = lines[line - 1] if 0 < line <= len(lines) else ""
        hint = "fix the YAML syntax (docs/claims.md lists common pitfalls)"
        if "\t" in source or "\\t" in str(exc):
            hint = "YAML does not allow tabs for indentation; indent with spaces"
        return self.fail(line, f"malformed YAML ({problem}); {hint}")

    def convert(self, node: yaml.Node) -> Y:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return Y(self._mapping(node), line)
        if isinstance(node, yaml.SequenceNode):
            return Y([self.convert(n) for n in node.value], line)
        return Y(self._scalar(node), line, text=node.value, quoted=node.style in ("'", '"'))

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        # Fast paths for the common tags; YAML 1.1 oddities (1_000, 0x1F, .nan, 1:30)
        # fall through to PyYAML's own constructor.
        tag, text = node.tag, node.value
        try:
            if tag == _TAG + "str":
                return text
            if tag == _TAG + "float":
                return float(text)
            if tag == _TAG + "int":
                return int(text)
        except ValueError:
            pass
        return self._constructor.construct_object(node)

    def _mapping(self, node: yaml.MappingNode) -> dict[str, Y]:
        out: dict[str, Y] = {}
        merged: list[Y] = []
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":  # `<<: *anchor` copies an anchored mapping
                merged.append(self.convert(value_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node.start_mark.line + 1, "a mapping key must be plain text")
            key = key_node.value
            if key in out:
                raise self.fail(
                    key_node.start_mark.line + 1,
                    f"duplicate key {key!r} (first on line {out[key].line}); "
                    "YAML keeps only the last one, so remove or rename one of them",
                )
            out[key] = self.convert(value_node)
        for mapping in merged:  # explicit keys win over merged ones, as YAML specifies
            if not isinstance(mapping.value, dict):
                raise self.fail(mapping.line, "`<<:` must name a mapping (an &anchor)")
            for key, value in mapping.value.items():
                out.setdefault(key, value)
        return out


# --------------------------------------------------------------------------- typed access


class _Block:
    """Typed access to one mapping of the file, with errors naming file, line and fix."""

    def __init__(self, reader: _Reader, node: Y, what: str, allowed: Iterable[str]):
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


def as_str(reader: _Reader, node: Y, what: str) -> str:
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


def as_number(reader: _Reader, node: Y, what: str) -> tuple[float, str]:
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


def parse_tolerance(reader: _Reader, node: Y, what: str) -> dict[str, Any]:
    """A partial tolerance (only the fields written); merged later, field by field."""
    block = _Block(reader, node, what, ("abs", "rel", "direction"))
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


def parse_experiment(reader: _Reader, node: Y, what: str) -> dict[str, Any]:
    _Block(reader, node, what, _any_key(node))  # checks that it is a mapping
    return {key: experiment_value(reader, key, value, what) for key, value in node.value.items()}


def _any_key(node: Y) -> Iterable[str]:
    return node.value.keys() if isinstance(node.value, dict) else ()


def experiment_value(reader: _Reader, key: str, node: Y, what: str) -> Any:
    """Validate one experiment field: known names for kind/dataset/arch/norm, epochs > 0."""
    if key == "seed":
        raise reader.fail(node.line, f"{what}: a claim's experiment has no seed (runs vary it)")
    if key in _NAME_CHOICES:
        value = as_str(reader, node, f"{what}: {key}")
        choices = _NAME_CHOICES[key]
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
        if not isinstance(node.value, int) or value <= 0:
            raise reader.fail(node.line, f"epochs must be a positive integer, got {text}")
        return int(value)
    if isinstance(node.value, dict | list):
        raise reader.fail(node.line, f"{what}: experiment field {key!r} must be a plain value")
    return node.value


def _squash(name: str) -> str:
    """cifar-10, CIFAR10 and cifar_10 all squash to cifar10 (for "did you mean")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def parse_metric(reader: _Reader, node: Y, what: str) -> str:
    metric = as_str(reader, node, what)
    if metric not in METRICS:
        raise reader.fail(node.line, f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    return metric


def check_range(reader: _Reader, node: Y, metric: str, value: float, where: str) -> None:
    low, high = METRICS[metric]
    if not low <= value <= high:
        raise reader.fail(
            node.line,
            f"{where}: {node.text} is outside the range of {metric} [{low:g}, {high:g}]; "
            "check the transcription (percent, not fraction?)",
        )


def check_id(reader: _Reader, node: Y, value: str, what: str = "id") -> str:
    if not _ID_RE.match(value):
        raise reader.fail(
            node.line, f"{what} {value!r} may hold only letters, digits, '.', '_' and '-'"
        )
    return value


def free_mapping(reader: _Reader, node: Y | None) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- loading


def load_claims(path: str | Path) -> ClaimSet:
    """Read and validate a claims file; every claim expanded, overrides applied."""
    reader = _Reader(Path(path))
    return _build(reader, reader.load(), reader.path)


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
OVERRIDE_FIELDS = ("tolerance", "note", "gate")
# Experiment fields a table's layout may set per row; other layout entries are printed text.
ROW_FIELDS = ("kind", "dataset", "arch", "norm", "epochs")
REQUIRED_FIELDS = {"classify": ("dataset", "arch", "norm", "epochs"), "kernels": ()}


@dataclass
class _Row:
    """One printed row of a table block."""

    key: str  # the row's experiment fields joined: "vgg16", or "vgg11.nd" (Table 2)
    fields: dict[str, Any]  # the experiment fields the row sets, e.g. {arch: vgg11, norm: nd}
    cells: dict[str, Claim]  # column -> claim


@dataclass
class _Table:
    """A parsed table block: its rows' cells, which relations refer to by column (or, with
    `across`, by row value and column)."""

    id: str
    type: str
    rows: list[_Row]
    columns: list[str]  # the value columns, in layout order


def _build(reader: _Reader, root: Y, path: Path) -> ClaimSet:
    top = _Block(reader, root, "the claims file", TOP_FIELDS)
    version, _ = as_number(reader, top.get("schema_version"), "schema_version")
    if version != SCHEMA_VERSION:
        raise reader.fail(
            top.get("schema_version").line,
            f"schema_version {version:g} is not supported; this harness reads {SCHEMA_VERSION}",
        )
    group_tols = _group_tolerances(reader, top)
    claims: list[Claim] = []
    tables: dict[str, _Table] = {}
    for node in _list(reader, top, "tables"):
        table = _parse_table(reader, node, group_tols)
        if table.id in tables:
            raise reader.fail(node.line, f"duplicate table id {table.id!r}")
        tables[table.id] = table
        claims.extend(c for row in table.rows for c in row.cells.values())
    claims.extend(_parse_claim(reader, n, group_tols) for n in _list(reader, top, "claims"))
    for node in _list(reader, top, "relations"):
        claims.extend(_parse_relation(reader, node, tables, group_tols))
    by_id = _unique_ids(reader, claims)
    if top.has("overrides"):
        _apply_overrides(reader, top.get("overrides"), by_id)
    references = [_parse_reference(reader, n, by_id) for n in _list(reader, top, "references")]
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


def _list(reader: _Reader, block: _Block, key: str) -> list[Y]:
    if not block.has(key):
        return []
    node = block.get(key)
    if not isinstance(node.value, list):
        raise reader.fail(node.line, f"{key} must be a list of blocks (lines starting with '- ')")
    return node.value


def _group_tolerances(reader: _Reader, top: _Block) -> dict[str, dict[str, Any]]:
    if not top.has("tolerances"):
        return {}
    node = top.get("tolerances")
    if not isinstance(node.value, dict):
        raise reader.fail(node.line, "tolerances must map a group name to {abs, rel, direction}")
    return {
        group: parse_tolerance(reader, tol, f"tolerance of group {group!r}")
        for group, tol in node.value.items()
    }


def _tolerance_of(
    reader: _Reader, block: _Block, group: str, group_tols: dict, *more: dict
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


def _require_fields(reader: _Reader, line: int, experiment: dict[str, Any], where: str) -> None:
    kind = experiment.get("kind")
    if kind is None:
        raise reader.fail(line, f"{where}: the experiment has no kind; add kind: classify")
    missing = [f for f in REQUIRED_FIELDS[kind] if f not in experiment]
    if missing:
        raise reader.fail(
            line, f"{where}: a {kind} experiment needs {', '.join(missing)}; add it to the block"
        )


def _claim_type(reader: _Reader, block: _Block, allowed: tuple[str, ...]) -> str:
    kind = block.text("type", "value")
    if kind not in allowed:
        raise reader.fail(
            block.get("type").line, f"type must be one of {', '.join(allowed)}, got {kind!r}"
        )
    return kind


def _parse_table(reader: _Reader, node: Y, group_tols: dict) -> _Table:
    """A table block: `layout` names each row position, `columns` the claims among them."""
    block = _Block(reader, node, "a table block", TABLE_FIELDS)
    table_id = check_id(reader, block.get("id"), block.text("id"))
    block.what = f"table {table_id!r}"
    group = block.text("group")
    kind = _claim_type(reader, block, ("value", "threshold"))
    base = parse_experiment(reader, block.get("experiment"), f"table {table_id} experiment")
    columns = _parse_columns(reader, block)
    layout = [as_str(reader, n, "layout entry") for n in _seq(reader, block.get("layout"))]
    _check_layout(reader, block, layout, columns)
    col_tols = _column_tolerances(reader, block, columns)
    tolerances = {  # one per column: the group's, the block's, then the column's own
        column: _final_tolerance(
            reader, block, kind, _tolerance_of(reader, block, group, group_tols, col_tols[column])
        )
        for column in columns
    }
    decimals = _decimals(reader, block)
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
    for row in _seq(reader, block.get("rows")):
        parsed = _parse_row(reader, block, row, layout, columns, base, common)
        for column, claim in parsed.cells.items():
            claim.tolerance = tolerances[column]
            if decimals is not None:
                _check_decimals(reader, row, claim, decimals)
        rows.append(parsed)
    if not rows:
        raise reader.fail(node.line, f"table {table_id!r} has no rows")
    value_columns = [name for name in layout if name in columns]
    return _Table(table_id, kind, rows, value_columns)


def _final_tolerance(
    reader: _Reader, block: _Block, kind: str, parts: list[dict[str, Any]]
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


def _decimals(reader: _Reader, block: _Block) -> int | None:
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


def _seq(reader: _Reader, node: Y) -> list[Y]:
    if not isinstance(node.value, list):
        raise reader.fail(
            node.line, f"expected a list ([a, b, ...] or '- ' lines), got {_kind(node.value)}"
        )
    return node.value


def _parse_columns(reader: _Reader, block: _Block) -> dict[str, tuple[dict[str, Any], str]]:
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


def _check_layout(reader: _Reader, block: _Block, layout: list[str], columns: dict) -> None:
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


def _column_tolerances(reader: _Reader, block: _Block, columns: dict) -> dict[str, dict]:
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
    reader: _Reader,
    block: _Block,
    row: Y,
    layout: list[str],
    columns: dict,
    base: dict[str, Any],
    common: dict[str, Any],
) -> _Row:
    cells = _seq(reader, row)
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
        _require_fields(reader, cell.line, experiment, claim_id)
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


def _check_decimals(reader: _Reader, row: Y, claim: Claim, decimals: int) -> None:
    text = claim.claimed_text
    written = len(text.partition(".")[2]) if "." in text else 0
    if written != decimals:
        raise reader.fail(
            claim.line,
            f"{claim.id}: {text} has {written} decimal(s) but the table prints {decimals} "
            f"(decimals: {decimals}); copy the printed text, e.g. {claim.claimed:.{decimals}f} "
            "(a spreadsheet may have dropped a trailing zero)",
        )


def _parse_claim(reader: _Reader, node: Y, group_tols: dict) -> Claim:
    """A single claim that fits no table (e.g. the kernel claim)."""
    block = _Block(reader, node, "a claim", CLAIM_FIELDS)
    claim_id = check_id(reader, block.get("id"), block.text("id"))
    block.what = f"claim {claim_id!r}"
    group = block.text("group")
    kind = _claim_type(reader, block, ("value", "threshold"))
    metric = parse_metric(reader, block.get("metric"), f"{claim_id} metric")
    experiment = parse_experiment(reader, block.get("experiment"), f"{claim_id} experiment")
    _require_fields(reader, block.get("experiment").line, experiment, claim_id)
    value, text = as_number(reader, block.get("claimed"), f"{claim_id} claimed")
    check_range(reader, block.get("claimed"), metric, value, claim_id)
    parts = _tolerance_of(reader, block, group, group_tols)
    return Claim(
        id=claim_id,
        group=group,
        type=kind,
        metric=metric,
        experiment=experiment,
        claimed=value,
        claimed_text=text,
        tolerance=_final_tolerance(reader, block, kind, parts),
        provenance=free_mapping(reader, node.value.get("provenance")),
        note=block.text("note", ""),
        gate=block.flag("gate", True),
        runnable=block.flag("runnable", True),
        line=node.line,
    )


def _parse_relation(
    reader: _Reader, node: Y, tables: dict[str, _Table], group_tols: dict
) -> list[Claim]:
    """A relation template, expanded over the rows of the named tables and every case.

    Without `across`, a case names columns of one row (ND20 - BN20, per architecture).
    With `across: <field>` (a field the layout sets per row), the rows that differ only in
    that field form one unit and a case names cells as `<value>.<column>` (nd.top1 -
    bn.top1, per model of Table 2, whose rows are (model, variant) pairs). A unit that
    lacks a row a case names gets no claim for that case (only VGG-11 has a no-BN row).
    """
    block = _Block(reader, node, "a relation", RELATION_FIELDS)
    rel_id = check_id(reader, block.get("id"), block.text("id"))
    block.what = f"relation {rel_id!r}"
    group = block.text("group")
    op = block.text("op")
    if op not in RELATION_OPS:
        raise reader.fail(block.get("op").line, f"op must be one of {', '.join(RELATION_OPS)}")
    # A relation without a tolerance anywhere is strict: slack 0.
    parts = _tolerance_of(reader, block, group, {group: {"abs": 0.0}, **group_tols})
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
    for table_node in _seq(reader, block.get("tables")):
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


def _across(reader: _Reader, block: _Block) -> str | None:
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
    reader: _Reader, table: _Table, across: str | None, rel_id: str, line: int
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
    reader: _Reader,
    where: str,
    coefs: dict[str, float],
    line: int,
    table: _Table,
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


def _parse_cases(reader: _Reader, block: _Block) -> dict[str, tuple[dict[str, float], int]]:
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
    table: _Table,
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


def _unique_ids(reader: _Reader, claims: list[Claim]) -> dict[str, Claim]:
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


def _apply_overrides(reader: _Reader, node: Y, by_id: dict[str, Claim]) -> None:
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
        block = _Block(reader, spec, f"override of {claim_id}", OVERRIDE_FIELDS)
        if block.has("tolerance"):
            part = parse_tolerance(reader, block.get("tolerance"), f"override of {claim_id}")
            current = {"abs": claim.tolerance.abs, "rel": claim.tolerance.rel}
            current["direction"] = claim.tolerance.direction
            claim.tolerance = merge_tolerances(current, part)
        if block.has("note"):
            claim.note = block.text("note")
        claim.gate = block.flag("gate", claim.gate)


def _parse_reference(reader: _Reader, node: Y, by_id: dict[str, Claim]) -> ReferenceSource:
    """A prior reproduction's numbers, laid out like the tables: row prefix -> values."""
    block = _Block(reader, node, "a reference source", REFERENCE_FIELDS)
    ref_id = check_id(reader, block.get("id"), block.text("id"))
    block.what = f"reference {ref_id!r}"
    columns = [as_str(reader, n, "column") for n in _seq(reader, block.get("columns"))]
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
    caveats = [as_str(reader, n, "caveat") for n in _seq(reader, block.get("caveats"))]
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


def check_link(reader: _Reader, node: Y | None, key: str) -> str:
    """A `url`/`pdf`/`doi` value as LINKS allows it ("" when absent)."""
    if node is None:
        return ""
    text = as_str(reader, node, key)
    pattern, what = LINKS[key]
    if not pattern.fullmatch(text):
        raise reader.fail(node.line, f"{key} {text!r} is not {what}; write exactly one link")
    return text


def _reference_series(
    reader: _Reader, ref_id: str, name: str, rows: Y, columns: list[str], by_id: dict
) -> dict[str, tuple[float, str]]:
    if not isinstance(rows.value, dict):
        raise reader.fail(rows.line, f"{ref_id}.{name} must map a row (claim id prefix) to values")
    out = {}
    for prefix, row in rows.value.items():
        cells = _seq(reader, row)
        if len(cells) != len(columns):
            raise reader.fail(row.line, f"{prefix}: {len(cells)} values for {len(columns)} columns")
        for column, cell in zip(columns, cells, strict=True):
            claim_id = f"{prefix}.{column.lower()}"
            if claim_id not in by_id:
                raise reader.fail(cell.line, f"{ref_id}: no claim {claim_id!r} for this value")
            if cell.value is not None:  # null: the source did not reproduce this cell
                out[claim_id] = as_number(reader, cell, f"{ref_id} {claim_id}")
    return out
