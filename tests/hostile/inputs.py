"""The hostile corpus's inputs: files a red team would feed the harness, made on the fly.

Each builder writes its file(s) into a folder and returns the path; tests/test_hostile.py
runs the verbs on them. Kept as code, not as checked-in files, because several inputs are
large (bombs, deep nesting) or not text at all (NUL, latin-1, ESC).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from runners.rundir import RunResult, atomic_write_json, write_result
from runners.specs import effective_spec, run_id
from tests.mini import mini_claims_text

# A mini claims file: one table (2 architectures x BN/ND at 20 epochs on CIFAR-10) and a
# prior reproduction's values for it.
CLAIMS = mini_claims_text(
    "tab",
    append="""\
references:
  - id: prior
    title: a prior reproduction
    source: somewhere
    caveats: [one run per cell]
    columns: [BN20, ND20]
    series:
      reproduced:
        tab.vgg16: [REF_BN, 92.8]
""",
)
CSV_HEADER = "dataset,arch,norm,epochs,seed,test_top1\n"
CSV_GOOD = CSV_HEADER + "cifar10,vgg16,bn,20,0,90.1\ncifar10,vgg16,nd,20,0,93.1\n"


def claims_text(ref_bn: str = "90.5") -> str:
    return CLAIMS.replace("REF_BN", ref_bn)


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": 9 levels of 9 aliases stand for 9**9 strings."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int = 20) -> str:
    """`<<:` merge keys doubling a mapping at every level."""
    lines = ["m0: &m0 {k0: 0}"]
    for i in range(1, levels + 1):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: {i}}}")
    return "\n".join(lines) + "\n"


def deep_flow(depth: int = 100_000) -> str:
    return "schema_version: 1\ntables: " + "[" * depth + "]" * depth + "\n"


def deep_block(depth: int = 200) -> str:
    return "".join(" " * i + f"k{i}:\n" for i in range(depth)) + " " * depth + "v\n"


def nested_json(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


# --------------------------------------------------------------------------- a store

RUN_FIELDS = {"kind": "classify", "dataset": "cifar10", "arch": "vgg16", "epochs": 20}
VALUES = {"bn": (90.1, 89.9, 90.2), "nd": (93.2, 92.9, 93.1)}


def make_store(root: Path) -> dict[tuple[str, int], Path]:
    """A store of 6 finished runs (vgg16 BN and ND, seeds 0-2) with the plan that made
    them; returns (norm, seed) -> run directory."""
    dirs, matrix = {}, []
    for norm, values in VALUES.items():
        for seed, value in enumerate(values):
            spec = effective_spec({**RUN_FIELDS, "norm": norm, "seed": seed})
            rid = run_id(spec)
            run_dir = root / "runs" / rid
            run_dir.mkdir(parents=True)
            (run_dir / "spec.yaml").write_text(json.dumps(spec), encoding="utf-8")  # JSON is YAML
            write_result(
                run_dir,
                RunResult(rid, "done", metrics={"test_top1": value}, epochs_completed=20),
            )
            (run_dir / "metrics.jsonl").write_text('{"epoch": 1, "test_top1": 50.0}\n')
            (run_dir / "log.txt").write_text("epoch 1 done\n")
            dirs[(norm, seed)] = run_dir
            matrix.append({"run_id": rid, "spec": spec, "claims": [f"tab.vgg16.{norm}20"]})
    atomic_write_json(root / "plan.json", {"profile": "test", "label": None, "matrix": matrix})
    return dirs


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        path = run_dir / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")

    return damage


def _result_dir(run_dir: Path) -> None:
    (run_dir / "result.json").unlink()
    (run_dir / "result.json").mkdir()


def _replace_with_folder(name: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        (run_dir / name).unlink(missing_ok=True)
        (run_dir / name).mkdir()

    return damage


def _no_spec(run_dir: Path) -> None:
    (run_dir / "spec.yaml").unlink()


def _result_with(**fields: object) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        data = json.loads((run_dir / "result.json").read_text())
        data.update(fields)
        (run_dir / "result.json").write_text(json.dumps(data), encoding="utf-8")

    return damage


def _metric(text: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        raw = (run_dir / "result.json").read_text()
        data = json.loads(raw)
        value = json.dumps(data["metrics"]["test_top1"])
        (run_dir / "result.json").write_text(raw.replace(value, text, 1), encoding="utf-8")

    return damage


# Each damage turns a finished run directory into a damaged one (the list and more).
DAMAGES: dict[str, Callable[[Path], None]] = {
    "spec.yaml invalid YAML": _write("spec.yaml", "kind: classify\nepochs: [20\n"),
    "spec.yaml python tag": _write(
        "spec.yaml", "kind: !!python/object/apply:os.system ['echo pwned']\n"
    ),
    "spec.yaml text epochs": _write(
        "spec.yaml",
        "kind: classify\ndataset: cifar10\narch: vgg16\nnorm: nd\nepochs: twenty\nseed: 0\n",
    ),
    "spec.yaml alias bomb": _write("spec.yaml", alias_bomb()),
    "spec.yaml latin-1": _write("spec.yaml", "kind: classify\narch: vgg\xe9\n".encode("latin-1")),
    "spec.yaml not a mapping": _write("spec.yaml", "- just\n- a list\n"),
    "spec.yaml 5000-digit seed": _write("spec.yaml", "kind: classify\nseed: " + "9" * 5000 + "\n"),
    "spec.yaml missing": _no_spec,
    "result.json a folder": _result_dir,
    "result.json nested 100000 deep": _write("result.json", nested_json()),
    "result.json torn": _write("result.json", '{"run_id": "x", "status": "do'),
    "result.json a list": _write("result.json", "[1, 2, 3]"),
    "result.json unknown status": _result_with(status="great"),
    "result.json metrics a string": _result_with(metrics="93.1"),
    "result.json NaN metric": _metric("NaN"),
    "result.json text metric": _metric('"93.1%"'),
    "result.json infinite metric": _metric("Infinity"),
    "metrics.jsonl bad middle line": _write(
        "metrics.jsonl", '{"epoch": 1}\n{not json\n{"epoch": 3}\n'
    ),
    "metrics.jsonl not objects": _write("metrics.jsonl", "[1]\n[2]\n"),
    "metrics.jsonl a folder": _replace_with_folder("metrics.jsonl"),
}
