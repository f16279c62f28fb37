"""Tiny synthetic datasets written in torchvision's exact on-disk formats.

The real loading code (torchvision's CIFAR10/CIFAR100/MNIST/FashionMNIST/ImageFolder,
runners.data) runs on these files unchanged; only the CIFAR md5 check must be bypassed (the
files are not the official ones), which runners.data does visibly with `verify=False`.

The images are learnable on purpose: every class has its own bright pixel pattern plus noise,
so a few training steps move the accuracy above chance.

    from tests.fakedata import write_cifar10, write_mnist
    root = write_cifar10(tmp_path, n_train=64, n_test=32)   # -> tmp_path
    root = write_imagenet(tmp_path)   # tmp_path/imagenet/{train,val}/<wnid>/*.JPEG
"""

from __future__ import annotations

import gzip
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR10_TRAIN_BATCHES = 5
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
# The file names torchvision's MNIST/FashionMNIST look for under <root>/<Name>/raw/.
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
# Real ILSVRC2012 WordNet ids (the first three classes), so folder names look like the real ones.
IMAGENET_WNIDS = ("n01440764", "n01443537", "n01484850")
# (width, height): smaller than the 224 crop and larger than the 256 resize, both orientations.
IMAGENET_SIZES = ((40, 50), (300, 260))


def class_images(
    n: int, num_classes: int, shape: tuple[int, ...], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`n` uint8 images of `shape` and their labels: a per-class pattern plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes  # every class present even in tiny sets
    rng.shuffle(labels)
    patterns = np.random.default_rng(12345).random((num_classes, *shape)) > 0.5
    noise = rng.integers(0, 80, size=(n, *shape))
    images = np.where(patterns[labels], 170, 20) + noise
    return images.clip(0, 255).astype(np.uint8), labels.astype(np.int64)


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) HWC -> the (N, 3072) channel-major rows CIFAR stores."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_cifar10(root: Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """Write data_batch_1..5, test_batch and batches.meta under root/cifar-10-batches-py."""
    folder = Path(root) / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = class_images(n_train, 10, (32, 32, 3), seed)
    for index, part in enumerate(np.array_split(np.arange(n_train), CIFAR10_TRAIN_BATCHES)):
        _pickle(
            folder / f"data_batch_{index + 1}",
            {
                "batch_label": f"training batch {index + 1} of 5",
                "labels": labels[part].tolist(),
                "data": _cifar_rows(images[part]),
                "filenames": [f"train_{i}.png" for i in part],
            },
        )
    images, labels = class_images(n_test, 10, (32, 32, 3), seed + 1)
    _pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": labels.tolist(),
            "data": _cifar_rows(images),
            "filenames": [f"test_{i}.png" for i in range(n_test)],
        },
    )
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    _pickle(
        folder / "batches.meta",
        {"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072},
    )
    return Path(root)


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """Write train, test and meta under root/cifar-100-python."""
    folder = Path(root) / CIFAR100_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = class_images(n, 100, (32, 32, 3), seed + offset)
        _pickle(
            folder / name,
            {
                "filenames": [f"{name}_{i}.png" for i in range(n)],
                "batch_label": f"{name} batch 1 of 1",
                "fine_labels": labels.tolist(),
                "coarse_labels": (labels // 5).tolist(),
                "data": _cifar_rows(images),
            },
        )
    _pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine_{i}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i}" for i in range(20)],
        },
    )
    return Path(root)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (LeCun's MNIST format): magic, big-endian sizes, then the raw bytes."""
    magic = IDX_IMAGES_MAGIC if array.ndim == 3 else IDX_LABELS_MAGIC
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist_arrays(n_train: int, n_test: int, seed: int) -> dict[tuple[str, str], np.ndarray]:
    arrays = {}
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = class_images(n, 10, (28, 28), seed + offset)
        arrays[(split, "images")], arrays[(split, "labels")] = images, labels
    return arrays


def write_mnist(
    root: Path, n_train: int = 100, n_test: int = 50, seed: int = 0, name: str = "MNIST"
) -> Path:
    """Write the four uncompressed IDX files under root/<name>/raw/ (name: MNIST|FashionMNIST)."""
    raw = Path(root) / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for key, array in _mnist_arrays(n_train, n_test, seed).items():
        (raw / IDX_FILES[key]).write_bytes(idx_bytes(array))
    return Path(root)


def mlp_spec(norm: str = "bn", epochs: int = 2, **fields: object) -> dict:
    """The effective spec of an MLP run on Fashion-MNIST (the tests' cheapest real run):
    `fields` add to or override the experiment (batch_size, train_subset, gpus, ...)."""
    from runners.specs import effective_spec

    experiment = {"kind": "classify", "dataset": "fashion-mnist", "arch": "mlp"}
    return effective_spec({**experiment, "norm": norm, "epochs": epochs, **fields})


def write_fashion_mnist(root: Path, n_train: int = 100, n_test: int = 50, seed: int = 0) -> Path:
    """Write the four uncompressed IDX files under root/FashionMNIST/raw/."""
    return write_mnist(root, n_train, n_test, seed, name="FashionMNIST")


def write_fashion_mnist_gz(
    folder: Path, n_train: int = 100, n_test: int = 50, seed: int = 0
) -> Path:
    """Write the gzipped IDX files the way Debian's dataset-fashion-mnist installs them
    (folder/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in _mnist_arrays(n_train, n_test, seed).items():
        with gzip.open(folder / f"{IDX_FILES[key]}.gz", "wb") as handle:
            handle.write(idx_bytes(array))
    return folder


def imagenet_colour(label: int) -> tuple[int, int, int]:
    """The solid RGB colour of class `label`'s synthetic photos (learnable, and checkable
    after normalisation: the centre of every image has exactly this colour)."""
    return (40 + 90 * (label % 3), 200 - 70 * (label % 2), 60 + 45 * (label % 4))


def imagenet_photo(label: int, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A photo of `size` (width, height): the class colour, with noise in the top-left
    quarter only so the centre keeps the class colour."""
    width, height = size
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = imagenet_colour(label)
    corner = (height // 4, width // 4)
    pixels[: corner[0], : corner[1]] = rng.integers(0, 256, size=(*corner, 3))
    return Image.fromarray(pixels)


def write_imagenet(
    root: Path,
    n_train: int = 4,
    n_val: int = 2,
    wnids: tuple[str, ...] = IMAGENET_WNIDS,
    sizes: tuple[tuple[int, int], ...] = IMAGENET_SIZES,
    seed: int = 0,
) -> Path:
    """Write root/imagenet/{train,val}/<wnid>/*.JPEG with ILSVRC2012's file names
    (train: <wnid>_<i>.JPEG; val: ILSVRC2012_val_<8 digits>.JPEG numbered across classes):
    n_train and n_val photos per class, cycling through `sizes`."""
    rng = np.random.default_rng(seed)
    for label, wnid in enumerate(wnids):
        names = {
            "train": [f"{wnid}_{i}.JPEG" for i in range(n_train)],
            "val": [f"ILSVRC2012_val_{label * n_val + i + 1:08d}.JPEG" for i in range(n_val)],
        }
        for split, files in names.items():
            folder = Path(root) / "imagenet" / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i, name in enumerate(files):
                imagenet_photo(label, sizes[i % len(sizes)], rng).save(folder / name, quality=95)
    return Path(root)


def flatten_imagenet_val(root: Path) -> Path:
    """Move every val photo out of its class folder into val/ itself: the raw ILSVRC2012
    layout (ILSVRC2012_img_val.tar unpacked, before valprep.sh sorts it)."""
    val = Path(root) / "imagenet" / "val"
    for folder in [p for p in val.iterdir() if p.is_dir()]:
        for photo in folder.iterdir():
            photo.rename(val / photo.name)
        shutil.rmtree(folder)
    return val
