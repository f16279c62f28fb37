"""The report's one mapping of verdicts: label, colour and the words of the outcome sentences.

Every verdict name of audit/verdicts.py (the names, their labels and rules) has one entry
here with what only the report needs: colours and the words of the outcome sentences.
Templates, CSS, figures and sentences all read this table. An unknown name still renders
(grey, its name as label).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from audit.verdicts import label as verdict_words

# What a verdict says about a claim, in the order the outcome sentences list them.
AGREES, BETTER, WORSE, OUTSIDE, OPEN, NOT_RUN, BROKEN = (
    "agrees",
    "better",
    "worse",
    "outside",
    "open",
    "not_run",
    "broken",
)


@dataclass(frozen=True)
class Verdict:
    name: str  # as the comparator emits it
    label: str  # as a table cell writes it
    colour: str  # the cell colour (with the label beside it: readable in grey print)
    ink: str  # the same hue, dark enough for a marker on white in a figure
    outcome: str  # AGREES ... BROKEN: how the sentences count it
    phrase: str  # "{n} {phrase}" in an outcome sentence about printed numbers
    relation_phrase: str = ""  # the same for a relation claim, when it differs


_GREEN, _RED, _BLUE, _YELLOW, _GREY, _PURPLE = (
    "#cdebc9",
    "#f5c6c0",
    "#c9dcf2",
    "#fbe7a8",
    "#e4e4e4",
    "#d9d2e9",
)
_G, _B, _R, _V = (_GREEN, "#2e7d32"), (_BLUE, "#1f5fa8"), (_RED, "#c0392b"), ("#e8c1e3", "#8e3a86")
_Y, _N, _P = (_YELLOW, "#a87400"), (_GREY, "#6b6b6b"), (_PURPLE, "#5e4b8b")


def _entry(name: str, colours: tuple[str, str], outcome: str, *phrases: str) -> Verdict:
    """A verdict's entry; its label is audit.verdicts' (the one place for verdict names)."""
    return Verdict(name, verdict_words(name), *colours, outcome, *phrases)


VERDICT_TABLE: tuple[Verdict, ...] = (
    _entry("reproduced", _G, AGREES, "reproduced", "held"),
    _entry("holds", _G, AGREES, "held", "held"),
    _entry("better_than_claimed", _B, BETTER, "better than claimed"),
    _entry("worse_than_claimed", _R, WORSE, "worse than claimed"),
    _entry("flipped", _V, OUTSIDE, "flipped", "flipped"),
    _entry("inconclusive", _Y, OPEN, "inconclusive", "unresolved"),
    _entry("unresolved", _Y, OPEN, "unresolved", "unresolved"),
    _entry("missing", _N, NOT_RUN, "not run", "not run"),
    _entry("failed", _P, BROKEN, "failed", "failed"),
    _entry("corrupt", _P, BROKEN, "with a damaged run", "with a damaged run"),
)
VERDICTS: dict[str, Verdict] = {v.name: v for v in VERDICT_TABLE}
PROXY = Verdict("proxy", "proxy", "#f1eadf", "#8a6d3b", OPEN, "judged only on proxy runs")


def verdict(name: str) -> Verdict:
    """The entry of `name`; an unknown name gets a neutral one rather than a crash."""
    return VERDICTS.get(str(name)) or Verdict(str(name), str(name), *_N, OPEN, str(name))


def verdict_label(name: str) -> str:
    return verdict(name).label


def phrase(name: str, relation: bool) -> str:
    entry = verdict(name)
    return (entry.relation_phrase or entry.phrase) if relation else entry.phrase


def ordered(names: Iterable[str]) -> list[str]:
    """Verdict names in the table's order (unknown names last, in the order given)."""
    names = list(dict.fromkeys(str(n) for n in names))
    known = [v.name for v in VERDICT_TABLE if v.name in names]
    return known + [n for n in names if n not in VERDICTS]


def css_rules() -> str:
    """One `.v-<name>` background rule per verdict, inlined into the page's stylesheet."""
    rules = [f".v-{v.name} {{ background: {v.colour}; }}" for v in (*VERDICT_TABLE, PROXY)]
    return "\n".join(rules)
