"""Several processes per run (runners/distributed.py): environment, semantics, gradients."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from runners import distributed
from runners.deconv import Delinear, FastDeconv
from runners.errors import RunnerInputError
from runners.specs import effective_spec, run_id
from runners.specs.classify import ClassifySpec

BATCH = 8


def test_environment_from_torchrun_slurm_or_none():
    env = distributed.dist_env(
        {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "7"}
    )
    assert env == distributed.DistEnv(1, 2, 1, "h", 7) and not env.is_writer
    slurm = distributed.dist_env(
        {"SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_LOCALID": "2",
         "SLURM_JOB_NODELIST": "gpu[03-05,07]", "SLURM_JOB_ID": "123"}
    )  # fmt: skip
    assert slurm == distributed.DistEnv(2, 4, 2, "gpu03", 20123)
    assert distributed.dist_env({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    assert distributed.dist_env({}) is None
    with pytest.raises(RunnerInputError, match="environment"):
        distributed.dist_env({"RANK": "x", "WORLD_SIZE": "2"})
    assert distributed.backend_for("cuda") == "nccl" and distributed.backend_for("cpu") == "gloo"


def test_spec_fields_default_to_the_authors_and_keep_run_ids():
    fields = {"kind": "classify", "dataset": "imagenet", "arch": "resnet18", "norm": "nd",
              "epochs": 90}  # fmt: skip
    plain = effective_spec(fields)
    assert "gpus" not in plain and "freeze_counter" not in plain
    assert run_id(effective_spec({**fields, "gpus": 1, "freeze_counter": "auto"})) == run_id(plain)
    four = effective_spec({**fields, "gpus": 4})
    assert four["gpus"] == 4 and four["replica_statistics"] == "per_replica"
    assert run_id(four) != run_id(plain)
    assert distributed.freeze_counter_advances("auto", 1)
    assert not distributed.freeze_counter_advances("auto", 4)  # DataParallel lost increments
    assert distributed.freeze_counter_advances("cycle", 4)
    with pytest.raises(RunnerInputError, match="split evenly"):
        ClassifySpec.from_dict({**fields, "gpus": 3})
    with pytest.raises(RunnerInputError, match="gpus=2 but 1"):
        distributed.check_world(2, None)


def test_counter_held_still_keeps_the_stem_computing_statistics():
    layer = FastDeconv(3, 4, 3, padding=1, freeze=True, freeze_iter=1)
    distributed.apply_freeze_counter(layer, advances=False)
    for _ in range(5):
        before = layer.running_deconv.clone()
        layer(torch.randn(4, 3, 6, 6))
        assert not torch.equal(before, layer.running_deconv)  # never frozen
    assert int(layer.counter) == 0


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        FastDeconv(3, 8, 3, padding=1, n_iter=15, freeze=True),
        nn.ReLU(),
        FastDeconv(8, 8, 3, padding=1, block=4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        Delinear(8, 5, block=4),
    ).double()


def _batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, 8, 8, generator=g, dtype=torch.float64) * 2 + 1
    return x, torch.randint(0, 5, (BATCH,), generator=g)


def _rank_step(rank: int, port: int, out: str) -> None:
    env = distributed.DistEnv(rank, 2, rank, "127.0.0.1", port)
    device = distributed.init(env, "cpu")
    try:
        torch.set_num_threads(1)
        model = distributed.wrap(_model(), device, "per_replica")
        x, y = _batch()
        half = distributed.per_rank_batch(BATCH, env.world_size)
        shard = slice(rank * half, (rank + 1) * half)
        F.cross_entropy(model(x[shard]), y[shard]).backward()
        grads = [p.grad.clone() for p in model.module.parameters()]
        buffers = {k: v.clone() for k, v in model.module.state_dict().items()}
        torch.save({"grads": grads, "buffers": buffers}, f"{out}/rank{rank}.pt")
    finally:
        distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # trains, or starts processes that import torch
def test_two_gloo_processes_give_the_gradient_of_per_replica_statistics(tmp_path):
    mp.spawn(_rank_step, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    # DataParallel in one process: each replica whitens its half with its own statistics;
    # the loss is the mean over the whole batch, i.e. the mean of the two halves' means.
    x, y = _batch()
    replicas = [_model(), _model()]
    halves = [slice(0, BATCH // 2), slice(BATCH // 2, BATCH)]
    losses = [F.cross_entropy(m(x[h]), y[h]) for m, h in zip(replicas, halves, strict=True)]
    (0.5 * (losses[0] + losses[1])).backward()
    reference = [a.grad + b.grad for a, b in zip(*(m.parameters() for m in replicas), strict=True)]
    for rank in ranks:  # DDP averages the gradients: every rank holds the same
        for got, expected in zip(rank["grads"], reference, strict=True):
            assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)
    # rank 0's running buffers are replica 0's (the ones DataParallel keeps)
    for name, value in replicas[0].state_dict().items():
        assert torch.allclose(ranks[0]["buffers"][name], value, rtol=1e-12, atol=1e-14), name
    assert not torch.equal(
        ranks[0]["buffers"]["2.running_deconv"], ranks[1]["buffers"]["2.running_deconv"]
    )  # the statistics really were per replica


class _Requeue(Exception):
    """Stands for a preemption after the first epoch's checkpoint."""


def _rank_run(rank: int, port: int, spec: dict, run_dir: str, data_dir: str, stop: bool) -> None:
    import os

    from runners import classify

    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )  # fmt: skip

    def preempt(record: dict) -> None:
        if stop:
            raise _Requeue

    try:
        classify.run(
            spec, run_dir, data_dir=data_dir, device="cpu", verify_data=False, threads=1,
            on_epoch=preempt,
        )  # fmt: skip
    except _Requeue:
        distributed.shutdown()


@pytest.mark.slow
def test_two_process_run_finishes_and_resumes_after_a_requeue(tmp_path):
    import json

    from tests import fakedata

    data_dir = fakedata.write_cifar10(tmp_path / "data", n_train=16, n_test=8)
    spec = {"kind": "classify", "dataset": "cifar10", "arch": "vgg16", "norm": "nd",
            "epochs": 2, "batch_size": 8, "gpus": 2}  # fmt: skip
    run_dir = tmp_path / "run"
    for stop in (True, False):  # first attempt preempted after epoch 1, then requeued
        mp.spawn(
            _rank_run,
            args=(_free_port(), spec, str(run_dir), str(data_dir), stop),
            nprocs=2,
            join=True,
        )
        if stop:
            assert not (run_dir / "result.json").exists()
            assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "done" and result["epochs_completed"] == 2
    assert "resuming after epoch 1 of 2" in (run_dir / "log.txt").read_text()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert "gpus=2 (protocol: 1)" in result["deviations"]
