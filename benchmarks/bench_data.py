"""Training-batch throughput: the device-resident CIFAR pipeline against the DataLoader path.

Writes a synthetic CIFAR-10 in the real file format (tests/fakedata.py) with --images training
images, then times full training epochs (shuffle, RandomCrop(32, 4) + flip, ToTensor,
Normalize, batches of --batch-size) of both paths, interleaved, --repeat times, and prints the
median images per second (wall clock and process CPU time; loader worker processes are not in
the process CPU time, so compare the wall figures when --workers > 0).

    python benchmarks/bench_data.py --images 10000 --threads 1
    python benchmarks/bench_data.py --device cuda --images 50000 --workers 8

`--json` adds one machine-readable line (gpu-check uses it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runners.data import load_data
from runners.device_data import load_device_data
from runners.specs.classify import ClassifySpec
from tests import fakedata


def epoch_seconds(loader, device: torch.device) -> tuple[float, float, int]:
    """(wall, process CPU) seconds of one pass, batches moved to `device`, and the images."""
    seen = 0
    start, start_cpu = time.perf_counter(), time.process_time()
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        seen += labels.numel()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, seen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=10_000, help="synthetic training images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--repeat", type=int, default=3, help="epochs per path (median reported)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = ClassifySpec.from_dict(
        {"dataset": "cifar10", "arch": "vgg16", "norm": "bn", "epochs": 1,
         "batch_size": args.batch_size}
    )  # fmt: skip
    quiet = lambda _: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        root = fakedata.write_cifar10(Path(tmp), n_train=args.images, n_test=10)
        paths = {
            "loader": load_data(
                spec, root, verify=False, num_workers=args.workers,
                pin_memory=device.type == "cuda", log=quiet,
            ).train_loader,
            "device": load_device_data(spec, device, root, verify=False, log=quiet).train_loader,
        }  # fmt: skip
        runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in paths}
        for _ in range(args.repeat):
            for name, loader in paths.items():
                runs[name].append(epoch_seconds(loader, device))
    print(
        f"device={device} images={args.images} batch={args.batch_size} workers={args.workers} "
        f"threads={torch.get_num_threads()} repeat={args.repeat} (paths interleaved)"
    )
    summary: dict[str, float] = {}
    for name, results in runs.items():
        wall = statistics.median(r[2] / r[0] for r in results)
        cpu = statistics.median(r[2] / r[1] for r in results if r[1] > 0)
        summary[f"{name}_images_per_s"] = wall
        summary[f"{name}_images_per_cpu_s"] = cpu
        print(f"  {name:7s} {wall:10.0f} images/s (wall)  {cpu:10.0f} images/s (process CPU)")
    summary["device/loader"] = summary["device_images_per_s"] / summary["loader_images_per_s"]
    print(f"  device/loader = {summary['device/loader']:.1f}x (wall)")
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
