"""runners.data on a tiny synthetic ImageNet in the real layout (tests/fakedata.write_imagenet):
imagenet/{train,val}/<wnid>/*.JPEG, read by torchvision's ImageFolder as main_imagenet.py does."""

from __future__ import annotations

import shutil

import pytest
import torch
from torchvision import transforms

from runners import data
from runners.errors import RunnerInputError
from runners.specs.classify import ClassifySpec
from tests import fakedata

WNIDS = fakedata.IMAGENET_WNIDS
INFO = data.dataset_info("imagenet")


def spec(**fields) -> ClassifySpec:
    base = {"dataset": "imagenet", "arch": "resnet18", "norm": "bn", "epochs": 1}
    return ClassifySpec.from_dict({**base, "batch_size": 8, **fields})


def quiet(_: str) -> None:
    pass


@pytest.fixture
def imagenet(tmp_path):
    """tmp_path holding imagenet/: 3 classes, 4 train and 2 val photos each."""
    return fakedata.write_imagenet(tmp_path, n_train=4, n_val=2)


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(RunnerInputError) as err:
        call(*args, **kwargs)
    return str(err.value)


def test_loaders_yield_224_crops_with_labels_of_every_class(imagenet):
    loaded = data.load_data(spec(), imagenet, log=quiet)
    for loader, count in ((loaded.train_loader, 12), (loaded.test_loader, 6)):
        batches = list(loader)
        images = torch.cat([x for x, _ in batches])
        labels = torch.cat([y for _, y in batches])
        assert images.shape == (count, 3, 224, 224)
        assert sorted(set(labels.tolist())) == [0, 1, 2]
    assert loaded.num_classes == 3
    assert loaded.test_loader.batch_size == loaded.train_loader.batch_size == 8


def test_val_centre_pixel_is_the_normalised_class_colour(imagenet):
    loaded = data.load_data(spec(), imagenet, log=quiet)
    images, labels = next(iter(loaded.test_loader))  # in order: class 0 first
    mean, std = torch.tensor(INFO.mean), torch.tensor(INFO.std)
    for image, label in zip(images, labels.tolist(), strict=True):
        colour = torch.tensor(fakedata.imagenet_colour(label), dtype=torch.float32) / 255
        expected = (colour - mean) / std
        torch.testing.assert_close(image[:, 112, 112], expected, atol=0.05, rtol=0)  # JPEG noise


def test_transforms_follow_main_imagenet():
    train = data.make_transform(INFO, train=True, augment=True).transforms
    val = data.make_transform(INFO, train=False, augment=True).transforms
    assert [type(t) for t in train] == [
        transforms.RandomResizedCrop,
        transforms.RandomHorizontalFlip,
        transforms.ToTensor,
        transforms.Normalize,
    ]
    assert train[0].size == (224, 224)
    assert [type(t) for t in val] == [
        transforms.Resize,
        transforms.CenterCrop,
        transforms.ToTensor,
        transforms.Normalize,
    ]
    assert val[0].size == 256 and val[1].size == (224, 224)
    assert list(val[3].mean) == [0.485, 0.456, 0.406] and list(val[3].std) == [0.229, 0.224, 0.225]
    plain = data.make_transform(INFO, train=True, augment=False).transforms
    assert [type(t) for t in plain] == [type(t) for t in val]  # augment off: val transform


def test_augment_off_trains_on_the_val_transform(imagenet):
    loaded = data.load_data(spec(augment=False, seed=3), imagenet, log=quiet)
    train = torch.cat([x for x, _ in loaded.train_loader])
    assert train.shape == (12, 3, 224, 224)
    centres = train[:, :, 112, 112]  # centre crop: every centre is its class colour
    assert torch.unique(centres.round(decimals=1), dim=0).shape[0] == 3


def test_subsets_are_evenly_spaced_and_cover_every_class(imagenet):
    loaded = data.load_data(spec(train_subset=3, test_subset=3), imagenet, log=quiet)
    train_labels = torch.cat([y for _, y in loaded.train_loader])
    _, test_labels = next(iter(loaded.test_loader))
    assert sorted(train_labels.tolist()) == [0, 1, 2]  # the first 3 would all be class 0
    assert test_labels.tolist() == [0, 1, 2]
    assert loaded.train_loader.dataset.indices == [2, 6, 10]
    prov = loaded.provenance
    assert prov["train_images_used"] == 3 and prov["train_size"] == 12
    assert prov["subset_rule"] == data.EVENLY_SPACED_RULE


def test_other_datasets_keep_the_first_n():
    first = data.take_subset(data.dataset_info("cifar10"), list(range(10)), 3, what="x", log=quiet)
    spaced = data.take_subset(INFO, list(range(10)), 3, what="x", log=quiet)
    assert list(first) == [0, 1, 2] and list(spaced) == [1, 5, 8]


def test_provenance_counts_classes_and_images(imagenet):
    prov = data.load_data(spec(), imagenet, log=quiet).provenance
    assert prov["dataset"] == "imagenet"
    assert prov["directory"] == str((imagenet / "imagenet").resolve())
    assert (prov["num_classes"], prov["expected_classes"]) == (3, 1000)
    assert (prov["train_size"], prov["test_size"]) == (12, 6)
    assert prov["sha256_of"] == "file list (path, size)" and prov["verified"] is False


def test_a_symlinked_imagenet_is_followed_and_resolved(tmp_path):
    fakedata.write_imagenet(tmp_path / "cluster", n_train=2, n_val=1)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "imagenet").symlink_to(tmp_path / "cluster" / "imagenet")
    prov = data.load_data(spec(), tmp_path / "data", log=quiet).provenance
    assert prov["directory"] == str((tmp_path / "cluster" / "imagenet").resolve())
    assert prov["train_size"] == 6


def test_sha256_follows_file_sizes_not_contents(imagenet):
    def sha() -> str:
        return data.load_datasets("imagenet", imagenet, augment=True, log=quiet)[2]["sha256"]

    before = sha()
    photo = imagenet / "imagenet" / "val" / WNIDS[1] / "ILSVRC2012_val_00000003.JPEG"
    content = photo.read_bytes()
    photo.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))  # same size, other bytes
    assert sha() == before  # by design: only (path, size) are hashed
    photo.write_bytes(content + b"\0")
    assert sha() != before
    photo.write_bytes(content)
    assert sha() == before


def test_class_lists_that_differ_are_one_error_naming_them(imagenet):
    folder = imagenet / "imagenet"
    shutil.rmtree(folder / "val" / WNIDS[2])
    shutil.copytree(folder / "train" / WNIDS[0], folder / "train" / "n09999999")
    shutil.copytree(folder / "val" / WNIDS[0], folder / "val" / "n00000001")
    message = error_of(data.load_data, spec(), imagenet, log=quiet)
    assert f"only in train/: {WNIDS[2]}, n09999999; only in val/: n00000001" in message
    assert str((folder / "train").absolute()) in message
    assert str((folder / "val").absolute()) in message


def test_missing_imagenet_names_dataset_path_layout_and_remedies(tmp_path):
    message = error_of(data.load_data, spec(), tmp_path / "empty", log=quiet)
    assert "dataset imagenet not found" in message
    assert str((tmp_path / "empty" / "imagenet").resolve()) in message
    assert "train/<wnid>/*.JPEG" in message and "val/<wnid>/*.JPEG" in message
    for remedy in ("ln -s", "image-net.org", "valprep.sh", "--data-dir"):
        assert remedy in message


def test_a_dangling_symlink_shows_where_it_points(tmp_path):
    (tmp_path / "imagenet").symlink_to(tmp_path / "gone")
    message = error_of(data.load_data, spec(), tmp_path, log=quiet)
    assert f"(resolved: {(tmp_path / 'gone').resolve()})" in message


def test_a_missing_split_is_named(imagenet):
    shutil.rmtree(imagenet / "imagenet" / "val")
    message = error_of(data.load_data, spec(), imagenet, log=quiet)
    assert "no folder val/" in message and "dataset imagenet not found" in message


def test_raw_flat_val_folder_gets_its_own_message(imagenet):
    val = fakedata.flatten_imagenet_val(imagenet)
    message = error_of(data.load_data, spec(), imagenet, log=quiet)
    assert "holds image files directly, with no class folders" in message
    assert str(val.absolute()) in message and "valprep.sh" in message


def test_a_class_folder_without_images_is_one_clear_error(imagenet):
    for photo in (imagenet / "imagenet" / "val" / WNIDS[1]).iterdir():
        photo.unlink()
    message = error_of(data.load_data, spec(), imagenet, log=quiet)
    assert "class folder(s) without images" in message and WNIDS[1] in message


def test_download_is_refused_with_how_to_get_it(tmp_path):
    message = error_of(data.load_data, spec(), tmp_path, download=True, log=quiet)
    assert "cannot be downloaded automatically" in message and "licence" in message
    assert "image-net.org" in message and "train/<wnid>/*.JPEG" in message


def test_download_with_the_data_present_uses_them(imagenet):
    lines: list[str] = []
    loaded = data.load_data(spec(), imagenet, download=True, log=lines.append)
    assert loaded.provenance["train_size"] == 12
    assert any("never downloaded" in line for line in lines)
