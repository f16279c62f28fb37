"""SLURM parameters: from flags, or from the `cluster:` section of a YAML config file.

Flags win over the file, the file over the defaults. Keys are checked against an allow-list
(submitit's style: a typo is an error that lists the valid keys, never silently ignored).

    cluster:
      partition: gpu
      account: my-lab
      qos: normal
      time_min: 240          # limit of one job; longer runs are requeued from checkpoints
      gpus_per_node: 1
      cpus_per_task: 8
      mem_gb: 32
      constraint: a100
      array_parallelism: 8   # at most this many array tasks at once
      signal_delay_s: 120    # USR2 this long before the time limit, to checkpoint and requeue
      max_num_timeout: 20    # requeues after time-outs before giving up
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from audit.errors import AuditError, read_utf8
from runners import safe_yaml


@dataclass(frozen=True)
class SlurmParams:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 240
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int | None = None
    constraint: str | None = None
    array_parallelism: int = 16
    signal_delay_s: int = 120
    max_num_timeout: int = 20

    def submitit_parameters(self) -> dict[str, Any]:
        """Keyword arguments of submitit.SlurmExecutor.update_parameters (unset ones left out)."""
        params: dict[str, Any] = {
            "time": self.time_min,
            "gpus_per_node": self.gpus_per_node,
            "cpus_per_task": self.cpus_per_task,
            "array_parallelism": self.array_parallelism,
            "signal_delay_s": self.signal_delay_s,
            "job_name": "nd-audit",
        }
        optional = {
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "constraint": self.constraint,
            "mem": f"{self.mem_gb}GB" if self.mem_gb else None,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        if not self.gpus_per_node:
            # CPU-only clusters (the test cluster) may reject --gpus-per-node=0
            del params["gpus_per_node"]
        return params


MAX_INT = 10**6  # no SLURM count or minute budget here is larger (a typo, or an overflow)
FIELDS = {f.name: f for f in dataclasses.fields(SlurmParams)}
# the annotations are strings (from __future__ import annotations): "int", "str | None", ...
INT_FIELDS = {name for name, f in FIELDS.items() if f.type.split(" | ")[0] == "int"}
STR_FIELDS = {name for name, f in FIELDS.items() if f.type.split(" | ")[0] == "str"}


def load_cluster_section(path: Path | None) -> dict[str, Any]:
    """The `cluster:` mapping of a YAML config file ({} without a file)."""
    if path is None:
        return {}
    text = read_utf8(Path(path), "the config file", limit=2**20)
    try:
        data = safe_yaml.load(text) or {}
    except (yaml.YAMLError, safe_yaml.YamlLimitError) as exc:
        raise AuditError(
            f"{path}:{safe_yaml.error_line(exc)}: not valid YAML ({safe_yaml.problem(exc)}); "
            "fix the config file"
        ) from None
    section = data.get("cluster", {}) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise AuditError(f"{path}: `cluster` must be a mapping of SLURM parameters")
    return section


def slurm_params(
    config: dict[str, Any], flags: dict[str, Any], where: str = "config"
) -> SlurmParams:
    """Merge file values and flags (None = not given) into validated parameters."""
    unknown = sorted(_short(k) if not isinstance(k, str) else k for k in set(config) - set(FIELDS))
    if unknown:
        raise AuditError(
            f"{where}: unknown cluster key(s) {', '.join(unknown)}; valid keys: {', '.join(FIELDS)}"
        )
    merged = {**config, **{k: v for k, v in flags.items() if v is not None}}
    for key, value in merged.items():
        if value is None:
            continue
        if key in INT_FIELDS and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT
        ):
            raise AuditError(
                f"{where}: cluster.{key} must be a non-negative integer up to {MAX_INT}, "
                f"got {_short(value)}"
            )
        if key in STR_FIELDS and not isinstance(value, str):
            raise AuditError(f"{where}: cluster.{key} must be a string, got {_short(value)}")
    if merged.get("time_min") == 0 or merged.get("array_parallelism") == 0:
        raise AuditError(f"{where}: time_min and array_parallelism must be at least 1")
    params = SlurmParams(**merged)
    _require_training_time(params, where)
    return params


def _short(value: Any) -> str:
    """A config value quoted in an error, cut short (a value may be a huge structure)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# slurmctld checks time limits every 30 s and sends the --signal warning at the first check
# where less than signal_delay_s + 30 s remain, so it can come that much before the limit.
SLURM_CHECK_INTERVAL_S = 30


def _require_training_time(params: SlurmParams, where: str) -> None:
    """A job whose warning signal comes at its start would requeue forever without training."""
    limit_s = params.time_min * 60
    if params.signal_delay_s + SLURM_CHECK_INTERVAL_S >= limit_s:
        raise AuditError(
            f"{where}: cluster.signal_delay_s ({params.signal_delay_s} s) leaves no training time "
            f"in cluster.time_min ({params.time_min} min): SLURM may send the requeue signal up "
            f"to signal_delay_s + {SLURM_CHECK_INTERVAL_S} s before the limit; use a time_min of "
            f"at least {(params.signal_delay_s + SLURM_CHECK_INTERVAL_S) // 60 + 1} min or a "
            f"signal_delay_s below {limit_s - SLURM_CHECK_INTERVAL_S} s"
        )
