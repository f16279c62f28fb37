"""Specs: validation with clear messages, effective defaults, canonical hash, run ids."""

import subprocess
import sys

import pytest

from runners.errors import RunnerInputError
from runners.specs import canonical_json, effective_spec, run_id, spec_hash
from runners.specs.classify import ClassifySpec

BASE = {"kind": "classify", "dataset": "cifar10", "arch": "vgg16", "norm": "nd", "epochs": 20}


def test_effective_spec_fills_the_authors_protocol():
    spec = effective_spec(BASE)
    assert spec["lr"] == 0.1 and spec["momentum"] == 0.9 and spec["weight_decay"] == 1e-3
    assert spec["batch_size"] == 128 and spec["lr_schedule"] == "cosine"
    assert spec["augment"] is True  # CIFAR: crop + flip
    assert spec["nd"]["head"] == "delinear" and spec["nd"]["layout"] == "interleaved"
    assert spec["nd"]["n_iter"] == 5 and spec["nd"]["block"] == 64


def test_mnist_protocol_has_no_augmentation():
    spec = effective_spec({**BASE, "dataset": "fashion-mnist", "arch": "mlp", "norm": "none"})
    assert spec["augment"] is False


def test_hash_ignores_key_order_but_not_values():
    a = effective_spec(BASE)
    b = effective_spec(dict(reversed(list(BASE.items()))))
    assert spec_hash(a) == spec_hash(b)
    assert spec_hash(effective_spec({**BASE, "seed": 1})) != spec_hash(a)
    assert spec_hash(effective_spec({**BASE, "nd": {"head": "channel_deconv"}})) != spec_hash(a)


def test_explicit_default_and_implicit_default_share_a_run_id():
    assert run_id(effective_spec(BASE)) == run_id(effective_spec({**BASE, "lr": 0.1}))


def test_nd_options_do_not_change_the_identity_of_a_bn_run():
    bn = {**BASE, "norm": "bn"}
    ablated = {**bn, "nd": {"head": "channel_deconv", "n_iter": 15}}
    assert run_id(effective_spec(ablated)) == run_id(effective_spec(bn))
    assert ClassifySpec.from_dict(ablated).deviations() == []
    with pytest.raises(RunnerInputError, match=r"nd\.head must be one of"):
        effective_spec({**bn, "nd": {"head": "mlp"}})  # still validated
    nd_ablated = {**BASE, "nd": {"head": "channel_deconv"}}
    assert run_id(effective_spec(nd_ablated)) != run_id(effective_spec(BASE))


def test_run_id_is_readable_and_ends_in_the_hash():
    spec = effective_spec(BASE)
    rid = run_id(spec)
    assert rid.startswith("classify-vgg16-nd-cifar10-e20-s0-")
    assert rid.endswith(spec_hash(spec)[:12])


def test_canonical_json_rejects_nan():
    with pytest.raises(ValueError):
        canonical_json({"lr": float("nan")})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({**BASE, "arch": "vgg17"}, "arch must be one of"),
        ({**BASE, "norm": "none"}, "supports norm bn, nd"),
        ({**BASE, "dataset": "svhn"}, "dataset must be one of"),
        ({**BASE, "epochs": 0}, "epochs must be a positive integer"),
        ({**BASE, "epochs": True}, "epochs must be a positive integer"),
        ({**BASE, "seed": -1}, "seed must be a non-negative integer"),
        ({**BASE, "lr": float("nan")}, "lr must be a non-negative number"),
        ({**BASE, "weight_decay": float("inf")}, "weight_decay must be a non-negative number"),
        ({**BASE, "nd": {"eps": "1e-5"}}, "nd.eps must be in"),
        ({**BASE, "nd": {"momentum": True}}, "nd.momentum must be in"),
        ({**BASE, "nd": []}, "spec field 'nd' must be a mapping"),
        ({**BASE, "allow_tf32": "false"}, "allow_tf32 must be true or false"),
        ({**BASE, "augment": "no"}, "augment must be true or false"),
        ({**BASE, "momentum": True}, "momentum must be a non-negative number"),
        ({**BASE, "lr_rate": 0.1}, "unknown classify spec field(s) lr_rate"),
        ({**BASE, "nd": {"blocks": 3}}, "unknown nd option(s) blocks"),
        ({**BASE, "nd": {"head": "mlp"}}, "nd.head must be one of"),
        ({**BASE, "arch": "mlp", "norm": "bn"}, "does not run on dataset 'cifar10'"),
        ({"dataset": "cifar10"}, "no 'kind' field"),
        ({**BASE, "kind": "segment"}, "unknown experiment kind 'segment'"),
        ({k: v for k, v in BASE.items() if k != "epochs"}, "missing the required field 'epochs'"),
    ],
)
def test_bad_specs_get_one_clear_message(fields, message):
    with pytest.raises(RunnerInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        effective_spec(fields)


def test_deviations_name_each_departure_from_the_protocol():
    spec = ClassifySpec.from_dict(
        {**BASE, "train_subset": 500, "nd": {"head": "channel_deconv"}, "kind": "classify"}
    )
    assert spec.deviations() == [
        "train_subset=500 (protocol: None)",
        "nd.head=channel_deconv (authors' code: delinear)",
    ]
    assert ClassifySpec.from_dict(BASE).deviations() == []


# Run ids of specs fixed before ImageNet (and its options) joined the spec: adding an option
# that cannot apply to a run must never change the id of a run users have already trained.
STABLE_RUN_IDS = {
    "classify-vgg16-nd-cifar10-e20-s0-9d232f9975cf": BASE,
    "classify-resnet18-bn-cifar100-e100-s2-da0a5665eee2": {
        **BASE,
        "dataset": "cifar100",
        "arch": "resnet18",
        "norm": "bn",
        "epochs": 100,
        "seed": 2,
    },
    "classify-densenet121-nd-cifar10-e1-s0-535513c8bf5a": {
        **BASE,
        "arch": "densenet121",
        "epochs": 1,
        "nd": {"head": "channel_deconv"},
    },
    "classify-mlp-nd-fashionmnist-e20-s0-7ca84ab05c8d": {
        **BASE,
        "dataset": "fashion-mnist",
        "arch": "mlp",
    },
    "classify-mlp-none-mnist-e20-s0-cd0a6a57edfc": {
        **BASE,
        "dataset": "mnist",
        "arch": "mlp",
        "norm": "none",
        "train_subset": 1000,
    },
}


@pytest.mark.parametrize("expected", sorted(STABLE_RUN_IDS))
def test_run_ids_of_existing_experiments_are_stable(expected):
    assert run_id(effective_spec(STABLE_RUN_IDS[expected])) == expected


IMAGENET = {"kind": "classify", "dataset": "imagenet", "epochs": 90}


def test_imagenet_specs_get_main_imagenet_defaults():
    spec = effective_spec({**IMAGENET, "arch": "resnet18", "norm": "nd"})
    assert (spec["batch_size"], spec["weight_decay"], spec["lr"]) == (256, 1e-4, 0.1)
    assert spec["nd"]["block_fc"] == 64 and spec["augment"] is True
    assert "vgg11_custom_init" not in spec["nd"]  # VGG-11 only
    assert ClassifySpec.from_dict(spec).deviations() == []
    bn = effective_spec({**IMAGENET, "arch": "resnet18", "norm": "bn"})
    assert bn["nd"]["block_fc"] == 64  # the protocol's options, never CIFAR's, in a BN spec


def test_imagenet_choices_are_recorded_as_deviations():
    spec = ClassifySpec.from_dict(
        {**IMAGENET, "arch": "vgg11", "norm": "nd", "batch_size": 128, "nd": {"block_fc": 512}}
    )
    assert spec.deviations() == [
        "batch_size=128 (protocol: 256)",
        "nd.block_fc=512 (authors' code: 64)",
    ]
    custom = effective_spec({**IMAGENET, "arch": "vgg11", "norm": "nd"})
    assert custom["nd"]["vgg11_custom_init"] is False  # recorded where it applies
    ablated = ClassifySpec.from_dict({**custom, "nd": {**custom["nd"], "vgg11_custom_init": True}})
    assert ablated.deviations() == ["nd.vgg11_custom_init=True (authors' code: False)"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({**BASE, "arch": "vgg11"}, "architecture 'vgg11' does not run on dataset 'cifar10'"),
        ({**IMAGENET, "arch": "vgg16", "norm": "bn"}, "'vgg16' does not run on dataset 'imagenet'"),
        ({**IMAGENET, "arch": "resnet18", "norm": "none"}, "on imagenet supports norm bn, nd"),
        ({**IMAGENET, "arch": "mlp", "norm": "nd"}, "'mlp' does not run on dataset 'imagenet'"),
        (
            {**IMAGENET, "arch": "resnet18", "norm": "nd", "nd": {"vgg11_custom_init": True}},
            "nd.vgg11_custom_init applies only to the ND VGG-11 on imagenet",
        ),
    ],
)
def test_imagenet_bad_combinations_are_clear_errors(fields, message):
    with pytest.raises(RunnerInputError, match=message):
        effective_spec(fields)


def test_schedule_options_are_recorded_per_dataset_only_where_they_apply():
    cifar = effective_spec({**BASE, "lr_schedule": "multistep"})
    assert "lr_milestone" not in cifar and "lr_step_size" not in cifar  # main.py's 0.4, implied
    assert ClassifySpec.from_dict(cifar).lr_milestone == 0.4
    imagenet = effective_spec({**IMAGENET, "arch": "resnet18", "norm": "nd"})
    assert "lr_milestone" not in imagenet and "lr_step_size" not in imagenet  # cosine
    multistep = effective_spec(
        {**IMAGENET, "arch": "resnet18", "norm": "nd", "lr_schedule": "multistep"}
    )
    assert multistep["lr_milestone"] == 0.3  # main_imagenet.py's --milestone
    step = effective_spec({**IMAGENET, "arch": "resnet18", "norm": "nd", "lr_schedule": "step"})
    assert step["lr_step_size"] == 30 and "lr_milestone" not in step
    assert ClassifySpec.from_dict(step).deviations() == ["lr_schedule=step (protocol: cosine)"]
    # the effective spec reads back to itself (what a resume compares)
    for spec in (cifar, multistep, step, effective_spec({**BASE, "lr_milestone": 0.5})):
        assert effective_spec(spec) == spec
    # an explicit 0.4 on ImageNet is a choice of its own, recorded and named as a deviation
    explicit = effective_spec({**multistep, "lr_milestone": 0.4})
    assert explicit["lr_milestone"] == 0.4 and run_id(explicit) != run_id(multistep)
    assert "lr_milestone=0.4 (protocol: 0.3)" in ClassifySpec.from_dict(explicit).deviations()


def test_a_schedule_option_of_another_schedule_changes_nothing():
    assert run_id(effective_spec({**BASE, "lr_step_size": 10})) == run_id(effective_spec(BASE))
    assert run_id(effective_spec({**BASE, "lr_milestone": 0.5})) == run_id(effective_spec(BASE))
    assert ClassifySpec.from_dict({**BASE, "lr_milestone": 0.5}).deviations() == []
    custom = effective_spec({**BASE, "lr_schedule": "multistep", "lr_milestone": 0.25})
    assert custom["lr_milestone"] == 0.25


def test_cudnn_deterministic_is_recorded_only_when_asked():
    assert "cudnn_deterministic" not in effective_spec(BASE)
    spec = effective_spec({**BASE, "cudnn_deterministic": True})
    assert spec["cudnn_deterministic"] is True and run_id(spec) != run_id(effective_spec(BASE))
    assert ClassifySpec.from_dict(spec).deviations() == [
        "cudnn_deterministic=True (protocol: False)"
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({**BASE, "lr_schedule": "poly"}, "lr_schedule must be one of cosine, multistep, step"),
        ({**BASE, "lr_milestone": 1.5}, "lr_milestone must be in (0, 1)"),
        ({**BASE, "lr_milestone": True}, "lr_milestone must be in (0, 1)"),
        ({**BASE, "lr_step_size": 0}, "lr_step_size must be a positive integer"),
        ({**BASE, "cudnn_deterministic": "yes"}, "cudnn_deterministic must be true or false"),
    ],
)
def test_bad_schedule_and_seeding_options(fields, message):
    with pytest.raises(RunnerInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        effective_spec(fields)


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("runners.models", "runners.specs.classify"),  # the registry needs only the ND options
        ("runners.specs.nd_options", "runners.models"),
        ("runners.kernels", "runners.classify"),  # the device choice is runners.device
        ("runners.deconv", "runners.specs.classify"),
    ],
)
@pytest.mark.slow  # trains, or starts processes that import torch
def test_no_import_cycle_and_no_wrong_way_import(module, absent):
    code = f"import sys, {module}; print({absent!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
