"""runners.classify and `audit train`: real training runs on tiny synthetic datasets (CPU)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from audit import cli
from runners import classify, device, rundir
from runners.errors import RunnerInputError
from runners.specs.classify import ClassifySpec
from tests import fakedata

REPO = Path(__file__).resolve().parents[1]
N_TRAIN = 300  # 3 iterations of 128 per epoch (the last one partial)


pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]  # trains


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    return fakedata.write_mnist(tmp_path / "data", n_train=N_TRAIN, n_test=64)


def mlp_spec(**fields) -> dict:
    return {
        "kind": "classify",
        "dataset": "mnist",
        "arch": "mlp",
        "norm": "nd",
        "epochs": 3,
        **fields,
    }


def train(spec: dict, run_dir: Path, data_dir: Path, **options) -> rundir.RunResult:
    return classify.run(spec, run_dir, data_dir=data_dir, device="cpu", **options)


def load_checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / rundir.CHECKPOINT_FILE, weights_only=True)


def without_timing(records: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in records
    ]


def test_a_run_writes_the_run_directory_contract(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    lines: list[str] = []
    result = train(mlp_spec(), run_dir, mnist_dir, log=lines.append)

    records = rundir.read_jsonl(run_dir / rundir.METRICS_FILE)
    assert [sorted(r) for r in records] == [sorted(rundir.EPOCH_FIELDS)] * 3
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert rundir.read_result(run_dir) == result
    assert result.status == "done" and result.epochs_completed == result.epochs_planned == 3
    assert result.metrics["test_top1"] == records[-1]["test_top1"]
    assert result.metrics["train_top1"] == records[-1]["train_top1"]
    assert result.metrics["best_test_top1"] == max(r["test_top1"] for r in records)
    assert records[result.best_epoch - 1]["test_top1"] == result.metrics["best_test_top1"]
    assert result.device == "cpu" and result.gpu_seconds == 0 and result.wall_seconds > 0
    assert result.deviations == []
    assert rundir.read_spec(run_dir)["lr"] == 0.1  # the effective spec, defaults filled

    provenance = json.loads((run_dir / rundir.PROVENANCE_FILE).read_text())
    assert provenance["seed"] == 0 and provenance["torch"] == torch.__version__
    assert len(provenance["dataset"]["sha256"]) == 64
    assert provenance["precision"]["cuda_matmul_allow_tf32"] is False
    log_text = (run_dir / rundir.LOG_FILE).read_text()
    assert "epoch 3/3" in log_text and any("epoch 3/3" in line for line in lines)
    assert not list(run_dir.glob(".*.tmp"))  # atomic writes left no temporary files


def test_cosine_schedule_steps_per_iteration_over_the_run_budget(tmp_path, mnist_dir):
    train(mlp_spec(), tmp_path / "run", mnist_dir)
    lrs = [r["lr"] for r in rundir.read_jsonl(tmp_path / "run" / rundir.METRICS_FILE)]
    iters, epochs = 3, 3  # lr_t = 0.05 (1 + cos(pi t / (iters * epochs)))
    expected = [0.05 * (1 + math.cos(math.pi * iters * e / (iters * epochs))) for e in (1, 2, 3)]
    assert lrs == pytest.approx(expected, abs=1e-12)
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint["scheduler"]["T_max"] == 9 and checkpoint["scheduler"]["last_epoch"] == 9


def test_one_parameter_group_with_the_same_weight_decay_for_every_parameter(tmp_path, mnist_dir):
    train(mlp_spec(norm="bn", epochs=1), tmp_path / "run", mnist_dir)
    checkpoint = load_checkpoint(tmp_path / "run")
    (group,) = checkpoint["optimizer"]["param_groups"]
    n_params = sum(1 for k in checkpoint["model"] if k.endswith(("weight", "bias")))
    assert len(group["params"]) == n_params  # BN scales and shifts included
    assert group["weight_decay"] == 1e-3 and group["momentum"] == 0.9
    assert group["nesterov"] is False


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, mnist_dir):
    straight = train(mlp_spec(), tmp_path / "straight", mnist_dir)

    def stop_after_first_epoch(record: dict) -> None:
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(mlp_spec(), tmp_path / "resumed", mnist_dir, on_epoch=stop_after_first_epoch)
    assert load_checkpoint(tmp_path / "resumed")["epoch"] == 1
    assert not (tmp_path / "resumed" / rundir.RESULT_FILE).exists()
    resumed = train(mlp_spec(), tmp_path / "resumed", mnist_dir)

    metrics = [
        rundir.read_jsonl(tmp_path / d / rundir.METRICS_FILE) for d in ("straight", "resumed")
    ]
    for ours, theirs in zip(*map(without_timing, metrics), strict=True):
        assert ours == pytest.approx(theirs, rel=1e-6)
    assert resumed.epochs_completed == straight.epochs_completed == 3
    assert resumed.metrics == pytest.approx(straight.metrics, abs=1e-6)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 9
    for key, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][key], tensor, rtol=1e-6, atol=1e-7)
    provenance = json.loads((tmp_path / "resumed" / rundir.PROVENANCE_FILE).read_text())
    assert provenance["resumed_from_epoch"] == 1 and len(provenance["attempts"]) == 1


def test_resume_drops_metrics_lines_past_the_checkpoint(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    train(mlp_spec(epochs=2), run_dir, mnist_dir)
    checkpoint = load_checkpoint(run_dir)
    records = rundir.read_jsonl(run_dir / rundir.METRICS_FILE)
    rundir.append_jsonl(run_dir / rundir.METRICS_FILE, {**records[-1], "epoch": 3})  # a lost epoch
    again = train(mlp_spec(epochs=2), run_dir, mnist_dir)  # finished: nothing is retrained
    assert len(rundir.read_jsonl(run_dir / rundir.METRICS_FILE)) == 2
    assert again.metrics["test_top1"] == records[-1]["test_top1"]
    assert torch.equal(load_checkpoint(run_dir)["rng"]["torch"], checkpoint["rng"]["torch"])


def test_a_kill_between_checkpoint_and_metrics_line_never_counts_an_unsaved_epoch(
    tmp_path, mnist_dir, monkeypatch
):
    """The checkpoint is written before the epoch's metrics line: a kill in between leaves
    metrics.jsonl behind the checkpoint (so `audit status` never counts an epoch that a
    resume would retrain), and the resume restores the line from the checkpoint."""
    run_dir = tmp_path / "run"
    real_append = rundir.append_jsonl

    def killed_on_second_line(path, record):
        if record.get("epoch") == 2:
            assert load_checkpoint(run_dir)["epoch"] == 2  # the checkpoint is already there
            raise KeyboardInterrupt
        real_append(path, record)

    monkeypatch.setattr(rundir, "append_jsonl", killed_on_second_line)
    with pytest.raises(KeyboardInterrupt):
        train(mlp_spec(), run_dir, mnist_dir)
    assert [r["epoch"] for r in rundir.read_jsonl(run_dir / rundir.METRICS_FILE)] == [1]
    monkeypatch.setattr(rundir, "append_jsonl", real_append)
    result = train(mlp_spec(), run_dir, mnist_dir)
    records = rundir.read_jsonl(run_dir / rundir.METRICS_FILE)
    assert [r["epoch"] for r in records] == [1, 2, 3] and result.epochs_completed == 3
    provenance = json.loads((run_dir / rundir.PROVENANCE_FILE).read_text())
    assert provenance["resumed_from_epoch"] == 2  # epoch 2 was not trained twice


def test_top5_is_recorded_and_bounds_top1(tmp_path, mnist_dir):
    result = train(mlp_spec(epochs=1), tmp_path / "run", mnist_dir)
    (record,) = rundir.read_jsonl(tmp_path / "run" / rundir.METRICS_FILE)
    assert record["test_top1"] <= record["test_top5"] <= 100.0
    assert result.metrics["test_top5"] == record["test_top5"]


def test_evaluate_counts_top1_and_top5_hits():
    """Four samples, known logits: top-1 hits 1 of 4, top-5 hits 3 of 4 (one label ranks 6th)."""
    logits = torch.tensor([list(range(10))] * 4, dtype=torch.float32)  # ranks: 9 first, 0 last
    labels = torch.tensor([9, 5, 4, 3])  # ranks 1, 5, 6, 7
    loader = [(logits[:2], labels[:2]), (logits[2:], labels[2:])]
    loss, top1, top5 = classify.evaluate(torch.nn.Identity(), loader, torch.device("cpu"))
    assert (top1, top5) == (25.0, 50.0)
    expected = torch.nn.functional.cross_entropy(logits, labels).item()
    assert loss == pytest.approx(expected)


def test_a_damaged_provenance_file_does_not_stop_a_resume(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    train(mlp_spec(epochs=1), run_dir, mnist_dir)
    (run_dir / rundir.PROVENANCE_FILE).write_text("[1, 2]", encoding="utf-8")  # not an object
    assert train(mlp_spec(epochs=1), run_dir, mnist_dir).status == "done"
    provenance = json.loads((run_dir / rundir.PROVENANCE_FILE).read_text())
    assert provenance["attempts"] == [] and provenance["resumed_from_epoch"] == 1
    assert provenance["newton_schulz"] == "closed-form gradient"  # "auto" on the CPU


def test_a_checkpoint_that_is_not_ours_is_one_clear_error(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save([1, 2], run_dir / rundir.CHECKPOINT_FILE)  # loadable, but not a checkpoint
    with pytest.raises(RunnerInputError, match="another spec or checkpoint format"):
        train(mlp_spec(epochs=1), run_dir, mnist_dir)


def test_a_run_directory_of_another_spec_is_refused(tmp_path, mnist_dir):
    train(mlp_spec(epochs=1), tmp_path / "run", mnist_dir)
    with pytest.raises(RunnerInputError, match="different spec"):
        train(mlp_spec(epochs=2), tmp_path / "run", mnist_dir)


def test_non_finite_loss_ends_the_run_as_diverged(tmp_path, mnist_dir):
    result = train(mlp_spec(norm="none", lr=1e38), tmp_path / "run", mnist_dir)
    assert result.status == "diverged"
    assert result.reason == "epoch 1, step 2: the training loss is inf"
    assert result.metrics == {} and result.epochs_completed == 0
    assert rundir.read_result(tmp_path / "run").status == "diverged"
    assert "DIVERGED" in (tmp_path / "run" / rundir.LOG_FILE).read_text()


def test_multistep_milestones_and_their_per_epoch_stepping(tmp_path):
    assert classify.multistep_milestones(100) == [40, 80]
    assert classify.multistep_milestones(20) == [8, 16]
    with pytest.raises(RunnerInputError, match="at least 3 epochs"):
        classify.multistep_milestones(2)
    small = fakedata.write_mnist(tmp_path / "small", n_train=64, n_test=16)
    train(mlp_spec(lr_schedule="multistep", epochs=5), tmp_path / "run", small)
    lrs = [r["lr"] for r in rundir.read_jsonl(tmp_path / "run" / rundir.METRICS_FILE)]
    # milestones [2, 4], stepped at each epoch's start: the decays come one epoch early
    assert lrs == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])
    train(mlp_spec(lr_schedule="step", lr_step_size=2, epochs=3), tmp_path / "step", small)
    lrs = [r["lr"] for r in rundir.read_jsonl(tmp_path / "step" / rundir.METRICS_FILE)]
    assert lrs == pytest.approx([0.1, 0.01, 0.01])  # StepLR(2), also stepped at epoch start


def test_imagenet_multistep_decays_at_three_tenths_of_the_epochs():
    # main_imagenet.py's --milestone 0.3: 27, 54, 81 of 90 (main.py's 0.4 would give 36, 72)
    assert classify.multistep_milestones(90, 0.3) == [27, 54, 81]
    with pytest.raises(RunnerInputError, match="at least 4 epochs"):
        classify.multistep_milestones(3, 0.3)


def scheduler_lrs(spec: dict, epochs_to_run: int) -> list[float]:
    """The learning rate of each epoch as `run` drives the scheduler (stepped at the start of
    every epoch for the per-epoch schedules), without training."""
    cfg = ClassifySpec.from_dict(spec)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    scheduler = classify.make_scheduler(cfg, optimizer, iters_per_epoch=1)
    lrs = []
    for _ in range(epochs_to_run):
        classify.step_quietly(scheduler)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


IMAGENET_SPEC = {"dataset": "imagenet", "arch": "resnet18", "norm": "nd", "epochs": 90}


def test_imagenet_multistep_and_step_schedules_as_main_imagenet_drives_them():
    lrs = scheduler_lrs({**IMAGENET_SPEC, "lr_schedule": "multistep"}, 90)
    # decays at milestones 27, 54, 81, each one epoch early (stepped before the epoch)
    assert [i for i in range(1, 90) if lrs[i] < lrs[i - 1] * 0.5] == [26, 53, 80]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(1e-4)
    lrs = scheduler_lrs({**IMAGENET_SPEC, "lr_schedule": "step"}, 90)
    assert [i for i in range(1, 90) if lrs[i] < lrs[i - 1] * 0.5] == [29, 59, 89]
    cifar = {**IMAGENET_SPEC, "dataset": "cifar10", "arch": "vgg16", "epochs": 100}
    lrs = scheduler_lrs({**cifar, "lr_schedule": "multistep"}, 100)
    assert [i for i in range(1, 100) if lrs[i] < lrs[i - 1] * 0.5] == [39, 79]


def tiny_cifar_run(tmp_path: Path, **fields) -> rundir.RunResult:
    """vgg16 with ND layers on synthetic CIFAR-10 in batches of 8 (the CPU is slow)."""
    data_dir = fakedata.write_cifar10(tmp_path / "data", n_train=16, n_test=8)
    spec = {"dataset": "cifar10", "arch": "vgg16", "norm": "nd", "epochs": 1, "batch_size": 8}
    return classify.run(
        {**spec, **fields}, tmp_path / "run", data_dir=data_dir, device="cpu", verify_data=False
    )


def test_vgg16_nd_trains_one_epoch_on_synthetic_cifar(tmp_path):
    result = tiny_cifar_run(tmp_path, train_subset=8)  # one step
    assert result.status == "done" and result.epochs_completed == 1
    assert 0 <= result.metrics["test_top1"] <= 100 and math.isfinite(result.metrics["test_loss"])
    assert "data: md5 check skipped (unverified data)" in result.deviations
    assert "batch_size=8 (protocol: 128)" in result.deviations
    assert "train_subset=8 (protocol: None)" in result.deviations


def test_nd_statistics_error_ends_the_run_as_diverged(tmp_path):
    result = tiny_cifar_run(tmp_path, lr=1e38)  # the first step makes the weights infinite
    assert result.status == "diverged"
    assert result.reason.startswith("epoch 1, step 2: FastDeconv(")  # the layer's own message
    assert "NaN or inf" in result.reason


@pytest.mark.parametrize("norm", ["bn", "nd"])
def test_imagenet_resnet18_trains_with_main_imagenets_protocol(tmp_path, norm):
    """The Table 2 path end to end on a synthetic ImageFolder of real JPEGs: the ImageNet
    model (7x7/2 stem), 224-px crops, batch 256 and weight decay 1e-4 by default, top-5."""
    data_dir = fakedata.write_imagenet(tmp_path / "data", n_train=2, n_val=2)
    spec = {"dataset": "imagenet", "arch": "resnet18", "norm": norm, "epochs": 1}
    result = classify.run(spec, tmp_path / "run", data_dir=data_dir, device="cpu")
    assert result.status == "done" and result.epochs_completed == 1
    # three classes: every prediction is in the top 5; the class count is a recorded deviation
    assert result.metrics["test_top5"] == 100.0
    assert result.deviations == ["data: 3 classes (ImageNet has 1000)"]
    effective = rundir.read_spec(tmp_path / "run")
    assert (effective["batch_size"], effective["weight_decay"]) == (256, 1e-4)
    checkpoint = load_checkpoint(tmp_path / "run")
    kernels = [v.shape for k, v in checkpoint["model"].items() if v.dim() == 4]
    assert kernels[0] == (64, 3, 7, 7)  # the ImageNet stem, not the CIFAR ResNet's 3x3
    assert checkpoint["optimizer"]["param_groups"][0]["weight_decay"] == 1e-4
    assert checkpoint["scheduler"]["T_max"] == 1  # 6 images, one partial batch of 256


def test_cudnn_deterministic_is_applied_for_the_run_and_recorded(tmp_path, mnist_dir):
    before = torch.backends.cudnn.deterministic
    train(mlp_spec(epochs=1, cudnn_deterministic=True), tmp_path / "run", mnist_dir)
    provenance = json.loads((tmp_path / "run" / rundir.PROVENANCE_FILE).read_text())
    assert provenance["precision"]["cudnn_deterministic"] is True
    assert rundir.read_spec(tmp_path / "run")["cudnn_deterministic"] is True
    assert torch.backends.cudnn.deterministic == before  # the process-wide flag is put back
    train(mlp_spec(epochs=1), tmp_path / "plain", mnist_dir)
    provenance = json.loads((tmp_path / "plain" / rundir.PROVENANCE_FILE).read_text())
    assert provenance["precision"]["cudnn_deterministic"] is False


def test_module_entry_point(tmp_path, mnist_dir, capsys, monkeypatch):
    monkeypatch.setenv("AUDIT_DATA_DIR", str(tmp_path / "nothing"))
    spec_file = tmp_path / "spec.yaml"
    rundir.atomic_write_yaml(spec_file, mlp_spec(epochs=1))
    args = ["--spec", str(spec_file), "--out", str(tmp_path / "run")]
    assert classify.main([*args, "--data-dir", str(mnist_dir), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("done: test top-1 ")
    assert classify.main([*args[:2], "--out", str(tmp_path / "r2")]) == 2  # the default dir
    assert "dataset mnist not found" in capsys.readouterr().err


def test_audit_train_prints_one_result_line(tmp_path, mnist_dir, capsys):
    argv = ["train", "--arch", "mlp", "--norm", "bn", "--dataset", "mnist", "--epochs", "1"]
    argv += ["--out", str(tmp_path / "run"), "--data-dir", str(mnist_dir), "--device", "cpu"]
    assert cli.main([*argv, "--train-subset", "200", "--threads", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("done: test top-1 ") and "1/1 epochs" in out[0]
    spec = rundir.read_spec(tmp_path / "run")
    assert spec["train_subset"] == 200 and spec["norm"] == "bn"
    provenance = json.loads((tmp_path / "run" / rundir.PROVENANCE_FILE).read_text())
    assert provenance["cpu_threads"] == 2 and torch.get_num_threads() == 1  # put back


def audit_in_subprocess(*argv: str) -> subprocess.CompletedProcess:
    """`audit ...` in a fresh interpreter, printing whether torch got imported."""
    code = (
        "import sys; from audit.cli import main; rc = main(sys.argv[1:]); "
        "print('torch imported:', 'torch' in sys.modules); sys.exit(rc)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_audit_train_bad_input_exits_2_without_importing_torch(tmp_path):
    base = [
        "train",
        "--norm",
        "nd",
        "--dataset",
        "cifar10",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
    ]
    unknown = audit_in_subprocess(*base, "--arch", "vgg99")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("audit train: error: arch must be one of ")
    assert "vgg16" in unknown.stderr and "'vgg99'" in unknown.stderr
    assert "Traceback" not in unknown.stderr and "torch imported: False" in unknown.stdout
    no_epochs = audit_in_subprocess(*base, "--arch", "vgg16", "--epochs", "0")
    assert no_epochs.returncode == 2
    assert "argument --epochs: 0 is outside 1..10000" in no_epochs.stderr


def test_audit_train_missing_data_exits_2(tmp_path, capsys):
    argv = ["train", "--arch", "mlp", "--norm", "nd", "--dataset", "mnist", "--epochs", "1"]
    argv += ["--out", str(tmp_path / "run"), "--data-dir", str(tmp_path / "nothing")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("audit train: error: dataset mnist not found") and "--download" in err


def test_loader_workers_default_to_none_on_the_cpu_and_the_free_cores_on_a_gpu(monkeypatch):
    assert device.auto_workers(torch.device("cpu")) == 0
    gpu = torch.device("cuda")  # only its type is read: testable without a GPU
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda _: set(range(8)))
    assert device.auto_workers(gpu) == 7  # one core stays with the training process
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda _: set(range(64)))
    assert device.auto_workers(gpu) == 16  # the authors' --workers
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda _: {0})
    assert device.auto_workers(gpu) == 0


def test_loader_workers_change_nothing_without_augmentation(tmp_path, mnist_dir):
    """Shuffling happens in the main process (seeded generator), so MNIST runs with worker
    processes equal runs without them."""
    inline = train(mlp_spec(epochs=1), tmp_path / "inline", mnist_dir)
    workers = train(mlp_spec(epochs=1), tmp_path / "workers", mnist_dir, num_workers=2)
    assert workers.metrics == pytest.approx(inline.metrics, rel=1e-6)
    provenance = json.loads((tmp_path / "workers" / rundir.PROVENANCE_FILE).read_text())
    assert provenance["num_workers"] == 2
