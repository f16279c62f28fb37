"""The claim model: what a claims file expands into (`Claim`, `ClaimSet`, `Tolerance`, ...)
and the names a claim may use. No YAML here: `audit.claims.validate` builds these objects."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from audit.errors import AuditError
from runners.catalogue import ARCHS, DATASETS, NORMS

SCHEMA_VERSION = 1

# Names a claim may use: runner kinds here; datasets, architectures, norms and metrics (with
# the range a value must lie in) are the catalogue's, which never imports torch.
KINDS = ("classify", "kernels")
CLAIM_TYPES = ("value", "threshold", "relation")
DIRECTIONS = ("two-sided", "at-least")
RELATION_OPS = (">", ">=")
NAME_CHOICES = {"kind": KINDS, "dataset": DATASETS, "arch": ARCHS, "norm": NORMS}
ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


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
    url: str = ""  # where to read it (validated: fields.LINKS)
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
