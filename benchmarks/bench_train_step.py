"""Time one training step (forward + backward + SGD) of a model with BN and with ND.

CIFAR models on 3x32x32 inputs by default; `--input imagenet` times the Table 2 models
(`--arch resnet18|vgg11|densenet121`) on 3x224x224 inputs with 1000 classes.

Prints, per norm, the median and minimum wall seconds per step over --steps timed steps (after
--warmup untimed ones), the median process CPU seconds per step (less sensitive to other
processes on a shared CPU; with --threads 1 it is close to the single-core wall time), the ND/BN
ratios and the peak memory: on CUDA torch.cuda.max_memory_allocated,
on the CPU the growth of the process's peak resident set (ru_maxrss) during the timed run.
Each norm runs in a fresh subprocess, so neither inherits the other's memory peak or caches.

    .venv/bin/python benchmarks/bench_train_step.py --device cpu --steps 5
    .venv/bin/python benchmarks/bench_train_step.py --device cuda --steps 20
    .venv/bin/python benchmarks/bench_train_step.py --input imagenet --arch resnet18 --batch-size 32

The authors' implementation takes 3.4x BN's time per step on a V100 (VGG-16, batch 128).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runners.deconv import NS_IMPLS
from runners.models import build_model
from runners.specs.classify import protocol_nd_options

IMAGE_SIZE = {"cifar": 32, "imagenet": 224}
DATASET = {"cifar": "cifar10", "imagenet": "imagenet"}  # whose protocol's ND options to use


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(
    model: nn.Module, args: argparse.Namespace, device: torch.device
) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds per SGD step, timed individually after the warm-up."""
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(0)
    size = IMAGE_SIZE[args.input]
    x = torch.randn(args.batch_size, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, args.num_classes, (args.batch_size,), generator=gen).to(device)
    loss_fn = nn.CrossEntropyLoss()
    wall, cpu = [], []
    for i in range(args.warmup + args.steps):
        _sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        _sync(device)
        if i >= args.warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def bench_norm(norm: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    nd = protocol_nd_options(DATASET[args.input])
    model = build_model(args.arch, norm, args.num_classes, nd, args.input)
    if args.ns_impl:
        for module in model.modules():
            if hasattr(module, "ns_impl"):
                module.ns_impl = args.ns_impl
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _peak_rss_mib()
    wall, cpu = time_steps(model, args, device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = _peak_rss_mib() - rss_before
    return {
        "median": statistics.median(wall),
        "min": min(wall),
        "cpu_median": statistics.median(cpu),
        "peak_mib": peak,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--input", choices=sorted(IMAGE_SIZE), default="cifar", help="input kind")
    p.add_argument("--arch", default="vgg16")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-classes", type=int, default=None, help="10 (cifar) or 1000 (imagenet)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument("--norms", default="bn,nd", help="comma-separated, in the order run")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument(
        "--ns-impl", choices=NS_IMPLS, help="Newton-Schulz evaluation (default: the layers')"
    )
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # subprocess mode
    return p.parse_args(argv)


def run_in_subprocess(norm: str, argv: list[str]) -> dict[str, float]:
    """Benchmark one norm in a fresh interpreter; returns its JSON result line."""
    cmd = [sys.executable, __file__, *argv, "--norms", norm, "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.num_classes is None:
        args.num_classes = 1000 if args.input == "imagenet" else 10
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.json:
        print(json.dumps(bench_norm(args.norms, args, device)))
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"arch={args.arch} input={args.input} batch={args.batch_size} device={name} "
        f"torch={torch.__version__} "
        f"threads={torch.get_num_threads()} warmup={args.warmup} steps={args.steps} "
        f"ns_impl={args.ns_impl or 'layer default'}"
    )
    memory_kind = "max_memory_allocated" if device.type == "cuda" else "peak RSS growth"
    results = {}
    for norm in args.norms.split(","):
        r = run_in_subprocess(norm, argv)
        results[norm] = r
        print(
            f"{norm}: median {r['median'] * 1e3:.1f} ms/step (min {r['min'] * 1e3:.1f}), "
            f"process CPU {r['cpu_median'] * 1e3:.1f} ms/step, "
            f"peak memory {r['peak_mib']:.0f} MiB ({memory_kind})"
        )
    if "bn" in results and "nd" in results:
        nd, bn = results["nd"], results["bn"]
        print(
            f"ND/BN ratio: wall median {nd['median'] / bn['median']:.2f}, "
            f"wall min {nd['min'] / bn['min']:.2f}, "
            f"process CPU median {nd['cpu_median'] / bn['cpu_median']:.2f}"
        )


if __name__ == "__main__":
    main()
