"""SLURM parameters: from flags, or from the `cluster:` section of a YAML config file.

The config file's keys are the flags' names (`--array-parallelism` is `array_parallelism`).
Flags win over the file, the file over the defaults; `sbatch` and `setup` lines of the file
come first, the flags' after them (a flag's `--sbatch KEY=...` replaces the file's KEY).
Values are written the way SLURM users write them, and every value that reaches the job
script is checked here, at the boundary: no control characters, SLURM's own character sets
for names, one error naming the flag or the config key.

    cluster:
      partition: gpu
      account: my-lab
      qos: normal
      time: "4:00:00"        # minutes, or MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
      gpus: 1                # per job; default: 1 where the partition has GPUs and a run needs one
      cpus: 8                # per job; default: what the runs need, at most a node's CPUs
      mem: 32G               # K/M/G/T; default: what the runs need, at most a node's memory
      constraint: a100
      cpu_partition: cpu     # CPU-only runs (MLP, kernels) go here, without a GPU
      array_parallelism: 8   # at most this many array tasks at once
      runs_per_gpu: 4        # runs sharing one array task (default: from the runs' cost)
      sbatch:                # extra #SBATCH directives: KEY=VALUE (or KEY for a bare flag)
        - gres=gpu:a100:1
        - exclude=node[01-02]
      setup:                 # shell lines run before the job (module loads, conda activation)
        - module load cuda/12.1
      signal_delay_s: 120    # USR2 this long before the time limit, to checkpoint and requeue
      max_num_timeout: 20    # requeues after time-outs before giving up

Unset `time`, `gpus`, `cpus`, `mem` and `runs_per_gpu` are chosen by the preflight
(audit/slurm_preflight.py) from what the runs need and what the partition offers.
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audit.errors import AuditError, read_utf8
from runners import safe_yaml

DEFAULT_TIME_MIN = 240
# The old keys, refused with the new name (the keys are the flags' names now).
RENAMED = {
    "time_min": "time (minutes, or SLURM's forms such as 4:00:00)",
    "gpus_per_node": "gpus",
    "cpus_per_task": "cpus",
    "mem_gb": "mem (a SLURM size such as 32G)",
}
# Character sets of the names SLURM accepts (partition lists may be comma-separated).
NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*")
CONSTRAINT_RE = re.compile(r"[A-Za-z0-9_.\-&|,*\[\]()!:]+")
HOSTLIST_RE = re.compile(r"[A-Za-z0-9_.\-\[\],]+")
GRES_RE = re.compile(r"[A-Za-z0-9_.\-:,/]+")
# Any other directive's value: no quotes, backslashes, $, backticks, ; < > (nothing a shell or
# sbatch's own #SBATCH parser could read as more than one value).
GENERIC_VALUE_RE = re.compile(r"[A-Za-z0-9_.,:=+@%/\-\[\]*!|&()~ ]+")
SBATCH_KEY_RE = re.compile(r"[a-z][a-z0-9-]*")
SBATCH_VALUE_SETS = {
    "reservation": NAME_RE,
    "exclude": HOSTLIST_RE,
    "nodelist": HOSTLIST_RE,
    "gres": GRES_RE,
    "licenses": GRES_RE,
    "clusters": NAME_RE,
    "wckey": NAME_RE,
}
# Directives with a flag of their own, and those the harness writes itself.
SBATCH_OWN_FLAGS = {
    "partition": "--partition",
    "p": "--partition",
    "account": "--account",
    "A": "--account",
    "qos": "--qos",
    "q": "--qos",
    "time": "--time",
    "t": "--time",
    "gpus-per-node": "--gpus",
    "gpus": "--gpus",
    "cpus-per-task": "--cpus",
    "c": "--cpus",
    "mem": "--mem",
    "constraint": "--constraint",
    "C": "--constraint",
}
SBATCH_MANAGED = (
    "array",
    "output",
    "error",
    "open-mode",
    "signal",
    "job-name",
    "wrap",
    "parsable",
    "nodes",
    "ntasks-per-node",
)
TIME_FORMS = "minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"


@dataclass(frozen=True)
class SlurmParams:
    """Validated SLURM parameters; None for time/gpus/cpus/mem means "let the preflight
    choose". `origins` names where each given value came from (`--cpus`, or
    `cluster.cpus in FILE`), for error messages."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time_min: int | None = None
    gpus: int | None = None
    cpus: int | None = None
    mem_mb: int | None = None
    array_parallelism: int = 16
    signal_delay_s: int = 120
    max_num_timeout: int = 20
    sbatch: tuple[tuple[str, str | bool], ...] = ()
    setup: tuple[str, ...] = ()
    cpu_partition: str | None = None
    # runs trained concurrently in one array task (audit/launch/pack.py); None: the preflight
    # chooses from the runs' estimated cost
    runs_per_gpu: int | None = None
    origins: dict[str, str] = field(default_factory=dict, compare=False)
    # the resolved request of the CPU-only runs where --cpu-partition sends them elsewhere
    cpu_only: SlurmParams | None = field(default=None, compare=False)
    # One run on several GPUs: its job has one task per process on one node (DDP); `cpus`
    # and `mem` are then per process (docs/cluster.md "One run on several GPUs").
    tasks_per_node: int = 1
    # process count -> the preflight's resolved request for the jobs of such runs
    task_requests: tuple[tuple[int, SlurmParams], ...] = field(default=(), compare=False)

    def origin(self, name: str) -> str:
        """`--cpus` or `cluster.cpus in FILE`: where a value came from (flag name if unset)."""
        return self.origins.get(name, FLAG_OF.get(name, name))

    def with_values(self, **values: Any) -> SlurmParams:
        return dataclasses.replace(self, **values)

    @property
    def mem(self) -> str | None:
        return format_mem(self.mem_mb) if self.mem_mb else None

    def submitit_parameters(self) -> dict[str, Any]:
        """Keyword arguments of submitit.SlurmExecutor.update_parameters (unset ones left out).
        The preflight fills time/gpus/cpus; here unset ones fall back to fixed defaults."""
        params: dict[str, Any] = {
            "time": self.time_min or DEFAULT_TIME_MIN,
            "cpus_per_task": self.cpus or 1,
            "array_parallelism": self.array_parallelism,
            "signal_delay_s": self.signal_delay_s,
            "job_name": "nd-audit",
        }
        optional = {
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "constraint": self.constraint,
            "mem": self.mem,
            # CPU-only clusters (the test cluster) reject any GPU request, even of 0 GPUs
            "gpus_per_node": self.gpus or None,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        if self.tasks_per_node > 1:  # the ranks of one run: one fails, srun ends them all
            params["ntasks_per_node"] = self.tasks_per_node
            params["srun_args"] = ["--kill-on-bad-exit=1"]
        if self.sbatch:
            params["additional_parameters"] = dict(self.sbatch)
        if self.setup:
            params["setup"] = list(self.setup)
        return params


# config key -> (flag, SlurmParams field)
KEYS = {
    "partition": ("--partition", "partition"),
    "account": ("--account", "account"),
    "qos": ("--qos", "qos"),
    "constraint": ("--constraint", "constraint"),
    "cpu_partition": ("--cpu-partition", "cpu_partition"),
    "time": ("--time", "time_min"),
    "gpus": ("--gpus", "gpus"),
    "cpus": ("--cpus", "cpus"),
    "mem": ("--mem", "mem_mb"),
    "array_parallelism": ("--array-parallelism", "array_parallelism"),
    "runs_per_gpu": ("--runs-per-gpu", "runs_per_gpu"),
    "sbatch": ("--sbatch", "sbatch"),
    "setup": ("--setup", "setup"),
    "signal_delay_s": ("signal_delay_s", "signal_delay_s"),
    "max_num_timeout": ("max_num_timeout", "max_num_timeout"),
}
FLAG_OF = {fieldname: flag for flag, fieldname in KEYS.values()}
NAME_KEYS = ("partition", "account", "qos", "cpu_partition")
COUNT_KEYS = (
    "gpus",
    "cpus",
    "array_parallelism",
    "signal_delay_s",
    "max_num_timeout",
    "runs_per_gpu",
)
AT_LEAST_ONE = ("array_parallelism", "runs_per_gpu")


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
    """Merge file values (`where` names the file) and flags (None = not given) into
    validated parameters. Flag keys are the config keys (`time`, `sbatch`, ...)."""
    config = {str(k).replace("-", "_"): v for k, v in config.items()}
    _refuse_unknown_keys(config, where)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    given = [(k, v, f"cluster.{k} in {where}") for k, v in config.items()]
    given += [(k, v, KEYS[k][0]) for k, v in flags.items()]
    for key, value, origin in given:
        if value is None or (key in ("sbatch", "setup") and not value):
            continue
        parsed = _parse(key, value, origin)
        if key == "setup" and "setup" in values:
            parsed = values["setup"] + parsed  # the file's lines, then the flags'
        if key == "sbatch" and "sbatch" in values:
            parsed = tuple({**dict(values["sbatch"]), **dict(parsed)}.items())
        values[key], origins[KEYS[key][1]] = parsed, origin
    params = SlurmParams(**{KEYS[k][1]: v for k, v in values.items()}, origins=origins)
    if params.time_min is not None:
        require_training_time(params)
    return params


def _refuse_unknown_keys(config: dict[str, Any], where: str) -> None:
    for key in config:
        if key in RENAMED:
            raise AuditError(
                f"{where}: cluster.{key} is now called {RENAMED[key]}: the config keys are "
                "the flags' names; rename the key"
            )
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise AuditError(
            f"{where}: unknown cluster key(s) {', '.join(unknown)}; valid keys: {', '.join(KEYS)}"
        )


def _parse(key: str, value: Any, origin: str) -> Any:
    """One value, checked and converted (time -> minutes, mem -> MB, lists -> tuples)."""
    if key == "time":
        return parse_time(value, origin)
    if key == "mem":
        return parse_mem(value, origin)
    if key in COUNT_KEYS:
        return _count(value, origin, minimum=1 if key in AT_LEAST_ONE else 0)
    if key == "sbatch":
        return parse_sbatch(value, origin)
    if key == "setup":
        return parse_setup(value, origin)
    text = _text(value, origin)
    pattern = CONSTRAINT_RE if key == "constraint" else NAME_RE
    if not pattern.fullmatch(text):
        raise AuditError(
            f"{origin}: {text!r} is not a valid SLURM {key.replace('cpu_', '')} name "
            f"(allowed: letters, digits and {_specials(pattern)})"
        )
    return text


def _text(value: Any, origin: str) -> str:
    if not isinstance(value, str) or isinstance(value, bool):
        raise AuditError(f"{origin} must be a string, got {_short(value)}")
    check_no_control(value, origin)
    if not value.strip():
        raise AuditError(f"{origin} is empty")
    return value.strip()


def check_no_control(text: str, origin: str) -> None:
    """Refuse control and format characters (newline, CR, NUL, ESC, bidi overrides...): in a
    job script a newline would end the #SBATCH header and start a shell line."""
    for index, char in enumerate(text):
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            raise AuditError(
                f"{origin}: control character {char!r} at position {index}; "
                "values must be one line of printable text"
            )


def _specials(pattern: re.Pattern[str]) -> str:
    return " ".join(sorted(set(pattern.pattern) & set("_.-&|,*[]()!:=+@%/~")))


def _count(value: Any, origin: str, minimum: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise AuditError(f"{origin} must be an integer of at least {minimum}, got {_short(value)}")
    if value > 100_000:
        raise AuditError(f"{origin}: {value} is beyond any cluster; give a real count")
    return value


TIME_RE = re.compile(
    r"(?:(?P<d>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?)"  # D-HH[:MM[:SS]]
    r"|(?:(?P<h>\d+):(?P<hm>\d+):(?P<hs>\d+))"  # HH:MM:SS
    r"|(?:(?P<m>\d+)(?::(?P<ms>\d+))?)"  # MM[:SS]
)


def parse_time(value: Any, origin: str = "--time") -> int:
    """Whole minutes (seconds rounded up) from minutes or SLURM's time forms."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _text(value, origin) if isinstance(value, str) else None
    match = TIME_RE.fullmatch(text) if text else None
    if not match:
        raise AuditError(f"{origin}: {value!r} is not a time; use {TIME_FORMS} (e.g. 4:00:00)")
    parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    seconds = (
        parts.get("d", 0) * 86400
        + (parts.get("dh", 0) + parts.get("h", 0)) * 3600
        + (parts.get("dm", 0) + parts.get("hm", 0) + parts.get("m", 0)) * 60
        + parts.get("ds", 0)
        + parts.get("hs", 0)
        + parts.get("ms", 0)
    )
    minutes = math.ceil(seconds / 60)
    if not 1 <= minutes <= 365 * 24 * 60:
        raise AuditError(f"{origin}: {value!r} must be between 1 minute and 365 days")
    return minutes


MEM_RE = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT])B?", re.IGNORECASE)
MEM_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_mem(value: Any, origin: str = "--mem") -> int:
    """Megabytes from a SLURM size (32G, 32000M, 1T). A bare number is refused: SLURM would
    read it as megabytes, where the old flag meant gigabytes."""
    text = _text(value, origin) if isinstance(value, str) else str(value)
    match = MEM_RE.fullmatch(text)
    if not match:
        raise AuditError(
            f"{origin}: {value!r} is not a SLURM size; give a unit, e.g. 32G, 32000M or 1T "
            "(SLURM reads a bare number as megabytes)"
        )
    mb = math.ceil(float(match["n"]) * MEM_MB[match["unit"].upper()])
    if not 1 <= mb <= 64 * 1024 * 1024:
        raise AuditError(f"{origin}: {value!r} must be between 1M and 64T")
    return mb


def format_mem(mb: int) -> str:
    """SLURM's size: 1T, 32G or 21695M."""
    if mb % (1024 * 1024) == 0:
        return f"{mb // (1024 * 1024)}T"
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"


def parse_sbatch(value: Any, origin: str = "--sbatch") -> tuple[tuple[str, str | bool], ...]:
    """KEY=VALUE directives (a list of them, or a mapping in the config file)."""
    items = list(value.items()) if isinstance(value, dict) else None
    if items is None:
        entries = [value] if isinstance(value, str) else value
        if not isinstance(entries, list | tuple):
            raise AuditError(f"{origin} must be a list of KEY=VALUE strings, got {_short(value)}")
        items = [_split_directive(entry, origin) for entry in entries]
    out = {}
    for key, val in items:
        key = _directive_key(key, origin)
        out[key] = True if val is True or val is None else _directive_value(key, val, origin)
    return tuple(out.items())


def _split_directive(entry: Any, origin: str) -> tuple[str, Any]:
    text = _text(entry, origin)
    key, eq, val = text.partition("=")
    return key.strip().lstrip("-"), (val.strip() if eq else True)


def _directive_key(key: Any, origin: str) -> str:
    key = str(key).strip().lstrip("-").replace("_", "-")
    check_no_control(key, origin)
    if key in SBATCH_OWN_FLAGS:
        raise AuditError(f"{origin}: {key} has a flag of its own; use {SBATCH_OWN_FLAGS[key]}")
    if key in SBATCH_MANAGED:
        raise AuditError(f"{origin}: #SBATCH --{key} is written by the harness itself")
    if not SBATCH_KEY_RE.fullmatch(key):
        raise AuditError(
            f"{origin}: {key!r} is not an sbatch option name (lower-case letters, digits, -); "
            "write KEY=VALUE, e.g. --sbatch exclude=node01"
        )
    return key


def _directive_value(key: str, value: Any, origin: str) -> str:
    text = _text(str(value) if isinstance(value, int | float) else value, f"{origin} {key}")
    pattern = SBATCH_VALUE_SETS.get(key, GENERIC_VALUE_RE)
    if not pattern.fullmatch(text):
        raise AuditError(
            f"{origin}: {key}={text!r} holds characters sbatch's {key} does not take "
            f"(allowed: letters, digits and {_specials(pattern)})"
        )
    return text


def parse_setup(value: Any, origin: str = "--setup") -> tuple[str, ...]:
    """Shell lines run before the job, one command per line (the user's own shell)."""
    lines = [value] if isinstance(value, str) else value
    if not isinstance(lines, list | tuple):
        raise AuditError(f"{origin} must be a list of shell lines, got {_short(value)}")
    out = []
    for line in lines:
        text = _text(line, origin)
        if text.startswith("#SBATCH"):
            raise AuditError(f"{origin}: {text!r}: directives go in --sbatch KEY=VALUE")
        if len(text) > 2000:
            raise AuditError(f"{origin}: a setup line of {len(text)} characters; at most 2000")
        out.append(text)
    return tuple(out)


def _short(value: Any) -> str:
    """A config value quoted in an error, cut short (a value may be a huge structure)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# slurmctld checks time limits every 30 s and sends the --signal warning at the first check
# where less than signal_delay_s + 30 s remain, so it can come that much before the limit.
SLURM_CHECK_INTERVAL_S = 30


def require_training_time(params: SlurmParams) -> None:
    """A job whose warning signal comes at its start would requeue forever without training."""
    limit_s = (params.time_min or DEFAULT_TIME_MIN) * 60
    if params.signal_delay_s + SLURM_CHECK_INTERVAL_S >= limit_s:
        raise AuditError(
            f"{params.origin('signal_delay_s')} ({params.signal_delay_s} s) leaves no training "
            f"time in {params.origin('time_min')} ({params.time_min} min): SLURM may send the "
            f"requeue signal up to signal_delay_s + {SLURM_CHECK_INTERVAL_S} s before the "
            f"limit; use a time of at least "
            f"{(params.signal_delay_s + SLURM_CHECK_INTERVAL_S) // 60 + 1} min or a "
            f"signal_delay_s below {limit_s - SLURM_CHECK_INTERVAL_S} s"
        )
