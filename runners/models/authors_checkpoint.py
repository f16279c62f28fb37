"""Load a state_dict saved by the authors' code (yechengxi/deconvolution) into our models.

Our models are parameter-for-parameter replicas of the authors' (docs/method.md#models), but
their modules have other names (`layer1.0.conv1` / `layers.0.conv1`, `linear` / `head.fc`),
and some files register modules in another order (MobileNetV2's last conv, DPN's shortcut,
ResNet's BatchNorms after all convs of a block). So the entries are paired module by module:
a module's *signature* is the list of its tensors' names and shapes, and a BatchNorm's also
holds the signature of the convolution it belongs to (found by name: `bnK`/`normK` with
`convK`, a Sequential's BN with its neighbouring conv), because all BatchNorms of one width
look alike. Modules of equal signature are paired in the order each model registers them.
The pairing is checked: every module of ours gets exactly one of theirs, or nothing loads.
The result was checked against the authors' own models, eval output for eval output, for the
ten CIFAR and three ImageNet architectures in BN and ND form with both ND heads.

The tensors themselves convert in `FastDeconv._load_from_state_dict` (a grouped layer's flat
`running_mean`, the missing freeze `counter`); `nn.DataParallel`'s `module.` prefixes (main.py
wraps the whole model, main_imagenet.py only VGG's `features`) are dropped.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Mapping

from torch import Tensor, nn

from runners.errors import RunnerInputError

# Modules the authors build but never call, per architecture (registry names): their entries
# cannot change an output, so they are skipped. PreAct-18 BN: a BatchNorm after the stem
# (128 parameters; docs/fidelity.md, "Exact replicas").
UNUSED = {"preact": ("bn1",)}
OURS_ONLY = ("counter",)  # our persistent freeze counter (the authors' is an attribute)

Signature = tuple[tuple[str, tuple[int, ...]], ...]


def load_authors_state_dict(
    model: nn.Module, state_dict: Mapping[str, Tensor], arch: str | None = None
) -> None:
    """Load the authors' `state_dict` into `model` (built by `build_model` for `arch`).

    Raises RunnerInputError, loading nothing, when the two do not pair module for module
    (another architecture, norm, head or class count)."""
    theirs = _modules(_without_data_parallel(state_dict), skip=UNUSED.get(arch or "", ()))
    ours = _modules(model.state_dict(), skip=())
    pairs = _pair(theirs, ours)
    renamed = OrderedDict()
    for their_prefix, our_prefix in pairs:
        for leaf, value in theirs[their_prefix].items():
            renamed[f"{our_prefix}{leaf}"] = value
    model.load_state_dict(renamed)


def _without_data_parallel(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {".".join(p for p in k.split(".") if p != "module"): v for k, v in state_dict.items()}


def _modules(state_dict: Mapping[str, Tensor], skip: tuple[str, ...]) -> dict[str, dict]:
    """prefix ("layer1.0.conv1.") -> {leaf: tensor}, in the state_dict's (registration) order."""
    modules: dict[str, dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        prefix = f"{prefix}." if prefix else ""
        if prefix.rstrip(".") in skip or leaf in OURS_ONLY:
            continue
        modules.setdefault(prefix, {})[leaf] = value
    return modules


def _signature(tensors: Mapping[str, Tensor]) -> Signature:
    # Sizes by element count for running_mean: a grouped FastDeconv's is flat in their files.
    return tuple(
        (leaf, (t.numel(),) if leaf == "running_mean" else tuple(t.shape))
        for leaf, t in tensors.items()
    )


def _is_batch_norm(tensors: Mapping[str, Tensor]) -> bool:
    return "running_var" in tensors and "running_deconv" not in tensors


def _is_conv(tensors: Mapping[str, Tensor] | None) -> bool:
    return tensors is not None and "weight" in tensors and tensors["weight"].dim() == 4


def _conv_of(prefix: str, modules: Mapping[str, Mapping[str, Tensor]]) -> str | None:
    """The convolution a BatchNorm at `prefix` belongs to, by the names both codes use:
    `bnK`/`normK` -> `convK` (`bn` -> `conv`) in the same parent; in a Sequential, the conv
    before it (conv -> BN) or, for a pre-activation unit (BN -> ReLU -> conv), the one after."""
    parent, _, name = prefix.rstrip(".").rpartition(".")
    parent = f"{parent}." if parent else ""
    candidates = []
    for head in ("bn", "norm"):
        digits = name[len(head) :]
        if name.startswith(head) and (digits.isdigit() or not digits):
            candidates.append(f"{parent}conv{digits}.")
    if name.isdigit():
        candidates += [f"{parent}{int(name) + step}." for step in (-1, 2)]
    return next((c for c in candidates if _is_conv(modules.get(c))), None)


def _signatures(modules: Mapping[str, Mapping[str, Tensor]]) -> dict[str, tuple]:
    out, last_conv = {}, None
    for prefix, tensors in modules.items():
        conv = None
        if _is_batch_norm(tensors):
            # By name, else the conv registered last before it (a stem's BN in its own
            # Sequential, a final BN after the last block).
            conv = _conv_of(prefix, modules) or last_conv
        elif _is_conv(tensors):
            last_conv = prefix
        anchor = _signature(modules[conv]) if conv else None
        out[prefix] = (_signature(tensors), anchor)
    return out


def _pair(theirs: dict[str, dict], ours: dict[str, dict]) -> list[tuple[str, str]]:
    by_signature: dict[tuple, list[str]] = defaultdict(list)
    for prefix, signature in _signatures(theirs).items():
        by_signature[signature].append(prefix)
    pairs = []
    for prefix, signature in _signatures(ours).items():
        candidates = by_signature.get(signature)
        if not candidates:
            raise RunnerInputError(
                f"the authors' state_dict has no module matching our {prefix.rstrip('.')!r} "
                f"({_describe(ours[prefix])}); is it a checkpoint of this architecture, norm, "
                "head and class count?"
            )
        pairs.append((candidates.pop(0), prefix))
    left = [p.rstrip(".") for prefixes in by_signature.values() for p in prefixes]
    if left:
        raise RunnerInputError(
            f"the authors' state_dict has {len(left)} module(s) our model does not have "
            f"(first: {left[0]!r}); is it a checkpoint of this architecture, norm and head?"
        )
    return pairs


def _describe(tensors: Mapping[str, Tensor]) -> str:
    return ", ".join(f"{leaf} {tuple(t.shape)}" for leaf, t in tensors.items())
