"""The authors' checkpoints load into our models and give the same eval output.

The authors' state dicts are built here from our models' own, by rules written from the
layout of the authors' files (yechengxi/deconvolution at d221c22), independently of the
loader: their module names (`conv1`, `layer<stage>.<block>`, `shortcut.0`, `deconv1`,
`linear`), the order in which their files register the modules, their grouped FastDeconv's
flat running mean (k^2*C values in im2col column order) and the absence of a freeze counter.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

from runners.deconv import FastDeconv
from runners.errors import RunnerInputError
from runners.models import build_model
from runners.models.authors_checkpoint import load_authors_state_dict
from runners.specs.nd_options import NDOptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HEAD = NDOptions(head="channel_deconv")  # the head the authors register out of place


def randomised(net: nn.Module, seed: int) -> nn.Module:
    """Every parameter and buffer random (eval reads only the running statistics, so any
    values make a distinct, checkable function), the freeze counters included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.dtype == torch.long:
                t.copy_(torch.randint(0, 500, t.shape, generator=g))
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 + 0.9)
            elif name.endswith("running_deconv"):  # near I, so 30 layers keep finite outputs
                t.copy_(torch.eye(t.shape[-1]) + 0.01 * torch.randn(t.shape, generator=g))
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return net.eval()


def authors_fast_deconv(layer: FastDeconv, tensors: dict[str, torch.Tensor]) -> dict:
    """Our FastDeconv state in the authors' form: no counter; a grouped layer's running mean
    flat, where column c*k^2 + p (channel c, kernel position p) of channel c's group j = c // B
    is entry (c % B)*k^2 + p of that group's mean."""
    out = {leaf: t for leaf, t in tensors.items() if leaf != "counter"}
    if layer.groups > 1:
        k2, b = layer.kernel_size**2, layer.block
        ours = tensors["running_mean"]
        flat = torch.empty(layer.in_channels * k2)
        for c in range(layer.in_channels):
            for p in range(k2):
                flat[c * k2 + p] = ours[c // b, (c % b) * k2 + p]
        out["running_mean"] = flat
    return out


def modules_of(net: nn.Module) -> OrderedDict[str, dict]:
    """Our state dict as module name -> {leaf: tensor}, FastDeconvs in the authors' form."""
    layers = dict(net.named_modules())
    grouped: OrderedDict[str, dict] = OrderedDict()
    for key, t in net.state_dict().items():
        prefix, _, leaf = key.rpartition(".")
        grouped.setdefault(prefix, {})[leaf] = t.clone()
    for prefix, tensors in grouped.items():
        if isinstance(layers[prefix], FastDeconv):
            grouped[prefix] = authors_fast_deconv(layers[prefix], tensors)
    return grouped


def stage_of(index: int, counts: tuple[int, ...]) -> tuple[int, int]:
    for stage, count in enumerate(counts, start=1):
        if index < count:
            return stage, index
        index -= count
    raise AssertionError("index beyond the stages")


def renamed(grouped: OrderedDict[str, dict], rename, order) -> OrderedDict[str, torch.Tensor]:
    """Authors' names by `rename`, their registration order by the sort key `order`."""
    named = [(rename(prefix), tensors) for prefix, tensors in grouped.items()]
    named.sort(key=lambda item: order(item[0]))  # stable: the rest keeps its order
    return OrderedDict(
        (f"{prefix}.{leaf}", t) for prefix, tensors in named for leaf, t in tensors.items()
    )


def common(prefix: str) -> str:
    prefix = re.sub(r"^stem$", "conv1", prefix)
    prefix = re.sub(r"^head\.pre$", "deconv1", prefix)
    return re.sub(r"^head\.fc$", "linear", prefix)


def resnext_names(prefix: str) -> str:
    m = re.match(r"layers\.(\d+)\.(.*)$", prefix)
    if m:
        stage, block = stage_of(int(m[1]), (3, 3, 3))
        prefix = f"layer{stage}.{block}.{m[2]}".replace("shortcut", "shortcut.0")
    return common(prefix)


def mobilenet_names(prefix: str) -> str:
    prefix = re.sub(r"^(layers\.\d+)\.shortcut$", r"\1.shortcut.0", prefix)
    return common(prefix.replace("last", "conv2"))


def dpn_names(prefix: str) -> str:
    m = re.match(r"layers\.(\d+)\.(.*)$", prefix)
    if m:
        stage, block = stage_of(int(m[1]), (3, 4, 20, 3))
        prefix = f"layer{stage}.{block}.{m[2]}"
    return common(prefix)


def pnasnet_names(prefix: str) -> str:
    m = re.match(r"layers\.(\d+)\.(sep_conv|project)$", prefix)
    if m:
        # stages of 6 cells (layer1, layer3, layer5), a downsampling cell between (layer2, 4)
        index, part = int(m[1]), "sep_conv1.conv1" if m[2] == "sep_conv" else "conv1"
        stage, cell = divmod(index, 7)
        prefix = (
            f"layer{2 * stage + 1}.{cell}.{part}" if cell < 6 else f"layer{2 * stage + 2}.{part}"
        )
    return common(prefix)


def first(*names: str):
    """Sort key: modules whose name starts with one of `names` first, in that order."""
    return lambda p: next((i for i, n in enumerate(names) if p.split(".")[0] == n), len(names))


def last(name: str):
    return lambda p: p.split(".")[0] == name


def within_block_shortcut_first(p: str) -> tuple[int, ...]:
    m = re.match(r"layer(\d)\.(\d+)\.(\w+)", p)
    if not m:
        return (0,) if p == "conv1" or p == "deconv1" else (9,)
    return (1, int(m[1]), int(m[2]), 0 if m[3] == "shortcut" else 1)


# (arch, our name -> theirs, their registration order) as the authors' files register them:
# ResNeXt conv1, layers, deconv1, linear (our order); MobileNetV2 its last conv `conv2` right
# after the stem, `linear` before `deconv1`; DPN `deconv1` right after the stem and each
# block's shortcut before its convs; PNASNetA `deconv1` right after the stem.
AUTHORS_LAYOUT = {
    "resnext29": (resnext_names, lambda p: 0),
    "mobilev2": (
        mobilenet_names,
        lambda p: {"conv1": 0, "conv2": 1, "deconv1": 3}.get(p.split(".")[0], 2),
    ),
    "dpn": (dpn_names, within_block_shortcut_first),
    "pnasnetA": (pnasnet_names, first("conv1", "deconv1")),
}


@pytest.mark.parametrize("arch", sorted(AUTHORS_LAYOUT))
def test_an_authors_nd_checkpoint_loads_and_gives_the_same_eval_output(arch):
    source = randomised(build_model(arch, "nd", 10, HEAD), seed=1)
    rename, order = AUTHORS_LAYOUT[arch]
    theirs = renamed(modules_of(source), rename, order)
    assert not any(k.endswith("counter") for k in theirs)
    assert next(iter(theirs)) == "conv1.weight"  # their names, their order
    assert any(isinstance(m, FastDeconv) and m.groups > 1 for m in source.modules())
    assert all(t.dim() == 1 for k, t in theirs.items() if k.endswith(".running_mean"))
    target = randomised(build_model(arch, "nd", 10, HEAD), seed=2)
    load_authors_state_dict(target, theirs, arch)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(target(x), source(x))
    for layer in target.modules():
        if isinstance(layer, FastDeconv):
            assert int(layer.counter) == 0 and layer._count == 0  # the authors' restart at 0


def resnet_bn_names(prefix: str) -> str:
    """Authors' ResNet-18 BN: `conv1`/`bn1` stem, blocks `layer<s>.<j>` with `convK` and its
    BatchNorm `bnK` as siblings, the shortcut a Sequential(conv, bn)."""
    prefix = re.sub(r"^stem\.0$", "conv1", prefix)
    prefix = re.sub(r"^stem\.1$", "bn1", prefix)
    m = re.match(r"layers\.(\d+)\.(conv\d)\.([01])$", prefix)
    if m:
        stage, block = stage_of(int(m[1]), (2, 2, 2, 2))
        unit = m[2] if m[3] == "0" else m[2].replace("conv", "bn")
        return f"layer{stage}.{block}.{unit}"
    m = re.match(r"layers\.(\d+)\.shortcut\.([01])$", prefix)
    if m:
        stage, block = stage_of(int(m[1]), (2, 2, 2, 2))
        return f"layer{stage}.{block}.shortcut.{m[2]}"
    return common(prefix)


def resnet_bn_order(prefix: str) -> tuple:
    """Their registration order: in a block conv1, conv2, the shortcut, then bn1, bn2 (the
    BatchNorms, all alike within a width, come after every conv)."""
    m = re.match(r"layer(\d)\.(\d)\.(\w+)", prefix)
    if not m:
        return (0,) if prefix in ("conv1", "bn1") else (9,)
    rank = {"conv1": 0, "conv2": 1, "shortcut": 2, "bn1": 3, "bn2": 4}[m[3]]
    return (1, int(m[1]), int(m[2]), rank)


def test_an_authors_bn_checkpoint_pairs_each_batchnorm_with_its_conv():
    source = randomised(build_model("resnet18", "bn", 10, None), seed=7)
    theirs = renamed(modules_of(source), resnet_bn_names, resnet_bn_order)
    block = [k for k in theirs if k.startswith("layer1.0.")]
    assert block[:3] == ["layer1.0.conv1.weight", "layer1.0.conv2.weight", "layer1.0.bn1.weight"]
    target = randomised(build_model("resnet18", "bn", 10, None), seed=8)
    load_authors_state_dict(target, theirs, "resnet18")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_data_parallel_prefixes_and_the_unused_preact_batchnorm_are_dropped():
    source = randomised(build_model("preact", "bn", 10, None), seed=4)
    state = source.state_dict()
    theirs: OrderedDict[str, torch.Tensor] = OrderedDict()
    for i, (key, value) in enumerate(state.items()):
        theirs[f"module.{key}"] = value
        if i == 0:  # the authors' PreAct-18 BN: a BatchNorm after the stem, never called
            for leaf, t in nn.BatchNorm2d(value.shape[0]).state_dict().items():
                theirs[f"module.bn1.{leaf}"] = t
    target = randomised(build_model("preact", "bn", 10, None), seed=5)
    load_authors_state_dict(target, theirs, "preact")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))
    with pytest.raises(RunnerInputError, match=r"module\(s\) our model does not have"):
        load_authors_state_dict(target, theirs, "resnet18")  # bn1 is unused only in PreAct


def test_a_checkpoint_of_another_model_is_one_clear_error_and_loads_nothing():
    target = build_model("pnasnetA", "nd", 10, None)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    other = build_model("pnasnetA", "nd", 100, None).state_dict()  # 100 classes
    with pytest.raises(RunnerInputError, match=r"no module matching our 'head\.fc'"):
        load_authors_state_dict(target, other, "pnasnetA")
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())


def test_fast_deconv_accepts_the_authors_flat_grouped_mean_and_no_counter():
    layer = randomised(FastDeconv(8, 8, 3, padding=1, groups=4), seed=6)
    theirs = authors_fast_deconv(layer, dict(layer.state_dict()))
    assert theirs["running_mean"].shape == (72,) and "counter" not in theirs
    fresh = FastDeconv(8, 8, 3, padding=1, groups=4)
    fresh.load_state_dict(theirs)  # plain load_state_dict: the layer converts
    assert torch.equal(fresh.running_mean, layer.running_mean) and int(fresh.counter) == 0
