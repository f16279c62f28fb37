"""The plan: claims x profile x selection -> deduplicated specs x seeds, with skips explained."""

import dataclasses
import json
import subprocess
import sys

import pytest

from audit import PROJECT_ROOT
from audit.claims import load_claims
from audit.errors import AuditError
from audit.plan import build_plan, estimate_gpu_hours, format_plan
from audit.profiles import get_profile
from runners.specs import effective_spec, run_id
from tests.fakedata import write_cifar10

CLAIMS = PROJECT_ROOT / "claims.yaml"


@pytest.fixture(scope="module")
def claims():
    return load_claims(CLAIMS)


def test_full_plan_is_deduplicated_seeded_and_covers_imagenet(claims, tmp_path):
    plan = build_plan(claims, get_profile("full"), data_dir=tmp_path)
    ids = [r.run_id for r in plan.runs]
    assert len(ids) == len(set(ids))
    assert plan.seeds == [0, 1, 2]
    # every run id is the hash of its own effective spec
    for run in plan.runs:
        assert effective_spec(run.spec) == run.spec
        assert run_id(run.spec) == run.run_id
    # a table cell shared by a value claim and two relations is one run per seed
    vgg = [
        r
        for r in plan.runs
        if r.spec.get("arch") == "vgg16"
        and r.spec["dataset"] == "cifar10"
        and r.spec["norm"] == "nd"
        and r.spec["epochs"] == 1
    ]
    assert len(vgg) == 3
    assert {"table1.cifar10.vgg16.nd1"} <= set(vgg[0].claim_ids)
    assert len(vgg[0].claim_ids) >= 2
    assert plan.skipped == []  # every claim of the paper has a runner
    # Table 2: seven (model, variant) rows, 90 epochs each, with main_imagenet.py's protocol
    imagenet = [r for r in plan.runs if r.spec.get("dataset") == "imagenet"]
    assert len(imagenet) == 7 * 3
    assert {(r.spec["arch"], r.spec["norm"]) for r in imagenet} == {
        ("vgg11", "none"),
        ("vgg11", "bn"),
        ("vgg11", "nd"),
        ("resnet18", "bn"),
        ("resnet18", "nd"),
        ("densenet121", "bn"),
        ("densenet121", "nd"),
    }
    assert {(r.spec["epochs"], r.spec["batch_size"], r.spec["weight_decay"]) for r in imagenet} == {
        (90, 256, 1e-4)
    }
    assert all(r.deviations == [] for r in imagenet)
    assert plan.gpu_hours > 1 and plan.total_epochs > 1000


def test_plan_explains_what_it_cannot_run(claims, tmp_path):
    """A claim on a model the registry does not have is listed as skipped, with the reason."""
    claim = claims.select(groups=["imagenet"]).claims[0]
    unknown = dataclasses.replace(claim, experiment={**claim.experiment, "arch": "vgg19"})
    plan = build_plan([unknown], get_profile("full"), data_dir=tmp_path)
    (skipped,) = plan.skipped
    assert skipped.reason == "no model for architecture 'vgg19' in runners/models"
    by_csv = dataclasses.replace(claim, runnable=False)
    plan = build_plan(
        [by_csv, claims.by_id()["table1.cifar10.vgg16.bn1"]], get_profile("full"), data_dir=tmp_path
    )
    assert [s.claim_ids for s in plan.skipped] == [[claim.id]]
    assert "runnable: false" in plan.skipped[0].reason
    assert {r.spec["dataset"] for r in plan.runs} == {"cifar10"}


def test_seed_study_scope(claims, tmp_path):
    plan = build_plan(claims, get_profile("seed-study"), data_dir=tmp_path)
    assert {r.spec["arch"] for r in plan.runs} == {"vgg16", "resnext29", "densenet121"}
    assert {r.spec["dataset"] for r in plan.runs} == {"cifar10", "cifar100"}
    # the scope is the claims file's: the cells its reference comp6248 reports, no more
    reported = set(next(s for s in claims.reference_sources if s.id == "comp6248").values)
    served = {c for r in plan.runs for c in r.claim_ids}
    assert reported <= served
    assert all(c in reported or claims.by_id()[c].type == "relation" for c in served)


def test_seed_study_needs_its_reference_in_the_claims_file(mini_claims, tmp_path):
    with pytest.raises(AuditError, match=r"prior reproduction 'comp6248'.*does not list"):
        build_plan(load_claims(mini_claims), get_profile("seed-study"), data_dir=tmp_path)


def test_quick_profile_runs_the_mlp_protocol_and_labels_what_deviates(claims, tmp_path):
    full = build_plan(claims.select(groups=["mlp"]), get_profile("full"), data_dir=tmp_path)
    quick = build_plan(claims.select(groups=["mlp"]), get_profile("quick"), data_dir=tmp_path)
    assert quick.seeds == [0]
    mlp = [r for r in quick.runs if r.spec.get("arch") == "mlp"]
    assert {r.spec["norm"] for r in mlp} == {"none", "bn", "nd"}
    # The paper's protocol: these are the full profile's seed-0 runs, shared, never retrained.
    assert all(r.spec["train_subset"] is None and not r.deviations for r in mlp)
    assert {r.run_id for r in mlp} <= {r.run_id for r in full.runs}
    kernels = build_plan(
        claims.select(groups=["centre-surround"]), get_profile("quick"), data_dir=tmp_path
    )
    text = format_plan(kernels)
    assert "NOT a reproduction" in text and "source=skimage (paper: ImageNet images)" in text
    # the offline photographs: the same run (id) as when they were the spec's default source
    (photos,) = kernels.runs
    assert photos.run_id == "kernels-skimage-k5-exact-s0-e3a57fec6ffe"
    # the full profile computes them from ImageNet as the paper, without a deviation
    paper = build_plan(
        claims.select(groups=["centre-surround"]), get_profile("full"), data_dir=tmp_path
    )
    assert {r.spec["source"] for r in paper.runs} == {"imagenet"}
    assert all(r.deviations == [] for r in paper.runs)
    # MNIST has no offline source: skipped with the reason, not silently dropped
    assert any("mnist is not in the data directory" in s.reason for s in quick.skipped)


def test_quick_cifar_smoke_run_only_where_cifar_is_present(claims, tmp_path):
    without = build_plan(claims, get_profile("quick"), data_dir=tmp_path)
    assert not any(r.spec.get("dataset") == "cifar10" for r in without.runs)
    write_cifar10(tmp_path, n_train=10, n_test=10)
    with_cifar = build_plan(claims, get_profile("quick"), data_dir=tmp_path)
    smoke = [r for r in with_cifar.runs if r.spec.get("dataset") == "cifar10"]
    assert {(r.spec["arch"], r.spec["norm"], r.spec["epochs"]) for r in smoke} == {
        ("vgg16", "bn", 1),
        ("vgg16", "nd", 1),
    }
    assert all(r.deviations for r in smoke)


def test_seeds_override_and_bad_values(claims, tmp_path):
    plan = build_plan(claims.select(groups=["mlp"]), get_profile("ci"), seeds=2, data_dir=tmp_path)
    assert {r.spec["seed"] for r in plan.runs} == {0, 1}
    with pytest.raises(AuditError, match="--seeds"):
        build_plan(claims, get_profile("ci"), seeds=0, data_dir=tmp_path)
    with pytest.raises(AuditError, match=r"unknown profile 'nope'.*full, seed-study, quick"):
        get_profile("nope")


def test_recorded_throughput_replaces_the_default():
    spec = effective_spec(
        {"kind": "classify", "dataset": "cifar10", "arch": "vgg16", "norm": "bn", "epochs": 10}
    )
    default, source = estimate_gpu_hours(spec, {})
    assert source == "default"
    measured, source = estimate_gpu_hours(spec, {("cifar", "vgg16", "bn"): 500.0})
    assert source == "recorded" and measured == pytest.approx(default * 10)
    # the ImageNet ResNet-18 shares a name with the CIFAR one, not a speed
    imagenet = effective_spec({**spec, "dataset": "imagenet", "arch": "resnet18", "epochs": 90})
    assert estimate_gpu_hours(imagenet, {("cifar", "resnet18", "bn"): 1.0})[1] == "default"
    hours, _ = estimate_gpu_hours(imagenet, {("imagenet", "resnet18", "bn"): 2000.0})
    assert hours == pytest.approx(90 * (1_281_167 + 50_000 / 3) / 2000.0 / 3600)


def test_audit_plan_json_without_torch(tmp_path):
    code = (
        "import sys\nfrom audit.cli import main\n"
        f"rc = main(['plan', '--claims', {str(CLAIMS)!r}, '--profile', 'quick', '--json',"
        f" '--data-dir', {str(tmp_path)!r}, '--store', {str(tmp_path / 'store')!r}])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\nsys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["profile"] == "quick" and data["label"].startswith("quick profile")
    assert data["runs"] == len(data["matrix"]) >= 3
    assert not (tmp_path / "store").exists()  # planning writes nothing


def test_unknown_profile_is_one_clear_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "audit.cli", "plan", "--claims", str(CLAIMS), "--profile", "fast"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "audit plan: error: unknown profile 'fast'; choose one of full, seed-study, quick, ci "
        "(--profile)"
    )


def test_recorded_throughputs_come_from_finished_gpu_runs_and_skip_broken_ones(tmp_path):
    from audit.commands.plan import recorded_throughputs
    from runners.rundir import RunResult, append_jsonl, atomic_write_yaml, write_result

    def run(name: str, spec: dict, speeds: list, status: str = "done", gpu: float = 60.0):
        run_dir = tmp_path / "runs" / name
        atomic_write_yaml(run_dir / "spec.yaml", spec)
        for speed in speeds:
            append_jsonl(run_dir / "metrics.jsonl", {"epoch": 1, "images_per_second": speed})
        write_result(run_dir, RunResult(name, status, gpu_seconds=gpu))
        return run_dir

    vgg = {"kind": "classify", "dataset": "cifar10", "arch": "vgg16", "norm": "bn", "epochs": 2}
    run("good", vgg, [400.0, 600.0])
    run("cpu", vgg, [10.0], gpu=0.0)  # a CPU run says nothing about GPU throughput
    run("failed", vgg, [10.0], status="failed")
    (run("torn-spec", vgg, [10.0]) / "spec.yaml").write_text("arch: [vgg16\n")
    (run("torn-metrics", vgg, [10.0, 10.0]) / "metrics.jsonl").write_text('{"e\n{"epoch": 2}\n')
    run("no-norm", {"kind": "kernels", "arch": "vgg16"}, [10.0])
    assert recorded_throughputs(tmp_path) == {("cifar", "vgg16", "bn"): 500.0}
    assert recorded_throughputs(tmp_path / "missing") == {}
