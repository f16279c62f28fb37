"""The comparator: claims x results table -> one verdict row per claim.

A claim's runs are the result rows whose fields equal every field of the claim's
experiment (so a run with extra or deviating spec fields still counts; its deviations are
listed in the outcome row). Statistics use the runs with status `done` only:

- value / threshold: mean, sample std, n and a 95% t-interval (n >= 2) of the metric over
  the done runs; `abs_dev = mean - claimed` (points) and
  `rel_dev = (mean - claimed) / claimed * 100` (the seed study's "percentage change from
  the original"). Verdict: `reproduced` if the mean lies within the tolerance band,
  `not_reproduced` if not, `inconclusive` if n >= 2 and the interval straddles a band edge.
- relation: the statistic is sum(coef * metric) over its terms (e.g. ND - BN). Runs of the
  terms that share a seed are paired: one difference per common seed, then mean, std and a
  t-interval of those differences. Without common seeds the means are combined
  (Welch-Satterthwaite degrees of freedom). The relation holds if the statistic `op` -slack;
  `relation_flipped` if not; `inconclusive` if the interval contains the boundary.
- `missing`: no run matched (or none recorded the metric); `failed`: runs matched but none
  is done (failed or diverged); `corrupt`: a matched run directory is damaged (its result
  cannot be trusted, so the claim fails whatever the other runs say). When some runs are
  done and others failed, the verdict uses the done ones and `reason` names the failed ones.

This module never imports torch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pandas as pd

from audit.claims import Claim, ClaimSet, Tolerance

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
]
VERDICTS = (
    "reproduced",
    "not_reproduced",
    "inconclusive",
    "missing",
    "failed",
    "relation_flipped",
    "corrupt",
)
CONFIDENCE = 0.95
_EPS = 1e-9  # bounds are inclusive; floats like 93.25 - 1.0 must not fall outside by noise


# --------------------------------------------------------------------------- t quantiles


def t_quantile(p: float, df: float) -> float:
    """The p-quantile (p in (0.5, 1)) of Student's t with `df` > 0 degrees of freedom.

    Solved by bisection on the CDF, which is exact through the regularised incomplete beta
    function (no scipy: it is not a dependency). Results are cached per (p, df).
    """
    if not 0.5 < p < 1 or not df > 0:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df > 0, got p={p}, df={df}")
    return _t_quantile(round(p, 12), round(df, 9))


@lru_cache(maxsize=1024)
def _t_quantile(p: float, df: float) -> float:
    if df > 1e5:  # the incomplete beta loses digits here; the expansion is exact to 1e-12
        z = _bisect(lambda x: 0.5 * math.erfc(-x / math.sqrt(2)), p)
        return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    return _bisect(lambda x: t_cdf(x, df), p)


def _bisect(cdf: Callable[[float], float], p: float) -> float:
    """The x > 0 with cdf(x) = p, for an increasing cdf."""
    low, high = 0.0, 1.0
    while cdf(high) < p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2
        if cdf(mid) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t >= 0 else tail


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (continued fraction, Numerical Recipes 6.4)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stats:
    mean: float
    std: float  # sample std (n - 1); NaN when n < 2
    n: int
    ci_low: float  # 95% t-interval of the mean; NaN when n < 2
    ci_high: float


def summarise(values: Sequence[float]) -> Stats:
    n = len(values)
    if n == 0:
        return Stats(math.nan, math.nan, 0, math.nan, math.nan)
    mean = math.fsum(values) / n
    if n < 2:
        return Stats(mean, math.nan, 1, math.nan, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile((1 + CONFIDENCE) / 2, n - 1) * std / math.sqrt(n)
    return Stats(mean, std, n, mean - half, mean + half)


def combine(parts: Sequence[tuple[float, Stats]]) -> Stats:
    """sum(coef * mean) of independent samples; Welch-Satterthwaite interval if all n >= 2."""
    mean = math.fsum(c * s.mean for c, s in parts)
    n = min(s.n for _, s in parts)
    if n < 2:
        return Stats(mean, math.nan, n, math.nan, math.nan)
    variances = [c * c * s.std**2 / s.n for c, s in parts]
    se = math.sqrt(math.fsum(variances))
    if se == 0:
        return Stats(mean, 0.0, n, mean, mean)
    df = se**4 / math.fsum(v * v / (s.n - 1) for v, (_, s) in zip(variances, parts, strict=True))
    half = t_quantile((1 + CONFIDENCE) / 2, df) * se
    return Stats(mean, se * math.sqrt(n), n, mean - half, mean + half)


# --------------------------------------------------------------------------- matching


@dataclass
class Runs:
    """The result rows of one experiment, split by what the comparator does with them."""

    values: list[tuple[int, float, str]] = field(default_factory=list)  # (seed, value, run)
    not_done: list[str] = field(default_factory=list)  # "run_id: status (reason)"
    corrupt: list[str] = field(default_factory=list)  # "run_id (reason)" of damaged runs
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
            if status == "corrupt":
                out.corrupt.append(f"{run_id} ({col['reason'][i]})")
            if status != "done":
                reason = col["reason"][i]
                out.not_done.append(f"{run_id}: {status}" + (f" ({reason})" if reason else ""))
            elif _finite(values[i]):
                out.values.append((_seed(col["seed"][i]), float(values[i]), run_id))
            else:
                out.no_metric.append(run_id)
        return out


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


def compare(claims: ClaimSet | Sequence[Claim], results: pd.DataFrame) -> pd.DataFrame:
    """One row per claim with the columns of docs/architecture.md ("Comparison") + extras."""
    index = RunIndex(results)
    claim_list = list(claims)
    references = list(getattr(claims, "reference_sources", []))
    rows = []
    for claim in claim_list:
        row = _relation_row(claim, index) if claim.type == "relation" else _value_row(claim, index)
        for ref in references:
            value = ref.values.get(claim.id)
            row[f"ref_{ref.id}"] = value.value if value is not None else math.nan
        rows.append(row)
    ref_columns = [f"ref_{ref.id}" for ref in references]
    return pd.DataFrame(rows, columns=COLUMNS + EXTRA_COLUMNS + ref_columns)


def _value_row(claim: Claim, index: RunIndex) -> dict[str, Any]:
    runs = index.runs(claim.experiment or {}, claim.metric)
    row = _base_row(claim)
    row.update(run_ids=list(runs.run_ids), deviations=sorted(runs.deviations))
    low, high = claim.tolerance.bounds(claim.claimed)
    row.update(tol_low=low, tol_high=high)
    problem = _runs_problem(claim, [runs])
    if problem is not None:
        row.update(verdict=problem[0], reason=problem[1], n=0)
        return row
    seeds = [s for s, _, _ in runs.values]
    values = [v for _, v, _ in runs.values]
    stats = summarise(values)
    row.update(_stats_columns(stats, claim.claimed), seeds=seeds, values=values)
    verdict, reason = _band_verdict(stats, low, high)
    row.update(verdict=verdict, reason=_with_partial(reason, [runs], stats.n))
    return row


def _band_verdict(stats: Stats, low: float, high: float) -> tuple[str, str]:
    edges = [e for e in (low, high) if math.isfinite(e)]
    if stats.n >= 2:
        for edge in edges:
            if stats.ci_low < edge < stats.ci_high:
                return "inconclusive", (
                    f"95% CI [{stats.ci_low:.2f}, {stats.ci_high:.2f}] straddles the "
                    f"tolerance edge {edge:.2f}"
                )
    band = f"[{low:.2f}, {high:.2f}]" if math.isfinite(high) else f">= {low:.2f}"
    if low - _EPS <= stats.mean <= high + _EPS:
        return "reproduced", f"mean {stats.mean:.2f} within {band}"
    return "not_reproduced", f"mean {stats.mean:.2f} outside {band}"


def _relation_row(claim: Claim, index: RunIndex) -> dict[str, Any]:
    term_runs = [index.runs(t.experiment, claim.metric) for t in claim.terms]
    row = _base_row(claim)
    row["run_ids"] = [r for runs in term_runs for r in runs.run_ids]
    row["deviations"] = sorted(set().union(*(runs.deviations for runs in term_runs)))
    boundary = -(claim.tolerance.abs or 0.0)
    row.update(tol_low=boundary, tol_high=math.inf)
    problem = _runs_problem(claim, term_runs)
    if problem is not None:
        row.update(verdict=problem[0], reason=problem[1], n=0)
        return row
    coefs = [t.coef for t in claim.terms]
    stats, seeds, diffs, paired = _relation_stats(coefs, term_runs)
    row.update(_stats_columns(stats, claim.claimed), seeds=seeds, values=diffs, paired=paired)
    verdict, reason = _relation_verdict(stats, claim.op or ">", boundary)
    how = f"paired over {len(seeds)} common seed(s)" if paired else "unpaired means"
    row.update(verdict=verdict, reason=_with_partial(f"{reason}; {how}", term_runs, stats.n))
    return row


def _relation_stats(
    coefs: list[float], term_runs: list[Runs]
) -> tuple[Stats, list[int], list[float], bool]:
    by_seed = [_mean_by_seed(runs) for runs in term_runs]
    common = sorted(set.intersection(*(set(s) for s in by_seed)))
    if common:
        diffs = [
            math.fsum(c * s[seed] for c, s in zip(coefs, by_seed, strict=True)) for seed in common
        ]
        return summarise(diffs), common, diffs, True
    parts = [
        (c, summarise([v for _, v, _ in runs.values]))
        for c, runs in zip(coefs, term_runs, strict=True)
    ]
    return combine(parts), [], [], False


def _mean_by_seed(runs: Runs) -> dict[int, float]:
    """One value per seed: repeated runs of a seed (e.g. with and without a deviation) average."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for seed, value, _ in runs.values:
        grouped[seed].append(value)
    return {seed: math.fsum(v) / len(v) for seed, v in grouped.items()}


def _relation_verdict(stats: Stats, op: str, boundary: float) -> tuple[str, str]:
    boundary += 0.0  # a zero slack negated is -0.0, which would print as "-0"
    if stats.n >= 2 and stats.ci_low <= boundary <= stats.ci_high and stats.ci_low < stats.ci_high:
        return "inconclusive", (
            f"95% CI [{stats.ci_low:.2f}, {stats.ci_high:.2f}] of the difference "
            f"contains {boundary:g}"
        )
    holds = stats.mean > boundary if op == ">" else stats.mean >= boundary - _EPS
    word = "holds" if holds else "flipped"
    verdict = "reproduced" if holds else "relation_flipped"
    return (
        verdict,
        f"difference {stats.mean:+.2f} {op if holds else 'not ' + op} {boundary:g}: {word}",
    )


def _runs_problem(claim: Claim, term_runs: list[Runs]) -> tuple[str, str] | None:
    """(verdict, reason) when there is nothing to compute a statistic from."""
    experiments = claim.experiments()
    damaged = [r for runs in term_runs for r in runs.corrupt]
    if damaged:
        return "corrupt", "damaged run directory: " + "; ".join(damaged)
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
