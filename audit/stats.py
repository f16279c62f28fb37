"""The statistics behind the verdicts: Student-t quantiles and tails (scipy), summaries with
confidence and prediction intervals, the exact sign-flip permutation test, Benjamini-Hochberg
q-values and the Pocock level of a two-look design.

scipy.special's `stdtrit`/`stdtr` are the functions scipy.stats.t's ppf/sf call; they are
used directly because importing scipy.stats costs `audit check` about 0.9 s of start-up,
scipy.special 0.2 s (a test checks them against scipy.stats.t).

This module never imports torch or pandas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special

EXACT_PERMUTATION_MAX_N = 20  # 2^20 sign patterns; beyond, a seeded Monte Carlo
MONTE_CARLO_FLIPS = 200_000


# --------------------------------------------------------------------------- Student t


def t_quantile(p: float, df: float) -> float:
    """The p-quantile (0 < p < 1) of Student's t with `df` > 0 degrees of freedom."""
    if not 0 < p < 1 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    return _t_quantile(round(p, 12), round(df, 9))


@lru_cache(maxsize=4096)
def _t_quantile(p: float, df: float) -> float:
    return float(special.stdtrit(df, p))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    return float(special.stdtr(df, t))


def t_sf(t: float, df: float) -> float:
    """P(T >= t): the one-sided p-value of a t statistic."""
    return float(special.stdtr(df, -t))


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Stats:
    mean: float
    std: float  # sample std (n - 1); NaN when n < 2
    n: int
    ci_low: float  # two-sided `confidence` t-interval of the mean; NaN when n < 2
    ci_high: float
    df: float = math.nan  # degrees of freedom of the interval (Welch: not whole)
    se: float = math.nan  # standard error of the mean


def summarise(values: Sequence[float], confidence: float = 0.95) -> Stats:
    n = len(values)
    if n == 0:
        return Stats(math.nan, math.nan, 0, math.nan, math.nan)
    mean = math.fsum(values) / n
    if n < 2:
        return Stats(mean, math.nan, 1, math.nan, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    se = std / math.sqrt(n)
    half = t_quantile((1 + confidence) / 2, n - 1) * se
    return Stats(mean, std, n, mean - half, mean + half, float(n - 1), se)


def combine(parts: Sequence[tuple[float, Stats]], confidence: float = 0.95) -> Stats:
    """sum(coef * mean) of independent samples; Welch-Satterthwaite interval if all n >= 2."""
    mean = math.fsum(c * s.mean for c, s in parts)
    n = min(s.n for _, s in parts)
    if n < 2:
        return Stats(mean, math.nan, n, math.nan, math.nan)
    variances = [c * c * s.std**2 / s.n for c, s in parts]
    se = math.sqrt(math.fsum(variances))
    if se == 0:
        return Stats(mean, 0.0, n, mean, mean, math.inf, 0.0)
    df = se**4 / math.fsum(v * v / (s.n - 1) for v, (_, s) in zip(variances, parts, strict=True))
    half = t_quantile((1 + confidence) / 2, df) * se
    return Stats(mean, se * math.sqrt(n), n, mean - half, mean + half, df, se)


def prediction_interval(stats: Stats, confidence: float = 0.95) -> tuple[float, float]:
    """Where one more run would fall with probability `confidence`:
    mean ± t(n-1) · s · √(1 + 1/n) (NaN for n < 2)."""
    if stats.n < 2:
        return math.nan, math.nan
    half = t_quantile((1 + confidence) / 2, stats.n - 1) * stats.std * math.sqrt(1 + 1 / stats.n)
    return stats.mean - half, stats.mean + half


def prediction_p(value: float, stats: Stats) -> float:
    """One-sided p-value that `value` is one more draw of the runs' distribution, on the side
    it lies: P(T_{n-1} >= |value - mean| / (s·√(1+1/n))). NaN for n < 2."""
    if stats.n < 2:
        return math.nan
    return _one_sided(value - stats.mean, stats.std * math.sqrt(1 + 1 / stats.n), stats.n - 1)


def mean_p(stats: Stats, boundary: float) -> float:
    """One-sided p-value of the mean against `boundary`, on the side the mean lies."""
    if stats.n < 2 or not stats.df > 0:
        return math.nan
    return _one_sided(stats.mean - boundary, stats.se, stats.df)


def _one_sided(difference: float, scale: float, df: float) -> float:
    if scale == 0:
        return 0.0 if difference else 0.5
    return t_sf(abs(difference) / scale, df)


# --------------------------------------------------------------------------- permutation


def sign_flip_p(differences: Sequence[float], boundary: float = 0.0) -> float:
    """Exact one-sided sign-flip permutation p-value of paired differences around
    `boundary`, on the side their sum lies: the share of the 2^n sign patterns whose sum is at
    least as far out. With n <= 4 it is never below 1/16 (so never significant alone)."""
    x = np.asarray(differences, dtype=float) - boundary
    n = len(x)
    if n == 0:
        return math.nan
    observed = abs(float(x.sum()))
    tol = 1e-9 * max(1.0, float(np.abs(x).sum()))
    if n <= EXACT_PERMUTATION_MAX_N:
        sums = np.zeros(1)
        for value in x:  # every sign pattern's sum, doubling per difference
            sums = np.concatenate((sums + value, sums - value))
    else:  # a seeded draw, so the same input always gives the same p
        rng = np.random.default_rng(0)
        signs = rng.choice((-1.0, 1.0), size=(MONTE_CARLO_FLIPS, n))
        sums = signs @ x
    side = 1.0 if x.sum() >= 0 else -1.0
    return float(np.mean(side * sums >= observed - tol))


# --------------------------------------------------------------------------- many claims


def bh_qvalues(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg q-values (adjusted p-values); NaN inputs stay NaN and are not
    counted in the family."""
    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, math.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = len(present)
    if m == 0:
        return q.tolist()
    order = present[np.argsort(p[present], kind="stable")]
    ranked = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q.tolist()


# --------------------------------------------------------------------------- two looks


@lru_cache(maxsize=64)
def pocock_alpha(n_first: int, n_max: int, alpha: float = 0.05) -> float:
    """The nominal two-sided level of each look of a two-look Pocock design whose overall
    type-I error is `alpha`: the level at which |Z| crosses the same boundary c at both looks,
    P(|Z1| < c, |Z2| < c) = 1 - alpha with corr(Z1, Z2) = √(n_first / n_max) (the
    correlation of a mean at n_first and at n_max observations). 3 -> 6 seeds: 0.0294."""
    if not 0 < n_first < n_max:
        raise ValueError(f"a two-look design needs 0 < n_first < n_max, got {n_first}, {n_max}")
    rho = math.sqrt(n_first / n_max)
    low, high = 1.0, 5.0
    for _ in range(80):
        c = (low + high) / 2
        if _both_inside(c, rho) < 1 - alpha:
            low = c
        else:
            high = c
    return float(2 * special.ndtr(-(low + high) / 2))


def _both_inside(c: float, rho: float) -> float:
    """P(|Z1| < c, |Z2| < c) for a standard bivariate normal with correlation rho."""
    z = np.linspace(-c, c, 4001)
    s = math.sqrt(1 - rho * rho)
    inner = special.ndtr((c - rho * z) / s) - special.ndtr((-c - rho * z) / s)
    f = np.exp(-z * z / 2) / math.sqrt(2 * math.pi) * inner
    h = z[1] - z[0]
    return float(h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))
