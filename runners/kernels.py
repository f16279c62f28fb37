"""First-layer deconvolution kernels and their centre-surround score (docs/method.md#kernel-figure).

What is computed (docs/method.md#kernel-figure, mirroring what a FastDeconv stem computes):
1. N RGB images, preprocessed like training (resize, crop, ToTensor, Normalize).
2. All k x k x 3 patches (torch unfold, so coordinate c*k^2 + i*k + j, as the layer's im2col),
   pooled over all N images into one mean and one covariance (float64).
3. D = (Cov + eps I)^{-1/2}, exactly (eigh) or by the layer's Newton-Schulz iteration.
4. The kernel of colour channel c is the row of D at (channel c, centre pixel), viewed as
   3 x k x k: the deconvolved output of channel c is that kernel applied to the centred patch.
   (Not diag(D), and not an average of per-image D: both were bugs of the seed study.)
   `per_image=True` computes the seed's averaged-per-image-D variant instead, for contrast.

The score (`centre_surround`): for colour channel c take its own-channel slice S = K_c[c],
its centre value and the mean of its distance-1 ring (the 8 neighbours). The channel is
centre-surround when the ring has the opposite sign of the centre and
|ring| >= CS_THRESHOLD * |centre|, i.e. when surround_ratio = -ring / centre >= 0.05.
Why 0.05: the claim is visual, and on the figure's diverging scale (+-|centre|) a ring below
5 % of the centre is within the first step of the colour map, i.e. invisible. Measured here:
the converged root gives ratios 0.11-0.14 on photographs and 1/f images, the layer's n = 5
Newton-Schulz 0.02-0.04 (almost a delta, as docs/method.md#kernel-figure), white noise < 0.005.

Metric keys of RunResult.metrics (all floats; `<ch>` is red, green or blue):
- centre_surround_score: fraction of the 3 colour channels that are centre-surround (the
  claim needs 1.0); centre_surround_<ch>: 1.0 or 0.0 for that channel.
- centre_<ch>, ring_<ch>: the own-slice centre value and distance-1 ring mean;
  surround_ratio_<ch> = -ring / centre; centre_energy_<ch>: centre^2 over the kernel's total
  squared weight (1.0 for a delta).
- opponent_fraction: of the 6 other-channel slices, the fraction whose centre has the opposite
  sign of the own centre (colour opponency; information, not part of the claim).
- whitening_error: ||D A D - I||_F / sqrt(d), A = Cov + eps I (0 for an exact root);
  isqrt_relative_error: ||D - D_exact||_F / ||D_exact||_F.
- n_images, n_patches; with per_image also pooled_centre_surround_score and
  per_image_vs_pooled (relative Frobenius difference of the two kernel sets).
metrics.jsonl has one line with all of these plus radial profiles (mean by Chebyshev radius
0..k//2 of each own slice) and the other-channel slices' centre and ring values.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from runners import catalogue, rundir
from runners.deconv import isqrt_exact, isqrt_newton_schulz
from runners.device import pick_device
from runners.errors import RunnerInputError
from runners.specs.kernels import KernelsSpec

CS_THRESHOLD = 0.05  # |ring| / |centre| needed for a visible surround (module docstring)
CHANNELS = ("red", "green", "blue")
KERNELS_NPZ = "kernels.npz"
KERNELS_SVG = "kernels.svg"
MAX_SAVED_D = 1024  # D itself goes into kernels.npz up to this size (k <= 18)

# The colour photographs of scikit-image that load offline (environment.md). Grey images
# (camera, brick, grass, ...) are skipped: with R = G = B the 3k^2 covariance has rank k^2,
# so every cross-channel direction of D would be set by eps alone. The scientific colour
# images (hubble_deep_field, retina, immunohistochemistry) are mostly black background or
# stained tissue, not natural scenes, and are left out too.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")
# torchvision's ImageNet Normalize (main_imagenet.py), the catalogue's
IMAGENET_MEAN, IMAGENET_STD = (
    catalogue.DATASETS["imagenet"].mean,
    catalogue.DATASETS["imagenet"].std,
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


# ---------------------------------------------------------------------------------------------
# Image sources
# ---------------------------------------------------------------------------------------------


@dataclass
class ImageSet:
    """N chosen images of one source, loaded lazily as H x W x 3 uint8 arrays.

    `content[i]` is a sha256 of image i's source content (the photograph's pixels, the file's
    bytes, the CIFAR image's pixels), so `checksum()` identifies what was used, not where.
    """

    source: str
    ids: list[str]
    load: Callable[[int], tuple[np.ndarray, str]]  # index -> (array, content sha256)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    details: dict[str, Any] = field(default_factory=dict)  # source-specific provenance

    def __len__(self) -> int:
        return len(self.ids)

    def items(self) -> Iterator[tuple[str, np.ndarray, str]]:
        for index, image_id in enumerate(self.ids):
            array, content = self.load(index)
            yield image_id, array, content


def set_checksum(ids: list[str], contents: list[str]) -> str:
    """sha256 over the ordered (id, content sha256) pairs of the images used."""
    text = "\n".join(f"{i} {c}" for i, c in zip(ids, contents, strict=True))
    return hashlib.sha256(text.encode()).hexdigest()


def choose(n_available: int, n_images: int | None, seed: int, what: str) -> list[int]:
    """Indices of the images to use: all, or n_images drawn without replacement by `seed`."""
    if n_available == 0:
        raise RunnerInputError(f"{what} holds no usable image; point it at RGB jpg/png images")
    if n_images is None or n_images == n_available:
        return list(range(n_available))
    if n_images > n_available:
        raise RunnerInputError(
            f"{what} has only {n_available} images but n_images is {n_images}; "
            f"lower n_images (--n-images) to at most {n_available} or add images"
        )
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_available, size=n_images, replace=False))


def resize_shorter(image: Any, size: int | None) -> Any:
    """Resize a PIL image so its shorter side is `size` (bilinear, like torchvision Resize)."""
    if size is None:
        return image
    from PIL import Image

    width, height = image.size
    scale = size / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image.resize(new, Image.Resampling.BILINEAR, reducing_gap=None)


def centre_crop(array: np.ndarray, size: int) -> np.ndarray:
    height, width = array.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return array[top : top + size, left : left + size]


def skimage_images(spec: KernelsSpec) -> ImageSet:
    """The offline colour photographs, resized and cut into non-overlapping square tiles."""
    import skimage.data
    from PIL import Image

    tiles: list[tuple[str, np.ndarray, str]] = []
    size = spec.image_size
    for name in SKIMAGE_PHOTOS:
        if name == "motorcycle_left":
            photo = skimage.data.stereo_motorcycle()[0]
        else:
            photo = getattr(skimage.data, name)()
        content = hashlib.sha256(np.ascontiguousarray(photo).tobytes()).hexdigest()
        scaled = np.asarray(resize_shorter(Image.fromarray(photo), spec.resize))
        for top in range(0, scaled.shape[0] - size + 1, size):
            for left in range(0, scaled.shape[1] - size + 1, size):
                tile = scaled[top : top + size, left : left + size]
                tiles.append((f"{name}[{top}:{top + size},{left}:{left + size}]", tile, content))
    chosen = [tiles[i] for i in choose(len(tiles), spec.n_images, spec.seed, "scikit-image")]
    return ImageSet(
        "skimage",
        [t[0] for t in chosen],
        lambda i: (chosen[i][1], chosen[i][2]),
        IMAGENET_MEAN,
        IMAGENET_STD,
        {"photos": list(SKIMAGE_PHOTOS), "tiles_available": len(tiles)},
    )


def imagenet_images(spec: KernelsSpec, data_dir: Path | None) -> ImageSet:
    """The paper's source: random ImageNet images, from the val split of the classification
    runs' ImageNet (<data_dir>/imagenet/val/<wnid>/*.JPEG)."""
    from runners import data as datasets

    root = Path(data_dir) if data_dir is not None else datasets.default_data_dir()
    info = datasets.dataset_info("imagenet")
    val = datasets.image_folder_base(info, root) / "val"
    if not val.is_dir():
        raise RunnerInputError(
            f"kernels source imagenet draws its images from {val.absolute()}, which does not "
            f"exist. Expected {info.how_to_get}; or compute the kernels of another source "
            "(source: skimage works offline)"
        )
    images = folder_images(spec, val)
    return replace(images, source="imagenet")


def folder_images(spec: KernelsSpec, folder: Path | None) -> ImageSet:
    """jpg/png files under `folder` (recursive), each resized and centre-cropped."""
    if folder is None:
        raise RunnerInputError(
            "source 'folder' needs the image folder: pass data_dir (audit kernels --images PATH)"
        )
    folder = Path(folder)
    if not folder.is_dir():
        raise RunnerInputError(f"image folder {folder} does not exist; pass an existing folder")
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    chosen = [files[i] for i in choose(len(files), spec.n_images, spec.seed, f"folder {folder}")]

    def load(index: int) -> tuple[np.ndarray, str]:
        return _load_file(folder / chosen[index], spec)

    return ImageSet(
        "folder",
        chosen,
        load,
        IMAGENET_MEAN,
        IMAGENET_STD,
        {"directory": str(folder.resolve()), "files_available": len(files)},
    )


def _load_file(path: Path, spec: KernelsSpec) -> tuple[np.ndarray, str]:
    from PIL import Image, UnidentifiedImageError

    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = resize_shorter(image.convert("RGB"), spec.resize)
    except (UnidentifiedImageError, OSError) as exc:
        raise RunnerInputError(
            f"image file {path} could not be decoded ({exc}); remove it or replace it"
        ) from None
    array = np.asarray(rgb)
    if min(array.shape[:2]) < spec.image_size:
        raise RunnerInputError(
            f"image {path} is {array.shape[1]}x{array.shape[0]} after resizing, smaller than "
            f"image_size {spec.image_size}; set resize >= image_size"
        )
    return centre_crop(array, spec.image_size), hashlib.sha256(data).hexdigest()


def cifar_images(spec: KernelsSpec, data_dir: Path | None) -> ImageSet:
    """Training images of CIFAR-10/100 through runners.data (md5-verified torchvision files)."""
    from PIL import Image

    from runners import data as datasets

    train_set, _, provenance = datasets.load_datasets(
        spec.source, data_dir, augment=False, log=lambda _: None
    )
    raw = train_set.data  # (50000, 32, 32, 3) uint8, before any transform
    indices = choose(len(raw), spec.n_images, spec.seed, f"{spec.source} training set")
    info = datasets.dataset_info(spec.source)

    def load(i: int) -> tuple[np.ndarray, str]:
        image = raw[indices[i]]
        content = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
        scaled = np.asarray(resize_shorter(Image.fromarray(image), spec.resize))
        return centre_crop(scaled, spec.image_size), content

    return ImageSet(
        spec.source,
        [f"train[{i}]" for i in indices],
        load,
        info.mean,
        info.std,
        {"dataset": provenance},
    )


def open_images(spec: KernelsSpec, data_dir: Path | None) -> ImageSet:
    if spec.source == "skimage":
        return skimage_images(spec)
    if spec.source == "imagenet":
        return imagenet_images(spec, data_dir)
    if spec.source == "folder":
        return folder_images(spec, data_dir)
    return cifar_images(spec, data_dir)


def to_tensor(
    array: np.ndarray, mean: tuple[float, ...] | None, std: tuple[float, ...] | None
) -> Tensor:
    """ToTensor (+ Normalize when mean/std are given): H x W x 3 uint8 -> 3 x H x W float32."""
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255.0
    if mean is not None and std is not None:
        x = (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    return x


# ---------------------------------------------------------------------------------------------
# Patch statistics and the deconvolution matrix
# ---------------------------------------------------------------------------------------------


def image_patches(image: Tensor, kernel_size: int, stride: int = 1) -> Tensor:
    """All k x k patches of one (C, H, W) image as columns (C*k^2, L), in unfold's order."""
    return F.unfold(image.unsqueeze(0), kernel_size, stride=stride)[0]


@dataclass
class PatchMoments:
    """Running first and second moments of patch vectors (float64), pooled over images."""

    total: Tensor  # (d,)
    outer: Tensor  # (d, d)
    count: int = 0

    @classmethod
    def zeros(cls, dim: int, device: torch.device | str = "cpu") -> PatchMoments:
        kwargs = {"dtype": torch.float64, "device": device}
        return cls(torch.zeros(dim, **kwargs), torch.zeros(dim, dim, **kwargs))

    def add(self, patches: Tensor) -> None:
        cols = patches.to(self.total.dtype)
        self.total += cols.sum(1)
        self.outer += cols @ cols.mT
        self.count += cols.shape[1]

    @property
    def mean(self) -> Tensor:
        return self.total / self.count

    @property
    def covariance(self) -> Tensor:
        """The centred (population) covariance of all patches added so far."""
        mean = self.mean
        cov = self.outer / self.count - torch.outer(mean, mean)
        return 0.5 * (cov + cov.mT)


def deconv_matrix(
    cov: Tensor, eps: float, isqrt: str = "exact", n_iter: int | None = None
) -> Tensor:
    """D = (cov + eps I)^{-1/2}, exactly or by `n_iter` Newton-Schulz iterations
    (docs/method.md#inverse-square-root)."""
    a = cov + eps * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    if isqrt == "exact":
        return isqrt_exact(a)
    if isqrt == "newton_schulz":
        if n_iter is None:
            raise RunnerInputError("isqrt newton_schulz needs n_iter (e.g. 15)")
        return isqrt_newton_schulz(a, n_iter)
    raise RunnerInputError(f"isqrt must be exact or newton_schulz, got {isqrt!r}")


def centre_index(channel: int, kernel_size: int) -> int:
    """Patch coordinate of (channel, centre pixel) in unfold's channel-major order."""
    half = kernel_size // 2
    return channel * kernel_size**2 + half * kernel_size + half


def kernels_from_deconv(d: Tensor, kernel_size: int, channels: int = 3) -> Tensor:
    """Kernel of each colour channel: the row of D at its centre pixel, as (C, k, k).

    Returns (C_out, C_in, k, k), a conv weight: conv2d(centred image, it) gives the deconvolved
    image (D @ centred patch) at the centre coordinate of each channel.
    """
    rows = [centre_index(c, kernel_size) for c in range(channels)]
    return d[rows].reshape(channels, channels, kernel_size, kernel_size)


# ---------------------------------------------------------------------------------------------
# The computation
# ---------------------------------------------------------------------------------------------


@dataclass
class KernelComputation:
    """What compute_kernels returns: the kernels and the matrices behind them."""

    kernels: Tensor  # (3, 3, k, k): the primary variant (pooled, or per-image average)
    deconv: Tensor  # the D the kernels are rows of
    moments: PatchMoments  # pooled over all images
    pooled_kernels: Tensor  # rows of the pooled D (equal to `kernels` unless per_image)
    ids: list[str]
    contents: list[str]


def compute_kernels(
    images: Iterator[tuple[str, Tensor, str]] | list[tuple[str, Tensor, str]],
    spec: KernelsSpec,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = lambda _: None,
) -> KernelComputation:
    """Pooled moments (and per-image D when spec.per_image) over (id, image, content) items."""
    k = spec.kernel_size
    moments: PatchMoments | None = None
    per_image_sum: Tensor | None = None
    ids, contents = [], []
    for image_id, image, content in images:
        patches = image_patches(image.to(device), k, spec.patch_stride)
        if moments is None:
            moments = PatchMoments.zeros(patches.shape[0], device)
        moments.add(patches)
        if spec.per_image:
            if patches.shape[1] < patches.shape[0] and not ids:
                log("warning: fewer patches per image than dimensions; per-image D rests on eps")
            one = PatchMoments.zeros(patches.shape[0], device)
            one.add(patches)
            d_i = deconv_matrix(one.covariance, spec.eps, spec.isqrt, spec.n_iter)
            per_image_sum = d_i if per_image_sum is None else per_image_sum + d_i
        ids.append(image_id)
        contents.append(content)
        if len(ids) % 256 == 0:
            log(f"{len(ids)} images, {moments.count} patches")
    if moments is None:
        raise RunnerInputError("no images to compute kernels from; check the image source")
    _require_enough_patches(moments, k)
    pooled = deconv_matrix(moments.covariance, spec.eps, spec.isqrt, spec.n_iter)
    deconv = pooled if per_image_sum is None else per_image_sum / len(ids)
    return KernelComputation(
        kernels_from_deconv(deconv, k),
        deconv,
        moments,
        kernels_from_deconv(pooled, k),
        ids,
        contents,
    )


def _require_enough_patches(moments: PatchMoments, kernel_size: int) -> None:
    dim = moments.total.shape[0]
    if moments.count < dim:
        raise RunnerInputError(
            f"only {moments.count} patches for a {dim}-dimensional covariance (k={kernel_size}): "
            "too few images; use more or larger images, a smaller kernel or patch_stride 1"
        )


# ---------------------------------------------------------------------------------------------
# Centre-surround score
# ---------------------------------------------------------------------------------------------


def ring_mean(kernel: Tensor, radius: int) -> float:
    """Mean of a (k, k) slice over the pixels at Chebyshev distance `radius` from the centre."""
    k = kernel.shape[-1]
    half = k // 2
    grid = torch.arange(k, device=kernel.device) - half
    dist = torch.maximum(grid.abs().view(-1, 1), grid.abs().view(1, -1))
    return float(kernel[dist == radius].mean())


def radial_profile(kernel: Tensor) -> list[float]:
    """Ring means for Chebyshev radius 0 (the centre) .. k//2: square rings fit square kernels."""
    return [ring_mean(kernel, r) for r in range(kernel.shape[-1] // 2 + 1)]


def channel_profile(
    kernels: Tensor, channel: int, threshold: float = CS_THRESHOLD
) -> dict[str, Any]:
    """Centre, ring and the centre-surround verdict of one colour channel's kernel."""
    own = kernels[channel, channel]
    half = own.shape[-1] // 2
    centre = float(own[half, half])
    ring = ring_mean(own, 1)
    ratio = -ring / centre if centre != 0 else 0.0
    others = {
        CHANNELS[o]: {
            "centre": float(kernels[channel, o, half, half]),
            "ring": ring_mean(kernels[channel, o], 1),
        }
        for o in range(kernels.shape[1])
        if o != channel
    }
    cross = own[[half - 1, half + 1], half].tolist() + own[half, [half - 1, half + 1]].tolist()
    diagonal = own[half - 1 : half + 2 : 2, half - 1 : half + 2 : 2]
    return {
        "centre": centre,
        "ring": ring,
        "surround_ratio": ratio,
        "centre_surround": ratio >= threshold,  # opposite signs and |ring| >= t |centre|
        "four_neighbours": float(np.mean(cross)),
        "diagonals": float(diagonal.mean()),
        "centre_energy": centre**2 / float((kernels[channel] ** 2).sum()),
        "radial_profile": radial_profile(own),
        "others": others,
        "opponent": [v["centre"] * centre < 0 for v in others.values()],
    }


def centre_surround(kernels: Tensor, threshold: float = CS_THRESHOLD) -> dict[str, Any]:
    """Per-channel profiles, the score (fraction of centre-surround channels) and opponency."""
    if kernels.shape[-1] < 3:
        raise RunnerInputError("a kernel needs k >= 3 to have a surround; use kernel_size >= 3")
    channels = {
        CHANNELS[c]: channel_profile(kernels, c, threshold) for c in range(kernels.shape[0])
    }
    opponent = [o for p in channels.values() for o in p["opponent"]]
    return {
        "score": float(np.mean([p["centre_surround"] for p in channels.values()])),
        "opponent_fraction": float(np.mean(opponent)),
        "threshold": threshold,
        "channels": channels,
    }


def whitening_error(d: Tensor, cov: Tensor, eps: float) -> float:
    """||D A D - I||_F / sqrt(dim), A = cov + eps I: 0 for an exact inverse square root."""
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    return float(torch.linalg.matrix_norm(d @ (cov + eps * eye) @ d - eye) / cov.shape[-1] ** 0.5)


def summary_metrics(
    comp: KernelComputation, spec: KernelsSpec
) -> tuple[dict[str, float], dict[str, Any]]:
    """The floats of result.json and the full record of metrics.jsonl."""
    profile = centre_surround(comp.kernels)
    cov = comp.moments.covariance
    exact = deconv_matrix(cov, spec.eps, "exact")
    pooled = (
        exact if spec.isqrt == "exact" else deconv_matrix(cov, spec.eps, spec.isqrt, spec.n_iter)
    )
    metrics: dict[str, float] = {
        "centre_surround_score": profile["score"],
        "opponent_fraction": profile["opponent_fraction"],
        "whitening_error": whitening_error(comp.deconv, cov, spec.eps),
        "isqrt_relative_error": float(
            torch.linalg.matrix_norm(pooled - exact) / torch.linalg.matrix_norm(exact)
        ),
        "n_images": float(len(comp.ids)),
        "n_patches": float(comp.moments.count),
    }
    for name, p in profile["channels"].items():
        metrics[f"centre_surround_{name}"] = float(p["centre_surround"])
        for key in ("centre", "ring", "surround_ratio", "centre_energy"):
            metrics[f"{key}_{name}"] = float(p[key])
    if spec.per_image:
        metrics["pooled_centre_surround_score"] = centre_surround(comp.pooled_kernels)["score"]
        metrics["per_image_vs_pooled"] = float(
            torch.linalg.vector_norm(comp.kernels - comp.pooled_kernels)
            / torch.linalg.vector_norm(comp.pooled_kernels)
        )
    record = {
        **metrics,
        "threshold": profile["threshold"],
        "channels": _jsonable(profile["channels"]),
    }
    return metrics, record


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


# ---------------------------------------------------------------------------------------------
# Figure
# ---------------------------------------------------------------------------------------------


def kernels_figure(kernels: Tensor, title: str) -> Any:
    """The paper-style figure: per colour channel its R, G, B slices and their mean.

    Each row shares one diverging colour scale centred at 0 (red positive, blue negative),
    spanning +-max|kernel|, so a surround's strength is read relative to its centre. Cells are
    drawn as vector rectangles (pcolormesh), so an SVG of it embeds no raster image. Built on
    matplotlib's object API (no pyplot), so no global backend or figure state is touched.
    """
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    k_np = kernels.detach().cpu().double().numpy()
    n = k_np.shape[0]
    fig = Figure(figsize=(9.5, 2.3 * n + 0.6))
    axes = fig.subplots(n, 4, squeeze=False)
    for c in range(n):
        panels = [*k_np[c], k_np[c].mean(0)]
        labels = [f"{CHANNELS[c]} kernel: {CHANNELS[i]} slice" for i in range(n)]
        labels.append(f"{CHANNELS[c]} kernel: channel mean")
        vmax = float(np.abs(k_np[c]).max()) or 1.0
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
        for ax, panel, label in zip(axes[c], panels, labels, strict=True):
            mesh = ax.pcolormesh(panel, cmap="RdBu_r", norm=norm, edgecolors="none")
            ax.set_aspect("equal")
            ax.invert_yaxis()
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label, fontsize=8)
        bar = fig.colorbar(mesh, ax=list(axes[c]), shrink=0.8)
        bar.solids.set_rasterized(False)  # matplotlib rasterises long colour bars by default
    fig.suptitle(title, fontsize=9)
    return fig


def kernels_svg(kernels: Tensor, title: str) -> str:
    """kernels_figure as self-contained SVG text (vector paths, no date stamp)."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    fig = kernels_figure(kernels, title)
    FigureCanvasSVG(fig)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------


def _npz_bytes(comp: KernelComputation) -> bytes:
    arrays = {
        "kernels": comp.kernels.cpu().numpy(),
        "pooled_kernels": comp.pooled_kernels.cpu().numpy(),
        "mean": comp.moments.mean.cpu().numpy(),
        "covariance_eigenvalues": torch.linalg.eigvalsh(comp.moments.covariance).cpu().numpy(),
        "channel_order": np.array(CHANNELS),
    }
    if comp.deconv.shape[-1] <= MAX_SAVED_D:
        arrays["deconv"] = comp.deconv.cpu().float().numpy()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _check_identity(spec: KernelsSpec, checksum: str) -> None:
    if spec.images_sha256 is not None and spec.images_sha256 != checksum:
        raise RunnerInputError(
            f"the chosen images have checksum {checksum}, but the spec pins images_sha256 "
            f"{spec.images_sha256}: these are not the images the spec was written for; use the "
            "right image folder or update images_sha256"
        )


def run(
    spec: dict[str, Any],
    run_dir: Path,
    *,
    data_dir: Path | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
) -> rundir.RunResult:
    """Compute the kernels of `spec` into `run_dir` (see the module docstring for the files)."""
    started = time.time()
    kspec = KernelsSpec.from_dict(dict(spec))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_spec(run_dir, kspec.to_dict(), lambda d: KernelsSpec.from_dict(d).to_dict())
    say = rundir.RunLog(run_dir / rundir.LOG_FILE, log)
    torch_device = pick_device(device or "cpu")  # a bad name is a RunnerInputError
    images = open_images(kspec, data_dir)
    say(f"kernels: {len(images)} {kspec.source} images, k={kspec.kernel_size}, isqrt={kspec.isqrt}")
    mean, std = (images.mean, images.std) if kspec.normalise else (None, None)
    items = ((i, to_tensor(a, mean, std), c) for i, a, c in images.items())
    comp = compute_kernels(items, kspec, torch_device, say)
    checksum = set_checksum(comp.ids, comp.contents)
    _check_identity(kspec, checksum)
    metrics, record = summary_metrics(comp, kspec)
    _write_outputs(run_dir, kspec, images, comp, checksum, record, torch_device)
    say(
        f"centre_surround_score {metrics['centre_surround_score']:.2f} "
        f"(images sha256 {checksum[:12]}, {comp.moments.count} patches)"
    )
    result = rundir.RunResult(
        run_id=run_dir.name,
        status="done",
        metrics=metrics,
        wall_seconds=time.time() - started,
        gpu_seconds=time.time() - started if torch_device.type == "cuda" else 0.0,
        device=str(torch_device),
        deviations=kspec.deviations(),
    )
    rundir.write_result(run_dir, result)
    return result


def _write_outputs(
    run_dir: Path,
    spec: KernelsSpec,
    images: ImageSet,
    comp: KernelComputation,
    checksum: str,
    record: dict[str, Any],
    device: torch.device,
) -> None:
    provenance = rundir.collect_provenance(
        torch_version=torch.__version__,
        numpy_version=np.__version__,
        device=str(device),
        seed=spec.seed,
        images={
            "source": images.source,
            "n_images": len(comp.ids),
            "sha256": checksum,
            "normalise": {"mean": images.mean, "std": images.std} if spec.normalise else None,
            "ids": comp.ids,
            **images.details,
        },
    )
    rundir.atomic_write_json(run_dir / rundir.PROVENANCE_FILE, provenance)
    rundir.atomic_write_bytes(run_dir / KERNELS_NPZ, _npz_bytes(comp))
    title = (
        f"{spec.source}, {len(comp.ids)} images, k={spec.kernel_size}, {spec.isqrt}"
        + (f" n={spec.n_iter}" if spec.isqrt == "newton_schulz" else "")
        + (", per-image average" if spec.per_image else "")
        + f": centre-surround score {record['centre_surround_score']:.2f}"
    )
    rundir.atomic_write_text(run_dir / KERNELS_SVG, kernels_svg(comp.kernels, title))
    # One line, rewritten (not appended) so that a re-run does not duplicate it.
    rundir.atomic_write_text(
        run_dir / rundir.METRICS_FILE, json.dumps(record, sort_keys=True) + "\n"
    )
