"""The verdict vocabulary and the statistics behind it: gate membership, labels, scipy's t,
prediction intervals, the exact sign-flip test, Benjamini-Hochberg, the Pocock level, and
the false-discovery sentence."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from audit import stats, verdicts
from audit.check import passing_verdicts


def test_vocabulary_is_the_teams_and_gates_as_documented():
    assert verdicts.VERDICTS == (
        "reproduced",
        "better_than_claimed",
        "worse_than_claimed",
        "inconclusive",
        "holds",
        "flipped",
        "unresolved",
        "missing",
        "failed",
        "corrupt",
    )
    assert passing_verdicts() == {"reproduced", "holds"}
    assert "better_than_claimed" not in passing_verdicts(True, True)  # outside tolerance
    assert passing_verdicts(allow_inconclusive=True) == {
        "reproduced",
        "holds",
        "inconclusive",
        "unresolved",
    }
    assert passing_verdicts(allow_missing=True) - passing_verdicts() == {"missing"}
    for never in ("failed", "corrupt", "flipped", "worse_than_claimed"):
        assert never not in passing_verdicts(True, True)
    assert verdicts.label("better_than_claimed") == "better than claimed"
    assert {"better_than_claimed", "worse_than_claimed", "flipped"} == verdicts.NOT_REPRODUCED


def test_docs_state_the_rule_of_every_verdict():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "verdicts.md").read_text()
    for name in verdicts.VERDICTS:
        assert f"`{name}`" in text, name


def test_prediction_interval_and_its_p_value():
    values = [90.1, 90.9, 90.4, 89.8]
    s = stats.summarise(values)
    low, high = stats.prediction_interval(s)
    sd = float(np.std(values, ddof=1))
    half = scipy_stats.t.ppf(0.975, 3) * sd * math.sqrt(1 + 1 / 4)
    assert (low, high) == pytest.approx((s.mean - half, s.mean + half))
    # the claim at the interval's edge has the one-sided p of its level
    assert stats.prediction_p(high, s) == pytest.approx(0.025)
    assert stats.prediction_p(s.mean, s) == pytest.approx(0.5)
    assert math.isnan(stats.prediction_p(90.0, stats.summarise([90.0])))


def test_sign_flip_p_is_exact():
    diffs = [0.4, -0.1, 0.7, 0.2, 0.3]
    observed = sum(diffs)
    patterns = list(itertools.product((1, -1), repeat=len(diffs)))
    as_far = sum(sum(s * d for s, d in zip(p, diffs, strict=True)) >= observed - 1e-12
                 for p in patterns)  # fmt: skip
    assert stats.sign_flip_p(diffs) == pytest.approx(as_far / 32)
    assert stats.sign_flip_p([1.0, 2.0, 3.0]) == 1 / 8  # never below 1/2^n
    assert stats.sign_flip_p([-1.0, -2.0, -3.0]) == 1 / 8  # on the side the data lie
    assert stats.sign_flip_p([1.0, 2.0], boundary=5.0) == 1 / 4


def test_benjamini_hochberg_q_values():
    p = [0.01, 0.04, math.nan, 0.03, 0.5]
    q = stats.bh_qvalues(p)
    # m = 4 tested: sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.0533, 0.0533, 0.5
    assert q[0] == pytest.approx(0.04)
    assert q[1] == pytest.approx(0.04 * 4 / 3) and q[3] == pytest.approx(0.04 * 4 / 3)
    assert math.isnan(q[2]) and q[4] == pytest.approx(0.5)
    assert stats.bh_qvalues([]) == []


def test_pocock_level_of_two_looks():
    # the textbook Pocock constant for two equally spaced looks is 2.178 (alpha 0.05)
    assert stats.pocock_alpha(3, 6) == pytest.approx(2 * scipy_stats.norm.sf(2.178), abs=2e-4)
    assert stats.pocock_alpha(3, 6) == pytest.approx(0.0294, abs=1e-4)
    assert 0.0294 < stats.pocock_alpha(3, 5) < 0.05  # later second look: closer to 0.05
    with pytest.raises(ValueError):
        stats.pocock_alpha(6, 3)


def test_fdr_sentence_counts_failures_that_survive(tmp_path):
    import pandas as pd

    from audit.compare import fdr_summary

    table = pd.DataFrame(
        {
            "verdict": ["worse_than_claimed", "flipped", "reproduced", "worse_than_claimed"],
            "p_value": [0.001, 0.02, 0.6, math.nan],
        }
    )
    table["q_value"] = stats.bh_qvalues(table["p_value"])
    summary = fdr_summary(table)
    assert summary["failures"] == 3 and summary["tested"] == 3
    assert summary["surviving"] == 2  # q = 0.003, 0.03; the single-run failure has no p
    assert summary["sentence"] == "2 of 3 failures survive a 5 % false-discovery rate"
