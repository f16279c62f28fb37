"""runners.data on tiny datasets in torchvision's on-disk formats (tests/fakedata.py)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torchvision import transforms

from runners import data
from runners.errors import RunnerInputError
from runners.specs.classify import ClassifySpec
from tests import fakedata


def spec(dataset: str = "mnist", **fields) -> ClassifySpec:
    arch = "vgg16" if dataset.startswith("cifar") else "mlp"
    return ClassifySpec.from_dict(
        {"dataset": dataset, "arch": arch, "norm": "nd", "epochs": 1, **fields}
    )


def quiet(_: str) -> None:
    pass


def test_cifar10_pixels_and_labels_round_trip_through_torchvision(tmp_path):
    fakedata.write_cifar10(tmp_path, n_train=20, n_test=12)
    loaded = data.load_data(spec("cifar10"), tmp_path, verify=False, log=quiet)
    images, labels = next(iter(loaded.test_loader))  # test loader: in order, no augmentation
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    first = raw["data"][0].reshape(3, 32, 32) / 255.0
    mean, std = data.dataset_info("cifar10").mean, data.dataset_info("cifar10").std
    expected = (torch.tensor(first, dtype=torch.float32) - torch.tensor(mean)[:, None, None]) / (
        torch.tensor(std)[:, None, None]
    )
    assert images.shape == (12, 3, 32, 32)
    torch.testing.assert_close(images[0], expected)
    assert labels.tolist() == raw["labels"]
    assert loaded.num_classes == 10 and loaded.provenance["train_size"] == 20


def test_cifar100_loads_fine_labels(tmp_path):
    fakedata.write_cifar100(tmp_path, n_train=30, n_test=10)
    loaded = data.load_data(spec("cifar100"), tmp_path, verify=False, log=quiet)
    raw = pickle.loads((tmp_path / "cifar-100-python" / "test").read_bytes())
    _, labels = next(iter(loaded.test_loader))
    assert loaded.num_classes == 100
    assert labels.tolist() == raw["fine_labels"]


def test_mnist_is_normalised_and_fashion_mnist_is_not(tmp_path):
    fakedata.write_mnist(tmp_path, n_train=20, n_test=10)
    fakedata.write_fashion_mnist(tmp_path, n_train=20, n_test=10)
    mnist, _ = next(iter(data.load_data(spec("mnist"), tmp_path, log=quiet).test_loader))
    fashion, _ = next(iter(data.load_data(spec("fashion-mnist"), tmp_path, log=quiet).test_loader))
    assert mnist.shape == fashion.shape == (10, 1, 28, 28)
    torch.testing.assert_close(mnist, (fashion - 0.1307) / 0.3081)  # same pixels, same seed
    assert fashion.min() >= 0.0 and fashion.max() <= 1.0


def test_transforms_follow_the_protocol():
    cifar, mnist = data.dataset_info("cifar10"), data.dataset_info("mnist")
    train = [type(t) for t in data.make_transform(cifar, train=True, augment=True).transforms]
    test = [type(t) for t in data.make_transform(cifar, train=False, augment=True).transforms]
    assert train == [
        transforms.RandomCrop,
        transforms.RandomHorizontalFlip,
        transforms.ToTensor,
        transforms.Normalize,
    ]
    assert test == [transforms.ToTensor, transforms.Normalize]
    crop = data.make_transform(cifar, train=True, augment=True).transforms[0]
    assert crop.size == (32, 32) and crop.padding == 4
    plain = data.make_transform(mnist, train=True, augment=spec("mnist").effective_augment)
    assert [type(t) for t in plain.transforms] == [transforms.ToTensor, transforms.Normalize]


def test_synthetic_cifar_fails_the_md5_check_unless_verification_is_skipped(tmp_path):
    fakedata.write_cifar10(tmp_path, n_train=10, n_test=5)
    with pytest.raises(RunnerInputError) as err:
        data.load_data(spec("cifar10"), tmp_path, log=quiet)
    message = str(err.value)
    assert "md5" in message and "cifar-10-batches-py/data_batch_1" in message
    assert "--unverified-data" in message
    lines: list[str] = []
    loaded = data.load_data(spec("cifar10"), tmp_path, verify=False, log=lines.append)
    assert any("WITHOUT torchvision's md5 check" in line for line in lines)
    assert loaded.provenance["verified"] is False
    assert "SKIPPED" in loaded.provenance["verification"]


@pytest.mark.parametrize("content", [b"", b"\x00" * 100])
def test_damaged_mnist_files_are_one_clear_error(tmp_path, content):
    fakedata.write_mnist(tmp_path, n_train=20, n_test=10)
    (tmp_path / "MNIST" / "raw" / fakedata.IDX_FILES[("train", "images")]).write_bytes(content)
    with pytest.raises(RunnerInputError, match="damaged or not in torchvision's format"):
        data.load_data(spec("mnist"), tmp_path, log=quiet)


def test_damaged_unverified_cifar_file_is_one_clear_error(tmp_path):
    fakedata.write_cifar10(tmp_path, n_train=10, n_test=5)
    (tmp_path / fakedata.CIFAR10_FOLDER / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(RunnerInputError, match="could not be loaded") as err:
        data.load_data(spec("cifar10"), tmp_path, verify=False, log=quiet)
    assert "md5" not in str(err.value)  # the check was skipped, so it cannot be the cause


def test_missing_data_names_dataset_directory_and_remedy(tmp_path):
    with pytest.raises(RunnerInputError) as err:
        data.load_data(spec("cifar10"), tmp_path / "empty", log=quiet)
    message = str(err.value)
    assert "dataset cifar10 not found" in message
    assert str((tmp_path / "empty").resolve()) in message
    assert "cifar-10-batches-py" in message and "--download" in message


def test_fashion_mnist_is_read_in_place_from_the_debian_package(tmp_path):
    system = fakedata.write_fashion_mnist_gz(tmp_path / "usr-share", n_train=30, n_test=10)
    fakedata.write_fashion_mnist(tmp_path / "raw", n_train=30, n_test=10)  # the same arrays
    lines: list[str] = []
    loaded = data.load_data(
        spec("fashion-mnist"), tmp_path / "d", log=lines.append, system_fashion_mnist=system
    )
    assert not (tmp_path / "d").exists()  # nothing copied into the data directory
    assert "Debian" in loaded.provenance["source"] and str(system) in loaded.provenance["source"]
    assert loaded.provenance["directory"] == str(system.resolve())
    assert loaded.provenance["train_size"] == 30 and loaded.provenance["test_size"] == 10
    assert any("in place" in line for line in lines)
    uncompressed = data.load_data(spec("fashion-mnist"), tmp_path / "raw", log=quiet)
    # the same pixels and labels as torchvision reads from the uncompressed files
    for ours, theirs in zip(loaded.test_loader, uncompressed.test_loader, strict=True):
        torch.testing.assert_close(ours[0], theirs[0])
        assert ours[1].tolist() == theirs[1].tolist()


def test_fashion_mnist_in_the_data_directory_wins_over_the_system_copy(tmp_path):
    system = fakedata.write_fashion_mnist_gz(tmp_path / "usr-share", n_train=30, n_test=10)
    fakedata.write_fashion_mnist(tmp_path / "d", n_train=20, n_test=10)
    loaded = data.load_data(
        spec("fashion-mnist"), tmp_path / "d", log=quiet, system_fashion_mnist=system
    )
    assert loaded.provenance["train_size"] == 20
    assert loaded.provenance["source"] == "data directory"


def test_a_damaged_system_copy_is_one_clear_error(tmp_path):
    system = fakedata.write_fashion_mnist_gz(tmp_path / "usr-share", n_train=30, n_test=10)
    (system / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(RunnerInputError, match=r"Debian's copy in .* could not be read"):
        data.load_data(
            spec("fashion-mnist"), tmp_path / "d", log=quiet, system_fashion_mnist=system
        )


def test_an_explicit_copy_of_the_system_fashion_mnist_keeps_its_source(tmp_path):
    system = fakedata.write_fashion_mnist_gz(tmp_path / "usr-share", n_train=30, n_test=10)
    assert data.install_system_fashion_mnist(tmp_path / "d", system, log=quiet)
    raw = tmp_path / "d" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [*fakedata.IDX_FILES.values(), data.SOURCE_NOTE]
    )  # decompressed, no temporary files left
    loaded = data.load_data(spec("fashion-mnist"), tmp_path / "d", log=quiet)
    assert "Debian" in loaded.provenance["source"] and str(system) in loaded.provenance["source"]
    assert loaded.provenance["directory"] == str((tmp_path / "d").resolve())


def test_a_damaged_source_note_is_one_clear_error(tmp_path):
    system = fakedata.write_fashion_mnist_gz(tmp_path / "usr-share", n_train=30, n_test=10)
    data.install_system_fashion_mnist(tmp_path / "d", system, log=quiet)
    note = tmp_path / "d" / "FashionMNIST" / "raw" / data.SOURCE_NOTE
    note.write_text("{not json", encoding="utf-8")
    with pytest.raises(RunnerInputError, match=r"source\.json is not a readable source note"):
        data.load_data(
            spec("fashion-mnist"), tmp_path / "d", log=quiet, system_fashion_mnist=system
        )


def test_fashion_mnist_missing_everywhere_is_one_clear_error(tmp_path):
    with pytest.raises(RunnerInputError, match="dataset-fashion-mnist"):
        data.load_data(
            spec("fashion-mnist"), tmp_path, log=quiet, system_fashion_mnist=tmp_path / "none"
        )


def test_subsets_take_the_first_images(tmp_path):
    fakedata.write_mnist(tmp_path, n_train=50, n_test=40)
    loaded = data.load_data(spec("mnist", train_subset=17, test_subset=9), tmp_path, log=quiet)
    _, all_labels = fakedata.class_images(40, 10, (28, 28), seed=1)  # the test split's labels
    _, labels = next(iter(loaded.test_loader))
    assert labels.tolist() == all_labels[:9].tolist()
    assert sum(len(y) for _, y in loaded.train_loader) == 17
    assert loaded.provenance["train_images_used"] == 17 and loaded.provenance["train_size"] == 50


def test_train_loader_is_seeded_shuffled_and_keeps_the_partial_batch(tmp_path):
    fakedata.write_mnist(tmp_path, n_train=300, n_test=10)

    def order(seed: int) -> list[list[int]]:
        loaded = data.load_data(spec("mnist", seed=seed), tmp_path, log=quiet)
        return [y.tolist() for _, y in loaded.train_loader]

    first = order(0)
    assert [len(batch) for batch in first] == [128, 128, 44]
    assert first == order(0) and first != order(1)
    written = fakedata.class_images(300, 10, (28, 28), seed=0)[1].tolist()
    assert [y for batch in first for y in batch] != written  # shuffled


def test_checksum_covers_the_files_read(tmp_path):
    fakedata.write_mnist(tmp_path, n_train=20, n_test=10)
    before = data.load_data(spec("mnist"), tmp_path, log=quiet).provenance
    assert before["files"][0] == "MNIST/raw/train-images-idx3-ubyte"
    assert (
        before["sha256"] == data.load_data(spec("mnist"), tmp_path, log=quiet).provenance["sha256"]
    )
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    content = bytearray(labels.read_bytes())
    content[-1] = (content[-1] + 1) % 10
    labels.write_bytes(bytes(content))
    assert (
        data.load_data(spec("mnist"), tmp_path, log=quiet).provenance["sha256"] != before["sha256"]
    )


def test_real_debian_fashion_mnist_when_installed(tmp_path):
    if not (data.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    loaded = data.load_data(spec("fashion-mnist", train_subset=10), tmp_path, log=quiet)
    assert loaded.provenance["train_size"] == 60000 and loaded.provenance["test_size"] == 10000
    images, _ = next(iter(loaded.train_loader))
    assert images.shape == (10, 1, 28, 28)
    assert np.isclose(float(images.mean()), 0.286, atol=0.1)
