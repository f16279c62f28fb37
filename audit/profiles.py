"""Profiles: how much of the paper an audit runs, and with which departures from its protocol.

A profile picks experiments from the selected claims, may change their fields (the change goes
into the spec, so a reduced run never shares a run id with a protocol run), may add smoke
experiments of its own, and says how many seeds each experiment gets. Any profile that changes
a field is labelled as not reproducing the paper's numbers wherever its runs are shown.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import AuditError
from runners import catalogue, datafiles

Experiment = dict[str, Any]

# The quick profile runs the MLP experiments with the paper's protocol (20 epochs, all 60k
# Fashion-MNIST images): measured 6.1-6.4 s per ND epoch on the project's 2-core CPU, about
# 6 minutes for the three norms. Only the CIFAR smoke run is reduced.
QUICK_CIFAR_SMOKE = {"train_subset": 256, "test_subset": 256, "epochs": 1}
# The ci profile: the same MLP experiments on 128 images, seconds per run (end-to-end tests).
CI_MLP = {"train_subset": 128, "test_subset": 128}
CI_LABEL = "ci profile: 128 images per run, a test of the harness, NOT a reproduction"
SEED_STUDY = "comp6248"  # the claims file's reference of the COMP6248 seed study
QUICK_LABEL = (
    "quick profile: a CPU-sized audit of the MLP and kernel claims only; runs that deviate "
    "from the paper's protocol (each lists its deviations) are NOT a reproduction of its numbers"
)


def default_data_dir() -> Path:
    """The runners' default ($AUDIT_DATA_DIR, else a per-user cache; runners/datafiles.py)."""
    return datafiles.default_data_dir()


def dataset_present(name: str, data_dir: Path) -> bool:
    """Whether `name` can be loaded offline from `data_dir` (Fashion-MNIST: or Debian's copy)."""
    return datafiles.missing_data(name, data_dir) is None


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    seeds: int  # seeds 0 .. seeds-1 of every experiment, unless --seeds says otherwise
    keep: Callable[[Experiment], bool] = lambda exp: True  # which claim experiments to run
    adjust: Callable[[Experiment], Experiment] = lambda exp: exp  # field changes (deviations)
    extras: Callable[[Path], list[Experiment]] = lambda data_dir: []  # smoke runs of its own
    needs_data_present: bool = False  # drop experiments whose data is absent (offline laptops)
    label: str | None = None  # shown on every output when the profile departs from the protocol
    notes: list[str] = field(default_factory=list)
    # A prior reproduction (an id of the claims file's `references`): only the experiments of
    # the cells it reports are run. Its scope is a fact of the claims file, not of this code.
    reference: str | None = None


def reference_scope(claims: Any, profile: Profile) -> set[str] | None:
    """The experiments (`experiment_key`s) of the cells `profile.reference` reports, or None
    when the profile runs every experiment its `keep` takes."""
    if profile.reference is None:
        return None
    sources = {s.id: s for s in getattr(claims, "reference_sources", None) or []}
    if profile.reference not in sources:
        where = getattr(claims, "path", None) or "the claims file"
        raise AuditError(
            f"profile {profile.name} runs the cells of the prior reproduction "
            f"{profile.reference!r}, which {where} does not list under `references`; "
            "use another --profile, or add the reference to the claims file"
        )
    reported = set(sources[profile.reference].values)
    return {experiment_key(e) for c in claims if c.id in reported for e in c.experiments()}


def experiment_key(exp: Experiment) -> str:
    return json.dumps(exp, sort_keys=True, default=str)


def _quick_scope(exp: Experiment) -> bool:
    """The experiments whose runs need no GPU (the catalogue's needs of their input kind: the
    MNIST-family MLPs) and the kernels experiment."""
    if exp.get("kind") == "kernels":
        return True
    dataset = catalogue.DATASETS.get(str(exp.get("dataset")))
    return dataset is not None and not catalogue.RUN_NEEDS[dataset.input_kind][0]


def _quick_adjust(exp: Experiment) -> Experiment:
    """The kernels from scikit-image's photographs, offline, instead of the paper's ImageNet
    images (a recorded deviation); the MLPs unchanged."""
    if exp.get("kind") == "kernels":
        return {**exp, "source": "skimage"}
    return exp


def _quick_extras(data_dir: Path) -> list[Experiment]:
    """A one-epoch VGG-16 BN/ND smoke run on a CIFAR-10 subset, only where CIFAR-10 is present."""
    if not dataset_present("cifar10", data_dir):
        return []
    base = {"kind": "classify", "dataset": "cifar10", "arch": "vgg16", **QUICK_CIFAR_SMOKE}
    return [{**base, "norm": norm} for norm in ("bn", "nd")]


def _ci_scope(exp: Experiment) -> bool:
    return exp.get("arch") == "mlp" and exp.get("dataset") == "fashion-mnist"


def _ci_adjust(exp: Experiment) -> Experiment:
    return {**exp, **CI_MLP}


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "full",
            "every runnable claim with the paper's protocol",
            seeds=3,
        ),
        Profile(
            "seed-study",
            f"the cells the seed reproduction study reported (the claims file's reference "
            f"{SEED_STUDY!r}), with the paper's protocol",
            seeds=3,
            reference=SEED_STUDY,
        ),
        Profile(
            "quick",
            "about 10 minutes on a laptop CPU: the Fashion-MNIST MLPs with the paper's protocol, "
            "the kernels experiment, and a CIFAR-10 smoke run where CIFAR-10 is present",
            seeds=1,
            keep=_quick_scope,
            adjust=_quick_adjust,
            extras=_quick_extras,
            needs_data_present=True,
            label=QUICK_LABEL,
        ),
        Profile(
            "ci",
            "the harness's own end-to-end test: Fashion-MNIST MLPs on 128 images",
            seeds=1,
            keep=_ci_scope,
            adjust=_ci_adjust,
            needs_data_present=True,
            label=CI_LABEL,
        ),
    )
}


# What `audit plan` and `audit run` use without --profile: a CPU-sized audit, never the
# cluster-scale matrix (which needs an explicit --profile seed-study or full).
DEFAULT_PROFILE = "quick"


def get_profile(name: str) -> Profile:
    """The profile called `name`; an unknown name is an AuditError listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise AuditError(
            f"unknown profile {name!r}; choose one of {', '.join(PROFILES)} (--profile)"
        ) from None
