"""One classification training run, top to bottom: the authors' protocol
(docs/method.md#training-protocol).

    spec -> run_dir/{spec.yaml, provenance.json, metrics.jsonl, checkpoint.pt, log.txt, result.json}

Every hyper-parameter is a field of runners.specs.classify.ClassifySpec; execution options that
do not change the experiment (device, data directory, loader workers) are arguments of `run`.
The protocol, as the authors' main.py/net_util.py (and main_imagenet.py) run it:
- SGD(lr 0.1, momentum 0.9, weight decay 1e-3), one parameter group: the same weight decay
  for every parameter (BN/ND biases and scales included), batch 128, partial last batch kept;
- cosine schedule to 0 with T_max = iterations per epoch * epochs, stepped after every
  optimiser step, so a 1-, 20- or 100-epoch run is its own run from scratch; the multistep
  and step alternatives (docs/method.md#schedules) are stepped at the start of every epoch
  (their decays come one epoch early);
- step order forward -> loss -> backward -> step -> scheduler.step -> zero_grad;
- evaluation after every epoch in eval mode (ND uses its running statistics), top-1 and top-5.
- every run seeded; cuDNN deterministic only when the spec asks (main_imagenet.py --seed).
ImageNet runs use main_imagenet.py's batch 256 and weight decay 1e-4 (the spec's defaults for
that dataset) on one device by default; the authors' DataParallel is not used (with it, the
ND statistics of replicas other than the first are discarded: docs/method.md#imagenet-protocol).
With the spec's `gpus` > 1 one process per GPU runs DDP with the authors' DataParallel
semantics (runners/distributed.py, docs/fidelity.md 8f).
A run resumes from checkpoint.pt at the next epoch; a non-finite loss ends it as "diverged".

Usable alone: python -m runners.classify --spec spec.yaml --out DIR [--data-dir D]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from runners import distributed, rundir
from runners.data import Data, load_data
from runners.deconv import (
    NS_IMPLS,
    NonFiniteStatisticsError,
    defer_statistics_checks,
    nonfinite_statistics,
    resolve_ns_impl,
    set_ns_impl,
    statistics_finite,
)
from runners.device import auto_workers, device_name, pick_device
from runners.device_data import load_device_data, resolve_data_path
from runners.errors import RunnerInputError
from runners.models import build_model, input_kind_of
from runners.specs.classify import ClassifySpec

CHECKPOINT_FORMAT = 1
MULTISTEP_FIRST = 0.4  # main.py's --milestone (the spec's lr_milestone holds the run's value)
MULTISTEP_GAMMA = 0.1  # --multistep-gamma, for multistep and step alike
# provenance.json's wording of the layers' default ("auto") Newton-Schulz implementation
NS_GRADIENT = {"closed_form": "closed-form gradient", "unrolled": "unrolled autograd"}
NS_GRADIENT["spectral"] = "spectral forward (eigh) and closed-form gradient"
# AUDIT_UNVERIFIED_DATA=1: `run` skips the CIFAR md5 check when its caller does not say
# (scripts/gpu-check.sh trains through `audit run` on synthetic CIFAR-format files); recorded
# as a deviation of every such result ("data: md5 check skipped").
UNVERIFIED_DATA_ENV = "AUDIT_UNVERIFIED_DATA"
# Execution option `compile_mode`: how the model's training step is compiled (never a spec
# field: the compiled step equals eager up to rounding, tests/test_deconv_speed.py).
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


class Diverged(Exception):
    """The training produced a non-finite loss or non-finite ND statistics."""


def run(
    spec: dict[str, Any],
    run_dir: Path,
    *,
    data_dir: Path | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
    verify_data: bool | None = None,
    num_workers: int | None = None,
    download: bool = False,
    threads: int | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    compile_mode: str | None = None,
    ns_impl: str | None = None,
) -> rundir.RunResult:
    """Train `spec` into `run_dir` (resuming from its checkpoint) and return the result.

    `num_workers` None picks the data-loader workers for the device (`auto_workers`).
    `threads` sets torch's CPU threads for the run (on a busy shared CPU, fewer spinning
    OpenMP threads can be many times faster). `on_epoch` is called with each epoch's
    metrics line after its checkpoint is written (progress reporting; an exception raised
    there stops the run, which stays resumable). `compile_mode` (COMPILE_MODES; None = "none")
    runs the model through torch.compile ("reduce-overhead" adds CUDA graphs on a GPU).
    `ns_impl` (runners.deconv.NS_IMPLS; None = "auto") is how every ND layer evaluates the
    Newton-Schulz inverse root: the same D and gradient up to rounding; "spectral" is the
    fastest on a CPU (docs/performance.md).
    """
    attempt_start = time.perf_counter()
    if verify_data is None:  # md5 checks, unless a synthetic-data check turns them off
        verify_data = os.environ.get(UNVERIFIED_DATA_ENV) != "1"
    if ns_impl is not None and ns_impl not in NS_IMPLS:
        raise RunnerInputError(f"ns_impl must be one of {', '.join(NS_IMPLS)}, got {ns_impl!r}")
    cfg = ClassifySpec.from_dict(dict(spec))
    # Several GPUs: one process per GPU, started by the launcher; rank 0 alone writes files.
    # A 1-GPU spec ignores the environment: a packed allocation runs several specs as tasks.
    env = distributed.dist_env() if cfg.gpus > 1 else None
    distributed.check_world(cfg.gpus, env)
    writer = env is None or env.is_writer
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    say = rundir.RunLog(run_dir / rundir.LOG_FILE, log) if writer else _silent
    if writer:
        rundir.write_spec(run_dir, cfg.to_dict(), lambda d: ClassifySpec.from_dict(d).to_dict())
    dev = pick_device(device)
    if env is not None:
        dev = distributed.init(env, dev.type)
    if num_workers is None:
        num_workers = auto_workers(dev)
    with (
        precision_settings(cfg.allow_tf32, dev, cfg.cudnn_deterministic) as precision,
        cpu_threads(threads),
    ):
        # --- model, data, optimiser: seeded first, as the authors' torch.manual_seed(0) ---
        seed_everything(cfg.seed)
        data_path = resolve_data_path(cfg.data_path, cfg.dataset, dev, cfg.gpus)
        if data_path == "device":
            data = load_device_data(
                cfg, dev, data_dir, download=download, verify=verify_data, log=say
            )
        else:
            data = load_data(
                cfg,
                data_dir,
                download=download,
                verify=verify_data,
                num_workers=num_workers,
                pin_memory=dev.type == "cuda",
                log=say,
            )
        data.provenance["data_path"] = data_path
        if env is not None:
            data.train_loader = distributed.distributed_loader(data.train_loader, env, cfg.seed)
        model = build_model(
            cfg.arch, cfg.norm, data.num_classes, cfg.nd, input_kind_of(cfg.dataset)
        ).to(dev)
        if ns_impl is not None:
            set_ns_impl(model, ns_impl)
        distributed.apply_freeze_counter(
            model, distributed.freeze_counter_advances(cfg.freeze_counter, cfg.gpus)
        )
        optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        parallel = model if env is None else distributed.wrap(model, dev, cfg.replica_statistics)
        step_model = prepare_step_model(parallel, dev, compile_mode)
        iters_per_epoch = len(data.train_loader)
        scheduler = make_scheduler(cfg, optimizer, iters_per_epoch)

        # --- resume ---
        state = TrainState()
        checkpoint_path = run_dir / rundir.CHECKPOINT_FILE
        if checkpoint_path.exists():
            state = load_checkpoint(checkpoint_path, cfg, model, optimizer, scheduler, data)
            say(f"resuming after epoch {state.epoch} of {cfg.epochs} from {checkpoint_path}")
        deviations = cfg.deviations() + data_deviations(data)
        if writer:
            rewrite_metrics(run_dir, state.history)
            write_provenance(
                run_dir,
                cfg,
                dev,
                data,
                precision,
                deviations,
                state,
                num_workers,
                compile_mode,
                ns_impl,
            )
        say(
            f"{cfg.arch}/{cfg.norm} on {cfg.dataset}: {cfg.epochs} epoch(s) x {iters_per_epoch} "
            f"iterations, {data.provenance['train_images_used']} train / "
            f"{data.provenance['test_images_used']} test images, device {device_name(dev)}, "
            f"seed {cfg.seed}, TF32 {cfg.allow_tf32}"
            + (f"; deviations: {'; '.join(deviations)}" if deviations else "")
        )

        def elapsed() -> tuple[float, float]:
            """(wall, gpu) seconds over all attempts, this one included."""
            now = time.perf_counter() - attempt_start
            return state.wall_seconds + now, state.gpu_seconds + (now if dev.type == "cuda" else 0)

        # --- the epochs ---
        reason = None
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            if env is not None:
                data.train_loader.sampler.set_epoch(epoch)  # the shards' shuffle of this epoch
            try:
                record = train_and_evaluate(cfg, step_model, optimizer, scheduler, data, dev, epoch)
            except Diverged as exc:
                reason = str(exc)
                say(f"DIVERGED: {reason}")
                break
            state.add(record)
            # The checkpoint first: a kill between the two leaves metrics.jsonl an epoch short,
            # never ahead of the checkpoint (a resume rewrites it from the checkpoint anyway).
            if writer:
                save_checkpoint(
                    checkpoint_path, cfg, model, optimizer, scheduler, data, state, elapsed()
                )
                rundir.append_jsonl(run_dir / rundir.METRICS_FILE, record)
            distributed.barrier()  # every rank past the epoch once its checkpoint exists
            say(epoch_line(record, cfg.epochs))
            if on_epoch is not None:
                on_epoch(record)

        # --- the result ---
        wall, gpu = elapsed()
        result = make_result(run_dir, cfg, state, reason, wall, gpu, device_name(dev), deviations)
        if writer:
            rundir.write_result(run_dir, result)
        say(f"{result.status}: {summary(result)}")
        if env is not None:
            distributed.shutdown()
        return result


def _silent(line: str) -> None:
    """The log of ranks other than 0 (rank 0 writes the run's log)."""


# ---------------------------------------------------------------------------------------------
# One epoch
# ---------------------------------------------------------------------------------------------


def train_and_evaluate(
    cfg: ClassifySpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    data: Data,
    dev: torch.device,
    epoch: int,
) -> dict[str, Any]:
    """Train one epoch, evaluate, and return the epoch's metrics line (rundir.EPOCH_FIELDS)."""
    if cfg.lr_schedule != "cosine":
        step_quietly(scheduler)  # the authors step multistep and step at the start of an epoch
    start = time.perf_counter()
    train_loss, train_top1, seen = train_epoch(cfg, model, optimizer, scheduler, data, dev, epoch)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    test_loss, test_top1, test_top5 = evaluate(model, data.test_loader, dev)
    if not math.isfinite(test_loss):
        raise Diverged(
            f"epoch {epoch}: the test loss is {test_loss} (non-finite weights or statistics)"
        )
    values = {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_top1": train_top1,
        "test_loss": test_loss,
        "test_top1": test_top1,
        "test_top5": test_top5,
        "lr": optimizer.param_groups[0]["lr"],
        "seconds": seconds,
        "images_per_second": seen / seconds if seconds > 0 else 0.0,
    }
    return {key: values[key] for key in rundir.EPOCH_FIELDS}


def train_epoch(
    cfg: ClassifySpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    data: Data,
    dev: torch.device,
    epoch: int,
) -> tuple[float, float, int]:
    """(mean loss, running top-1 in percent, images seen) over one training epoch."""
    model.train()
    loss_sum, seen = 0.0, 0
    correct = torch.zeros((), dtype=torch.long, device=dev)
    for step, (images, labels) in enumerate(data.train_loader, start=1):
        images = images.to(dev, non_blocking=True)
        labels = labels.to(dev, non_blocking=True)
        try:
            outputs = model(images)
        except NonFiniteStatisticsError as exc:
            raise Diverged(f"epoch {epoch}, step {step}: {exc}") from None
        loss = F.cross_entropy(outputs, labels)
        value, finite = loss_and_statistics(loss, model)  # one sync per step
        if not finite:
            raise Diverged(f"epoch {epoch}, step {step}: {nonfinite_statistics(model)}")
        if not math.isfinite(value):
            raise Diverged(f"epoch {epoch}, step {step}: the training loss is {value}")
        loss.backward()
        optimizer.step()
        if cfg.lr_schedule == "cosine":
            scheduler.step()  # per iteration (net_util.py:L119-120)
        optimizer.zero_grad()  # after the step, as the authors: the first step has None grads
        loss_sum += value * labels.size(0)
        seen += labels.size(0)
        correct += (outputs.argmax(dim=1) == labels).sum()
    return loss_sum / seen, 100.0 * correct.item() / seen, seen


def loss_and_statistics(loss: torch.Tensor, model: nn.Module) -> tuple[float, bool]:
    """The step's loss and whether the ND layers' deferred statistics checks passed, in one
    host read (as the authors' running-loss logging; the only sync of a training step)."""
    finite = statistics_finite(model)
    if distributed.is_active():  # every rank takes the same decision: the global mean loss
        if finite is None:
            finite = torch.ones((), dtype=torch.bool, device=loss.device)
        values = torch.stack([loss.detach().double(), finite.double()])
        total, world = distributed.all_reduce_sum(values), distributed.world_size()
        value, ok = total.tolist()
        return value / world, ok == world
    if finite is None:
        return loss.item(), True
    value, ok = torch.stack([loss.detach().double(), finite.double()]).tolist()
    return value, ok == 1.0


def prepare_step_model(model: nn.Module, dev: torch.device, compile_mode: str | None) -> nn.Module:
    """The module the training loop calls: `model`, or torch.compile of it.

    On a GPU, and whenever the step is compiled, the ND layers check their statistics for
    NaN/inf without a host sync (deferred to `loss_and_statistics`, same error, buffers
    equally protected; runners/deconv.py `_check_finite`)."""
    mode = compile_mode or "none"
    if mode not in COMPILE_MODES:
        raise RunnerInputError(
            f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}"
        )
    if dev.type == "cuda" or mode != "none" or distributed.is_active():
        defer_statistics_checks(model)  # (with DDP, no rank may raise alone mid-step)
    if mode == "none":
        return model
    return torch.compile(model, mode=None if mode == "default" else mode)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, dev: torch.device) -> tuple[float, float, float]:
    """(mean loss, top-1, top-5 in percent) on the whole loader, in eval mode.

    With fewer than 5 classes top-5 counts every prediction as correct (100 %)."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros(2, dtype=torch.long, device=dev)  # top-1, top-5
    seen = 0
    for images, labels in loader:
        images = images.to(dev, non_blocking=True)
        labels = labels.to(dev, non_blocking=True)
        outputs = model(images)
        loss_sum += F.cross_entropy(outputs, labels, reduction="sum")
        top5 = outputs.topk(min(5, outputs.size(1)), dim=1).indices
        hits = top5 == labels.unsqueeze(1)
        correct[0] += hits[:, 0].sum()
        correct[1] += hits.any(dim=1).sum()
        seen += labels.size(0)
    top1, top5 = (100.0 * correct / seen).tolist()
    return loss_sum.item() / seen, top1, top5


# ---------------------------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------------------------


def make_scheduler(
    cfg: ClassifySpec, optimizer: torch.optim.Optimizer, iters_per_epoch: int
) -> LRScheduler:
    """Cosine to 0 over the run's own budget, or the authors' per-epoch alternatives:
    multistep at fractions `lr_milestone` of the epochs, or StepLR every `lr_step_size`."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=iters_per_epoch * cfg.epochs, eta_min=0.0
        )
    if cfg.lr_schedule == "step":  # main_imagenet.py --lr-scheduler step
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=cfg.lr_step_size, gamma=MULTISTEP_GAMMA
        )
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer,
        milestones=multistep_milestones(cfg.epochs, cfg.lr_milestone),
        gamma=MULTISTEP_GAMMA,
    )


def multistep_milestones(epochs: int, fraction: float = MULTISTEP_FIRST) -> list[int]:
    """[floor(f E), 2 floor(f E), ...] while under E: for f = 0.4 (main.py) [40, 80] of 100
    and [8, 16] of 20; for f = 0.3 (main_imagenet.py) [27, 54, 81] of 90."""
    first = int(fraction * epochs)
    if first < 1:
        raise RunnerInputError(
            f"lr_schedule multistep needs at least {math.ceil(1 / fraction)} epochs "
            f"(got {epochs}): the authors' first milestone floor({fraction} * epochs) would be "
            "0 (their code loops forever); use lr_schedule cosine for short runs"
        )
    milestones = [first]
    while milestones[-1] + first < epochs:
        milestones.append(milestones[-1] + first)
    return milestones


def step_quietly(scheduler: LRScheduler) -> None:
    """Step a per-epoch scheduler before the epoch's optimiser steps, as the authors do
    (PyTorch warns about that order, which is intended here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        scheduler.step()


# ---------------------------------------------------------------------------------------------
# Precision, seeds
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def precision_settings(
    allow_tf32: bool, dev: torch.device, deterministic: bool = False
) -> Iterator[dict[str, Any]]:
    """Apply the spec's TF32 choice (docs/method.md#precision), the authors' cudnn.benchmark
    and, when asked, cuDNN's deterministic algorithms (main_imagenet.py --seed); put the
    process-wide flags back afterwards (tests and the launcher run several runs)."""
    backends = (torch.backends.cuda.matmul, torch.backends.cudnn)
    cudnn = torch.backends.cudnn
    saved = [b.allow_tf32 for b in backends], cudnn.benchmark, cudnn.deterministic
    try:
        for backend in backends:
            backend.allow_tf32 = allow_tf32
        cudnn.benchmark = dev.type == "cuda"  # main.py and main_imagenet.py set it True
        cudnn.deterministic = deterministic
        yield {
            "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": cudnn.allow_tf32,
            "cudnn_benchmark": cudnn.benchmark,
            "cudnn_deterministic": cudnn.deterministic,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        }
    finally:
        for backend, value in zip(backends, saved[0], strict=True):
            backend.allow_tf32 = value
        cudnn.benchmark, cudnn.deterministic = saved[1], saved[2]


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count for the run (None: leave it), restored afterwards."""
    if threads is None:
        yield
        return
    if not isinstance(threads, int) or threads < 1:
        raise RunnerInputError(f"threads must be a positive integer, got {threads!r}")
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def seed_everything(seed: int) -> None:
    """The authors seed torch (and CUDA) only; python and numpy are seeded for good measure."""
    torch.manual_seed(seed)  # also seeds every CUDA device
    random.seed(seed)
    np.random.seed(seed)


# ---------------------------------------------------------------------------------------------
# State, checkpoint, resume
# ---------------------------------------------------------------------------------------------


class TrainState:
    """What survives a restart besides the model/optimiser/scheduler: the metrics so far."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.best_top1 = -math.inf
        self.best_epoch: int | None = None
        self.wall_seconds = 0.0  # earlier attempts only
        self.gpu_seconds = 0.0

    @property
    def epoch(self) -> int:
        return len(self.history)

    def add(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if record["test_top1"] > self.best_top1:
            self.best_top1, self.best_epoch = record["test_top1"], record["epoch"]


def rng_states(data: Data) -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()  # weights_only-safe
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": numpy_state,
        "loader": data.generator.get_state(),
    }


def restore_rng_states(states: dict[str, Any], data: Data) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    random.setstate(states["python"])
    numpy_state = states["numpy"]
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    data.generator.set_state(states["loader"])


def save_checkpoint(
    path: Path,
    cfg: ClassifySpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    data: Data,
    state: TrainState,
    seconds: tuple[float, float],
) -> None:
    """torch.save to a temporary sibling, fsync, rename: never a half-written checkpoint."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "spec": cfg.to_dict(),
        "epoch": state.epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states(data),
        "history": state.history,
        "best_top1": state.best_top1,
        "best_epoch": state.best_epoch,
        "wall_seconds": seconds[0],
        "gpu_seconds": seconds[1],
    }
    # Serialised in memory, then written: torch.save straight into a file turns a full disk
    # into a RuntimeError without the errno; a plain write keeps the OSError (ENOSPC).
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(
    path: Path,
    cfg: ClassifySpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    data: Data,
) -> TrainState:
    """Restore everything saved by save_checkpoint; refuse a checkpoint of another spec."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunnerInputError(
            f"cannot read the checkpoint {path} ({exc}); delete it to restart the run"
        ) from None
    if (
        not isinstance(payload, dict)
        or payload.get("format") != CHECKPOINT_FORMAT
        or payload.get("spec") != cfg.to_dict()
    ):
        raise RunnerInputError(
            f"{path} belongs to another spec or checkpoint format; use a fresh run directory "
            "or delete the checkpoint to restart"
        )
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    restore_rng_states(payload["rng"], data)
    state = TrainState()
    for record in payload["history"]:
        state.add(record)
    state.wall_seconds, state.gpu_seconds = payload["wall_seconds"], payload["gpu_seconds"]
    return state


def rewrite_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl = the checkpointed epochs exactly (drops lines of a lost epoch)."""
    lines = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in history)
    rundir.atomic_write_text(run_dir / rundir.METRICS_FILE, lines)


# ---------------------------------------------------------------------------------------------
# Run-directory files
# ---------------------------------------------------------------------------------------------


def data_deviations(data: Data) -> list[str]:
    """Departures that come from the data rather than the spec."""
    prov = data.provenance
    out = []
    if prov["dataset"].startswith("cifar") and not prov["verified"]:
        out.append("data: md5 check skipped (unverified data)")
    expected = prov.get("expected_classes")
    if expected is not None and data.num_classes != expected:
        out.append(f"data: {data.num_classes} classes (ImageNet has {expected})")
    return out


def write_provenance(
    run_dir: Path,
    cfg: ClassifySpec,
    dev: torch.device,
    data: Data,
    precision: dict[str, Any],
    deviations: list[str],
    state: TrainState,
    num_workers: int,
    compile_mode: str | None = None,
    ns_impl: str | None = None,
) -> None:
    """provenance.json of this attempt; earlier attempts' records are kept under `attempts`."""
    path = run_dir / rundir.PROVENANCE_FILE
    earlier: list[dict[str, Any]] = []
    if path.exists() and state.epoch > 0:
        with contextlib.suppress(ValueError):
            previous = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(previous, dict):  # anything else is a damaged file: start afresh
                attempts = previous.pop("attempts", [])
                earlier = [*(attempts if isinstance(attempts, list) else []), previous]
    provenance = rundir.collect_provenance(
        started_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        seed=cfg.seed,
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        device=device_name(dev),
        precision=precision,
        num_workers=num_workers,
        cpu_threads=torch.get_num_threads(),
        # How the Newton-Schulz inverse root is differentiated (same values up to rounding):
        newton_schulz=NS_GRADIENT[resolve_ns_impl(ns_impl or "auto", dev)],
        compile_mode=compile_mode or "none",
        statistics_check="deferred"
        if dev.type == "cuda" or compile_mode not in (None, "none")
        else "immediate",
        dataset=data.provenance,
        deviations=deviations,
        resumed_from_epoch=state.epoch,
        attempts=earlier,
    )
    rundir.atomic_write_json(path, provenance)


def make_result(
    run_dir: Path,
    cfg: ClassifySpec,
    state: TrainState,
    reason: str | None,
    wall: float,
    gpu: float,
    device: str,
    deviations: list[str],
) -> rundir.RunResult:
    metrics: dict[str, float] = {}
    if reason is None:
        last = state.history[-1]
        metrics = {
            "test_top1": last["test_top1"],
            "best_test_top1": state.best_top1,
            "train_top1": last["train_top1"],
            "test_loss": last["test_loss"],
        }
        if "test_top5" in last:  # absent from epochs checkpointed before top-5 was recorded
            metrics["test_top5"] = last["test_top5"]
    return rundir.RunResult(
        run_id=run_dir.name,
        status="done" if reason is None else "diverged",
        reason=reason,
        metrics=metrics,
        best_epoch=state.best_epoch,
        epochs_completed=state.epoch,
        epochs_planned=cfg.epochs,
        wall_seconds=wall,
        gpu_seconds=gpu,
        device=device,
        deviations=deviations,
    )


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
        f"top-1 {record['train_top1']:.2f} | test loss {record['test_loss']:.4f} "
        f"top-1 {record['test_top1']:.2f} top-5 {record['test_top5']:.2f} | "
        f"lr {record['lr']:.5f} | "
        f"{record['seconds']:.1f} s, {record['images_per_second']:.0f} img/s"
    )


def summary(result: rundir.RunResult) -> str:
    """One line: final and best test top-1 (or the reason), epochs and seconds."""
    if result.status != "done":
        head = result.reason or result.status
    else:
        m = result.metrics
        head = (
            f"test top-1 {m['test_top1']:.2f} % (best {m['best_test_top1']:.2f} % "
            f"at epoch {result.best_epoch})"
        )
    return (
        f"{head}; {result.epochs_completed}/{result.epochs_planned} epochs, "
        f"{result.wall_seconds:.1f} s on {result.device}"
    )


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runners.classify", description="Train one classification spec."
    )
    parser.add_argument("--spec", type=Path, required=True, help="spec YAML (kind: classify)")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data-loader worker processes (default: 0 on the CPU, up to 16 on a GPU)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--compile", choices=COMPILE_MODES, default="none", help="torch.compile the model"
    )
    parser.add_argument(
        "--ns-impl", choices=NS_IMPLS, default=None, help="Newton-Schulz evaluation (auto)"
    )
    parser.add_argument("--download", action="store_true", help="download missing data")
    parser.add_argument(
        "--unverified-data", action="store_true", help="skip the CIFAR md5 check (test data)"
    )
    args = parser.parse_args(argv)
    try:
        result = run(
            read_spec_file(args.spec),
            args.out,
            data_dir=args.data_dir,
            device=args.device,
            log=lambda line: print(line, file=sys.stderr),
            verify_data=not args.unverified_data,
            num_workers=args.workers,
            download=args.download,
            threads=args.threads,
            compile_mode=args.compile,
            ns_impl=args.ns_impl,
        )
    except RunnerInputError as exc:
        print(f"runners.classify: error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.status}: {summary(result)}")
    return 0 if result.status == "done" else 1


def read_spec_file(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RunnerInputError(f"cannot read the spec file {path}: {exc}") from None
    if not isinstance(spec, dict):
        raise RunnerInputError(f"{path}: the spec must be a YAML mapping (kind: classify, ...)")
    return spec


if __name__ == "__main__":
    sys.exit(main())
