"""The comparator: claims x results table -> one verdict row per claim.

A claim's runs are the result rows whose fields equal every field of the claim's
experiment (so a run with extra or deviating spec fields still counts; its deviations are
listed in the outcome row). Statistics use the runs with status `done` only. The rules
(docs/verdicts.md is the long form; audit/verdicts.py names the verdicts):

- value / threshold (printed c, tolerance band [low, high], n seeds with mean m, sd s):
  `reproduced` when m lies in the band (rule `tolerance`) or c lies inside the prediction
  interval m ± t·s·√(1+1/n) (rule `prediction`); otherwise `better_than_claimed` or
  `worse_than_claimed` on that side, with the one-sided p-value of the difference. n = 1
  is decided on the point (rule `single-run`); at the first look of a declared two-look
  design a claim outside the band but inside the interval is `inconclusive`.
  `abs_dev = m - claimed` (points) and `rel_dev = (m - claimed) / claimed * 100` (the seed
  study's "percentage change from the original").
- relation: the statistic is sum(coef * metric) over its terms (e.g. ND - BN). Runs of the
  terms that share a seed are paired: one difference per common seed, then mean, sd and a
  t-interval; without common seeds the means are combined (Welch-Satterthwaite). `holds`
  when the lower bound lies above the boundary -slack, `flipped` when the upper bound lies
  below it, `unresolved` otherwise; also P(difference > 0) over the pairs, the exact
  sign-flip p and the gap recovered (ours over the paper's difference).
- `missing`: no run matched (or none recorded the metric); `failed`: runs matched but none
  is done (failed or diverged); `corrupt`: a matched run directory is damaged (its result
  cannot be trusted, so the claim fails whatever the other runs say). When some runs are
  done and others failed, the verdict uses the done ones and `reason` names the failed ones.
- Replicates of one cell must have distinct seeds (AuditError otherwise).
- Benjamini-Hochberg q-values over every claim with a p-value (`q_value`, on the two-sided
  scale 2p of the verdicts' 95 % level).

This module never imports torch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pandas as pd

from audit.claims import Claim, ClaimSet, Tolerance
from audit.errors import AuditError
from audit.stats import (
    Stats,
    bh_qvalues,
    combine,
    mean_p,
    prediction_interval,
    prediction_p,
    sign_flip_p,
    summarise,
    t_cdf,
    t_quantile,
)
from audit.verdicts import CONFIDENCE, FDR_ALPHA, LOW_POWER_N, NOT_REPRODUCED, VERDICTS

__all__ = [
    "COLUMNS",
    "CONFIDENCE",
    "EXTRA_COLUMNS",
    "VERDICTS",
    "Design",
    "Stats",
    "compare",
    "fdr_summary",
    "judge_relation",
    "judge_single_value",
    "judge_value",
    "summarise",
    "t_cdf",
    "t_quantile",
    "within_band",
]

COLUMNS = [
    "claim_id",
    "group",
    "type",
    "dataset",
    "arch",
    "norm",
    "epochs",
    "metric",
    "claimed",
    "claimed_text",
    "reproduced_mean",
    "reproduced_std",
    "n",
    "ci_low",
    "ci_high",
    "abs_dev",
    "rel_dev",
    "tolerance",
    "verdict",
    "reason",
    "run_ids",
    "deviations",
    "source",
]
EXTRA_COLUMNS = [
    "gate",  # False: shown, never fails `audit check`
    "runnable",
    "statement",  # relation in words
    "tol_low",  # a reproduced value (relation: statistic) passes within [tol_low, tol_high]
    "tol_high",
    "seeds",  # seeds of the values below
    "values",  # per-run values; for a relation, the paired differences
    "paired",  # relation: True when the statistic comes from paired (same-seed) runs
    "note",
    "rule",  # what decided the verdict: tolerance | prediction | confidence | single-run | -
    "level",  # two-sided confidence of ci_* and pi_* (0.95; lower p per look in a design)
    "pi_low",  # value: prediction interval of one more run (n >= 2)
    "pi_high",
    "p_value",  # one-sided p of the difference, on the side it lies (n >= 2)
    "q_value",  # Benjamini-Hochberg q of the two-sided 2p, over every claim with a p-value
    "single_run",  # n == 1: decided on the point, no spread
    "low_power",  # n < 3
    "escalated",  # the claim's cells got extra seeds (audit run --escalate)
    "prob_improvement",  # relation: share of paired differences > 0 (ties count half)
    "p_perm",  # relation: exact one-sided sign-flip permutation p
    "gap_recovered",  # relation: our mean difference / the paper's
    "gap_low",  # ... and its interval (ci_* / the paper's difference)
    "gap_high",
]
_EPS = 1e-9  # bounds are inclusive; floats like 93.25 - 1.0 must not fall outside by noise


@dataclass(frozen=True)
class Design:
    """How verdicts are decided. The default is one look at 95 %. A declared two-look design
    (audit/escalate.py, `audit run --escalate`) judges every look at its lower Pocock level;
    before its escalation is done (`interim`), value claims that only the prediction interval
    would call reproduced are `inconclusive` (their cells then get the extra seeds)."""

    confidence: float = CONFIDENCE
    interim: bool = False
    max_seeds: int = 0  # cells with this many seeds already cannot be escalated
    escalated_claims: frozenset[str] = frozenset()
    rule: str = "single-look"


SINGLE_LOOK = Design()


def within_band(
    value: float,
    claim: Claim | None = None,
    *,
    claimed: float | None = None,
    tolerance: Tolerance | None = None,
) -> bool | None:
    """Whether one reproduced `value` lies within the claim's tolerance band, by the
    comparator's own rule (inclusive bounds, float-noise tolerant): the check a single run
    (or a prior reproduction's number) gets. None when there is nothing to judge."""
    if claim is not None:
        claimed = claim.claimed if claimed is None else claimed
        tolerance = claim.tolerance if tolerance is None else tolerance
    if claimed is None or tolerance is None or value is None or not math.isfinite(value):
        return None
    if not math.isfinite(claimed):
        return None
    low, high = tolerance.bounds(claimed)
    return low - _EPS <= value <= high + _EPS


def judge_single_value(
    value: float,
    claim: Claim | None = None,
    *,
    claimed: float | None = None,
    tolerance: Tolerance | None = None,
) -> str | None:
    """The verdict one number gets for a value claim (n = 1: the single-run rule):
    reproduced, better_than_claimed or worse_than_claimed; None when nothing to judge."""
    if claim is not None:
        claimed = claim.claimed if claimed is None else claimed
        tolerance = claim.tolerance if tolerance is None else tolerance
    inside = within_band(value, claimed=claimed, tolerance=tolerance)
    if inside is None:
        return None
    if inside:
        return "reproduced"
    return "better_than_claimed" if value > claimed else "worse_than_claimed"


# --------------------------------------------------------------------------- matching


@dataclass
class Runs:
    """The result rows of one experiment, split by what the comparator does with them."""

    values: list[tuple[int, float, str]] = field(default_factory=list)  # (seed, value, run)
    not_done: list[str] = field(default_factory=list)  # "run_id: status (reason)"
    corrupt: list[str] = field(default_factory=list)  # "run_id: corrupt (reason)" of damaged runs
    no_metric: list[str] = field(default_factory=list)  # done runs without the metric
    run_ids: list[str] = field(default_factory=list)
    deviations: set[str] = field(default_factory=set)

    @property
    def matched(self) -> int:
        return len(self.run_ids)


class RunIndex:
    """Result rows indexed by experiment fields, so each claim is a dictionary lookup."""

    def __init__(self, results: pd.DataFrame):
        # Plain Python lists with None for every missing value (NaN, pd.NA), made once.
        self._columns = {
            c: results[c].astype(object).where(results[c].notna(), None).tolist()
            for c in results.columns
        }
        self._size = size = len(results)
        # A hand-made table may lack the bookkeeping columns: runs are then done, unnamed.
        self._columns.setdefault("run_id", [f"row {i}" for i in range(size)])
        self._columns.setdefault("status", ["done"] * size)
        for name in ("reason", "seed", "deviations"):
            self._columns.setdefault(name, [None] * size)
        self._text: dict[str, list[str | None]] = {}  # field -> normalised column
        self._indexes: dict[tuple[str, ...], dict[tuple, list[int]]] = {}
        self._cache: dict[tuple, Runs] = {}

    def runs(self, experiment: dict[str, Any], metric: str) -> Runs:
        fields = tuple(sorted(experiment))
        key = tuple(_norm(experiment[f]) for f in fields)
        cached = self._cache.get((fields, key, metric))
        if cached is None:
            rows = self._one_variant(self._index(fields).get(key, []))
            cached = self._cache[(fields, key, metric)] = self._collect(rows, metric)
            _refuse_shared_seeds(cached, experiment)
        return cached

    def _one_variant(self, rows: list[int]) -> list[int]:
        """The runs that stand for a claim: never a mixture of protocol variants.

        Runs matching a claim's experiment fields may still differ elsewhere (an ablation of
        the head, a CPU smoke run on a subset). Protocol runs (no deviations) win; without
        any, the most numerous deviating variant is used, and its deviations are shown.
        """
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i in rows:
            groups[tuple(sorted(self._columns["deviations"][i] or ()))].append(i)
        if len(groups) <= 1:
            return rows
        if () in groups:
            return groups[()]
        return max(groups.items(), key=lambda item: (len(item[1]), [-i for i in item[1]]))[1]

    def _index(self, fields: tuple[str, ...]) -> dict[tuple, list[int]]:
        if fields not in self._indexes:
            index: dict[tuple, list[int]] = defaultdict(list)
            if all(f in self._columns for f in fields):  # else no run can match
                columns = [self._normalised(f) for f in fields]
                for i, key in enumerate(zip(*columns, strict=True)):
                    index[key].append(i)
            self._indexes[fields] = index
        return self._indexes[fields]

    def _normalised(self, name: str) -> list[str | None]:
        if name not in self._text:
            self._text[name] = [
                v if v.__class__ is str else (None if v is None else str(v))
                for v in self._columns[name]
            ]
        return self._text[name]

    def _collect(self, rows: list[int], metric: str) -> Runs:
        col = self._columns
        out = Runs()
        if metric not in col:
            self._columns[metric] = [math.nan] * self._size  # no run recorded this metric
        values = col[metric]
        for i in rows:
            run_id, status = col["run_id"][i], col["status"][i]
            out.run_ids.append(run_id)
            out.deviations.update(col["deviations"][i] or ())
            if status != "done":
                reason = col["reason"][i]
                out.not_done.append(f"{run_id}: {status}" + (f" ({reason})" if reason else ""))
                if status == "corrupt":
                    out.corrupt.append(out.not_done[-1])
            elif _finite(values[i]):
                out.values.append((_seed(col["seed"][i]), float(values[i]), run_id))
            else:
                out.no_metric.append(run_id)
        return out


def _refuse_shared_seeds(runs: Runs, experiment: dict[str, Any]) -> None:
    """Replicates of one cell must be independent: two done runs with one seed would make
    their spread cuDNN noise, not seed-to-seed variance (MLPerf's seed checker refuses them;
    lamps-lab's [Re] ran three attempts per cell, all with seed 0)."""
    by_seed: dict[int, list[str]] = defaultdict(list)
    for seed, _, run_id in runs.values:
        if seed >= 0:
            by_seed[seed].append(run_id)
    shared = {seed: ids for seed, ids in by_seed.items() if len(ids) > 1}
    if shared:
        seed, ids = min(shared.items())
        raise AuditError(
            f"replicates of one cell share seed {seed}: {', '.join(ids)} "
            f"({_describe(experiment)}); each replicate needs its own seed, or their spread "
            "is not seed-to-seed variance; renumber the seeds (0, 1, 2, ...)"
        )


def _norm(value: Any) -> str | None:
    """Field values compare as text, so 20 (claims) equals 20 (Int64 column) equals "20"."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _seed(value: Any) -> int:
    return -1 if value is None or value is pd.NA else int(value)


# --------------------------------------------------------------------------- verdicts


def compare(
    claims: ClaimSet | Sequence[Claim], results: pd.DataFrame, design: Design = SINGLE_LOOK
) -> pd.DataFrame:
    """One row per claim with the columns of docs/architecture.md ("Comparison") + extras."""
    index = RunIndex(results)
    claim_list = list(claims)
    references = list(getattr(claims, "reference_sources", []))
    rows = []
    for claim in claim_list:
        if claim.type == "relation":
            row = _relation_row(claim, index, design)
        else:
            row = _value_row(claim, index, design)
        row["escalated"] = claim.id in design.escalated_claims
        for ref in references:
            value = ref.values.get(claim.id)
            row[f"ref_{ref.id}"] = value.value if value is not None else math.nan
        rows.append(row)
    # BH on the two-sided scale of the verdicts (outside the 95 % interval <=> 2p < 0.05), so
    # a lone failure survives a 5 % false-discovery rate exactly when it is a failure.
    two_sided = [min(1.0, 2 * p) if p == p else p for p in (r["p_value"] for r in rows)]
    for row, q in zip(rows, bh_qvalues(two_sided), strict=True):
        row["q_value"] = q
    ref_columns = [f"ref_{ref.id}" for ref in references]
    return pd.DataFrame(rows, columns=COLUMNS + EXTRA_COLUMNS + ref_columns)


def fdr_summary(table: pd.DataFrame, alpha: float = FDR_ALPHA) -> dict[str, Any]:
    """How many not-reproduced and flipped verdicts survive a false-discovery rate `alpha`
    (Benjamini-Hochberg over every claim with a p-value; a single-run failure has none)."""
    failures = table[table["verdict"].isin(NOT_REPRODUCED)]
    q = pd.to_numeric(failures["q_value"], errors="coerce")
    surviving = int((q <= alpha + 1e-12).sum())
    tested = int(pd.to_numeric(table["p_value"], errors="coerce").notna().sum())
    percent = f"{alpha * 100:g} %"
    sentence = (
        f"{surviving} of {len(failures)} failures survive a {percent} false-discovery rate"
        if len(failures)
        else f"no failures to test at a {percent} false-discovery rate"
    )
    return {
        "alpha": alpha,
        "failures": len(failures),
        "surviving": surviving,
        "tested": tested,
        "sentence": sentence,
    }


def _value_row(claim: Claim, index: RunIndex, design: Design) -> dict[str, Any]:
    runs = index.runs(claim.experiment or {}, claim.metric)
    row = _base_row(claim)
    row.update(run_ids=list(runs.run_ids), deviations=sorted(runs.deviations))
    low, high = claim.tolerance.bounds(claim.claimed)
    row.update(tol_low=low, tol_high=high, level=design.confidence)
    problem = _runs_problem(claim, [runs])
    if problem is not None:
        row.update(verdict=problem[0], reason=problem[1], n=0)
        return row
    seeds = [s for s, _, _ in runs.values]
    values = [v for _, v, _ in runs.values]
    stats = summarise(values, design.confidence)
    row.update(_stats_columns(stats, claim.claimed), seeds=seeds, values=values)
    row.update(_value_verdict(claim.claimed, stats, low, high, design))
    row["reason"] = _with_partial(row["reason"], [runs], stats.n)
    return row


def judge_value(
    claimed: float,
    values: Sequence[float],
    tolerance: Tolerance,
    design: Design = SINGLE_LOOK,
) -> dict[str, Any]:
    """The value rule on plain numbers (n >= 1): verdict, rule, reason, p_value, pi_low,
    pi_high, single_run, low_power. What compare() applies to every value claim; the
    calibration test and benchmarks/power.py simulate audits through it."""
    low, high = tolerance.bounds(claimed)
    return _value_verdict(claimed, summarise(values, design.confidence), low, high, design)


def judge_relation(
    differences: Sequence[float],
    op: str = ">",
    boundary: float = 0.0,
    claimed: float | None = None,
    design: Design = SINGLE_LOOK,
) -> dict[str, Any]:
    """The relation rule on paired differences (n >= 1): verdict, rule, reason, p_value,
    the interval, prob_improvement, p_perm and the gap recovered."""
    stats = summarise(differences, design.confidence)
    out = {"mean": stats.mean, "ci_low": stats.ci_low, "ci_high": stats.ci_high}
    out.update(_relation_verdict(stats, op, boundary, design.confidence))
    return out | _relation_extras(stats, list(differences), boundary, claimed)


def _value_verdict(
    claimed: float, stats: Stats, low: float, high: float, design: Design
) -> dict[str, Any]:
    """verdict, rule, reason, p_value and the prediction interval of a value claim."""
    pi_low, pi_high = prediction_interval(stats, design.confidence)
    out: dict[str, Any] = {"pi_low": pi_low, "pi_high": pi_high, "p_value": math.nan}
    out.update(single_run=stats.n == 1, low_power=stats.n < LOW_POWER_N)
    band = f"[{low:.2f}, {high:.2f}]" if math.isfinite(high) else f">= {low:.2f}"
    side = "better_than_claimed" if stats.mean > claimed else "worse_than_claimed"
    if stats.n >= 2:
        out["p_value"] = prediction_p(claimed, stats)
    if low - _EPS <= stats.mean <= high + _EPS:
        return out | {
            "verdict": "reproduced",
            "rule": "tolerance",
            "reason": f"mean {stats.mean:.2f} within {band}",
        }
    if stats.n == 1:
        return out | {
            "verdict": side,
            "rule": "single-run",
            "reason": f"single run {stats.mean:.2f} outside {band} (no spread to judge it by)",
        }
    pct = f"{design.confidence * 100:.4g}%"
    interval = f"{pct} prediction interval [{pi_low:.2f}, {pi_high:.2f}]"
    p = f"p={out['p_value']:.3g} one-sided"
    if pi_low - _EPS <= claimed <= pi_high + _EPS:
        if design.interim and stats.n < design.max_seeds:
            return out | {
                "verdict": "inconclusive",
                "rule": "prediction",
                "reason": f"mean {stats.mean:.2f} outside {band}, but claimed {claimed:g} "
                f"inside the {interval} ({p}); first look: more seeds decide",
            }
        return out | {
            "verdict": "reproduced",
            "rule": "prediction",
            "reason": f"mean {stats.mean:.2f} outside {band}, but claimed {claimed:g} inside "
            f"the {interval} ({p})",
        }
    return out | {
        "verdict": side,
        "rule": "prediction",
        "reason": f"mean {stats.mean:.2f} outside {band} and claimed {claimed:g} outside the "
        f"{interval} ({p})",
    }


def _relation_row(claim: Claim, index: RunIndex, design: Design) -> dict[str, Any]:
    term_runs = [index.runs(t.experiment, claim.metric) for t in claim.terms]
    row = _base_row(claim)
    row["run_ids"] = [r for runs in term_runs for r in runs.run_ids]
    row["deviations"] = sorted(set().union(*(runs.deviations for runs in term_runs)))
    boundary = -(claim.tolerance.abs or 0.0) + 0.0  # + 0.0: a negated zero prints as "-0"
    row.update(tol_low=boundary, tol_high=math.inf, level=design.confidence)
    problem = _runs_problem(claim, term_runs)
    if problem is not None:
        row.update(verdict=problem[0], reason=problem[1], n=0)
        return row
    coefs = [t.coef for t in claim.terms]
    stats, seeds, diffs, paired = _relation_stats(coefs, term_runs, design.confidence)
    row.update(_stats_columns(stats, claim.claimed), seeds=seeds, values=diffs, paired=paired)
    row.update(_relation_verdict(stats, claim.op or ">", boundary, design.confidence))
    row.update(_relation_extras(stats, diffs, boundary, claim.claimed))
    how = f"paired over {len(seeds)} common seed(s)" if paired else "unpaired means"
    reason = f"{row['reason']}; {how}"
    row["reason"] = _with_partial(reason, term_runs, stats.n)
    return row


def _relation_stats(
    coefs: list[float], term_runs: list[Runs], confidence: float
) -> tuple[Stats, list[int], list[float], bool]:
    by_seed = [_mean_by_seed(runs) for runs in term_runs]
    common = sorted(set.intersection(*(set(s) for s in by_seed)))
    if common:
        diffs = [
            math.fsum(c * s[seed] for c, s in zip(coefs, by_seed, strict=True)) for seed in common
        ]
        return summarise(diffs, confidence), common, diffs, True
    parts = [
        (c, summarise([v for _, v, _ in runs.values], confidence))
        for c, runs in zip(coefs, term_runs, strict=True)
    ]
    return combine(parts, confidence), [], [], False


def _mean_by_seed(runs: Runs) -> dict[int, float]:
    """One value per seed (replicates never share one: _refuse_shared_seeds)."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for seed, value, _ in runs.values:
        grouped[seed].append(value)
    return {seed: math.fsum(v) / len(v) for seed, v in grouped.items()}


def _relation_verdict(stats: Stats, op: str, boundary: float, confidence: float) -> dict[str, Any]:
    """holds / flipped / unresolved by the one-sided bounds of the statistic."""
    out: dict[str, Any] = {
        "single_run": stats.n == 1,
        "low_power": stats.n < LOW_POWER_N,
        "p_value": mean_p(stats, boundary),
    }
    if stats.n < 2 or math.isnan(stats.ci_low):
        holds = stats.mean > boundary if op == ">" else stats.mean >= boundary - _EPS
        word = "holds" if holds else "flipped"
        return out | {
            "verdict": word,
            "rule": "single-run",
            "reason": f"difference {stats.mean:+.2f} {op if holds else 'not ' + op} "
            f"{boundary:g}: {word} (n=1, no interval)",
        }
    bound = f"{(1 + confidence) / 2 * 100:.4g}% one-sided"
    interval = f"[{stats.ci_low:+.2f}, {stats.ci_high:+.2f}]"
    if stats.ci_low > boundary if op == ">" else stats.ci_low >= boundary - _EPS:
        verdict, where = "holds", f"lower bound {stats.ci_low:+.2f} above {boundary:g}"
    elif stats.ci_high <= boundary if op == ">" else stats.ci_high < boundary - _EPS:
        verdict, where = "flipped", f"upper bound {stats.ci_high:+.2f} below {boundary:g}"
    else:
        verdict, where = "unresolved", f"interval {interval} contains {boundary:g}"
    return out | {
        "verdict": verdict,
        "rule": "confidence",
        "reason": f"difference {stats.mean:+.2f}, {bound} {where}: {verdict}",
    }


def _relation_extras(
    stats: Stats, diffs: list[float], boundary: float, claimed: float | None
) -> dict[str, Any]:
    """P(difference > 0) over the pairs, the sign-flip p and the gap recovered."""
    out: dict[str, Any] = {"prob_improvement": math.nan, "p_perm": math.nan}
    if diffs:
        wins = sum(1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in diffs)
        out.update(prob_improvement=wins / len(diffs), p_perm=sign_flip_p(diffs, boundary))
    gap = (math.nan, math.nan, math.nan)
    if claimed is not None and math.isfinite(claimed) and claimed != 0:
        low, high = sorted((stats.ci_low / claimed, stats.ci_high / claimed))
        gap = (stats.mean / claimed, low, high)
    return out | dict(zip(("gap_recovered", "gap_low", "gap_high"), gap, strict=True))


def _runs_problem(claim: Claim, term_runs: list[Runs]) -> tuple[str, str] | None:
    """(verdict, reason) when there is nothing to compute a statistic from."""
    experiments = claim.experiments()
    corrupt = [r for runs in term_runs for r in runs.corrupt]
    if corrupt:  # before "missing": a damaged run fails the claim whatever else is absent
        return "corrupt", (
            "damaged run directory: " + "; ".join(corrupt) + "; train it again (audit run)"
        )
    absent = [e for e, runs in zip(experiments, term_runs, strict=True) if runs.matched == 0]
    if absent:
        why = "" if claim.runnable else " (no runner on this harness; give results by CSV)"
        return "missing", f"no run of {_describe(absent[0])}{why}"
    for runs in term_runs:
        if not runs.values and runs.not_done:
            return "failed", "no done run: " + "; ".join(runs.not_done)
    for exp, runs in zip(experiments, term_runs, strict=True):
        if not runs.values:
            return "missing", f"done runs of {_describe(exp)} lack the metric {claim.metric}"
    return None


def _with_partial(reason: str, term_runs: list[Runs], n: int) -> str:
    skipped = [r for runs in term_runs for r in runs.not_done]
    if not skipped:
        return reason
    return f"{reason}; statistics over the done runs only (n={n}), not: {'; '.join(skipped)}"


def _describe(experiment: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in experiment.items())


def _stats_columns(stats: Stats, claimed: float | None) -> dict[str, Any]:
    abs_dev = rel_dev = math.nan
    if claimed is not None and stats.n:
        abs_dev = stats.mean - claimed
        rel_dev = abs_dev / claimed * 100 if claimed != 0 else math.nan
    return {
        "reproduced_mean": stats.mean,
        "reproduced_std": stats.std,
        "n": stats.n,
        "ci_low": stats.ci_low,
        "ci_high": stats.ci_high,
        "abs_dev": abs_dev,
        "rel_dev": rel_dev,
    }


_TEMPLATE = dict.fromkeys(COLUMNS + EXTRA_COLUMNS)


def _base_row(claim: Claim) -> dict[str, Any]:
    row = _TEMPLATE.copy()
    row.update(
        claim_id=claim.id,
        group=claim.group,
        type=claim.type,
        metric=claim.metric,
        claimed=math.nan if claim.claimed is None else claim.claimed,
        claimed_text=claim.claimed_text,
        reproduced_mean=math.nan,
        reproduced_std=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        abs_dev=math.nan,
        rel_dev=math.nan,
        tolerance=_tolerance_text(claim),
        source=_source_text(claim),
        gate=claim.gate,
        runnable=claim.runnable,
        statement=claim.statement,
        seeds=[],
        values=[],
        paired=False,
        note=claim.note,
        rule="-",
        pi_low=math.nan,
        pi_high=math.nan,
        p_value=math.nan,
        q_value=math.nan,
        single_run=False,
        low_power=False,
        escalated=False,
        prob_improvement=math.nan,
        p_perm=math.nan,
        gap_recovered=math.nan,
        gap_low=math.nan,
        gap_high=math.nan,
    )
    if claim.type == "relation":
        for name in ("dataset", "arch", "norm", "epochs"):
            row[name] = _facet_text(claim, name)
    elif claim.experiment:
        experiment = claim.experiment
        for name in ("dataset", "arch", "norm", "epochs"):
            row[name] = experiment.get(name)
    return row


def _facet_text(claim: Claim, name: str) -> Any:
    """A relation's value of `name`: shared by its terms, or e.g. "nd/bn"."""
    values = list(dict.fromkeys(e[name] for e in claim.experiments() if name in e))
    if not values:
        return None
    return values[0] if len(values) == 1 else "/".join(str(v) for v in values)


def _tolerance_text(claim: Claim) -> str:
    if claim.type == "relation":
        slack = claim.tolerance.abs or 0
        return f"{claim.op} {-slack:g}" if slack else f"{claim.op} 0"
    return _describe_tolerance(claim.tolerance)


@lru_cache(maxsize=256)
def _describe_tolerance(tolerance: Tolerance) -> str:
    return tolerance.describe()  # a few distinct tolerances serve thousands of claims


def _source_text(claim: Claim) -> str:
    prov = claim.provenance
    parts = [str(prov.get(k)) for k in ("table", "row", "column") if prov.get(k)]
    if prov.get("cells"):
        parts.append(str(prov["cells"]))
    text = ", ".join(parts)
    sources = prov.get("transcribed_from")
    if sources:
        listed = ", ".join(sources) if isinstance(sources, list) else str(sources)
        text += f"; transcribed from {listed}"
    return text
