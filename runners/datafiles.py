"""Where the datasets live on disk and whether they are there, without importing torch.

The files each dataset needs (the catalogue's, in torchvision's layout), the data
directory's default, Debian's Fashion-MNIST, ImageNet's class-folder layout, and what to do
when something is missing. `audit plan` and `audit run` ask `missing_data` from the submitting
host before anything is queued or trained; runners/data.py raises the same messages when it
loads. tests/test_data_files.py checks the file lists against torchvision's own.
"""

from __future__ import annotations

import os
from pathlib import Path

from runners import catalogue
from runners.errors import RunnerInputError

DATA_DIR_ENV = "AUDIT_DATA_DIR"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # dataset-fashion-mnist
CACHE_SUBDIR = Path("nd-audit") / "data"  # under $XDG_CACHE_HOME, else ~/.cache
IMAGENET_SPLITS = ("train", "val")  # the authors' DATA/train and DATA/val
# torchvision.datasets.folder.IMG_EXTENSIONS: the files ImageFolder takes for images
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def default_data_dir() -> Path:
    """$AUDIT_DATA_DIR, else a per-user cache ($XDG_CACHE_HOME/nd-audit/data, by default
    ~/.cache/nd-audit/data): never the current directory, which changes from command to
    command and would fill whatever folder an audit is started in."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / CACHE_SUBDIR


def expected_files(name: str, root: Path) -> list[Path]:
    """The files torchvision reads for `name` under `root` (train, test, meta)."""
    return [Path(root) / relative for relative in catalogue.dataset(name).files]


def system_files(name: str, system_dir: Path = DEBIAN_FASHION_MNIST) -> list[Path] | None:
    """Debian's gzipped copy of `name`'s files, read in place, where it is installed."""
    if name != "fashion-mnist":
        return None
    files = [system_dir / f"{Path(relative).name}.gz" for relative in catalogue.dataset(name).files]
    return files if all(path.is_file() for path in files) else None


def missing_data(
    name: str, data_dir: Path, *, system_dir: Path = DEBIAN_FASHION_MNIST
) -> str | None:
    """None when `name` can be loaded offline from `data_dir` (Fashion-MNIST: or from Debian's
    package), else what is missing, where, and how to get it. Checks presence and layout,
    not contents (torchvision's md5 check runs when the data are loaded)."""
    root = Path(data_dir)
    if name not in catalogue.DATASETS:
        return f"unknown dataset {name!r}; known: {', '.join(catalogue.DATASETS)}"
    if catalogue.DATASETS[name].image_folder:
        try:
            image_folder_classes(name, root / name)
        except RunnerInputError as exc:
            return str(exc)
        return None
    missing = [path for path in expected_files(name, root) if not path.is_file()]
    if not missing or system_files(name, system_dir) is not None:
        return None
    return missing_message(name, root, missing)


def missing_message(name: str, root: Path, missing: list[Path]) -> str:
    shown = ", ".join(str(p.relative_to(root)) for p in missing[:4])
    more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
    how_to_get = catalogue.dataset(name).how_to_get
    return (
        f"dataset {name} not found in the data directory {root.resolve()} "
        f"(missing {shown}{more}). Provide {how_to_get} under that directory, "
        f"point --data-dir (or ${DATA_DIR_ENV}) at the directory that holds them, "
        "or download them with `audit train --download` on a machine with internet access"
    )


# ---------------------------------------------------------------------------------------------
# ImageNet: class folders of JPEG files (torchvision's ImageFolder, as main_imagenet.py)
# ---------------------------------------------------------------------------------------------


def image_folder_classes(name: str, base: Path) -> list[str]:
    """The sorted class folders shared by base/train and base/val (ImageFolder's labels are
    their indices), each holding at least one image; else one RunnerInputError for the layout."""
    if not base.is_dir():
        raise RunnerInputError(image_folder_missing(name, base, f"no folder {name}/"))
    train, val = (split_classes(name, base, split) for split in IMAGENET_SPLITS)
    check_same_classes(name, base, train, val)
    for split in IMAGENET_SPLITS:
        empty = [c for c in train if not has_images(base / split / c, recursive=True)]
        if empty:
            raise RunnerInputError(
                f"dataset {name}: class folder(s) without images in {where(base / split)}: "
                f"{first_few(empty)} (ImageFolder takes {', '.join(IMAGE_EXTENSIONS)}); "
                "restore their images or re-extract the split"
            )
    return train


def where(path: Path) -> str:
    """The path as given and, through a symlink, the real one it stands for."""
    shown, real = path.absolute(), path.resolve()
    return str(shown) if shown == real else f"{shown} (resolved: {real})"


def image_folder_missing(name: str, base: Path, problem: str) -> str:
    how_to_get = catalogue.dataset(name).how_to_get
    return (
        f"dataset {name} not found: {problem}; looked in {where(base)}. Expected "
        f"{how_to_get}. Or point --data-dir (or ${DATA_DIR_ENV}) at the directory that "
        f"holds {name}/"
    )


def flat_split_message(name: str, split_dir: Path) -> str:
    return (
        f"dataset {name}: {where(split_dir)} holds image files directly, with no class "
        "folders (the raw ILSVRC2012 layout of the val set). ImageFolder needs one folder per "
        "class named by its WordNet id (val/n01440764/ILSVRC2012_val_00000293.JPEG, ...): sort "
        "the images into class folders with the usual valprep.sh script (it moves each file "
        "into the folder of its label from the ILSVRC2012 devkit)"
    )


def has_images(folder: Path, *, recursive: bool = False) -> bool:
    """Whether `folder` holds an image file (ImageFolder also looks into subfolders); stops
    at the first one, so a class folder of a thousand photos costs one directory entry."""
    subfolders = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                    return True
                if recursive and entry.is_dir():
                    subfolders.append(Path(entry.path))
    except OSError:
        return False
    return any(has_images(sub, recursive=True) for sub in subfolders)


def split_classes(name: str, base: Path, split: str) -> list[str]:
    """The sorted class folder names of base/split, or one clear error for a wrong layout."""
    split_dir = base / split
    if not split_dir.is_dir():
        raise RunnerInputError(image_folder_missing(name, base, f"no folder {split}/"))
    classes = find_classes(name, split_dir)
    if classes:
        return classes
    if has_images(split_dir):
        raise RunnerInputError(flat_split_message(name, split_dir))
    raise RunnerInputError(image_folder_missing(name, base, f"{split}/ has no class folders"))


def find_classes(name: str, split_dir: Path) -> list[str]:
    """The sub-folders, sorted, as torchvision's find_classes lists them (their order gives
    the labels)."""
    try:
        return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    except OSError as exc:
        raise RunnerInputError(
            f"dataset {name}: cannot read {where(split_dir)} ({exc}); make it readable"
        ) from None


def check_same_classes(name: str, base: Path, train: list[str], val: list[str]) -> None:
    """Labels are class indices in sorted order, so both splits need the very same folders."""
    if train == val:
        return
    differ = [
        f"only in {split}/: {first_few(sorted(set(mine) - set(other)))}"
        for split, mine, other in (("train", train, val), ("val", val, train))
        if set(mine) - set(other)
    ]
    raise RunnerInputError(
        f"dataset {name}: train and val have different class folders ({'; '.join(differ)}) "
        f"in {where(base / 'train')} and {where(base / 'val')}. Both must hold the same "
        "WordNet-id folders: restore the missing ones, or re-sort val with valprep.sh"
    )


def first_few(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
