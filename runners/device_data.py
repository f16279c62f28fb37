"""CIFAR held on the training device: augmentation, normalisation and shuffling as batched
tensor operations, with no loader processes and no per-image Python (the "device" data path).

The training set is kept once as uint8 (N, 3, 32, 32) tensors on the device. Every epoch draws
one permutation of the images and, per image, the authors' augmentation
(docs/method.md#cifar-protocol): RandomCrop(32, padding=4) with zero fill, i.e. a top and a
left offset uniform on {0, ..., 8} into the zero-padded 40x40 image, then RandomHorizontalFlip
with probability 1/2; then ToTensor (/255) and Normalize with the dataset's mean and std. For
given offsets and flip the pixels equal torchvision's transform bit for bit
(tests/test_device_data.py); the draws come from the run's own generator on the device
(checkpointed, so a resumed run continues its stream), where the DataLoader path draws them
from torch's global RNG: the same distribution, another random stream. The spec field
`data_path` records which path a run asked for (`auto`: this path on CUDA, the DataLoader on
the CPU; provenance.json records the one used).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from runners.data import CROP_PADDING, Data, DatasetInfo, dataset_info, load_datasets, take_subset
from runners.errors import RunnerInputError
from runners.specs.classify import ClassifySpec

DEVICE_DATASETS = ("cifar10", "cifar100")


def resolve_data_path(requested: str, dataset: str, device: torch.device, gpus: int = 1) -> str:
    """Which path a spec's `data_path` means here: "loader" or "device" ("auto": the device
    path for CIFAR on one GPU; it does not shard a set over several GPUs' processes)."""
    if requested == "auto":
        usable = device.type == "cuda" and dataset in DEVICE_DATASETS and gpus == 1
        return "device" if usable else "loader"
    if requested == "device" and (dataset not in DEVICE_DATASETS or gpus != 1):
        raise RunnerInputError(
            f"data_path 'device' supports {', '.join(DEVICE_DATASETS)} on one GPU, not "
            f"{dataset!r} with gpus={gpus}; use data_path auto or loader"
        )
    return requested


def draw_augmentation(
    n: int, generator: torch.Generator, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """(top, left, flip) for n images: offsets uniform on {0..2*padding}, flip with p = 1/2."""
    span = 2 * CROP_PADDING + 1
    offsets = torch.randint(0, span, (2, n), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    return offsets[0], offsets[1], flip


def crop_and_flip(images: Tensor, top: Tensor, left: Tensor, flip: Tensor) -> Tensor:
    """uint8 (B, C, H, W): crop at (top, left) of the zero-padded images, mirrored where flip."""
    b, _, h, w = images.shape
    p = CROP_PADDING
    padded = torch.nn.functional.pad(images, (p, p, p, p))
    rows = top[:, None] + torch.arange(h, device=images.device)  # (B, H)
    steps = torch.arange(w, device=images.device)
    cols = left[:, None] + torch.where(flip[:, None], w - 1 - steps, steps)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    # advanced indices (B, H, W) around the channel slice: the result is (B, H, W, C)
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def normalise(images: Tensor, mean: Tensor | None, std: Tensor | None) -> Tensor:
    """ToTensor's x/255 then Normalize's (x - mean)/std, in torchvision's order of operations."""
    out = images.float().div(255)
    if mean is not None:
        out.sub_(mean[:, None, None]).div_(std[:, None, None])
    return out


class DeviceLoader:
    """Batches of (normalised float images, labels) on the device, loader-like (len, iter)."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        info: DatasetInfo,
        *,
        batch_size: int,
        train: bool,
        augment: bool,
        generator: torch.Generator | None,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.train, self.augment = batch_size, train, augment
        self.generator = generator
        device = images.device
        self.mean = None if info.mean is None else torch.tensor(info.mean, device=device)
        self.std = None if info.std is None else torch.tensor(info.std, device=device)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)  # the partial last batch is kept

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n, device = len(self.labels), self.images.device
        order = (
            torch.randperm(n, generator=self.generator, device=device)
            if self.train
            else torch.arange(n, device=device)
        )
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images[index]
            if self.train and self.augment:
                images = crop_and_flip(
                    images, *draw_augmentation(len(index), self.generator, device)
                )
            yield normalise(images, self.mean, self.std), self.labels[index]


def _uint8_arrays(dataset: Dataset) -> tuple[np.ndarray, list[int]]:
    """The (N, H, W, C) uint8 images and labels of a torchvision CIFAR set or a Subset of it."""
    if isinstance(dataset, Subset):
        images, labels = _uint8_arrays(dataset.dataset)
        index = list(dataset.indices)
        return images[index], [labels[i] for i in index]
    return dataset.data, list(dataset.targets)


def to_device(dataset: Dataset, device: torch.device) -> tuple[Tensor, Tensor]:
    """uint8 (N, C, H, W) images and long labels of `dataset`, held once on `device`."""
    images, labels = _uint8_arrays(dataset)
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    return tensor.to(device), torch.tensor(labels, dtype=torch.long, device=device)


def load_device_data(
    spec: ClassifySpec,
    device: torch.device,
    data_dir: Any = None,
    *,
    download: bool = False,
    verify: bool = True,
    log: Any = print,
) -> Data:
    """The CIFAR train and test sets of `spec` on `device`, as `runners.data.load_data` returns
    them for the DataLoader path (same subsets, batch size, provenance), shuffled and augmented
    by a generator on the device seeded with the run's seed."""
    if spec.dataset not in DEVICE_DATASETS:
        raise RunnerInputError(f"the device data path supports {DEVICE_DATASETS}")
    info = dataset_info(spec.dataset)
    train_set, test_set, provenance = load_datasets(
        spec.dataset, data_dir, augment=False, download=download, verify=verify, log=log
    )
    train_set = take_subset(info, train_set, spec.train_subset, what="train_subset", log=log)
    test_set = take_subset(info, test_set, spec.test_subset, what="test_subset", log=log)
    provenance.update(train_images_used=len(train_set), test_images_used=len(test_set))
    generator = torch.Generator(device=device)
    generator.manual_seed(spec.seed)
    common = {"batch_size": spec.batch_size, "augment": spec.effective_augment}
    return Data(
        train_loader=DeviceLoader(  # type: ignore[arg-type]
            *to_device(train_set, device), info, train=True, generator=generator, **common
        ),
        test_loader=DeviceLoader(  # type: ignore[arg-type]
            *to_device(test_set, device), info, train=False, generator=None, **common
        ),
        generator=generator,
        num_classes=info.num_classes,
        provenance=provenance,
    )
