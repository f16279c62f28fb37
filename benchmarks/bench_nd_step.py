"""BN vs ND (ours) vs ND (the authors' layer) training steps, interleaved in one process.

Where `bench_train_step.py` times each norm in its own process, this script builds all
variants once and alternates their steps (BN, ND, authors' ND, BN, ...), so every variant sees
the same machine load; on a shared CPU that is the only fair way to get a ratio. Reported per
variant: the median process CPU seconds per step (on the CPU; wall seconds on CUDA), and the
ratios ND/BN, authors/BN and ND/authors.

The authors' layer is never part of this repository. Point `--authors-deconv` at their
`models/deconv.py` (yechengxi/deconvolution), e.g. from a mirror without a work tree:

    git --git-dir=/path/to/deconvolution.git show HEAD:models/deconv.py > /tmp/authors_deconv.py
    python benchmarks/bench_nd_step.py --authors-deconv /tmp/authors_deconv.py --threads 1

Their FastDeconv and Delinear replace ours layer by layer with the same arguments (block,
sampling stride, n_iter, eps, momentum, freeze), so the two ND models differ only in the
layer implementation. `--json` prints one machine-readable line at the end (gpu-check uses it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runners.deconv import Delinear, FastDeconv
from runners.models import build_model
from runners.specs.classify import protocol_nd_options

IMAGE_SIZE = {"cifar": 32, "imagenet": 224}
DATASET = {"cifar": "cifar10", "imagenet": "imagenet"}


def load_authors_module(path: Path) -> ModuleType:
    """Import the authors' deconv.py from a file (their code stays outside the repository)."""
    spec = importlib.util.spec_from_file_location("authors_deconv", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"bench_nd_step: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def authors_layer(module: ModuleType, layer: nn.Module) -> nn.Module:
    """The authors' FastDeconv/Delinear with `layer`'s arguments and parameters."""
    if isinstance(layer, FastDeconv):
        new = module.FastDeconv(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=layer.bias is not None,
            eps=layer.eps,
            n_iter=layer.n_iter,
            momentum=layer.momentum,
            block=layer.block,
            sampling_stride=layer.sampling_stride // layer.stride,
            freeze=layer.freeze,
            freeze_iter=layer.freeze_iter,
        )
    else:
        new = module.Delinear(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            eps=layer.eps,
            n_iter=layer.n_iter,
            momentum=layer.momentum,
            block=layer.block,
        )
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new


def swap_in_authors_layers(model: nn.Module, module: ModuleType) -> int:
    """Replace every FastDeconv and Delinear of `model` in place; returns how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FastDeconv | Delinear):
                setattr(parent, name, authors_layer(module, child))
                count += 1
    return count


def make_step(
    model: nn.Module, args: argparse.Namespace, device: torch.device
) -> Any:  # a zero-argument callable
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(0)
    size = IMAGE_SIZE[args.input]
    x = torch.randn(args.batch_size, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, args.num_classes, (args.batch_size,), generator=gen).to(device)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def build_variants(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    nd = protocol_nd_options(DATASET[args.input])
    variants = {}
    for name in args.variants.split(","):
        torch.manual_seed(0)
        norm = "bn" if name == "bn" else "nd"
        model = build_model(args.arch, norm, args.num_classes, nd, args.input)
        if name.startswith("nd:"):  # e.g. nd:spectral, our layer with another ns_impl
            for module in model.modules():
                if hasattr(module, "ns_impl"):
                    module.ns_impl = name.partition(":")[2]
        if name in ("authors", "baseline"):  # another implementation of the layers
            path = args.authors_deconv if name == "authors" else args.baseline_deconv
            if path is None:
                continue
            swap_in_authors_layers(model, load_authors_module(path))
        variants[name] = make_step(model, args, device)
    return variants


def measure(variants: dict[str, Any], args: argparse.Namespace, device: torch.device) -> dict:
    """Interleaved rounds; per variant the per-step seconds (CPU time on the CPU)."""
    cuda = device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.warmup + args.steps):
        for name, step in variants.items():
            if cuda:
                torch.cuda.synchronize(device)
            start = clock()
            step()
            if cuda:
                torch.cuda.synchronize(device)
            if round_ >= args.warmup:
                times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()} | {"_all": times}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--input", choices=sorted(IMAGE_SIZE), default="cifar")
    p.add_argument("--arch", default="vgg16")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-classes", type=int, default=None, help="10 (cifar) or 1000 (imagenet)")
    p.add_argument("--steps", type=int, default=5, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument(
        "--variants", default="bn,nd,authors", help="of bn, nd, nd:<ns_impl>, authors, baseline"
    )
    p.add_argument("--authors-deconv", type=Path, help="the authors' models/deconv.py")
    p.add_argument(
        "--baseline-deconv",
        type=Path,
        help="variant 'baseline': runners/deconv.py of another checkout of this project",
    )
    p.add_argument("--json", action="store_true", help="also print one JSON line")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.num_classes is None:
        args.num_classes = 1000 if args.input == "imagenet" else 10
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    variants = build_variants(args, device)
    result = measure(variants, args, device)
    unit = "wall" if device.type == "cuda" else "process CPU"
    print(
        f"arch={args.arch} input={args.input} batch={args.batch_size} device={device} "
        f"threads={torch.get_num_threads()} rounds={args.steps} (+{args.warmup} warm-up), "
        f"median {unit} seconds per step, variants interleaved"
    )
    for name in variants:
        steps = ", ".join(f"{t:.3f}" for t in result["_all"][name])
        print(f"  {name:8s} {result[name] * 1e3:9.1f} ms/step   [{steps}]")
    ratios = {}
    pairs = [(v, "bn") for v in variants if v != "bn"]
    pairs += [(v, "authors") for v in variants if v not in ("bn", "authors")]
    for num, den in pairs:
        if num in variants and den in variants:
            ratios[f"{num}/{den}"] = result[num] / result[den]
            print(f"  {num}/{den} = {ratios[f'{num}/{den}']:.2f}")
    summary = {
        "arch": args.arch,
        "device": str(device),
        "unit": unit,
        **{f"{name}_ms": result[name] * 1e3 for name in variants},
        **ratios,
    }
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
