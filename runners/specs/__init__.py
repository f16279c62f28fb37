"""Experiment specs: validation, canonical form, content hash and run id.

A spec is a flat-ish mapping of JSON values (`kind` plus the runner's fields). Its
*effective* form has every default filled in by the runner's spec class, so changing a
default changes the hash: two runs share an id only if they ran the same experiment.
Execution details that do not change the experiment (device, data directory, loader
workers) are never part of a spec.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from importlib import import_module
from typing import Any

from runners.errors import RunnerInputError

# Bump when the meaning of an existing field changes, so old run ids are not reused.
SPEC_VERSION = 1

_SPEC_CLASSES = {
    "classify": "runners.specs.classify:ClassifySpec",
    "kernels": "runners.specs.kernels:KernelsSpec",
}

SLUG_FIELDS = (
    "kind",
    "arch",
    "norm",
    "dataset",
    "source",
    "kernel_size",
    "isqrt",
    "epochs",
    "seed",
)


def spec_class(kind: str) -> type:
    """The spec dataclass of a runner kind (imported lazily; spec modules never import torch)."""
    try:
        target = _SPEC_CLASSES[kind]
    except KeyError:
        known = ", ".join(sorted(_SPEC_CLASSES))
        raise RunnerInputError(f"unknown experiment kind {kind!r}; known kinds: {known}") from None
    module_name, _, attr = target.partition(":")
    return getattr(import_module(module_name), attr)


def effective_spec(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `fields` (which must name a `kind`) and return the spec with defaults filled."""
    if "kind" not in fields:
        raise RunnerInputError("spec has no 'kind' field; add e.g. kind: classify")
    cls = spec_class(str(fields["kind"]))
    return cls.from_dict(dict(fields)).to_dict()


def canonical_json(spec: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace, no NaN: the byte string that is hashed."""
    return json.dumps(
        {"spec_version": SPEC_VERSION, **spec},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )


def spec_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of an effective spec (hex, 64 characters)."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def run_id(spec: Mapping[str, Any]) -> str:
    """Readable, unique name of a run: `<slug>-<first 12 hex digits of the hash>`.

    The slug (e.g. `classify-vgg16-nd-cifar10-e20-s0`) is for humans; the hash alone
    identifies the run, so two specs differing in any field get different ids.
    """
    parts = []
    for key in SLUG_FIELDS:
        value = spec.get(key)
        if value is None:
            continue
        text = str(value)
        if key == "epochs":
            text = f"e{value}"
        elif key == "kernel_size":
            text = f"k{value}"
        elif key == "seed":
            text = f"s{value}"
        parts.append(re.sub(r"[^A-Za-z0-9.]+", "", text))
    return "-".join([*parts, spec_hash(spec)[:12]])
