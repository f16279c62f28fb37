"""The datasets of the classification runs, with the authors' transforms
(docs/method.md#cifar-protocol, #mnist-protocol, #imagenet-protocol).

- CIFAR-10/100: RandomCrop(32, padding 4) + RandomHorizontalFlip + ToTensor + Normalize
  (per-dataset mean/std of the authors' main.py) for training; ToTensor + Normalize for test.
- MNIST: ToTensor + Normalize(0.1307, 0.3081); Fashion-MNIST: ToTensor only (the authors'
  code does not normalise it). No augmentation for either.
- ImageNet (main_imagenet.py): ImageFolder over <data_dir>/imagenet/{train,val}/<wnid>/*.JPEG;
  RandomResizedCrop(224) + RandomHorizontalFlip for training, Resize(256) + CenterCrop(224)
  for val, both ToTensor + Normalize(ImageNet mean/std). It is never downloaded (licence).
Loaders yield images (N, C, H, W); the MLP flattens them itself.

Data are never downloaded unless asked (`download=True`); missing files raise one
RunnerInputError naming the dataset, the directory and the files torchvision expects (the
files and messages live in runners/datafiles.py, which needs no torch). Fashion-MNIST is also
read where Debian's `dataset-fashion-mnist` installs it (in place, not copied), so it works
offline. Real CIFAR files keep torchvision's md5 check; `verify=False` skips it, loudly,
for synthetic test data. Every load reports its provenance: directory, source, whether the
files were verified, and a sha256 over the files actually read (for ImageNet over the list of
(path, size) of the files read: hashing 150 GB of JPEGs on every run is not affordable).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity

from runners import catalogue
from runners.datafiles import (
    DATA_DIR_ENV,
    DEBIAN_FASHION_MNIST,
    IMAGENET_SPLITS,
    default_data_dir,
    image_folder_classes,
    image_folder_missing,
    missing_message,
    system_files,
    where,
)
from runners.datafiles import expected_files as dataset_files
from runners.errors import RunnerInputError
from runners.rundir import atomic_write_json
from runners.specs.classify import ClassifySpec

__all__ = ["DATA_DIR_ENV", "DEBIAN_FASHION_MNIST", "default_data_dir"]  # re-exported
SOURCE_NOTE = "source.json"  # written next to files this module installed, says where from
CROP_PADDING = 4  # RandomCrop(32, padding=4), zero fill (main.py:L64-69)
RESIZE = 256  # ImageNet val: Resize(256) then CenterCrop(224) (main_imagenet.py:L357-365)
# How train_subset / test_subset pick ImageNet images (recorded in its provenance).
EVENLY_SPACED_RULE = "evenly spaced over the class-sorted list: index floor((2i+1)*N/(2n)), i < n"


# The catalogue's dataset name -> the torchvision class that loads it: the one fact about a
# dataset that needs torch (tests/test_catalogue.py checks that both name the same datasets).
LOADERS: dict[str, type] = {
    "cifar10": datasets.CIFAR10,
    "cifar100": datasets.CIFAR100,
    "mnist": datasets.MNIST,
    "fashion-mnist": datasets.FashionMNIST,
    "imagenet": datasets.ImageFolder,
}


@dataclass(frozen=True)
class DatasetInfo:
    """A catalogue entry (runners/catalogue.py) with the torchvision class that loads it."""

    entry: catalogue.Dataset
    tv_class: type  # the torchvision dataset class

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def num_classes(self) -> int:  # ImageNet: expected; loaded: the number of class folders
        return self.entry.num_classes

    @property
    def image_size(self) -> int:
        return self.entry.image_size

    @property
    def mean(self) -> tuple[float, ...] | None:  # None: no Normalize (Fashion-MNIST)
        return self.entry.mean

    @property
    def std(self) -> tuple[float, ...] | None:
        return self.entry.std

    @property
    def how_to_get(self) -> str:
        return self.entry.how_to_get


@dataclass
class Data:
    """Everything the training loop needs from the data side."""

    train_loader: DataLoader
    test_loader: DataLoader
    generator: torch.Generator  # the train loader's shuffling RNG (checkpointed)
    num_classes: int
    provenance: dict[str, Any]  # directory, source, verified, sha256, sizes


def dataset_info(name: str) -> DatasetInfo:
    """The catalogue entry of `name` with its loader, or one RunnerInputError."""
    entry = catalogue.dataset(name)
    if name not in LOADERS:
        raise RunnerInputError(
            f"dataset {name!r} is in the catalogue but has no loader; add its torchvision "
            "class to LOADERS in runners/data.py"
        )
    return DatasetInfo(entry, LOADERS[name])


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------


def is_image_folder(info: DatasetInfo) -> bool:
    """ImageNet-style data: JPEG files in class folders, read by torchvision's ImageFolder."""
    return info.tv_class is datasets.ImageFolder


def make_transform(info: DatasetInfo, *, train: bool, augment: bool) -> Callable:
    """The authors' transform: crop + flip when augmenting, else the test geometry; then
    ToTensor [+ Normalize]. Augment off trains on the test transform (as for MNIST)."""
    steps = _augment_steps(info) if train and augment else _test_steps(info)
    steps.append(transforms.ToTensor())
    if info.mean is not None:
        steps.append(transforms.Normalize(info.mean, info.std))
    return transforms.Compose(steps)


def _augment_steps(info: DatasetInfo) -> list[Callable]:
    if is_image_folder(info):
        return [transforms.RandomResizedCrop(info.image_size), transforms.RandomHorizontalFlip()]
    return [
        transforms.RandomCrop(info.image_size, padding=CROP_PADDING),
        transforms.RandomHorizontalFlip(),
    ]


def _test_steps(info: DatasetInfo) -> list[Callable]:
    # CIFAR/MNIST images already have the model's size; ImageNet photos must be cut to 224.
    if is_image_folder(info):
        return [transforms.Resize(RESIZE), transforms.CenterCrop(info.image_size)]
    return []


# ---------------------------------------------------------------------------------------------
# Files on disk
# ---------------------------------------------------------------------------------------------


def expected_files(info: DatasetInfo, root: Path) -> list[Path]:
    """The files torchvision reads for `info` under `root` (train and test)."""
    return dataset_files(info.name, root)


def files_sha256(paths: list[Path], root: Path) -> str:
    """One sha256 over the files' relative names and contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def install_system_fashion_mnist(
    root: Path, system_dir: Path = DEBIAN_FASHION_MNIST, *, log: Callable[[str], None] = print
) -> bool:
    """Decompress Debian's Fashion-MNIST .gz files into root/FashionMNIST/raw/: an explicit
    copy, e.g. for a data directory shared with nodes that lack the package (loading reads
    the system copy in place, it never copies).

    Each file is written to a temporary sibling and renamed, so an interrupted copy never
    leaves a truncated file that torchvision would take for data. Returns False when the
    system copy is absent.
    """
    info = dataset_info("fashion-mnist")
    targets = expected_files(info, root)
    sources = [system_dir / f"{target.name}.gz" for target in targets]
    if not all(source.is_file() for source in sources):
        return False
    raw = targets[0].parent
    try:
        raw.mkdir(parents=True, exist_ok=True)
        for source, target in zip(sources, targets, strict=True):
            if not target.exists():
                _gunzip_atomic(source, target)
        note = {
            "source": f"Debian dataset-fashion-mnist ({system_dir})",
            "files": [str(s) for s in sources],
        }
        atomic_write_json(raw / SOURCE_NOTE, note)
        log(f"Fashion-MNIST copied from {system_dir} into {raw}")
    except OSError as exc:
        raise RunnerInputError(
            f"cannot copy Fashion-MNIST from {system_dir} into {raw}: {exc}. "
            "Make the data directory writable or choose another one with --data-dir"
        ) from None
    return True


def _gunzip_atomic(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with gzip.open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _source_of(info: DatasetInfo, root: Path, downloaded: bool) -> str:
    note = expected_files(info, root)[0].parent / SOURCE_NOTE
    if not note.is_file():
        return "downloaded by torchvision" if downloaded else "data directory"
    try:
        return str(json.loads(note.read_text(encoding="utf-8"))["source"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunnerInputError(
            f"{note} is not a readable source note ({exc!r}); it only records where the "
            "data files came from: delete it (the files stay usable) or restore it"
        ) from None


# ---------------------------------------------------------------------------------------------
# CIFAR without the md5 check (explicit opt-out for synthetic test data)
# ---------------------------------------------------------------------------------------------


class _SkipMd5:
    """Mixin for torchvision's CIFAR classes: checks that the files exist, not their md5."""

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        path = Path(self.root) / self.base_folder / self.meta["filename"]
        with open(path, "rb") as handle:
            self.classes = pickle.load(handle, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


class UnverifiedCIFAR10(_SkipMd5, datasets.CIFAR10):
    pass


class UnverifiedCIFAR100(_SkipMd5, datasets.CIFAR100):
    pass


UNVERIFIED = {datasets.CIFAR10: UnverifiedCIFAR10, datasets.CIFAR100: UnverifiedCIFAR100}


# ---------------------------------------------------------------------------------------------
# ImageNet: class folders of JPEG files (torchvision's ImageFolder, as main_imagenet.py)
# ---------------------------------------------------------------------------------------------


def image_folder_base(info: DatasetInfo, root: Path) -> Path:
    """<data_dir>/<dataset name>: the authors' DATA (may be a symlink to a cluster copy)."""
    return root / info.name


def _no_download_message(info: DatasetInfo, base: Path) -> str:
    return (
        f"dataset {info.name} cannot be downloaded automatically (--download): its licence "
        "requires every user to register at https://image-net.org/ and accept the terms of "
        f"access. It was looked for in {where(base)}; provide {info.how_to_get}"
    )


def file_list_sha256(paths: list[Path], base: Path) -> str:
    """One sha256 over the sorted (relative path, size in bytes) of the files.

    It changes when a file is added, removed, renamed or changes size; a same-size edit goes
    unnoticed. Reading every byte of ImageNet's 150 GB on each run is not affordable."""
    digest = hashlib.sha256()
    for relative, path in sorted((path.relative_to(base).as_posix(), path) for path in paths):
        digest.update(f"{relative}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def _construct_image_folder(
    info: DatasetInfo, base: Path, split: str, *, augment: bool
) -> datasets.ImageFolder:
    transform = make_transform(info, train=split == "train", augment=augment)
    try:
        return datasets.ImageFolder(str(base / split), transform=transform)
    except OSError as exc:  # e.g. a class folder with no image in it, or an unreadable folder
        raise RunnerInputError(
            f"dataset {info.name} in {where(base / split)} could not be listed ({exc}). "
            f"Expected {info.how_to_get}"
        ) from None


def load_image_folder(
    info: DatasetInfo,
    root: Path,
    *,
    augment: bool,
    download: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """Train and val ImageFolders of <root>/<name> with the authors' transforms, and provenance.

    The data are never downloaded: with `download` and no data the error says how to get them."""
    base = image_folder_base(info, root)
    if not base.is_dir():
        if download:
            raise RunnerInputError(_no_download_message(info, base))
        raise RunnerInputError(image_folder_missing(info.name, base, f"no folder {info.name}/"))
    if download:
        log(f"{info.name} is never downloaded; using the files in {where(base)}")
    image_folder_classes(info.name, base)  # the layout, with the preflight's messages
    train_set = _construct_image_folder(info, base, "train", augment=augment)
    val_set = _construct_image_folder(info, base, "val", augment=augment)
    return train_set, val_set, _image_folder_provenance(info, base, train_set, val_set)


def _image_folder_provenance(
    info: DatasetInfo, base: Path, train_set: datasets.ImageFolder, val_set: datasets.ImageFolder
) -> dict[str, Any]:
    paths = [Path(path) for path, _ in train_set.samples + val_set.samples]
    return {
        "dataset": info.name,
        "directory": str(base.resolve()),
        "source": "data directory",
        "verified": False,
        "verification": "none: ImageNet has no official per-file checksums",
        "files": [f"{split}/" for split in IMAGENET_SPLITS],
        "sha256": file_list_sha256(paths, base),
        "sha256_of": "file list (path, size)",
        "train_size": len(train_set),
        "test_size": len(val_set),
        "num_classes": len(train_set.classes),
        # The caller states a deviation when num_classes differs (not ILSVRC2012's 1000).
        "expected_classes": info.num_classes,
    }


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_datasets(
    name: str,
    data_dir: Path | None = None,
    *,
    augment: bool,
    download: bool = False,
    verify: bool = True,
    log: Callable[[str], None] = print,
    system_fashion_mnist: Path = DEBIAN_FASHION_MNIST,
) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """Train and test sets of `name` with the protocol's transforms, and their provenance.

    ImageNet's test set is its val split (as the authors); `verify` does not apply to it."""
    info = dataset_info(name)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if is_image_folder(info):
        return load_image_folder(info, root, augment=augment, download=download, log=log)
    files = expected_files(info, root)
    missing = [f for f in files if not f.is_file()]
    if missing and not download:
        system = system_files(name, system_fashion_mnist)
        if system is not None:  # offline machines: Debian's copy, read where it is
            return load_system_copy(info, system, augment=augment, log=log)
        raise RunnerInputError(missing_message(info.name, root, missing))
    cls = info.tv_class
    checks_md5 = cls in UNVERIFIED
    if checks_md5 and not verify:
        log(
            f"WARNING: {name} files in {root} are loaded WITHOUT torchvision's md5 check "
            "(verify=False / --unverified-data); results on these data are not comparable "
            "with the paper unless the files are the official ones"
        )
        cls = UNVERIFIED[cls]
    train_set = _construct(cls, info, root, train=True, augment=augment, download=download)
    test_set = _construct(cls, info, root, train=False, augment=augment, download=False)
    provenance = {
        "dataset": name,
        "directory": str(root.resolve()),
        "source": _source_of(info, root, downloaded=bool(missing)),
        "verified": checks_md5 and verify,
        "verification": _verification(checks_md5, verify),
        "files": [str(f.relative_to(root)) for f in files],
        "sha256": files_sha256(files, root),
        "train_size": len(train_set),
        "test_size": len(test_set),
    }
    return train_set, test_set, provenance


def load_system_copy(
    info: DatasetInfo, files: list[Path], *, augment: bool, log: Callable[[str], None] = print
) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """Train and test sets from Debian's gzipped Fashion-MNIST, read in place (not copied)."""
    folder = files[0].parent
    sets = []
    for train in (True, False):
        transform = make_transform(info, train=train, augment=augment)
        try:
            sets.append(GzippedFashionMNIST(folder, train=train, transform=transform))
        except (OSError, EOFError, ValueError) as exc:
            raise RunnerInputError(
                f"dataset {info.name}: Debian's copy in {folder} could not be read ({exc}); "
                "reinstall it (apt-get install --reinstall dataset-fashion-mnist) or put "
                f"{info.how_to_get} under the data directory"
            ) from None
    log(f"{info.name}: reading Debian's copy in place ({folder})")
    return (
        sets[0],
        sets[1],
        {
            "dataset": info.name,
            "directory": str(folder.resolve()),
            "source": f"Debian dataset-fashion-mnist ({folder}), read in place",
            "verified": False,
            "verification": _verification(False, True),
            "files": [path.name for path in files],
            "sha256": files_sha256(files, folder),
            "train_size": len(sets[0]),
            "test_size": len(sets[1]),
        },
    )


class GzippedFashionMNIST(datasets.FashionMNIST):
    """torchvision's FashionMNIST over the gzipped IDX files where they are (Debian's copy):
    the same images and labels as the uncompressed files, no copy in the data directory."""

    def __init__(self, folder: Path, *, train: bool, transform: Callable) -> None:
        self.folder = Path(folder)  # before torchvision's __init__, which checks the files
        super().__init__(str(folder), train=train, transform=transform)

    @property
    def raw_folder(self) -> str:
        return str(self.folder)

    def _check_exists(self) -> bool:
        return system_files("fashion-mnist", self.folder) is not None

    def _load_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        split = "train" if self.train else "t10k"
        images = read_idx_gz(self.folder / f"{split}-images-idx3-ubyte.gz", dims=3)
        labels = read_idx_gz(self.folder / f"{split}-labels-idx1-ubyte.gz", dims=1)
        return images, labels.long()


def read_idx_gz(path: Path, *, dims: int) -> torch.Tensor:
    """A gzipped IDX file of unsigned bytes (the MNIST format): the magic number 0x0800 + dims,
    `dims` big-endian 32-bit sizes, then the bytes."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 + dims:
        raise ValueError(f"{path.name} is not an IDX file of {dims}-d bytes (magic {magic:#x})")
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    body = raw[4 + 4 * dims :]
    if len(body) != math.prod(shape):
        raise ValueError(f"{path.name} holds {len(body)} bytes for a {shape} array")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).view(*shape)


def _verification(checks_md5: bool, verify: bool) -> str:
    if not checks_md5:
        return "none: torchvision checks only that the MNIST-family files exist"
    if verify:
        return "md5 of every file checked by torchvision against the official checksums"
    return "SKIPPED: md5 check disabled (verify=False)"


def _construct(
    cls: type, info: DatasetInfo, root: Path, *, train: bool, augment: bool, download: bool
) -> Dataset:
    transform = make_transform(info, train=train, augment=augment)
    try:
        return cls(str(root), train=train, transform=transform, download=download)
    except OSError as exc:
        if not download:  # e.g. an unreadable file: its error says which and why
            raise RunnerInputError(_load_failure(info, root, exc, md5_checked=False)) from None
        raise RunnerInputError(  # a failed download (URLError is an OSError)
            f"could not download {info.name} into {root.resolve()}: {exc}. Download it on a "
            f"machine with internet access and copy {info.how_to_get} into that directory"
        ) from None
    # torchvision's own errors for damaged files: a failed md5 check (RuntimeError), a bad
    # IDX header (AssertionError, ValueError), a truncated or foreign CIFAR pickle.
    except (RuntimeError, AssertionError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise RunnerInputError(_load_failure(info, root, exc, cls in UNVERIFIED)) from None


def _load_failure(info: DatasetInfo, root: Path, exc: Exception, md5_checked: bool) -> str:
    if md5_checked:
        bad = ", ".join(_md5_failures(info, root)) or repr(exc)
        return (
            f"dataset {info.name} in {root.resolve()} failed torchvision's md5 check ({bad}): "
            "the files are corrupted or not the official ones. Re-download them (--download), "
            "or, for synthetic/test data only, skip the check with --unverified-data "
            "(verify=False)"
        )
    return (
        f"dataset {info.name} in {root.resolve()} could not be loaded ({exc!r}): the files are "
        f"damaged or not in torchvision's format. Replace them with {info.how_to_get}, or "
        "re-download them (--download)"
    )


def _md5_failures(info: DatasetInfo, root: Path) -> list[str]:
    cls = info.tv_class
    folder = root / cls.base_folder
    listed = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    return [
        f"{cls.base_folder}/{name}"
        for name, md5 in listed
        if not check_integrity(str(folder / name), md5)
    ]


def take_first(
    dataset: Dataset, n: int | None, *, what: str, log: Callable[[str], None]
) -> Dataset:
    """The first `n` items (deterministic); all of them when n is None or too large."""
    if n is None:
        return dataset
    if n > len(dataset):
        log(f"WARNING: {what}={n} but the set has only {len(dataset)} images; using all of them")
        return dataset
    return Subset(dataset, range(n))


def take_evenly_spaced(
    dataset: Dataset, n: int | None, *, what: str, log: Callable[[str], None]
) -> Dataset:
    """`n` items at evenly spaced indices (deterministic); all when n is None or too large.

    ImageFolder lists are sorted by class, so the first n would be the first few classes;
    item floor((2i+1)·len/2n), the middle of the i-th of n equal stretches, reaches every
    class whose share of the list is at least 1/n."""
    if n is None:
        return dataset
    if n > len(dataset):
        log(f"WARNING: {what}={n} but the set has only {len(dataset)} images; using all of them")
        return dataset
    return Subset(dataset, [(2 * i + 1) * len(dataset) // (2 * n) for i in range(n)])


def take_subset(
    info: DatasetInfo, dataset: Dataset, n: int | None, *, what: str, log: Callable[[str], None]
) -> Dataset:
    """Evenly spaced for class-sorted ImageFolder lists; the first n for the other datasets
    (their run ids and results were made with the first n)."""
    take = take_evenly_spaced if is_image_folder(info) else take_first
    return take(dataset, n, what=what, log=log)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    train: bool,
    num_workers: int,
    generator: torch.Generator | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """Train: shuffled by `generator`, partial last batch kept (drop_last False, as the authors).
    Test: in order (the authors shuffle it, which changes nothing in eval mode)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=False,
        num_workers=num_workers,
        generator=generator if train else None,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


def load_data(
    spec: ClassifySpec,
    data_dir: Path | None = None,
    *,
    download: bool = False,
    verify: bool = True,
    num_workers: int = 0,
    pin_memory: bool = False,
    log: Callable[[str], None] = print,
    system_fashion_mnist: Path = DEBIAN_FASHION_MNIST,
) -> Data:
    """Loaders for a ClassifySpec (its dataset, augment, subsets, batch size and seed)."""
    if not isinstance(num_workers, int) or num_workers < 0:
        raise RunnerInputError(f"num_workers must be a non-negative integer, got {num_workers!r}")
    train_set, test_set, provenance = load_datasets(
        spec.dataset,
        data_dir,
        augment=spec.effective_augment,
        download=download,
        verify=verify,
        log=log,
        system_fashion_mnist=system_fashion_mnist,
    )
    info = dataset_info(spec.dataset)
    train_set = take_subset(info, train_set, spec.train_subset, what="train_subset", log=log)
    test_set = take_subset(info, test_set, spec.test_subset, what="test_subset", log=log)
    provenance.update(train_images_used=len(train_set), test_images_used=len(test_set))
    if is_image_folder(info):
        provenance["subset_rule"] = EVENLY_SPACED_RULE
    generator = torch.Generator()
    generator.manual_seed(spec.seed)
    loader_args = {
        "batch_size": spec.batch_size,
        "num_workers": num_workers,
        "pin_memory": pin_memory,
    }
    return Data(
        train_loader=make_loader(train_set, train=True, generator=generator, **loader_args),
        test_loader=make_loader(test_set, train=False, **loader_args),
        generator=generator,
        num_classes=provenance.get("num_classes", info.num_classes),  # ImageNet: folders found
        provenance=provenance,
    )
