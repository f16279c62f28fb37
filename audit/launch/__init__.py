"""Launching runs: the job function, the executors and the wait-and-retry loop.

One module per part, submitit's core/backend split:

- `audit.launch.job`: the job function every executor runs (the only import of runners);
- `audit.launch.core`: the executor interface, `make_executor` and `launch()`;
- `audit.launch.local`: the `debug` and `local` executors;
- `audit.launch.slurm`: the `slurm` executor and what the harness asks SLURM.

The public names stay importable from `audit.launch`.
"""

from audit.launch.core import (
    ACTIVE_STATES,
    EXECUTORS,
    Executor,
    LaunchReport,
    Tracked,
    failed_on_full_disk,
    launch,
    make_executor,
    record_allocations,
)
from audit.launch.job import JobFunction, RunOptions, run_job
from audit.launch.slurm import sacct_states
from audit.store import FINISHED

__all__ = [
    "ACTIVE_STATES",
    "EXECUTORS",
    "FINISHED",
    "Executor",
    "JobFunction",
    "LaunchReport",
    "RunOptions",
    "Tracked",
    "failed_on_full_disk",
    "launch",
    "make_executor",
    "record_allocations",
    "run_job",
    "sacct_states",
]
