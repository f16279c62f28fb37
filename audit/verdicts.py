"""The verdict vocabulary: the one place that names every verdict, says which pass the gate,
and gives each its label and rule in words (docs/verdicts.md is the long form).

Value claims (a printed number) end in `reproduced`, `better_than_claimed`,
`worse_than_claimed` or `inconclusive`; relation claims (e.g. ND beats BN) in `holds`,
`flipped` or `unresolved`; any claim can be `missing`, `failed` or `corrupt` when there is
nothing sound to compute a statistic from. Every other module imports the names from here.

This module never imports torch (nor pandas or scipy: `audit diff` and the report use it).
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------- levels

CONFIDENCE = 0.95  # two-sided level of every interval of a single-look audit
FDR_ALPHA = 0.05  # Benjamini-Hochberg false-discovery rate of the headline sentence
LOW_POWER_N = 3  # fewer done seeds than this: the verdict is marked low-power


@dataclass(frozen=True)
class Verdict:
    name: str
    label: str  # how people read it: "better than claimed"
    applies_to: str  # "value" | "relation" | "any"
    passes: bool  # passes `audit check` without any --allow-* flag
    rule: str  # when it is given, in one sentence


_ALL = (
    Verdict(
        "reproduced",
        "reproduced",
        "value",
        True,
        "the printed value lies within the tolerance of our mean, or inside our 95 % "
        "prediction interval mean ± t·s·√(1+1/n) (it could be one more run of ours)",
    ),
    Verdict(
        "better_than_claimed",
        "better than claimed",
        "value",
        False,
        "outside both, above: our runs do significantly better than the printed number, so "
        "the printed number is not reproduced (it fails the gate: the gate means 'within "
        "tolerance'; a claim with `direction: at-least` never gets this verdict)",
    ),
    Verdict(
        "worse_than_claimed",
        "worse than claimed",
        "value",
        False,
        "outside both, below: our runs do significantly worse than the printed number",
    ),
    Verdict(
        "inconclusive",
        "inconclusive",
        "value",
        False,
        "first look of a declared two-look design (audit run --escalate): outside the "
        "tolerance yet inside the prediction interval, so more seeds may decide it",
    ),
    Verdict(
        "holds",
        "holds",
        "relation",
        True,
        "the one-sided lower confidence bound of the statistic (e.g. ND − BN) lies above the "
        "claim's boundary (−slack)",
    ),
    Verdict(
        "flipped",
        "flipped",
        "relation",
        False,
        "the one-sided upper confidence bound lies below the boundary: the claimed order is "
        "reversed",
    ),
    Verdict(
        "unresolved",
        "unresolved",
        "relation",
        False,
        "the confidence interval contains the boundary: the seeds do not decide",
    ),
    Verdict("missing", "missing", "any", False, "no run (or none that recorded the metric)"),
    Verdict(
        "failed",
        "failed",
        "any",
        False,
        "runs matched but none finished: failed or diverged",
    ),
    Verdict(
        "corrupt",
        "corrupt",
        "any",
        False,
        "a run the claim needs has a damaged run directory: the claim cannot be judged until "
        "it is trained again",
    ),
)

BY_NAME = {v.name: v for v in _ALL}
VERDICTS = tuple(BY_NAME)  # display order
VALUE_VERDICTS = tuple(v.name for v in _ALL if v.applies_to in ("value", "any"))
RELATION_VERDICTS = tuple(v.name for v in _ALL if v.applies_to in ("relation", "any"))
PASSING = frozenset(v.name for v in _ALL if v.passes)  # reproduced, holds
NOT_REPRODUCED = frozenset({"better_than_claimed", "worse_than_claimed", "flipped"})
UNDECIDED = frozenset({"inconclusive", "unresolved"})  # what `audit run --escalate` targets
NO_RESULT = frozenset({"missing", "failed", "corrupt"})


def label(verdict: str) -> str:
    """The verdict in words ("better than claimed"); unknown names pass through."""
    known = BY_NAME.get(verdict)
    return known.label if known else str(verdict).replace("_", " ")


def passing_verdicts(allow_missing: bool = False, allow_inconclusive: bool = False) -> set[str]:
    """The verdicts that pass `audit check`: reproduced and holds, plus `missing` with
    --allow-missing and the undecided ones (inconclusive, unresolved) with
    --allow-inconclusive. failed, corrupt and every not-reproduced verdict never pass."""
    allowed = set(PASSING)
    if allow_missing:
        allowed.add("missing")
    if allow_inconclusive:
        allowed |= UNDECIDED
    return allowed
