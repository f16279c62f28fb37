"""The catalogue (runners/catalogue.py) is the one place for the facts about datasets,
architectures, norms and metrics: an entry added to it at runtime is seen by every part of the
harness that needs such a fact, and no other module keeps a copy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from audit import PROJECT_ROOT
from audit.claims import load_claims
from audit.errors import AuditError
from audit.plan import build_plan
from audit.profiles import get_profile
from audit.report import common, facts
from audit.results import load_results_csv
from audit.slurm_preflight import run_needs
from runners import catalogue, datafiles
from runners.errors import RunnerInputError
from runners.specs import effective_spec, run_id
from runners.specs.estimate import estimate_gpu_hours, unrunnable

# A dataset and an architecture the paper never used, added the way a contributor would: one
# catalogue entry each (their implementation is borrowed, since none of these tests trains).
TOY = catalogue.Dataset(
    "toyset",
    "ToySet-7",
    "cifar",
    7,
    32,
    (0.5, 0.5, 0.5),
    (0.25, 0.25, 0.25),
    7_000,
    700,
    "the folder toyset/ (train.bin, test.bin) from https://example.org/toyset.tar",
    files=("toyset/train.bin", "toyset/test.bin"),
    augment=True,
    protocol={"batch_size": 64},
    nd_protocol={"block_fc": 32},
    paper_table=1,
)
TINY = catalogue.Arch(
    "tinynet",
    "TinyNet-3",
    {"cifar": catalogue.Builder("vgg:vgg16", catalogue.BN_ND, images_per_second=350.0)},
)

TOY_CLAIMS = """\
schema_version: 1
tables:
  - id: toy
    group: toys
    metric: test_top1
    experiment: {kind: classify, dataset: toyset}
    layout: [arch, BN20, ND20]
    columns:
      BN20: {norm: bn, epochs: 20}
      ND20: {norm: nd, epochs: 20}
    tolerance: {abs: 1.0}
    rows:
      - [tinynet, 80.00, 85.00]
"""


@pytest.fixture
def toy(monkeypatch):
    """The catalogue with ToySet and TinyNet added, for this test only."""
    monkeypatch.setitem(catalogue.DATASETS, TOY.name, TOY)
    monkeypatch.setitem(catalogue.ARCHS, TINY.name, TINY)


def toy_spec(**fields):
    return effective_spec(
        {"kind": "classify", "dataset": "toyset", "arch": "tinynet", "norm": "bn", "epochs": 20}
        | fields
    )


def test_without_the_entries_nothing_knows_them(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(TOY_CLAIMS)
    with pytest.raises(AuditError, match="unknown dataset 'toyset'"):
        load_claims(path)
    with pytest.raises(RunnerInputError, match="dataset must be one of"):
        toy_spec()
    assert common.dataset_label("toyset") == "toyset"
    assert unrunnable({"dataset": "toyset", "arch": "tinynet", "norm": "bn"}) is not None


def test_the_claims_validator_reads_the_catalogue(toy, tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(TOY_CLAIMS)
    claims = load_claims(path)
    assert {c.experiment["dataset"] for c in claims} == {"toyset"}
    assert {c.experiment["arch"] for c in claims} == {"tinynet"}
    # a misspelt name is still caught, with the catalogue's entry as the suggestion
    path.write_text(TOY_CLAIMS.replace("dataset: toyset", "dataset: Toy-Set"))
    with pytest.raises(AuditError, match="did you mean 'toyset'"):
        load_claims(path)


def test_the_spec_takes_the_protocol_defaults_from_the_catalogue(toy):
    spec = toy_spec()
    assert spec["batch_size"] == 64  # the entry's protocol
    assert spec["augment"] is True
    assert toy_spec(norm="nd")["nd"]["block_fc"] == 32  # the entry's ND protocol
    assert spec["nd"]["block_fc"] == 32  # a BN run keeps the protocol's ND options
    assert run_id(spec).startswith("classify-tinynet-bn-toyset-e20-s0-")
    with pytest.raises(RunnerInputError, match="supports norm bn, nd; got 'none'"):
        toy_spec(norm="none")
    # the architecture has no build for flat inputs: one clear message, from the catalogue
    with pytest.raises(RunnerInputError, match="784-d MNIST-family vectors"):
        toy_spec(dataset="mnist")


def test_the_plan_and_its_cost_estimate_read_the_catalogue(toy, tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(TOY_CLAIMS)
    plan = build_plan(load_claims(path), get_profile("full"), seeds=1, data_dir=tmp_path)
    assert plan.skipped == []
    assert {(r.spec["arch"], r.spec["norm"]) for r in plan.runs} == {
        ("tinynet", "bn"),
        ("tinynet", "nd"),
    }
    by_norm = {r.spec["norm"]: r for r in plan.runs}
    # 20 epochs of the entry's 7,000 training and 700 test images at its 350 images/s
    expected = 20 * (7_000 + 700 / 3) / 350.0 / 3600
    assert by_norm["bn"].gpu_hours == pytest.approx(expected)
    assert by_norm["nd"].gpu_hours == pytest.approx(expected * catalogue.NORMS["nd"].cost)
    assert plan.data["toyset"] is not None  # asked of the data preflight, below
    hours, source = estimate_gpu_hours(toy_spec(train_subset=700), {})
    assert source == "default" and hours == pytest.approx(20 * (700 + 700 / 3) / 350.0 / 3600)


def test_the_data_preflight_reads_the_catalogue(toy, tmp_path):
    message = datafiles.missing_data("toyset", tmp_path)
    assert "toyset/train.bin" in message and "https://example.org/toyset.tar" in message
    for relative in TOY.files:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    assert datafiles.missing_data("toyset", tmp_path) is None


def test_slurm_needs_come_from_the_input_kind(toy):
    needs = run_needs([toy_spec()])
    gpu, cpus, mem_mb = catalogue.RUN_NEEDS["cifar"]
    assert (needs.gpu, needs.cpus, needs.mem_mb) == (gpu, cpus, mem_mb)


def test_results_and_the_report_read_the_catalogue(toy, tmp_path):
    csv = tmp_path / "results.csv"
    csv.write_text("dataset,arch,norm,epochs,seed,test_top1\ntoyset,tinynet,nd,20,0,84.5\n")
    assert load_results_csv(csv)["dataset"].tolist() == ["toyset"]
    assert common.dataset_label("toyset") == "ToySet-7"
    assert common.arch_label("tinynet") == "TinyNet-3"
    assert common.arch_order("tinynet") == (list(catalogue.ARCHS).index("tinynet"), "")
    assert "TinyNet-3" in facts.models_for("toyset")
    assert "ToySet-7" in facts.runners_text()  # the CIFAR input kind's datasets
    assert "toyset" in catalogue.in_paper_table(1)  # the report's Table 1


def test_a_dataset_needs_a_loader_as_well(toy):
    from runners import data

    with pytest.raises(RunnerInputError, match=r"LOADERS in runners/data\.py"):
        data.dataset_info("toyset")


def test_every_catalogue_dataset_has_a_loader_and_every_build_a_model():
    from runners import data
    from runners.models import build_model

    assert set(data.LOADERS) == set(catalogue.DATASETS)
    for name in catalogue.DATASETS:
        info = data.dataset_info(name)
        assert data.is_image_folder(info) == catalogue.DATASETS[name].image_folder
    for entry in catalogue.ARCHS.values():
        for kind, builder in entry.builders.items():
            module, _, func = builder.target.partition(":")
            source = (PROJECT_ROOT / "runners" / "models" / f"{module}.py").read_text()
            assert f"def {func}(" in source, builder.target
            assert kind in catalogue.INPUT_KINDS and kind in catalogue.RUN_NEEDS
            assert set(builder.norms) <= set(catalogue.NORMS)
    assert callable(build_model)
    for entry in catalogue.DATASETS.values():
        assert entry.input_kind in catalogue.INPUT_KINDS
        assert bool(entry.files) != entry.image_folder  # one layout or the other


def test_the_catalogue_never_imports_torch():
    code = "import sys, runners.catalogue\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# Names that are facts of the catalogue; outside it, a quoted one is allowed only where the
# code implements that very dataset or model (its loader, its file layout, its protocol
# exception), never as a list or table of them.
FACT_NAMES = {*catalogue.DATASETS, *catalogue.ARCHS}
IMPLEMENTATIONS = {
    "runners/catalogue.py",
    "runners/data.py",  # LOADERS; Debian's Fashion-MNIST copy
    "runners/datafiles.py",  # Debian's Fashion-MNIST copy
    "runners/kernels.py",  # the kernels experiment reads ImageNet's val split
    "runners/device_data.py",  # the device data path implements CIFAR's in-memory arrays
    "runners/specs/kernels.py",  # the kernels experiment's image sources
    "runners/specs/classify.py",  # the ImageNet VGG-11's init option
    "runners/specs/nd_options.py",  # the same option, where the ND options get a module
    "audit/profiles.py",  # the profiles' scopes and smoke runs
    "audit/report/mlp.py",  # the report's MLP section
    "audit/report/build.py",
    "audit/report/curves.py",
}


def test_no_other_module_keeps_a_list_of_datasets_or_architectures():
    offenders = []
    for path in sorted(
        [*PROJECT_ROOT.glob("runners/**/*.py"), *PROJECT_ROOT.glob("audit/**/*.py")]
    ):
        relative = path.relative_to(PROJECT_ROOT).as_posix()
        if relative in IMPLEMENTATIONS or relative.startswith("runners/models/"):
            continue
        offenders += [f"{relative}: {name!r}" for name in _quoted_names(path) & FACT_NAMES]
    assert offenders == []


def _quoted_names(path: Path) -> set[str]:
    """String constants of the module's code (docstrings and comments are not code)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    }
