"""Calibrated, not asserted: simulated audits through the real verdict rules.

Runs are N(0, 1) draws; the printed claim is one more draw, shifted by the true difference.
When it comes from the same distribution, "not reproduced" must occur at the nominal 5 %
(2.5 % a side), and "reproduced" must fall as the true difference grows past the tolerance.
The two-look design of `audit run --escalate` must keep its overall error at the nominal
level, where judging both looks at 95 % would not. Seeded (the same draws every run) and
with tolerances of about five binomial standard errors, so the test cannot flake.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from audit.claims import Tolerance
from audit.compare import Design, judge_relation, judge_value
from audit.stats import pocock_alpha

SIMS = 8000
FAIL = ("better_than_claimed", "worse_than_claimed")


SINGLE = Design()


def simulate(n: int, delta: float, shift: float, seed: int, design: Design = SINGLE):
    rng = np.random.default_rng(seed)
    tolerance = Tolerance(abs=delta)
    counts: Counter[str] = Counter()
    for _ in range(SIMS):
        runs = rng.normal(0.0, 1.0, n).tolist()
        counts[judge_value(float(rng.normal(shift, 1.0)), runs, tolerance, design)["verdict"]] += 1
    return {k: v / SIMS for k, v in counts.items()}


@pytest.mark.parametrize("n", [3, 5, 10])
def test_not_reproduced_at_the_nominal_rate_when_the_claim_is_one_more_run(n):
    rates = simulate(n, delta=0.0, shift=0.0, seed=n)
    assert rates.get("better_than_claimed", 0) + rates.get("worse_than_claimed", 0) == (
        pytest.approx(0.05, abs=0.012)
    )
    assert rates.get("worse_than_claimed", 0) == pytest.approx(0.025, abs=0.009)


def test_a_tolerance_only_lowers_the_false_failure_rate():
    rates = simulate(3, delta=0.5, shift=0.0, seed=11)
    assert sum(rates.get(v, 0) for v in FAIL) < 0.05


def test_reproduced_falls_as_the_true_difference_grows_past_the_tolerance():
    delta = 1.0  # one standard deviation of a run
    reproduced = [
        simulate(3, delta, shift, seed=20 + i).get("reproduced", 0)
        for i, shift in enumerate((0.0, 1.0, 2.0, 4.0, 8.0))
    ]
    assert all(a > b for a, b in itertools.pairwise(reproduced))
    assert reproduced[0] > 0.95 and reproduced[-1] < 0.2


def test_relation_holds_and_flips_at_the_nominal_rate_on_the_boundary():
    rng = np.random.default_rng(30)
    counts = Counter(
        judge_relation(rng.normal(0.0, 1.0, 3).tolist())["verdict"] for _ in range(SIMS)
    )
    assert counts["holds"] / SIMS == pytest.approx(0.025, abs=0.009)
    assert counts["flipped"] / SIMS == pytest.approx(0.025, abs=0.009)


def two_looks(confidence: float, seed: int, relation: bool = False) -> float:
    """Rate of a false decision with the escalation procedure: look at 3 seeds, give the
    undecided cells seeds 3..5, look again. Values: false "not reproduced"; relations:
    false "holds" (true difference on the boundary)."""
    rng = np.random.default_rng(seed)
    first = Design(confidence=confidence, interim=True, max_seeds=6, rule="pocock-2")
    final = Design(confidence=confidence, interim=False, max_seeds=6, rule="pocock-2")
    wrong = 0
    for _ in range(SIMS):
        runs = rng.normal(0.0, 1.0, 6).tolist()
        if relation:
            verdict = judge_relation(runs[:3], design=first)["verdict"]
            if verdict == "unresolved":
                verdict = judge_relation(runs, design=final)["verdict"]
            wrong += verdict == "holds"
        else:
            claim, tolerance = float(rng.normal(0.0, 1.0)), Tolerance(abs=0.0)
            verdict = judge_value(claim, runs[:3], tolerance, first)["verdict"]
            if verdict == "inconclusive":
                verdict = judge_value(claim, runs, tolerance, final)["verdict"]
            wrong += verdict in FAIL
    return wrong / SIMS


def test_escalation_under_the_pocock_level_keeps_the_nominal_error():
    level = 1 - pocock_alpha(3, 6)
    assert two_looks(level, seed=40) == pytest.approx(0.05, abs=0.012)
    assert two_looks(level, seed=41, relation=True) == pytest.approx(0.025, abs=0.009)


def test_peeking_twice_at_95_percent_would_manufacture_failures():
    """Why the design fixes a lower level per look: two looks at 95 % each inflate it."""
    assert two_looks(0.95, seed=42) > 0.07
    assert two_looks(0.95, seed=43, relation=True) > 0.037
