"""The documented ranges of numeric flags and values (docs/errors.md, "Ranges").

A value outside its range is bad input (exit 2, one line naming the flag), never a
memory blow-up or a run that cannot end: `--seeds 1000000000` would plan a billion runs,
`--poll inf` would never poll again, `--epochs 1e20` would never finish.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

SEEDS = (1, 100)  # seeds per experiment (--seeds)
SEED = (0, 2**31 - 1)  # one run's seed (--seed, the seed column of a results CSV)
EPOCHS = (1, 10_000)  # epoch budget (--epochs, a claim's experiment, a results CSV)
POLL_S = (0.0, 3600.0)  # seconds between scheduler polls (--poll)
PARALLEL = (1, 256)  # local runs at once (--parallel)
RETRIES = (0, 100)  # resubmissions of a failed job (--retries)
THREADS = (1, 1024)  # torch CPU threads (--threads)
WORKERS = (0, 256)  # data-loader processes (--workers)
SUBSET = (1, 10**9)  # images of a subset (--train-subset, --test-subset)
_MAX_DIGITS = 20  # int() of a longer digit string is slow, and no range here needs it


def parse_int(text: str, low: int, high: int) -> int:
    """`text` as a whole number in [low, high]; ValueError saying the range otherwise."""
    stripped = text.strip()
    digits = stripped.lstrip("+-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_DIGITS:
        raise ValueError(f"{text!r:.40} is not a whole number from {low} to {high}")
    value = int(stripped)
    if not low <= value <= high:
        raise ValueError(f"{value} is outside {low}..{high}")
    return value


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type` for a whole number in [low, high]."""

    def parse(text: str) -> int:
        try:
            return parse_int(text, low, high)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def float_in(low: float, high: float) -> Callable[[str], float]:
    """An argparse `type` for a finite number in [low, high] (no nan, no inf)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r:.40} is not a number") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text!r:.40} is outside {low:g}..{high:g}")
        return value

    return parse
