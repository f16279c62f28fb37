"""How long the report's HTML takes for a large audit: 10,000 claims, 3 seeds each.

    .venv/bin/python benchmarks/bench_report.py [--claims 10000] [--seeds 3] [--pdf]

Synthetic claims laid out like Table 1 (datasets x architectures x BN/ND x epochs), a
results table with one run per claim and seed, the real comparator, then the report model
and its HTML, timed separately (the target: model + HTML <= 10 s; the PDF is excluded and
only timed with --pdf). Prints one line per stage and the HTML's size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from audit import report
from audit.claims import Claim, ClaimSet, Tolerance
from audit.compare import compare

COLUMNS = [(norm, epochs) for epochs in (1, 20, 100) for norm in ("bn", "nd")]
DATASETS = ("cifar10", "cifar100")


def synthetic_claims(count: int) -> ClaimSet:
    claims = []
    archs = -(-count // (len(DATASETS) * len(COLUMNS)))
    for arch_index in range(archs):
        for dataset in DATASETS:
            for norm, epochs in COLUMNS:
                if len(claims) == count:
                    break
                claimed = 50.0 + (arch_index % 40) + (5.0 if norm == "nd" else 0.0)
                claims.append(
                    Claim(
                        id=f"table1.{dataset}.arch{arch_index:05d}.{norm}{epochs}",
                        group="table1",
                        type="value",
                        metric="test_top1",
                        experiment={
                            "kind": "classify",
                            "dataset": dataset,
                            "arch": f"arch{arch_index:05d}",
                            "norm": norm,
                            "epochs": epochs,
                        },
                        claimed=claimed,
                        claimed_text=f"{claimed:.2f}",
                        tolerance=Tolerance(abs=1.0),
                        provenance={"table": "Table 1", "transcribed_from": ["S1"]},
                        note="synthetic <claim> for the benchmark",
                    )
                )
    return ClaimSet(claims=claims)


def synthetic_results(claims: ClaimSet, seeds: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for claim in claims.claims:
        for seed in range(seeds):
            rows.append(
                {
                    "run_id": f"{claim.id}-s{seed}",
                    "status": "done",
                    "reason": None,
                    **claim.experiment,
                    "seed": seed,
                    "deviations": [],
                    "test_top1": claim.claimed + rng.normal(0, 0.8),
                }
            )
    table = pd.DataFrame(rows)
    table["epochs"] = table["epochs"].astype("Int64")
    table["seed"] = table["seed"].astype("Int64")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pdf", action="store_true", help="also time the PDF (slow)")
    args = parser.parse_args()

    claims = synthetic_claims(args.claims)
    results = synthetic_results(claims, args.seeds)
    start = time.perf_counter()
    comparison = compare(claims, results)
    compared = time.perf_counter()
    model = report.build_model(claims, comparison, results, None, command="bench")
    built = time.perf_counter()
    html = report.render_html(model)
    rendered = time.perf_counter()
    print(f"claims={len(claims.claims)} runs={len(results)}")
    print(f"compare:          {compared - start:6.2f} s (not part of the report's budget)")
    print(f"report model:     {built - compared:6.2f} s")
    print(f"HTML (jinja2):    {rendered - built:6.2f} s")
    print(f"model + HTML:     {rendered - compared:6.2f} s  (target <= 10 s)")
    print(f"HTML size:        {len(html.encode()) / 1e6:6.2f} MB")
    if args.pdf:
        with tempfile.TemporaryDirectory() as tmp:
            report.write_pdf(html, Path(tmp) / "report.pdf")
        print(f"PDF (WeasyPrint): {time.perf_counter() - rendered:6.2f} s")


if __name__ == "__main__":
    main()
