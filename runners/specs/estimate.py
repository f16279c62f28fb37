"""What a run costs and whether this harness can run it, answered for a spec from the catalogue
(runners/catalogue.py), beside the spec classes; no torch. `audit plan` asks both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runners import catalogue

KERNELS_HOURS = 0.02  # covariance of a few hundred photographs: minutes at most
EVAL_SPEEDUP = 3  # evaluation runs forward only: about a third of a training step per image


def throughput_key(spec: Mapping[str, Any]) -> tuple[str, str, str]:
    """What a recorded throughput is shared by: (input kind, arch, norm). The CIFAR and the
    ImageNet ResNet-18 share a name, not a speed."""
    return catalogue.input_kind_of(spec["dataset"]), spec["arch"], spec["norm"]


def default_images_per_second(spec: Mapping[str, Any]) -> float:
    """The catalogue's training throughput of the spec's model, slowed by its norm's cost."""
    kind, arch, norm = throughput_key(spec)
    entry = catalogue.ARCHS.get(arch)
    rate = entry.images_per_second(kind) if entry else catalogue.DEFAULT_IMAGES_PER_SECOND
    return rate / catalogue.NORMS[norm].cost


def estimate_gpu_hours(
    spec: Mapping[str, Any], recorded: Mapping[tuple[str, str, str], float]
) -> tuple[float, str]:
    """(GPU-hours, "recorded" | "default") for one effective spec: epochs x images /
    throughput, the throughput recorded in the store for the same model where there is one."""
    if spec["kind"] != "classify":
        return KERNELS_HOURS, "default"
    key = throughput_key(spec)
    if key in recorded:
        rate, source = recorded[key], "recorded"
    else:
        rate, source = default_images_per_second(spec), "default"
    data = catalogue.DATASETS[spec["dataset"]]
    train = min(spec.get("train_subset") or data.train_size, data.train_size)
    test = min(spec.get("test_subset") or data.test_size, data.test_size)
    seconds = spec["epochs"] * (train + test / EVAL_SPEEDUP) / rate
    return seconds / 3600, source


def unrunnable(fields: Mapping[str, Any]) -> str | None:
    """Why no model of this harness can run the experiment `fields` (a claim's, without
    defaults), or None: the catalogue's datasets, architectures, their builds and norms."""
    if fields.get("kind", "classify") != "classify":
        return None
    dataset, arch, norm = fields.get("dataset"), fields.get("arch"), fields.get("norm")
    if dataset not in catalogue.DATASETS:
        return f"no runner for dataset {dataset!r} (results can be supplied as CSV)"
    if arch not in catalogue.ARCHS:
        return f"no model for architecture {arch!r} in runners/models"
    kind, entry = catalogue.input_kind_of(dataset), catalogue.ARCHS[arch]
    if kind not in entry.input_kinds:
        return f"architecture {arch!r} has no model for dataset {dataset!r}"
    if norm not in entry.norms_for(kind):
        return f"architecture {arch!r} has no norm {norm!r} on {dataset}"
    return None
