"""The catalogue: every fact about the datasets, input kinds, architectures, norms and metrics,
in one place, read by `runners/` and `audit/` alike. It imports nothing but the standard
library (never torch), so validating a claims file or planning an audit can read it.

Adding a dataset is one `Dataset` entry here plus its loader in runners/data.py (`LOADERS`);
adding an architecture is one `Arch` entry here plus its model module under runners/models/
(docs/architecture.md, "Adding a dataset", "Adding an architecture"). Every consumer looks
the tables up when it runs, never copies them at import, so an entry added here is seen by the
claims validator, the spec classes, the plan's cost estimate and the report alike
(tests/test_catalogue.py adds one at runtime and checks each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runners.errors import RunnerInputError

# ---------------------------------------------------------------------------------------------
# Input kinds: what a model takes in, and what one run of it asks of a cluster node
# ---------------------------------------------------------------------------------------------


# input kind -> what the models take in, in words (for messages)
INPUT_KINDS: dict[str, str] = {
    "cifar": "3x32x32 CIFAR images",
    "flat": "784-d MNIST-family vectors",
    "imagenet": "3x224x224 ImageNet crops",
}
# input kind -> what one training run asks of a cluster node: (a GPU?, CPUs, memory in MB).
# The CPUs are the GPU runs' data-loader workers (the runner takes one per core but one).
RUN_NEEDS: dict[str, tuple[bool, int, int]] = {
    "cifar": (True, 8, 16 * 1024),
    "flat": (False, 2, 4 * 1024),
    "imagenet": (True, 16, 64 * 1024),
}


# ---------------------------------------------------------------------------------------------
# Datasets (docs/method.md#training-protocol)
# ---------------------------------------------------------------------------------------------

_CIFAR10 = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_IDX = tuple(
    f"{s}-{k}" for s in ("train", "t10k") for k in ("images-idx3-ubyte", "labels-idx1-ubyte")
)


@dataclass(frozen=True)
class Dataset:
    """One dataset of the classification runs; its loader is runners/data.py's LOADERS[name]."""

    name: str  # the name in specs, claims and results
    label: str  # the name the paper prints
    input_kind: str  # a key of INPUT_KINDS: which builds of an architecture can take it
    num_classes: int  # ImageNet: expected; the loaded count is the number of class folders
    image_size: int  # side of the model's input
    mean: tuple[float, ...] | None  # Normalize of the authors' transform; None: no Normalize
    std: tuple[float, ...] | None
    train_size: int  # images per training epoch (ImageNet: ILSVRC-2012 train)
    test_size: int  # images per evaluation (ImageNet: ILSVRC-2012 val)
    how_to_get: str  # what must be on disk and where it comes from, for missing-data messages
    # The files torchvision reads, relative to the data directory (train, test, meta); empty
    # for class-folder data (`image_folder`): <data dir>/<name>/{train,val}/<class>/<image>.
    files: tuple[str, ...] = ()
    image_folder: bool = False
    augment: bool = False  # the protocol's crop + flip (CIFAR, ImageNet); none for MNIST
    # Spec defaults where this dataset's protocol differs from main.py's, filled in when a
    # spec does not set the field (so the other datasets' specs, and run ids, keep their form).
    protocol: dict[str, Any] = field(default_factory=dict)
    nd_protocol: dict[str, Any] = field(default_factory=dict)  # the same for the ND options
    paper_table: int | None = None  # the paper's table reporting it (1: CIFAR, 2: ImageNet)
    # Runs long enough to spread one run over several GPUs (`--imagenet-gpus`, DDP)
    multi_gpu: bool = False


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "cifar10",
            "CIFAR-10",
            "cifar",
            10,
            32,
            (0.4914, 0.4822, 0.4465),  # main.py's
            (0.2023, 0.1994, 0.2010),
            50_000,
            10_000,
            "the folder cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta) "
            "from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            files=tuple(f"cifar-10-batches-py/{n}" for n in _CIFAR10),
            augment=True,
            paper_table=1,
        ),
        Dataset(
            "cifar100",
            "CIFAR-100",
            "cifar",
            100,
            32,
            (0.5071, 0.4865, 0.4409),
            (0.2009, 0.1984, 0.2023),
            50_000,
            10_000,
            "the folder cifar-100-python/ (train, test, meta) "
            "from https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            files=tuple(f"cifar-100-python/{n}" for n in ("train", "test", "meta")),
            augment=True,
            paper_table=1,
        ),
        Dataset(
            "mnist",
            "MNIST",
            "flat",
            10,
            28,
            (0.1307,),
            (0.3081,),
            60_000,
            10_000,
            "the uncompressed IDX files MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
            files=tuple(f"MNIST/raw/{n}" for n in _IDX),
        ),
        Dataset(
            "fashion-mnist",
            "Fashion-MNIST",
            "flat",
            10,
            28,
            None,  # the authors' code does not normalise Fashion-MNIST
            None,
            60_000,
            10_000,
            "the uncompressed IDX files "
            "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte "
            "(or install Debian's dataset-fashion-mnist: /usr/share/datasets/fashion-mnist)",
            files=tuple(f"FashionMNIST/raw/{n}" for n in _IDX),
        ),
        Dataset(
            "imagenet",
            "ImageNet",
            "imagenet",
            1000,  # ILSVRC2012; another count is a different dataset (a deviation)
            224,
            (0.485, 0.456, 0.406),  # torchvision's ImageNet Normalize (main_imagenet.py)
            (0.229, 0.224, 0.225),
            1_281_167,
            50_000,
            "ILSVRC2012 in the layout of the authors' main_imagenet.py DATA: "
            "imagenet/train/<wnid>/*.JPEG and imagenet/val/<wnid>/*.JPEG (one folder per "
            "class, named by its WordNet id such as n01440764; 1000 classes). Symlink the "
            "cluster's ImageNet copy there (ln -s /path/to/imagenet <data_dir>/imagenet), or "
            "download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from "
            "https://image-net.org/ (free registration, non-commercial licence), extract each "
            "per-class train tar into train/<wnid>/, and sort val into class folders with the "
            "usual valprep.sh script",
            image_folder=True,
            augment=True,
            # main_imagenet.py's batch 256, weight decay 1e-4, multistep at 0.3 E, --block-fc 64
            # (docs/method.md#imagenet-protocol)
            protocol={"batch_size": 256, "weight_decay": 1e-4, "lr_milestone": 0.3},
            nd_protocol={"block_fc": 64},
            paper_table=2,
            multi_gpu=True,
        ),
    )
}


def dataset(name: str) -> Dataset:
    """The catalogue entry of `name`, or a RunnerInputError listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise RunnerInputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def in_paper_table(table: int) -> tuple[str, ...]:
    """The datasets whose results the paper's table `table` reports, in catalogue order."""
    return tuple(name for name, d in DATASETS.items() if d.paper_table == table)


def input_kind_of(dataset_name: str) -> str:
    """The input kind ("cifar", "flat", "imagenet") of a dataset name."""
    return dataset(dataset_name).input_kind


# ---------------------------------------------------------------------------------------------
# Norms
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Norm:
    name: str  # the name in specs and claims
    label: str  # one label, used by tables and figures alike
    cost: float  # training time relative to BN, for the plan's default estimate


NORMS: dict[str, Norm] = {
    n.name: n
    for n in (
        Norm("bn", "BN", 1.0),
        Norm("nd", "ND", 2.0),  # the covariance and its inverse square root: about 2x BN
        Norm("none", "no norm", 1.0),
    )
}
# Newton-Schulz iterations of the deconvolution (--deconv-iter): the spec's default and every
# layer's; the stems and grouped convolutions the authors hard-code differ (runners/models).
ND_N_ITER = 5

# ---------------------------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------------------------

BN_ND = ("bn", "nd")
ALL_NORMS = ("none", "bn", "nd")
# Images/s of one modern GPU training with BN in FP32, for architectures without an estimate
# of their own, until the store holds a finished run of the same model.
DEFAULT_IMAGES_PER_SECOND = 1000.0


@dataclass(frozen=True)
class Builder:
    target: str  # "module:function" under runners.models
    norms: tuple[str, ...]  # the norms this build of the architecture supports
    # Rough FP32 training throughput with BN on one modern GPU (None: the default). Estimates,
    # not measurements: the ImageNet ones assume a loader that keeps up (16 workers).
    images_per_second: float | None = None


@dataclass(frozen=True)
class Arch:
    name: str  # the name in specs and claims (the authors' --arch, with the depth added
    # where the flag is ambiguous: resnet -> resnet18, resnext -> resnext29)
    paper_name: str  # the name printed in the paper's tables
    builders: dict[str, Builder]  # input kind (INPUT_KINDS) -> the model for those inputs

    @property
    def input_kinds(self) -> tuple[str, ...]:
        return tuple(self.builders)

    @property
    def norms(self) -> tuple[str, ...]:
        """Every norm of any build (use `norms_for` when the dataset is known)."""
        return tuple(dict.fromkeys(n for b in self.builders.values() for n in b.norms))

    def norms_for(self, input_kind: str) -> tuple[str, ...]:
        builder = self.builders.get(input_kind)
        return builder.norms if builder else ()

    def images_per_second(self, input_kind: str) -> float:
        """The default BN training throughput of this model on `input_kind` inputs."""
        builder = self.builders.get(input_kind)
        rate = builder.images_per_second if builder else None
        return DEFAULT_IMAGES_PER_SECOND if rate is None else rate


ArchInfo = Arch  # the name runners/models has always used


def _cnn(name: str, paper_name: str, cifar: str | None, speed: float | None = None) -> Arch:
    """A CNN with a CIFAR build (and, where main_imagenet.py has one, an ImageNet build)."""
    builders = {"cifar": Builder(cifar, BN_ND, speed)} if cifar else {}
    if name in _IMAGENET:
        builders["imagenet"] = _IMAGENET[name]
    return Arch(name, paper_name, builders)


# The ImageNet models of the authors' main_imagenet.py (docs/method.md#imagenet-models): the
# same paper names as the CIFAR models, another network (7x7/2 stem, 224-px inputs). VGG-11
# has no CIFAR build.
_IMAGENET = {
    "vgg11": Builder("imagenet_vgg:vgg11", ALL_NORMS, 1200.0),
    "resnet18": Builder("imagenet_resnet:resnet18", BN_ND, 2500.0),
    "densenet121": Builder("imagenet_densenet:densenet121", BN_ND, 900.0),
}

# In the paper's print order (Table 1, then the MLP and the ImageNet-only VGG-11): the
# report's rows follow it.
ARCHS: dict[str, Arch] = {
    a.name: a
    for a in (
        _cnn("vgg16", "VGG-16", "vgg:vgg16", 5000.0),
        _cnn("resnet18", "ResNet-18", "resnet:resnet18", 4000.0),
        _cnn("preact", "Preact-18", "preact:preact_resnet18"),
        _cnn("densenet121", "DenseNet-121", "densenet:densenet121", 900.0),
        _cnn("resnext29", "ResNeXt-29", "resnext:resnext29_32x4d", 800.0),
        _cnn("mobilev2", "MobileNet v2", "mobilenetv2:mobilenetv2"),
        _cnn("dpn", "DPN-92", "dpn:dpn92"),
        _cnn("pnasnetA", "PNASNetA", "pnasnet:pnasnet_a"),
        _cnn("senet", "SENet-18", "senet:senet18"),
        _cnn("efficient", "EfficientNet", "efficientnet:efficientnet_b0"),
        Arch("mlp", "MLP", {"flat": Builder("mlp:mlp", ALL_NORMS, 40000.0)}),
        _cnn("vgg11", "VGG-11", None),
    )
}


def arch(name: str) -> Arch:
    """The catalogue entry of `name`, or a RunnerInputError listing the known names."""
    try:
        return ARCHS[name]
    except KeyError:
        raise RunnerInputError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Metrics: keys of RunResult.metrics
# ---------------------------------------------------------------------------------------------

# metric -> (low, high): the range a claimed or imported value must lie in (claimable metrics)
METRICS: dict[str, tuple[float, float]] = {
    "test_top1": (0.0, 100.0),
    "best_test_top1": (0.0, 100.0),
    "test_top5": (0.0, 100.0),
    "centre_surround_score": (0.0, 1.0),
}
PERCENT_METRICS = ("test_top1", "best_test_top1", "test_top5")  # differences in points
PRIMARY_METRIC = "test_top1"  # the classification runner's headline number
RECORDED_METRICS = ("train_top1", "test_loss")  # recorded by runs, never claimed
