"""One run on several GPUs: torch.distributed and DistributedDataParallel, one process per GPU.

The processes are started by the launcher (SLURM tasks through submitit, `tasks_per_node =
gpus`; or torchrun), never by this module. Each reads its place from the environment
(`dist_env`): torchrun's and submitit's `TorchDistributedEnvironment().export()` variables
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, or else plain SLURM task variables.
The backend is NCCL on CUDA and gloo on the CPU.

Fidelity (docs/fidelity.md 8f): the authors ran `nn.DataParallel` over every visible GPU.
Each replica then normalised (BN) or whitened (ND) its own shard of the batch with its own
statistics, the running buffers kept were replica 0's, and the ND freeze counter (a plain
attribute of the replicas) never advanced with 2 or more GPUs. DDP without synchronised
statistics computes the same per-replica statistics, and with `broadcast_buffers` every rank
runs with rank 0's buffers; the gradient is the mean over ranks of the per-shard mean losses,
which is DataParallel's gradient of the global-batch mean when the shards are equal. The spec
fields `gpus`, `replica_statistics` and `freeze_counter` make these choices explicit.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from runners.deconv import FastDeconv
from runners.errors import RunnerInputError

DEFAULT_PORT_BASE = 20000  # MASTER_PORT from the SLURM job id when nothing else sets it


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int

    @property
    def is_writer(self) -> bool:
        """Rank 0 alone writes the run directory (checkpoint, metrics, result)."""
        return self.rank == 0


def _first_host(nodelist: str) -> str:
    """The first host of a SLURM node list such as 'gpu[03-05,07],cpu1' -> 'gpu03'."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if not match:
        return "127.0.0.1"
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def dist_env(environ: Mapping[str, str] | None = None) -> DistEnv | None:
    """The distributed environment, or None for a single-process run."""
    env = os.environ if environ is None else environ
    try:
        if "RANK" in env and "WORLD_SIZE" in env:  # torchrun, submitit's export()
            world = int(env["WORLD_SIZE"])
            rank, local = int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"]))
            addr = env.get("MASTER_ADDR", "127.0.0.1")
            port = int(env.get("MASTER_PORT", DEFAULT_PORT_BASE))
        elif "SLURM_NTASKS" in env and "SLURM_PROCID" in env:  # plain srun tasks
            world = int(env["SLURM_NTASKS"])
            rank, local = int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", "0"))
            addr = env.get("MASTER_ADDR") or _first_host(env.get("SLURM_JOB_NODELIST", ""))
            default_port = DEFAULT_PORT_BASE + int(env.get("SLURM_JOB_ID", "0")) % 20000
            port = int(env.get("MASTER_PORT", default_port))
        else:
            return None
    except ValueError as exc:
        raise RunnerInputError(f"malformed distributed environment variable: {exc}") from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise RunnerInputError(f"rank {rank} is outside a world of {world} processes")
    return DistEnv(rank, world, local, addr, port)


def backend_for(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def init(env: DistEnv, device_type: str) -> torch.device:
    """Join the process group; returns this rank's device (cuda:LOCAL_RANK or the CPU)."""
    if device_type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            backend_for(device_type),
            init_method=f"tcp://{env.master_addr}:{env.master_port}",
            rank=env.rank,
            world_size=env.world_size,
        )
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def check_world(gpus: int, env: DistEnv | None) -> None:
    """The spec's `gpus` must equal the number of processes the launcher started."""
    world = 1 if env is None else env.world_size
    if gpus != world:
        raise RunnerInputError(
            f"the spec asks for gpus={gpus} but {world} process(es) were started; launch one "
            f"process per GPU (SLURM tasks_per_node = {gpus}, or torchrun --nproc-per-node "
            f"{gpus})"
        )


def per_rank_batch(global_batch: int, world_size: int) -> int:
    """The global batch split evenly across ranks (the authors' DataParallel split)."""
    if global_batch % world_size:
        raise RunnerInputError(
            f"batch_size {global_batch} does not split evenly over {world_size} GPUs; choose a "
            "batch size divisible by gpus"
        )
    return global_batch // world_size


def freeze_counter_advances(mode: str, gpus: int) -> bool:
    """`freeze_counter`: "auto" = the authors' code (advances on 1 GPU, never on 2 or more,
    where DataParallel dropped the replicas' increments), "cycle" or "never"."""
    if mode == "auto":
        return gpus == 1
    return mode == "cycle"


def apply_freeze_counter(model: nn.Module, advances: bool) -> None:
    for module in model.modules():
        if isinstance(module, FastDeconv):
            module.advance_counter = advances


def wrap(model: nn.Module, device: torch.device, replica_statistics: str) -> nn.Module:
    """DDP around `model`: rank 0's parameters and (every forward) buffers on every rank.

    "per_replica": each rank's BN/ND statistics from its own shard (the authors' DataParallel).
    "synchronised": BatchNorm over the global batch (SyncBatchNorm); not available for ND.
    """
    if replica_statistics == "synchronised":
        if any(isinstance(m, FastDeconv) for m in model.modules()):
            raise RunnerInputError(
                "replica_statistics 'synchronised' is not implemented for ND layers; use "
                "per_replica (the authors' DataParallel semantics)"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    # rank 0's buffers before every forward (newer torch names the option forward_sync_buffers)
    params = inspect.signature(DistributedDataParallel).parameters
    sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(model, device_ids=device_ids, **{sync: True})


def distributed_loader(loader: DataLoader, env: DistEnv, seed: int) -> DataLoader:
    """`loader`'s dataset sharded over the ranks: a DistributedSampler shuffled with the run's
    seed (call `set_epoch`), the per-rank batch, the partial last batch kept (the sampler pads
    the set with repeated images so every rank has the same number of batches)."""
    sampler = DistributedSampler(
        loader.dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=seed
    )
    return DataLoader(
        loader.dataset,
        batch_size=per_rank_batch(loader.batch_size, env.world_size),
        sampler=sampler,
        drop_last=False,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        persistent_workers=loader.num_workers > 0,
    )


def is_active() -> bool:
    """Whether this process is one of several ranks of a run."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks (in place; returned for convenience)."""
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
