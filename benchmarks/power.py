"""The power of the verdict rules per number of seeds: the tables of docs/verdicts.md.

Simulated audits through the real rules (audit.compare.judge_value / judge_relation): runs
are N(0, σ) draws; the printed value is one more draw (the paper's number is one run), from a
distribution shifted by the true difference Δ. Printed: the share of audits that say "not
reproduced" (value, tolerance δ = 0.5 σ and 2 σ) and "holds" (relation), per n and Δ/σ, and the
two-look design of `audit run --escalate` (3 -> 6 seeds, Pocock level). Seeded: the same
numbers every run (Monte Carlo standard error at most 0.005 with the default 10,000 audits).

Run: python benchmarks/power.py [--sims 10000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audit.claims import Tolerance
from audit.compare import Design, judge_relation, judge_value
from audit.stats import pocock_alpha

SEEDS = (1, 2, 3, 5, 6, 10)
SHIFTS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)  # Δ / σ
DELTAS = (0.5, 2.0)  # tolerances in units of σ (Table 1's 1 pt is 2-5 σ of a CIFAR-10 cell)
FAIL = ("better_than_claimed", "worse_than_claimed")


def value_power(n: int, shift: float, delta: float, sims: int, rng: np.random.Generator) -> float:
    tolerance = Tolerance(abs=delta)
    fails = 0
    for _ in range(sims):
        runs = rng.normal(0.0, 1.0, n).tolist()
        fails += judge_value(float(rng.normal(shift, 1.0)), runs, tolerance)["verdict"] in FAIL
    return fails / sims


def relation_power(n: int, effect: float, sims: int, rng: np.random.Generator) -> float:
    """P(holds) for paired differences N(effect, 1) against the boundary 0."""
    holds = 0
    for _ in range(sims):
        holds += judge_relation(rng.normal(effect, 1.0, n).tolist())["verdict"] == "holds"
    return holds / sims


def two_look(shift: float, sims: int, rng: np.random.Generator, relation: bool) -> float:
    level = 1 - pocock_alpha(3, 6)
    first = Design(confidence=level, interim=True, max_seeds=6, rule="pocock-2")
    final = Design(confidence=level, interim=False, max_seeds=6, rule="pocock-2")
    hits = 0
    for _ in range(sims):
        if relation:
            runs = rng.normal(shift, 1.0, 6).tolist()
            verdict = judge_relation(runs[:3], design=first)["verdict"]
            if verdict == "unresolved":
                verdict = judge_relation(runs, design=final)["verdict"]
            hits += verdict == "holds"
        else:
            runs, claim = rng.normal(0.0, 1.0, 6).tolist(), float(rng.normal(shift, 1.0))
            tolerance = Tolerance(abs=DELTAS[0])
            verdict = judge_value(claim, runs[:3], tolerance, first)["verdict"]
            if verdict == "inconclusive":
                verdict = judge_value(claim, runs, tolerance, final)["verdict"]
            hits += verdict in FAIL
    return hits / sims


def table(title: str, rows: list[tuple[str, list[float]]], head: str) -> str:
    lines = [title, "", f"| {head} | " + " | ".join(f"Δ = {s:g} σ" for s in SHIFTS) + " |"]
    lines.append("|---" * (len(SHIFTS) + 1) + "|")
    lines += [
        f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |" for name, values in rows
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=10_000, help="audits per cell")
    sims = parser.parse_args().sims
    rng = np.random.default_rng(2026)
    for delta in DELTAS:
        values = [
            (f"n = {n}", [value_power(n, s, delta, sims, rng) for s in SHIFTS]) for n in SEEDS
        ]
        if delta == DELTAS[0]:
            values.append(("3 -> 6 (escalate)", [two_look(s, sims, rng, False) for s in SHIFTS]))
        print(table(f"P(not reproduced), value claims, δ = {delta:g} σ", values, "seeds"))
        print()
    relations = [
        (f"n = {n}", [relation_power(n, s, sims, rng) for s in SHIFTS]) for n in SEEDS if n > 1
    ]
    relations.append(("3 -> 6 (escalate)", [two_look(s, sims, rng, True) for s in SHIFTS]))
    print(table("P(holds), relation claims, true difference Δ over σ of a pair", relations,
                "seeds"))  # fmt: skip
    print(f"\n{sims} simulated audits per cell, seed 2026.")


if __name__ == "__main__":
    main()
