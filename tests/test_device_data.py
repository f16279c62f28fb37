"""The device-resident CIFAR pipeline realises the authors' augmentation
(docs/method.md#cifar-protocol)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare
from torchvision.transforms import functional as TF

from runners import classify
from runners.data import CROP_PADDING, dataset_info, load_data, make_transform
from runners.device_data import (
    DeviceLoader,
    crop_and_flip,
    draw_augmentation,
    load_device_data,
    normalise,
    resolve_data_path,
)
from runners.errors import RunnerInputError
from runners.specs import effective_spec, run_id
from runners.specs.classify import ClassifySpec
from tests import fakedata

CPU = torch.device("cpu")


def test_offsets_and_flips_are_uniform():
    top, left, flip = draw_augmentation(90_000, torch.Generator().manual_seed(0), CPU)
    span = 2 * CROP_PADDING + 1
    assert int(top.min()) == 0 and int(top.max()) == span - 1
    joint = torch.bincount(top * span + left, minlength=span * span).numpy()
    assert chisquare(joint).pvalue > 1e-3  # 81 (top, left) cells equally likely
    flips = int(flip.sum())
    assert abs(flips - 45_000) < 4 * (90_000 * 0.25) ** 0.5  # Bernoulli(1/2), 4 sigma
    assert chisquare(torch.bincount(flip[top == 3].long()).numpy()).pvalue > 1e-3


def _torchvision_reference(
    image: np.ndarray, top: int, left: int, flip: bool, info
) -> torch.Tensor:
    """torchvision's own steps of RandomCrop(32, padding=4) + flip + ToTensor + Normalize."""
    pil = TF.pad(Image.fromarray(image), CROP_PADDING, fill=0)
    pil = TF.crop(pil, top, left, 32, 32)
    if flip:
        pil = TF.hflip(pil)
    return TF.normalize(TF.to_tensor(pil), info.mean, info.std)


def test_given_offsets_the_pixels_equal_torchvisions_transform():
    info = dataset_info("cifar10")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    top = torch.tensor([0, 8, 4, 0, 8, 1, 7, 3, 0, 8, 2, 5])
    left = torch.tensor([0, 8, 4, 8, 0, 6, 2, 3, 0, 8, 7, 5])
    flip = torch.tensor([0, 0, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1], dtype=torch.bool)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    got = normalise(
        crop_and_flip(batch, top, left, flip),
        torch.tensor(info.mean),
        torch.tensor(info.std),
    )
    for i in range(len(images)):
        expected = _torchvision_reference(images[i], int(top[i]), int(left[i]), bool(flip[i]), info)
        assert torch.equal(got[i], expected), i
    # the unaugmented test path equals the test transform exactly
    test_transform = make_transform(info, train=False, augment=True)
    plain = normalise(batch, torch.tensor(info.mean), torch.tensor(info.std))
    assert torch.equal(plain[0], test_transform(Image.fromarray(images[0])))


def _spec(**fields) -> ClassifySpec:
    base = {"dataset": "cifar10", "arch": "vgg16", "norm": "bn", "epochs": 1, "batch_size": 8}
    return ClassifySpec.from_dict({**base, **fields})


def test_loader_shuffles_every_image_once_and_keeps_the_partial_batch(tmp_path):
    root = fakedata.write_cifar10(tmp_path, n_train=20, n_test=10)
    data = load_device_data(_spec(), CPU, root, verify=False, log=lambda _: None)
    assert len(data.train_loader) == 3 and len(data.test_loader) == 2
    epochs = []
    for _ in range(2):
        batches = list(data.train_loader)
        assert [len(labels) for _, labels in batches] == [8, 8, 4]
        images = torch.cat([x for x, _ in batches])
        assert images.shape == (20, 3, 32, 32) and images.dtype == torch.float32
        epochs.append(torch.cat([y for _, y in batches]))
    reference = load_data(_spec(), root, verify=False, log=lambda _: None)
    labels = torch.cat([y for _, y in reference.test_loader])
    assert torch.equal(torch.cat([y for _, y in data.test_loader]), labels)  # in order
    train_labels = torch.tensor(reference.train_loader.dataset.targets)
    for epoch in epochs:  # a permutation of the training set each epoch
        assert torch.equal(epoch.sort().values, train_labels.sort().values)
    assert not torch.equal(epochs[0], epochs[1])


def test_generator_state_resumes_the_stream(tmp_path):
    root = fakedata.write_cifar10(tmp_path, n_train=20, n_test=10)
    data = load_device_data(_spec(), CPU, root, verify=False, log=lambda _: None)
    state = data.generator.get_state()
    first = [x for x, _ in data.train_loader]
    data.generator.set_state(state)
    again = [x for x, _ in data.train_loader]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_unaugmented_device_loader_only_normalises():
    info = dataset_info("cifar10")
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    loader = DeviceLoader(
        images,
        torch.arange(5),
        info,
        batch_size=5,
        train=True,
        augment=False,
        generator=torch.Generator().manual_seed(0),
    )
    ((batch, labels),) = list(loader)
    expected = normalise(images[labels], torch.tensor(info.mean), torch.tensor(info.std))
    assert torch.equal(batch, expected)


def test_data_path_field_defaults_keep_run_ids_and_resolve_per_device():
    fields = {"kind": "classify", "dataset": "cifar10", "arch": "vgg16", "norm": "nd", "epochs": 20}
    assert "data_path" not in effective_spec(fields)
    assert run_id(effective_spec(fields)) == run_id(effective_spec({**fields, "data_path": "auto"}))
    assert run_id(effective_spec({**fields, "data_path": "device"})) != run_id(
        effective_spec(fields)
    )
    assert _spec(data_path="device").deviations() == _spec().deviations()
    assert resolve_data_path("auto", "cifar10", torch.device("cuda")) == "device"
    assert resolve_data_path("auto", "cifar10", CPU) == "loader"
    assert resolve_data_path("auto", "mnist", torch.device("cuda")) == "loader"
    assert resolve_data_path("device", "cifar100", CPU) == "device"
    with pytest.raises(RunnerInputError, match="data_path"):
        resolve_data_path("device", "mnist", CPU)
    with pytest.raises(RunnerInputError, match="data_path"):
        _spec(data_path="gpu")


@pytest.mark.slow  # trains, or starts processes that import torch
@pytest.mark.usefixtures("one_torch_thread")
def test_run_on_the_device_path_records_it(tmp_path):
    root = fakedata.write_cifar10(tmp_path / "data", n_train=16, n_test=8)
    spec = {
        "kind": "classify",
        "dataset": "cifar10",
        "arch": "vgg16",
        "norm": "nd",
        "epochs": 1,
        "batch_size": 8,
        "data_path": "device",
    }
    result = classify.run(spec, tmp_path / "run", data_dir=root, device="cpu", verify_data=False)
    assert result.status == "done"
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["dataset"]["data_path"] == "device"
    assert provenance["dataset"]["train_images_used"] == 16
