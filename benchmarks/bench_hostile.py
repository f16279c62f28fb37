"""Benchmark of hostile inputs: time and peak memory until `audit` refuses them.

Each input (a YAML alias bomb, a merge-key bomb, 100,000-deep nesting, as a claims file and
as a cluster config) is given to a fresh `audit` process; the script prints its exit code,
wall time and peak resident memory (targets from issue 10: refused within 1 s and 200 MB,
in one line on stderr). The well-formed claims.yaml is measured too, as the reference.

Run: .venv/bin/python benchmarks/bench_hostile.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile import inputs  # noqa: E402 - the corpus's own builders


def measure(args: list[str]) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS in MB, last stderr line) of `audit ARGS`, the
    memory of that one process (os.wait4's rusage)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "audit.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=ROOT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().decode("utf-8", errors="replace").strip().splitlines()
    return proc.returncode, wall, usage.ru_maxrss / 1024, (lines or [""])[-1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = {
            "claims.yaml (reference)": ["validate", str(ROOT / "claims.yaml")],
        }
        for name, text in {
            "alias bomb": inputs.alias_bomb(),
            "merge-key bomb": inputs.merge_bomb(),
            "100,000-deep nesting": inputs.deep_flow(),
        }.items():
            claims = folder / f"{len(cases)}.yaml"
            claims.write_text(text, encoding="utf-8")
            cases[f"claims: {name}"] = ["validate", str(claims)]
            config = folder / f"{len(cases)}-config.yaml"
            config.write_text("cluster:\n  partition: x\n" + text, encoding="utf-8")
            cases[f"config: {name}"] = [
                *("run", "--claims", str(ROOT / "claims.yaml"), "--profile", "ci"),
                *("--executor", "slurm", "--dry-run", "--config", str(config)),
                *("--store", str(folder / "store")),
            ]
        print(f"{'input':<34} exit  wall s  peak MB  last stderr line")
        for name, args in cases.items():
            code, wall, peak, line = measure(args)
            print(f"{name:<34} {code:>4}  {wall:6.2f}  {peak:7.1f}  {line[:70]}")


if __name__ == "__main__":
    main()
