"""Runner kinds by name. The harness reaches runners only through this table.

Each entry names a function `run(spec: dict, run_dir: Path, *, data_dir: Path | None,
device: str | None, log: Callable[[str], None] | None) -> RunResult`, imported on
first use so that importing this module does not import torch. A runner:
- writes spec.yaml, provenance.json, metrics.jsonl, checkpoint.pt, log.txt, and
  result.json last (runners.rundir);
- resumes from checkpoint.pt when one exists in run_dir;
- raises RunnerInputError for bad input (e.g. missing data) before training starts.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from runners.errors import RunnerInputError

RUNNERS = {
    "classify": "runners.classify:run",
    "kernels": "runners.kernels:run",
}


def get_runner(kind: str) -> Callable[..., Any]:
    """The run function for `kind` (imported now, which may import torch)."""
    try:
        target = RUNNERS[kind]
    except KeyError:
        raise RunnerInputError(
            f"unknown runner kind {kind!r}; known kinds: {', '.join(sorted(RUNNERS))}"
        ) from None
    module_name, _, attr = target.partition(":")
    return getattr(import_module(module_name), attr)
