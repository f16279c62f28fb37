"""runners/datafiles.py: where the datasets live and whether they are there, without torch.

The file lists and image extensions are checked against torchvision's own (they must not
drift apart); presence and layout on tiny synthetic files (tests/fakedata.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runners import catalogue, datafiles
from tests import fakedata


def test_the_file_lists_are_torchvisions():
    from torchvision import datasets

    for name, cls in (("cifar10", datasets.CIFAR10), ("cifar100", datasets.CIFAR100)):
        names = [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        assert list(catalogue.DATASETS[name].files) == [f"{cls.base_folder}/{n}" for n in names]
    for name, cls in (("mnist", datasets.MNIST), ("fashion-mnist", datasets.FashionMNIST)):
        names = [Path(url).stem for url, _ in cls.resources]
        assert list(catalogue.DATASETS[name].files) == [f"{cls.__name__}/raw/{n}" for n in names]
    assert datafiles.IMAGE_EXTENSIONS == datasets.folder.IMG_EXTENSIONS


def test_importing_it_does_not_import_torch():
    code = "import sys, runners.datafiles; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_data_dir_defaults_to_the_environment_then_a_per_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(datafiles.DATA_DIR_ENV, "/somewhere/else")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert datafiles.default_data_dir() == Path("/somewhere/else")
    monkeypatch.delenv(datafiles.DATA_DIR_ENV)
    assert datafiles.default_data_dir() == tmp_path / "cache" / "nd-audit" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datafiles.default_data_dir() == tmp_path / "home" / ".cache" / "nd-audit" / "data"


def test_runners_data_uses_the_same_default(monkeypatch, tmp_path):
    from runners import data

    monkeypatch.delenv(datafiles.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.default_data_dir() == tmp_path / "nd-audit" / "data"


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("cifar10", lambda root: fakedata.write_cifar10(root, n_train=10, n_test=10)),
        ("cifar100", lambda root: fakedata.write_cifar100(root, n_train=10, n_test=10)),
        ("mnist", lambda root: fakedata.write_mnist(root, n_train=10, n_test=10)),
        ("fashion-mnist", lambda root: fakedata.write_fashion_mnist(root, n_train=10, n_test=10)),
        ("imagenet", lambda root: fakedata.write_imagenet(root, n_train=1, n_val=1)),
    ],
)
def test_present_and_missing_datasets(name, write, tmp_path):
    nowhere = tmp_path / "no-system-copy"
    message = datafiles.missing_data(name, tmp_path, system_dir=nowhere)
    assert message is not None and f"dataset {name}" in message and "not found" in message
    assert catalogue.DATASETS[name].how_to_get[:40] in message  # the fix
    write(tmp_path)
    assert datafiles.missing_data(name, tmp_path, system_dir=nowhere) is None


def test_one_missing_file_is_named(tmp_path):
    fakedata.write_cifar10(tmp_path, n_train=10, n_test=10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    message = datafiles.missing_data("cifar10", tmp_path)
    assert "missing cifar-10-batches-py/data_batch_3)" in message


def test_fashion_mnist_is_present_through_the_system_copy(tmp_path):
    system = fakedata.write_fashion_mnist_gz(tmp_path / "usr-share", n_train=10, n_test=10)
    assert datafiles.missing_data("fashion-mnist", tmp_path / "d", system_dir=system) is None
    assert datafiles.system_files("fashion-mnist", system)[0].name.endswith(".gz")
    (system / "train-labels-idx1-ubyte.gz").unlink()
    assert datafiles.missing_data("fashion-mnist", tmp_path / "d", system_dir=system)
    assert datafiles.system_files("mnist", system) is None  # Debian ships Fashion-MNIST only


def test_imagenet_layout_problems_are_named(tmp_path):
    fakedata.write_imagenet(tmp_path, n_train=1, n_val=1)
    base = tmp_path / "imagenet"
    wnid = fakedata.IMAGENET_WNIDS[1]
    for photo in (base / "train" / wnid).iterdir():
        photo.unlink()
    assert "class folder(s) without images" in datafiles.missing_data("imagenet", tmp_path)
    shutil.rmtree(base / "train" / wnid)
    message = datafiles.missing_data("imagenet", tmp_path)
    assert f"only in val/: {wnid}" in message
    fakedata.flatten_imagenet_val(tmp_path)
    assert "holds image files directly" in datafiles.missing_data("imagenet", tmp_path)
    shutil.rmtree(base / "val")
    assert "no folder val/" in datafiles.missing_data("imagenet", tmp_path)


def test_an_unknown_dataset_is_named():
    assert "unknown dataset 'svhn'" in datafiles.missing_data("svhn", Path("."))
