"""`audit train`: one classification run into a run directory, outside any plan or store.

    audit train --arch vgg16 --norm nd --dataset cifar10 --epochs 1 --out runs/try

The spec is built from the options and validated before torch is imported, so a typo
costs no start-up time. Progress goes to stderr; the last line on stdout is the result.
Exit code 0 when the run is done, 1 when it diverged, 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "train one classification run (BN / ND / MLP) into a run directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Choices come from the catalogue and the spec module at parse time; neither imports torch.
    from audit import limits
    from audit.limits import int_in
    from runners.catalogue import ARCHS, DATASETS, NORMS
    from runners.specs.classify import LR_SCHEDULES, ND_HEADS

    spec = parser.add_argument_group("experiment (part of the spec and the run id)")
    spec.add_argument("--arch", required=True, help=", ".join(ARCHS))
    spec.add_argument("--norm", required=True, choices=tuple(NORMS))
    spec.add_argument("--dataset", required=True, choices=tuple(DATASETS))
    spec.add_argument("--epochs", required=True, type=int_in(*limits.EPOCHS))
    spec.add_argument("--seed", type=int_in(*limits.SEED), default=0)
    spec.add_argument(
        "--train-subset",
        type=int_in(*limits.SUBSET),
        default=None,
        metavar="N",
        help="first N training images only (a recorded deviation)",
    )
    spec.add_argument(
        "--test-subset",
        type=int_in(*limits.SUBSET),
        default=None,
        metavar="N",
        help="first N test images only (a recorded deviation)",
    )
    spec.add_argument(
        "--nd-head",
        choices=ND_HEADS,
        default=None,
        help="classifier head of ND runs (default: the authors' HEAD, delinear)",
    )
    spec.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=None,
        help="default: cosine, stepped per iteration (the authors')",
    )
    spec.add_argument(
        "--allow-tf32",
        action="store_true",
        help="allow TF32 matmuls/convolutions (default off, docs/method.md#precision)",
    )

    run = parser.add_argument_group("execution (not part of the spec)")
    run.add_argument("--out", required=True, type=Path, help="run directory (resumed if it exists)")
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="dataset directory (default: $AUDIT_DATA_DIR, else ~/.cache/nd-audit/data)",
    )
    run.add_argument(
        "--download",
        action="store_true",
        help="download missing data with torchvision (needs internet)",
    )
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument(
        "--workers",
        type=int_in(*limits.WORKERS),
        default=None,
        metavar="N",
        help="data-loader worker processes (default: 0 on the CPU, up to 16 on a GPU)",
    )
    run.add_argument(
        "--threads",
        type=int_in(*limits.THREADS),
        default=None,
        metavar="N",
        help="torch CPU threads (default: torch's; 1 is fastest on a busy shared CPU)",
    )
    run.add_argument(
        "--unverified-data",
        action="store_true",
        help="skip the CIFAR md5 check (synthetic/test data only; logged loudly)",
    )


def build_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields the options set; everything else keeps the protocol's default."""
    spec: dict[str, Any] = {
        "kind": "classify",
        "arch": args.arch,
        "norm": args.norm,
        "dataset": args.dataset,
        "epochs": args.epochs,
        "seed": args.seed,
        "train_subset": args.train_subset,
        "test_subset": args.test_subset,
        "allow_tf32": args.allow_tf32,
    }
    if args.lr_schedule is not None:
        spec["lr_schedule"] = args.lr_schedule
    if args.nd_head is not None:
        spec["nd"] = {"head": args.nd_head}
    return spec


def make_out_dir(path: Path) -> None:
    """Create the run directory `--out` names (before torch loads); a path that cannot be one
    is a RunnerInputError."""
    from runners.errors import RunnerInputError

    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunnerInputError(
            f"--out {path}: cannot create the run directory ({exc.strerror or exc}); "
            "choose another path"
        ) from None


def main(args: argparse.Namespace) -> int:
    from runners.errors import RunnerInputError
    from runners.specs.classify import ClassifySpec

    spec = build_spec(args)
    ClassifySpec.from_dict(spec)  # bad fields (arch, norm, dataset...) fail before torch loads
    if args.workers is not None and args.workers < 0:
        raise RunnerInputError(f"--workers must be 0 or more, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise RunnerInputError(f"--threads must be at least 1, got {args.threads}")
    make_out_dir(args.out)

    from runners.classify import run, summary  # imports torch

    try:
        result = _train(run, spec, args)
    except OSError as exc:
        from audit.errors import disk_full_error, is_disk_full

        if is_disk_full(exc):  # the last checkpoint is whole: a rerun resumes from it
            raise disk_full_error(args.out) from None
        raise
    print(f"{result.status}: {summary(result)}", flush=True)
    return 0 if result.status == "done" else 1


def _train(run: Any, spec: dict[str, Any], args: argparse.Namespace) -> Any:
    return run(
        spec,
        args.out,
        data_dir=args.data_dir,
        device=args.device,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        verify_data=not args.unverified_data,
        num_workers=args.workers,
        download=args.download,
        threads=args.threads,
    )
