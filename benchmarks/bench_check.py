"""Benchmark of `audit check` end to end and of the `audit` start-up time.

Generates, in a temporary directory, a claims file of 10,000 value claims (5 datasets x 10
architectures x 2 norms x 100 epoch budgets, laid out as table blocks like claims.yaml) and
a results CSV with 3 seeds per claim (30,000 rows), then times, as subprocesses:
- `audit check --claims ... --results ...` (targets: at most 2 s), with JUnit and markdown;
- `audit --help` and `audit check --help` (target: at most 1 s; they must not import torch).

Run: .venv/bin/python benchmarks/bench_check.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("cifar10", "cifar100", "mnist", "fashion-mnist", "imagenet")
ARCHS = ("vgg16", "resnet18", "preact", "densenet121", "resnext29", "mobilev2", "dpn",
         "pnasnetA", "senet", "efficient")  # fmt: skip
NORMS = ("bn", "nd")
EPOCHS = range(1, 101)
SEEDS = 3


def write_claims(path: Path) -> int:
    columns = [f"{norm.upper()}{e}" for e in EPOCHS for norm in NORMS]
    lines = ["schema_version: 1", "tolerances:", "  synthetic: {abs: 1.0}", "tables:"]
    rng = random.Random(0)
    for dataset in DATASETS:
        lines += [
            f"  - id: synth.{dataset}",
            "    group: synthetic",
            "    metric: test_top1",
            f"    experiment: {{kind: classify, dataset: {dataset}}}",
            f"    layout: [arch, {', '.join(columns)}]",
            "    columns:",
        ]
        lines += [f"      {c}: {{norm: {c[:2].lower()}, epochs: {c[2:]}}}" for c in columns]
        lines.append("    rows:")
        for arch in ARCHS:
            values = ", ".join(f"{rng.uniform(10, 95):.2f}" for _ in columns)
            lines.append(f"      - [{arch}, {values}]")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(DATASETS) * len(ARCHS) * len(columns)


def write_results(path: Path) -> int:
    rng = random.Random(1)
    rows = ["dataset,arch,norm,epochs,seed,test_top1"]
    for dataset in DATASETS:
        for arch in ARCHS:
            for norm in NORMS:
                for epochs in EPOCHS:
                    for seed in range(SEEDS):
                        value = f"{rng.uniform(10, 95):.2f}"
                        rows.append(f"{dataset},{arch},{norm},{epochs},{seed},{value}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return len(rows) - 1


def timed(command: list[str], ok_codes: tuple[int, ...] = (0, 1)) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one subprocess run.

    CPU time is reported too because on a shared machine the wall time mostly measures
    the other processes; the CPU time is what the command itself costs.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode not in ok_codes:
        raise SystemExit(f"{' '.join(command)} exited {out.returncode}:\n{out.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def report(name: str, samples: list[tuple[float, float]], target: float | None) -> None:
    wall = statistics.median(s[0] for s in samples)
    cpu = statistics.median(s[1] for s in samples)
    best = min(s[0] for s in samples)
    line = f"{name:<38} wall median {wall:6.3f} s (best {best:6.3f})  CPU {cpu:6.3f} s"
    if target is not None:
        # On a loaded machine the wall time is inflated; the CPU time is the fair figure.
        verdict = "ok" if best <= target else "wall OVER"
        if best > target:
            verdict += f", CPU {'ok' if cpu <= target else 'OVER'}"
        line += f"  target {target:g} s: {verdict}"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    audit = [sys.executable, "-m", "audit.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        claims, results = tmp_dir / "claims.yaml", tmp_dir / "results.csv"
        n_claims, n_rows = write_claims(claims), write_results(results)
        print(f"synthetic input: {n_claims} claims, {n_rows} result rows ({SEEDS} seeds each)")
        check = [*audit, "check", "--claims", str(claims), "--results", str(results)]
        outputs = ["--junit", str(tmp_dir / "junit.xml"), "--markdown", str(tmp_dir / "s.md")]
        startup = [*audit, "--help"]
        import_only = [sys.executable, "-c", "pass"]
        runs = {
            "python start-up alone (reference)": (import_only, None),
            "audit --help": (startup, 1.0),
            "audit check --help": ([*audit, "check", "--help"], 1.0),
            "audit check (10k claims x 3 seeds)": (check, 2.0),
            "audit check + --junit + --markdown": ([*check, *outputs], 2.0),
            "audit check --json": ([*check, "--json"], 2.0),
        }
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        for name, (command, target) in runs.items():
            report(name, [timed(command) for _ in range(args.repeat)], target)


if __name__ == "__main__":
    main()
