"""SLURM's client commands, faked by shell scripts on PATH (unit tests without a cluster).

Each command answers from files in the fake's folder, so a test sets the cluster's answers:
`scontrol.txt` (scontrol show partition -o), `sinfo-<partition>.txt` (sinfo -N lines),
`squeue.txt` (-o), `squeue-O.txt` (-O), `sacct.txt` and `sacct-D.txt` (sacct -D). sbatch
copies the script it is given to `submitted.sh` and answers with job 4242 (or fails with
`sbatch-error.txt` on stderr, or prints `sbatch-out.txt` instead); scancel appends its
arguments to `scancelled.txt`. srun exists (submitit looks for it) and does nothing.
"""

from __future__ import annotations

import stat
from pathlib import Path

PARTITIONS = (
    "PartitionName=cpu Default=YES MaxTime=1-00:00:00 MaxCPUsPerNode=UNLIMITED "
    "MaxMemPerNode=UNLIMITED Nodes=c[1-2] State=UP\n"
    "PartitionName=gpu Default=NO MaxTime=02:00:00 MaxCPUsPerNode=UNLIMITED "
    "MaxMemPerNode=UNLIMITED Nodes=g1,g2 State=UP\n"
    "PartitionName=maint Default=NO MaxTime=UNLIMITED Nodes=m1 State=DOWN\n"
)
NODES = {
    "cpu": "c1|4|16000|(null)|idle|(null)\nc2|8|32000|(null)|drained|(null)\n",
    "gpu": "g1|16|128000|gpu:a100:4(S:0-1)|mixed|a100,ib\ng2|32|256000|gpu:v100:2|down*|v100\n",
    "maint": "m1|4|8000|(null)|idle|(null)\n",
}

SCRIPTS = {
    "sbatch": """
if [ -f "$F/sbatch-error.txt" ]; then cat "$F/sbatch-error.txt" >&2; exit 1; fi
cp "$1" "$F/submitted.sh"
cat "$1" >> "$F/submitted-all.sh"
if [ -f "$F/sbatch-out.txt" ]; then cat "$F/sbatch-out.txt"; exit 0; fi
echo "Submitted batch job 4242"
""",
    "srun": "exit 0\n",
    "scontrol": 'cat "$F/scontrol.txt"\n',
    "sinfo": """
part=""
while [ $# -gt 0 ]; do [ "$1" = "-p" ] && part="$2"; shift; done
if [ -n "$part" ]; then cat "$F/sinfo-$part.txt"; else cat "$F"/sinfo-*.txt; fi
""",
    "squeue": """
for a in "$@"; do [ "$a" = "-O" ] && { cat "$F/squeue-O.txt" 2>/dev/null; exit 0; }; done
cat "$F/squeue.txt" 2>/dev/null; exit 0
""",
    "scancel": 'echo "$@" >> "$F/scancelled.txt"\n',
    "sacct": """
for a in "$@"; do [ "$a" = "-D" ] && { cat "$F/sacct-D.txt" 2>/dev/null; exit 0; }; done
cat "$F/sacct.txt"
""",
}
SACCT = (
    "JobID|State|NodeList\n4242_0|RUNNING|vm\n4242_0.batch|RUNNING|vm\n"
    "4242_[1-2%2]|PENDING|None assigned\n"
)


def install(folder: Path, commands: tuple[str, ...] = tuple(SCRIPTS)) -> Path:
    """Write the fake commands and the default answers into `folder`; returns its bin/."""
    bindir = folder / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name in commands:
        path = bindir / name
        path.write_text(f'#!/bin/sh\nF="{folder}"\n' + SCRIPTS[name])
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    (folder / "scontrol.txt").write_text(PARTITIONS)
    for part, text in NODES.items():
        (folder / f"sinfo-{part}.txt").write_text(text)
    (folder / "sacct.txt").write_text(SACCT)
    return bindir
