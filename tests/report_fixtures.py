"""A synthetic store shaped like a full audit of claims.yaml: every runnable classification
experiment the claims need, three seeds each, with per-epoch metrics, results and the plan's
estimates. The numbers are drawn around the claimed values (seeded, so every call gives the
same store); the report's length and layout are measured on it, not its verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audit.claims import ClaimSet, load_claims
from runners.rundir import (
    RunResult,
    append_jsonl,
    atomic_write_json,
    atomic_write_yaml,
    write_result,
)

REPO = Path(__file__).resolve().parent.parent
CLAIMS_FILE = REPO / "claims.yaml"
SEEDS = (0, 1, 2)


def full_claims() -> ClaimSet:
    return load_claims(CLAIMS_FILE)


def make_full_store(root: Path, *, max_curve_epochs: int = 100) -> ClaimSet:
    """Write `root/runs/*` and `root/plan.json`; return the claims they answer."""
    claims = full_claims()
    claimed = {_key(c.experiment): c.claimed for c in claims if c.type == "value" and c.experiment}
    rng = np.random.default_rng(0)
    matrix = []
    for experiment in claims.experiments():
        if experiment.get("kind") != "classify":
            continue
        target = claimed.get(_key(experiment), 90.0)
        for seed in SEEDS:
            run_id = "-".join(str(experiment[k]) for k in ("dataset", "arch", "norm")) + (
                f"-e{experiment['epochs']}-s{seed}"
            )
            final = float(np.clip(target + rng.normal(0, 0.6), 0, 100))
            _write_run(root / "runs" / run_id, {**experiment, "seed": seed}, final,
                       min(int(experiment["epochs"]), max_curve_epochs))  # fmt: skip
            matrix.append({"run_id": run_id, "gpu_hours": 0.01 * experiment["epochs"]})
    atomic_write_json(root / "plan.json", {"profile": "full", "label": None, "matrix": matrix})
    return claims


def _key(experiment: dict | None) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in (experiment or {}).items()))


def _write_run(run_dir: Path, spec: dict, final: float, epochs: int) -> None:
    run_dir.mkdir(parents=True)
    nd = {"block": 64, "n_iter": 5} if spec["norm"] == "nd" else None
    atomic_write_yaml(run_dir / "spec.yaml", {**spec, **({"nd": nd} if nd else {})})
    seconds = 30.0 if spec["norm"] == "nd" else 12.0
    for epoch in range(1, epochs + 1):
        top1 = final * (1 - 0.5 ** (epoch / max(1, epochs / 8)))
        append_jsonl(run_dir / "metrics.jsonl", {"epoch": epoch, "test_top1": top1,
                                                 "seconds": seconds})  # fmt: skip
    result = RunResult(
        run_dir.name, "done", metrics={"test_top1": final, "test_top5": min(100.0, final + 15)},
        epochs_completed=spec["epochs"], epochs_planned=spec["epochs"],
        gpu_seconds=seconds * spec["epochs"], wall_seconds=seconds * spec["epochs"] + 60,
        device="cuda:0 (NVIDIA H100)",
    )  # fmt: skip
    write_result(run_dir, result)


QUICK_DEVIATION = "train_subset=2500 (protocol: None)"


def make_quick_like_store(root: Path) -> None:
    """Run directories like those of `audit run --profile quick`: Fashion-MNIST MLPs (no
    norm, BN, ND; 20 epochs on a training subset: proxies) and a kernels run, with a plan."""
    matrix = []
    for norm, final in (("none", 84.1), ("bn", 85.3), ("nd", 85.9)):
        spec = {"kind": "classify", "dataset": "fashion-mnist", "arch": "mlp", "norm": norm,
                "epochs": 20, "seed": 0, "train_subset": 2500}  # fmt: skip
        run_id = f"quick-mlp-{norm}"
        _write_run(root / "runs" / run_id, spec, final, 20)
        result = (root / "runs" / run_id / "result.json").read_text()
        data = {**__import__("json").loads(result), "deviations": [QUICK_DEVIATION],
                "device": "cpu", "gpu_seconds": 0.0}  # fmt: skip
        atomic_write_json(root / "runs" / run_id / "result.json", data)
        matrix.append({"run_id": run_id, "gpu_hours": 0.004})
    kernels = root / "runs" / "quick-kernels"
    kernels.mkdir(parents=True)
    atomic_write_yaml(kernels / "spec.yaml", {"kind": "kernels", "source": "skimage", "seed": 0})
    write_result(kernels, RunResult("quick-kernels", "done", metrics={"centre_surround_score": 1.0},
                                    device="cpu", wall_seconds=40.0))  # fmt: skip
    matrix.append({"run_id": "quick-kernels", "gpu_hours": 0.02})
    atomic_write_json(root / "plan.json", {"profile": "quick", "matrix": matrix,
                                           "label": "quick profile: reduced data"})  # fmt: skip


def seed_study_csv(path: Path) -> Path:
    """The seed study's 36 reproduced Table 1 values (claims.yaml, reference `comp6248`)."""
    import csv

    claims = full_claims()
    by_id = claims.by_id()
    source = next(s for s in claims.reference_sources if s.id == "comp6248")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["run_id", "dataset", "arch", "norm", "epochs", "seed", "test_top1"])
        for claim_id, value in source.values.items():
            exp = by_id[claim_id].experiment
            run_id = f"comp6248-{exp['arch']}-{exp['norm']}-{exp['dataset']}-e{exp['epochs']}"
            writer.writerow([run_id, exp["dataset"], exp["arch"], exp["norm"], exp["epochs"], 0,
                             value.text])  # fmt: skip
    return path
