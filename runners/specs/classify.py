"""The spec of one classification training run (CIFAR and ImageNet CNNs, the MNIST-family MLP).

Defaults are the authors' protocol (docs/method.md#training-protocol): SGD lr 0.1, momentum 0.9,
weight decay 1e-3 on every parameter, batch 128, cosine schedule stepped per iteration
over the run's own epoch budget. ImageNet follows main_imagenet.py instead
(docs/method.md#imagenet-protocol): batch 256, weight decay 1e-4 and a Delinear head of
block 64; those defaults are filled in by `from_dict` when a field is not given. The ND
options default to the authors' code at HEAD (docs/method.md#fidelity-options); each open
fidelity choice is a field, so it is recorded in every run's spec and changes the run id.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

# the catalogue's facts; importing it does not import torch
from runners.catalogue import ARCHS, DATASETS, INPUT_KINDS, NORMS, input_kind_of
from runners.errors import RunnerInputError
from runners.specs.checks import (
    is_number,
    require_bool,
    require_choice,
    require_non_negative_int,
    require_positive_int,
)

# The ND options have their own module (the models import it without importing this one);
# they are re-exported here, where the rest of the spec's vocabulary is.
from runners.specs.nd_options import (  # noqa: F401  (NDOptions, ND_HEADS: public names here)
    ND_HEADS,
    NDOptions,
    protocol_nd_options,
)

LR_SCHEDULES = ("cosine", "multistep", "step")
# The value a field had implicitly before it became a field: left out of the effective spec
# when it holds that value, so the runs made before keep their run ids.
IMPLIED_BEFORE = {"lr_milestone": 0.4, "cudnn_deterministic": False}
# How training batches are made (runners/device_data.py): "auto" = on the device for CIFAR on
# CUDA, else torchvision's DataLoader. Both realise the authors' augmentation distribution.
DATA_PATHS = ("auto", "loader", "device")
# Several GPUs for one run (runners/distributed.py, docs/fidelity.md 8f): per-replica
# statistics and, with "auto", a freeze counter that advances on 1 GPU only, as the authors'
# DataParallel did.
REPLICA_STATISTICS = ("per_replica", "synchronised")
FREEZE_COUNTERS = ("auto", "cycle", "never")


@dataclass(frozen=True)
class ClassifySpec:
    """One training run. Field comments name the authors' flag or the reason for the field."""

    dataset: str
    arch: str
    norm: str
    epochs: int
    seed: int = 0
    kind: str = "classify"
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-3
    lr_schedule: str = "cosine"  # stepped after every optimiser step, T_max = iters * epochs
    # multistep only (--milestone): decays at floor(f E), 2 floor(f E), ...; f = 0.4 in main.py,
    # 0.3 in main_imagenet.py (filled per dataset)
    lr_milestone: float = 0.4
    lr_step_size: int = 30  # step only (main_imagenet.py --scheduler-step-size), in epochs
    augment: bool | None = None  # None: the protocol's (crop+flip for CIFAR, none for MNIST)
    train_subset: int | None = None  # first N training images only (a deviation; quick/CI)
    test_subset: int | None = None  # first N test images only (a deviation; quick/CI)
    # TF32 matmuls degrade small-eigenvalue directions (docs/method.md#precision)
    allow_tf32: bool = False
    # cuDNN deterministic algorithms, as main_imagenet.py's --seed sets them; off by default
    # (main.py never sets it; the seed alone is the harness's default on every dataset)
    cudnn_deterministic: bool = False
    nd: NDOptions = field(default_factory=NDOptions)
    # "auto" is left out of the run's identity (to_dict), so existing run ids stay; the path
    # used is recorded in provenance.json. An explicit "loader"/"device" is part of the id.
    data_path: str = "auto"
    # One process per GPU (DDP); the batch is the global one, split evenly. All three are left
    # out of the run's identity while gpus is 1 with the defaults, so existing run ids stay.
    gpus: int = 1
    replica_statistics: str = "per_replica"
    freeze_counter: str = "auto"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifySpec:
        """Build and validate a spec from plain data; unknown keys are an error."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunnerInputError(
                f"unknown classify spec field(s) {', '.join(unknown)}; "
                f"known fields: {', '.join(sorted(known))}"
            )
        for name in ("dataset", "arch", "norm", "epochs"):
            if name not in data:
                raise RunnerInputError(f"classify spec is missing the required field {name!r}")
        nd = data.pop("nd", None)
        if nd is None:  # absent, or an empty `nd:` in YAML
            nd = {}
        if data["dataset"] in tuple(DATASETS):  # a dataset's protocol defaults (the catalogue's)
            data = {**DATASETS[data["dataset"]].protocol, **data}
            if isinstance(nd, dict):
                nd = {**DATASETS[data["dataset"]].nd_protocol, **nd}
        if isinstance(nd, NDOptions):
            nd_options = nd
        elif isinstance(nd, dict):
            nd_known = {f.name for f in dataclasses.fields(NDOptions)}
            nd_unknown = sorted(set(nd) - nd_known)
            if nd_unknown:
                raise RunnerInputError(
                    f"unknown nd option(s) {', '.join(nd_unknown)}; "
                    f"known options: {', '.join(sorted(nd_known))}"
                )
            nd_options = NDOptions(**nd)
        else:
            raise RunnerInputError(f"spec field 'nd' must be a mapping, got {nd!r}")
        spec = cls(**data, nd=nd_options)
        spec.validate()
        spec = spec._without_inapplicable_schedule_options()
        if spec.norm != "nd":
            # ND options cannot change a BN or unnormalised model: keep them out of its identity,
            # so an ND ablation never gives the BN runs it compares against new run ids.
            spec = dataclasses.replace(spec, nd=protocol_nd_options(spec.dataset))
        return spec

    def validate(self) -> None:
        if self.kind != "classify":
            raise RunnerInputError(f"ClassifySpec needs kind 'classify', got {self.kind!r}")
        require_choice("dataset", self.dataset, tuple(DATASETS))
        require_choice("norm", self.norm, tuple(NORMS))
        require_choice("arch", self.arch, tuple(ARCHS))
        info, input_kind = ARCHS[self.arch], input_kind_of(self.dataset)
        if input_kind not in info.input_kinds:
            raise RunnerInputError(
                f"architecture {self.arch!r} does not run on dataset {self.dataset!r} "
                f"({INPUT_KINDS[input_kind]}); it is built for "
                f"{', '.join(INPUT_KINDS[k] for k in info.input_kinds)}"
            )
        if self.norm not in info.norms_for(input_kind):
            raise RunnerInputError(
                f"architecture {self.arch!r} on {self.dataset} supports norm "
                f"{', '.join(info.norms_for(input_kind))}; got {self.norm!r}"
            )
        if self.nd.vgg11_custom_init and not self._vgg11_init_applies:
            raise RunnerInputError(
                "nd.vgg11_custom_init applies only to the ND VGG-11 on imagenet "
                f"(got arch {self.arch!r}, norm {self.norm!r}, dataset {self.dataset!r})"
            )
        require_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not (is_number(self.lr_milestone) and 0 < self.lr_milestone < 1):
            raise RunnerInputError(f"lr_milestone must be in (0, 1), got {self.lr_milestone!r}")
        require_positive_int("lr_step_size", self.lr_step_size)
        require_choice("data_path", self.data_path, DATA_PATHS)
        require_positive_int("gpus", self.gpus)
        require_choice("replica_statistics", self.replica_statistics, REPLICA_STATISTICS)
        require_choice("freeze_counter", self.freeze_counter, FREEZE_COUNTERS)
        if self.batch_size % self.gpus:
            raise RunnerInputError(
                f"batch_size {self.batch_size} does not split evenly over gpus={self.gpus}"
            )
        for name in ("epochs", "batch_size"):
            require_positive_int(name, getattr(self, name))
        require_non_negative_int("seed", self.seed)
        for name in ("train_subset", "test_subset"):
            if getattr(self, name) is not None:
                require_positive_int(name, getattr(self, name))
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not is_number(value) or not math.isfinite(value) or value < 0:
                raise RunnerInputError(f"{name} must be a non-negative number, got {value!r}")
        # A string such as "false" is truthy: it would silently turn TF32 or augmentation on.
        require_bool("allow_tf32", self.allow_tf32)
        require_bool("cudnn_deterministic", self.cudnn_deterministic)
        if self.augment is not None:
            require_bool("augment", self.augment)
        self.nd.validate()

    def to_dict(self) -> dict[str, Any]:
        """The effective spec as plain data, with `augment` resolved for the dataset.

        Options that cannot apply to this run are left out, so that adding such an option
        never changes the identity (run id) of the runs it does not concern.
        """
        data = dataclasses.asdict(self)
        data["augment"] = self.effective_augment
        if not self._vgg11_init_applies:
            del data["nd"]["vgg11_custom_init"]
        if self.lr_schedule != "multistep" or (
            self.dataset != "imagenet" and self.lr_milestone == IMPLIED_BEFORE["lr_milestone"]
        ):
            del data["lr_milestone"]  # an ImageNet multistep run records it always (0.3, not 0.4)
        if self.lr_schedule != "step":
            del data["lr_step_size"]
        if self.cudnn_deterministic == IMPLIED_BEFORE["cudnn_deterministic"]:
            del data["cudnn_deterministic"]
        if self.data_path == "auto":
            del data["data_path"]
        if self.gpus == 1 and (self.replica_statistics, self.freeze_counter) == (
            "per_replica",
            "auto",
        ):
            for name in ("gpus", "replica_statistics", "freeze_counter"):
                del data[name]
        return data

    def _without_inapplicable_schedule_options(self) -> ClassifySpec:
        """A schedule option given for another schedule changes nothing: reset it to the
        protocol's value, so it never shows as a deviation nor enters the run id."""
        protocol = _protocol_schedule_options(self.dataset)
        changes: dict[str, Any] = {}
        if self.lr_schedule != "multistep":
            changes["lr_milestone"] = protocol["lr_milestone"]
        if self.lr_schedule != "step":
            changes["lr_step_size"] = protocol["lr_step_size"]
        return dataclasses.replace(self, **changes)

    @property
    def _vgg11_init_applies(self) -> bool:
        return (self.dataset, self.arch, self.norm) == ("imagenet", "vgg11", "nd")

    @property
    def effective_augment(self) -> bool:
        if self.augment is not None:
            return self.augment
        return DATASETS[self.dataset].augment

    def deviations(self) -> list[str]:
        """Ways this run departs from the authors' protocol, in words, for every report."""
        protocol = ClassifySpec.from_dict(
            {"dataset": self.dataset, "arch": self.arch, "norm": self.norm, "epochs": self.epochs}
        )
        out = []
        for f in dataclasses.fields(self):
            if f.name in ("nd", "seed", "data_path"):  # data_path: same augmentation distribution
                continue
            ours, theirs = getattr(self, f.name), getattr(protocol, f.name)
            if f.name == "augment":
                ours, theirs = self.effective_augment, protocol.effective_augment
            if ours != theirs:
                out.append(f"{f.name}={ours} (protocol: {theirs})")
        for f in dataclasses.fields(NDOptions):
            ours, theirs = getattr(self.nd, f.name), getattr(protocol.nd, f.name)
            if ours != theirs:
                out.append(f"nd.{f.name}={ours} (authors' code: {theirs})")
        return out


def _protocol_schedule_options(dataset: str) -> dict[str, Any]:
    defaults = {f.name: f.default for f in dataclasses.fields(ClassifySpec)}
    values = {name: defaults[name] for name in ("lr_milestone", "lr_step_size")}
    if "lr_milestone" in DATASETS[dataset].protocol:
        values["lr_milestone"] = DATASETS[dataset].protocol["lr_milestone"]
    return values
