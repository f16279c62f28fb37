"""Deconvolution kernels (runners/kernels.py, runners/specs/kernels.py, `audit kernels`).

Real data: the offline scikit-image colour photographs. Synthetic data: white noise (no
correlation: the whitening kernel must be a scaled delta) and 1/f images (natural-image-like
spectra, as in docs/method.md#kernel-figure's verified check).
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from runners.errors import RunnerInputError
from runners.kernels import (
    CS_THRESHOLD,
    PatchMoments,
    centre_index,
    centre_surround,
    compute_kernels,
    deconv_matrix,
    image_patches,
    kernels_from_deconv,
    run,
    skimage_images,
    to_tensor,
)
from runners.registry import get_runner
from runners.specs import effective_spec, run_id
from runners.specs.kernels import KernelsSpec

K = 5


def one_over_f_images(n: int, size: int, seed: int) -> list[torch.Tensor]:
    """RGB images with a 1/f amplitude spectrum and correlated colour channels."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :]
    freq = np.hypot(fx, fy)
    amplitude = np.divide(1.0, freq, out=np.zeros_like(freq), where=freq > 0)
    mixing = np.linalg.cholesky(np.array([[1, 0.9, 0.8], [0.9, 1, 0.9], [0.8, 0.9, 1]]))
    images = []
    for _ in range(n):
        noise = rng.standard_normal((3, size, size))
        grey = np.real(np.fft.ifft2(np.fft.fft2(noise) * amplitude))
        rgb = np.einsum("ij,jhw->ihw", mixing, grey)
        images.append(torch.tensor(rgb / rgb.std(), dtype=torch.float32))
    return images


def items(images: list[torch.Tensor]) -> list[tuple[str, torch.Tensor, str]]:
    return [(f"synthetic[{i}]", image, "-") for i, image in enumerate(images)]


def spec_of(**fields) -> KernelsSpec:
    return KernelsSpec.from_dict({"kind": "kernels", "source": "skimage", **fields})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, torch.Tensor, str]]:
    """40 real 64-px tiles of the scikit-image photographs, normalised like training."""
    images = skimage_images(spec_of(n_images=40))
    return [(i, to_tensor(a, images.mean, images.std), c) for i, a, c in images.items()]


# --- what the kernels look like -------------------------------------------------------------


def test_photograph_kernels_are_centre_surround(photos):
    comp = compute_kernels(photos, spec_of())
    profile = centre_surround(comp.kernels)
    assert profile["score"] == 1.0
    for channel in profile["channels"].values():
        assert channel["centre"] > 0 > channel["ring"]
        assert channel["surround_ratio"] >= CS_THRESHOLD
        # The surround fades with distance: ring 1 is the strongest negative ring.
        assert (
            channel["radial_profile"][1] < channel["radial_profile"][2] <= 0.05 * channel["centre"]
        )


def test_white_noise_kernel_is_a_scaled_delta():
    torch.manual_seed(0)
    noise = [2.0 * torch.randn(3, 64, 64) for _ in range(8)]
    comp = compute_kernels(items(noise), spec_of())
    kernels = comp.kernels
    for c in range(3):
        centre = kernels[c, c, K // 2, K // 2]
        assert centre == pytest.approx(0.5, rel=0.03)  # 1 / std
        rest = kernels[c].clone()
        rest[c, K // 2, K // 2] = 0
        assert rest.abs().max() < 0.03 * centre
    assert centre_surround(kernels)["score"] == 0.0


def test_one_over_f_exact_root_is_centre_surround_but_ns5_is_almost_a_delta():
    images = items(one_over_f_images(6, 96, seed=1))
    exact = centre_surround(compute_kernels(images, spec_of()).kernels)
    ns5 = centre_surround(compute_kernels(images, spec_of(isqrt="newton_schulz", n_iter=5)).kernels)
    assert exact["score"] == 1.0
    assert exact["opponent_fraction"] > 0.5  # other-channel centres mostly of opposite sign
    assert ns5["score"] == 0.0
    for name in ("red", "green", "blue"):
        # docs/method.md#kernel-figure [verified]: centre ~1.07, surround ~-0.05 at n = 5.
        assert 0.9 < ns5["channels"][name]["centre"] < 1.2
        assert -0.08 < ns5["channels"][name]["ring"] < 0
        assert ns5["channels"][name]["centre_energy"] > 0.9
        assert exact["channels"][name]["centre"] > 3 * ns5["channels"][name]["centre"]


def test_newton_schulz_with_15_iterations_matches_the_exact_kernels(photos):
    exact = compute_kernels(photos[:10], spec_of()).kernels
    ns15 = compute_kernels(photos[:10], spec_of(isqrt="newton_schulz")).kernels
    ns5 = compute_kernels(photos[:10], spec_of(isqrt="newton_schulz", n_iter=5)).kernels
    assert torch.linalg.vector_norm(ns15 - exact) < torch.linalg.vector_norm(ns5 - exact)


# --- which matrix and which coordinates ----------------------------------------------------


def test_kernel_is_the_row_of_d_in_unfold_order():
    """conv2d with the kernels equals D @ (patch - mean) at each channel's centre coordinate."""
    torch.manual_seed(0)
    image = torch.randn(3, 12, 12, dtype=torch.float64)
    d = torch.randn(3 * K * K, 3 * K * K, dtype=torch.float64)  # not symmetric: row != column
    mean = torch.randn(3 * K * K, dtype=torch.float64)
    kernels = kernels_from_deconv(d, K)
    for c in range(3):
        assert torch.equal(kernels[c], d[centre_index(c, K)].view(3, K, K))
    patches = image_patches(image, K)  # (75, 64)
    direct = (d @ (patches - mean[:, None]))[[centre_index(c, K) for c in range(3)]]
    bias = -(kernels.reshape(3, -1) @ mean)
    conv = F.conv2d(image[None], kernels, bias)[0].reshape(3, -1)
    torch.testing.assert_close(conv, direct)


def test_pooled_covariance_is_over_all_patches():
    images = one_over_f_images(2, 40, seed=2) + [torch.randn(3, 40, 40) for _ in range(2)]
    moments = PatchMoments.zeros(3 * K * K)
    for image in images:
        moments.add(image_patches(image, K))
    everything = torch.cat([image_patches(image, K) for image in images], 1).double()
    torch.testing.assert_close(moments.covariance, torch.cov(everything, correction=0))
    assert moments.count == everything.shape[1]


def test_per_image_average_differs_from_pooled_on_heterogeneous_images():
    torch.manual_seed(0)
    images = items(
        one_over_f_images(3, 48, seed=3) + [3 * torch.randn(3, 48, 48) for _ in range(3)]
    )
    pooled = compute_kernels(images, spec_of())
    averaged = compute_kernels(images, spec_of(per_image=True))
    # The pooled variant is the row of the pooled D, whatever the per-image D are.
    torch.testing.assert_close(averaged.pooled_kernels, pooled.kernels)
    relative = torch.linalg.vector_norm(
        averaged.kernels - pooled.kernels
    ) / torch.linalg.vector_norm(pooled.kernels)
    assert relative > 0.2
    d = deconv_matrix(pooled.moments.covariance, 1e-5)
    assert not torch.allclose(torch.diagonal(d)[:3], pooled.kernels[:, 0, 0, 0])


# --- the figure and the run directory -------------------------------------------------------


def _assert_self_contained_svg(text: str) -> None:
    root = ET.fromstring(text)
    assert root.tag.endswith("svg")
    assert "<image" not in text  # vector cells, no embedded raster
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.endswith("href"):
                assert value.startswith("#"), f"external reference {value!r}"


def test_run_writes_every_file(tmp_path):
    spec = {"kind": "kernels", "source": "skimage", "n_images": 12, "image_size": 32}
    assert get_runner("kernels") is run
    result = run(spec, tmp_path / "r1")
    run_dir = tmp_path / "r1"
    names = {p.name for p in run_dir.iterdir()}
    wanted = {"spec.yaml", "provenance.json", "kernels.npz", "kernels.svg"}
    assert wanted | {"metrics.jsonl", "log.txt", "result.json"} <= names
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["status"] == "done" and saved["run_id"] == "r1"
    assert saved["metrics"]["centre_surround_score"] == result.metrics["centre_surround_score"]
    assert result.metrics["centre_surround_score"] == 1.0
    assert all(isinstance(v, float) for v in saved["metrics"].values())
    assert "source=skimage (paper: ImageNet images)" in saved["deviations"]
    assert yaml.safe_load((run_dir / "spec.yaml").read_text()) == effective_spec(spec)
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["images"]["n_images"] == 12 and len(provenance["images"]["ids"]) == 12
    arrays = np.load(run_dir / "kernels.npz")
    assert arrays["kernels"].shape == (3, 3, K, K) and arrays["deconv"].shape == (75, 75)
    record = json.loads((run_dir / "metrics.jsonl").read_text())
    assert len(record["channels"]["red"]["radial_profile"]) == K // 2 + 1
    _assert_self_contained_svg((run_dir / "kernels.svg").read_text())
    # Same spec again into the same directory: same images (checksum), one metrics line.
    run(spec, run_dir)
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    again = json.loads((run_dir / "provenance.json").read_text())
    assert again["images"]["sha256"] == provenance["images"]["sha256"]


def test_a_run_directory_of_another_spec_is_refused(tmp_path):
    spec = {"kind": "kernels", "source": "skimage", "n_images": 2, "image_size": 32}
    run(spec, tmp_path / "r")
    with pytest.raises(RunnerInputError, match="different spec"):
        run({**spec, "kernel_size": 3}, tmp_path / "r")


def test_bad_device_is_reported(tmp_path):
    with pytest.raises(RunnerInputError, match="unknown device 'gpu0'"):
        run(
            {"kind": "kernels", "source": "skimage", "n_images": 2, "image_size": 32},
            tmp_path / "r",
            device="gpu0",
        )


def test_pinned_image_checksum_must_match(tmp_path):
    spec = {
        "kind": "kernels",
        "source": "skimage",
        "n_images": 12,
        "image_size": 32,
        "images_sha256": "0" * 64,
    }
    with pytest.raises(RunnerInputError, match="images_sha256"):
        run(spec, tmp_path / "r")
    assert not (tmp_path / "r" / "result.json").exists()


def _write_photo_folder(folder: Path) -> None:
    import skimage.data
    from PIL import Image

    (folder / "sub").mkdir(parents=True)
    Image.fromarray(skimage.data.astronaut()).save(folder / "a.png")
    Image.fromarray(skimage.data.coffee()).save(folder / "sub" / "b.JPG", quality=95)
    Image.fromarray(skimage.data.camera()).save(folder / "sub" / "grey.png")  # converted to RGB
    (folder / "notes.txt").write_text("not an image")


def test_folder_source_uses_every_image_and_identifies_their_content(tmp_path):
    folder = tmp_path / "images"
    _write_photo_folder(folder)
    spec = {"kind": "kernels", "source": "folder", "n_images": 3, "resize": 64, "image_size": 48}
    run(spec, tmp_path / "r1", data_dir=folder)
    provenance = json.loads((tmp_path / "r1" / "provenance.json").read_text())
    assert provenance["images"]["ids"] == ["a.png", "sub/b.JPG", "sub/grey.png"]
    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.rocket()).save(folder / "a.png")  # same name, new content
    run(spec, tmp_path / "r2", data_dir=folder)
    changed = json.loads((tmp_path / "r2" / "provenance.json").read_text())
    assert changed["images"]["ids"] == provenance["images"]["ids"]
    assert changed["images"]["sha256"] != provenance["images"]["sha256"]


def test_imagenet_source_draws_from_the_val_split_of_the_data_directory(tmp_path):
    """The paper's source: ImageNet images, from <data_dir>/imagenet/val (not train)."""
    from tests import fakedata

    data_dir = fakedata.write_imagenet(tmp_path / "data", n_train=1, n_val=2)
    spec = {"kind": "kernels", "source": "imagenet", "n_images": 6, "kernel_size": 3}
    result = run(spec, tmp_path / "run", data_dir=data_dir)
    assert result.status == "done" and result.deviations == ["n_images=6 (paper: 1024)"]
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["images"]["source"] == "imagenet"
    ids = provenance["images"]["ids"]
    assert len(ids) == 6 and all(i.startswith("n0") and "_val_" in i for i in ids)
    assert effective_spec({"kind": "kernels", "source": "imagenet"})["n_images"] == 1024
    with pytest.raises(RunnerInputError, match=r"imagenet/val, which does not exist.*skimage"):
        run(spec, tmp_path / "missing", data_dir=tmp_path / "nothing")


@pytest.mark.parametrize(
    ("fields", "setup", "message"),
    [
        ({"source": "folder"}, "empty", "no usable image"),
        ({"source": "folder", "n_images": 5}, "three", "only 3 images"),
        ({"source": "folder", "n_images": 1}, "corrupt", "could not be decoded"),
        ({"source": "folder"}, "none", "needs the image folder"),
        ({"source": "cifar10", "n_images": 4}, "empty", "cifar"),
    ],
)
def test_bad_image_sources_are_reported(tmp_path, fields, setup, message):
    folder = tmp_path / "images"
    folder.mkdir()
    if setup == "three":
        _write_photo_folder(folder)
    if setup == "corrupt":
        (folder / "broken.jpg").write_bytes(b"not a jpeg")
    data_dir = None if setup == "none" else folder
    with pytest.raises(RunnerInputError, match=message):
        run({"kind": "kernels", **fields}, tmp_path / "run", data_dir=data_dir)


def test_too_few_patches_for_the_covariance_is_reported():
    tiny = items([torch.randn(3, 6, 6)])
    with pytest.raises(RunnerInputError, match="too few images"):
        compute_kernels(tiny, spec_of())


# --- the spec --------------------------------------------------------------------------------


def test_spec_defaults_are_resolved_per_source_and_solver():
    paper = effective_spec({"kind": "kernels"})  # the paper's figure: 1024 ImageNet images
    assert (paper["source"], paper["n_images"], paper["image_size"]) == ("imagenet", 1024, 224)
    assert KernelsSpec.from_dict(paper).deviations() == []
    skimage = {"kind": "kernels", "source": "skimage"}
    assert effective_spec(skimage)["n_images"] is None  # every skimage tile
    folder = effective_spec({"kind": "kernels", "source": "folder"})
    assert (folder["n_images"], folder["resize"], folder["image_size"]) == (1024, 256, 224)
    cifar = effective_spec({"kind": "kernels", "source": "cifar10"})
    assert (cifar["resize"], cifar["image_size"]) == (None, 32)
    ns = effective_spec({**skimage, "isqrt": "newton_schulz"})
    assert ns["n_iter"] == 15 and effective_spec(ns) == ns
    assert run_id(ns) != run_id(effective_spec(skimage))
    assert run_id(ns).startswith("kernels-skimage-k5-newtonschulz-s0-")
    assert any("ImageNet" in d for d in KernelsSpec.from_dict(ns).deviations())
    assert KernelsSpec.from_dict(folder).deviations() == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kernel_size": 4}, "odd"),
        ({"colour": True}, "unknown kernels spec field"),
        ({"n_iter": 5}, "only applies to isqrt newton_schulz"),
        ({"source": "imagenet21k"}, "source must be one of"),
        ({"image_size": 3}, "smaller than kernel_size"),
        ({"source": "cifar10", "image_size": 40}, "exceeds CIFAR"),
        ({"images_sha256": "abc"}, "64 lower-case hex"),
        ({"eps": 0}, "eps must be a positive number"),
        ({"eps": float("nan")}, "eps must be a positive number"),
    ],
)
def test_bad_spec_fields_are_rejected(fields, message):
    with pytest.raises(RunnerInputError, match=message):
        effective_spec({"kind": "kernels", **fields})


# --- the command ------------------------------------------------------------------------------


def test_audit_kernels_prints_the_score(tmp_path, capsys):
    from audit.cli import main

    code = main(["kernels", "--out", str(tmp_path / "k"), "--n-images", "10", "--image-size", "48"])
    out = capsys.readouterr().out
    assert code == 0
    assert "centre_surround_score 1.00" in out
    assert all(name in out for name in ("red", "green", "blue"))
    assert json.loads((tmp_path / "k" / "result.json").read_text())["status"] == "done"
    assert main(["kernels", "--out", str(tmp_path / "bad"), "--kernel-size", "4"]) == 2
    assert "odd" in capsys.readouterr().err


def test_audit_kernels_module_does_not_import_torch():
    code = (
        "import sys, argparse, audit.commands.kernels as k; "
        "k.add_arguments(argparse.ArgumentParser()); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
