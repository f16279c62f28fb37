"""`audit kernels`: first-layer deconvolution kernels and their centre-surround score.

    audit kernels --out runs/kernels                      # offline scikit-image photographs
    audit kernels --out runs/imagenet --source imagenet --images /data  # <data>/imagenet/val
    audit kernels --out runs/photos --source folder --images ~/photos
    audit kernels --out runs/ns5 --isqrt newton_schulz --n-iter 5

The spec is validated before torch is imported. The run directory gets spec.yaml,
provenance.json, kernels.npz, kernels.svg, metrics.jsonl, log.txt and result.json; stdout
gets the score and the per-channel numbers. Exit code 0 when done, 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "compute first-layer deconvolution kernels and their centre-surround score"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from runners.specs.kernels import ISQRT, SOURCES

    spec = parser.add_argument_group("experiment (part of the spec and the run id)")
    spec.add_argument("--source", choices=SOURCES, default="skimage", help="default: skimage")
    spec.add_argument(
        "--n-images",
        type=int,
        default=None,
        metavar="N",
        help="images to use (default: every skimage tile; 1024, the paper's, otherwise)",
    )
    spec.add_argument("--kernel-size", type=int, default=5, metavar="K", help="odd; default 5")
    spec.add_argument("--isqrt", choices=ISQRT, default="exact", help="default: exact (eigh)")
    spec.add_argument(
        "--n-iter", type=int, default=None, metavar="N", help="Newton-Schulz iterations (15)"
    )
    spec.add_argument("--eps", type=float, default=None, help="covariance ridge (1e-5)")
    spec.add_argument("--image-size", type=int, default=None, help="crop / tile side")
    spec.add_argument("--resize", type=int, default=None, help="shorter side before cropping")
    spec.add_argument(
        "--per-image",
        action="store_true",
        help="average per-image D (the seed study's variant, for contrast)",
    )
    spec.add_argument("--no-normalise", action="store_true", help="skip Normalize(mean, std)")
    spec.add_argument("--seed", type=int, default=0, help="which images are drawn")

    run = parser.add_argument_group("execution (not part of the spec)")
    run.add_argument("--out", required=True, type=Path, help="run directory")
    run.add_argument(
        "--images",
        type=Path,
        default=None,
        metavar="PATH",
        help="image folder (--source folder), or the data directory holding imagenet/ "
        "(--source imagenet) or CIFAR",
    )
    run.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")


def build_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields the options set; the rest keep KernelsSpec's defaults."""
    spec: dict[str, Any] = {
        "kind": "kernels",
        "source": args.source,
        "n_images": args.n_images,
        "kernel_size": args.kernel_size,
        "isqrt": args.isqrt,
        "per_image": args.per_image,
        "normalise": not args.no_normalise,
        "seed": args.seed,
    }
    optional = {
        "n_iter": args.n_iter,
        "eps": args.eps,
        "image_size": args.image_size,
        "resize": args.resize,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    return spec


def format_summary(metrics: dict[str, float]) -> str:
    """The score and a per-channel table, as printed on stdout."""
    lines = [
        f"centre_surround_score {metrics['centre_surround_score']:.2f}   "
        f"opponent_fraction {metrics['opponent_fraction']:.2f}   "
        f"whitening_error {metrics['whitening_error']:.3g}",
        f"{'channel':<8}{'centre':>10}{'ring':>10}{'-ring/centre':>14}{'centre-surround':>17}",
    ]
    for name in ("red", "green", "blue"):
        lines.append(
            f"{name:<8}{metrics[f'centre_{name}']:>10.3f}{metrics[f'ring_{name}']:>10.3f}"
            f"{metrics[f'surround_ratio_{name}']:>14.3f}"
            f"{'yes' if metrics[f'centre_surround_{name}'] else 'no':>17}"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from audit.commands.train import make_out_dir
    from runners.specs.kernels import KernelsSpec

    spec = KernelsSpec.from_dict(build_spec(args)).to_dict()  # fails before torch loads
    make_out_dir(args.out)

    from runners.kernels import CS_THRESHOLD, run

    result = run(
        spec,
        args.out,
        data_dir=args.images,
        device=args.device,
        log=lambda message: print(message, file=sys.stderr),
    )
    print(format_summary(result.metrics))
    print(f"(centre-surround: ring of opposite sign, |ring| >= {CS_THRESHOLD} |centre|)")
    for deviation in result.deviations:
        print(f"deviation: {deviation}")
    print(f"run directory: {args.out}")
    return 0
