"""Data-parallel training: one run trained by several processes, each taking its share of every global batch.

Started by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) or as the
tasks of one SLURM job step (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``; the first host of
the step is the master). A plain process is a world of one, and then nothing here changes the run.

What keeps the replicas one run:

- every rank seeds the same generators, draws the same epoch order and augments the whole global batch with
  them, then keeps its contiguous share: a 2-rank run sees the images of a 1-rank run, augmented alike;
- gradients are summed by DistributedDataParallel before the engine reads them, so RigL's dense gradients,
  SNFS's momentum and every magnitude are the same on every rank, and so are SET's random draws (the engine's
  generator has the same seed everywhere) and top-k ties (a stable sort); after each topology update the ranks
  compare a checksum of their masks and stop with one line if they differ;
- each rank's loss is its examples' summed loss over the *global* batch size, so the reduced gradient is the
  gradient of the global mean whatever the split of an epoch's last, smaller batch;
- batch norm normalises with statistics over the global batch (``distributed.sync_batchnorm``): PyTorch's
  ``SyncBatchNorm`` on GPUs, and on CPUs, which it does not support, :class:`GlobalBatchNorm` here;
- dropout draws from a global random stream of each rank's own (rank 0's is the single process's), and the
  checkpoint keeps every rank's stream;
- a stop signal is agreed on: each rank's flag is reduced over a gloo group, one step late and without waiting
  on the device, so that every rank stops after the same step.

Rank 0 alone writes the run folder (checkpoints, ``summary.json``, W&B); every rank resumes from its checkpoint.
A rank that fails leaves the process group, so that the others' next collective fails at once, in one line.
"""

from __future__ import annotations

import atexit
import datetime
import inspect
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from rigl_repro.errors import ConfigError, TrainingDiverged, require_bool, require_choice, require_int

log = logging.getLogger(__name__)

BACKENDS = ("auto", "nccl", "gloo")


@dataclass(frozen=True)
class Launch:
    """Where this process stands in the run's world, as its launcher described it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = ""
    master_port: int = 0


def slurm_master(nodelist: str) -> str:
    """The first host of a SLURM node list (``node[01-04],gpu7`` -> ``node01``), as ``scontrol`` expands it."""
    try:
        hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                               check=True, timeout=30).stdout.split()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        hosts = []
    if hosts:
        return hosts[0]
    first = nodelist.split(",")[0]
    if "[" in first:  # scontrol is missing: expand the first range by hand
        prefix, ranges = first.split("[", 1)
        first = prefix + ranges.split(",")[0].split("-")[0].rstrip("]")
    return first


def launch_from_environment(environ: Mapping[str, str]) -> Launch:
    """This process's place in the world: torchrun's variables, else those of a SLURM step of several tasks,
    else a world of one. SLURM's port is derived from the job id, so that every task picks the same one."""
    if "WORLD_SIZE" in environ and "RANK" in environ:
        return Launch(
            rank=int(environ["RANK"]),
            world_size=int(environ["WORLD_SIZE"]),
            local_rank=int(environ.get("LOCAL_RANK", 0)),
            master_addr=environ.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(environ.get("MASTER_PORT", 29500)),
        )
    tasks = int(environ.get("SLURM_STEP_NUM_TASKS", 1))
    if tasks > 1 and "SLURM_PROCID" in environ:
        job = int(environ.get("SLURM_JOB_ID", 0))
        return Launch(
            rank=int(environ["SLURM_PROCID"]),
            world_size=tasks,
            local_rank=int(environ.get("SLURM_LOCALID", 0)),
            master_addr=slurm_master(environ.get("SLURM_STEP_NODELIST", environ.get("SLURM_JOB_NODELIST", ""))),
            master_port=20000 + job % 20000,
        )
    return Launch()


def validate_distributed_options(options: Mapping[str, Any]) -> None:
    """``distributed.*``, each in one line naming it if it is nonsense."""
    require_choice("distributed.backend", options.get("backend"), BACKENDS)
    require_bool("distributed.sync_batchnorm", options.get("sync_batchnorm"))
    require_int("distributed.timeout_s", options.get("timeout_s"), 1)


@dataclass
class Replicas:
    """The processes that train one run together; a world of one when there is no launcher."""

    launch: Launch = field(default_factory=Launch)
    sync_batchnorm: bool = True
    flag_group: Any = None  # a gloo group for host-side agreement (stop requests), beside the training backend
    pending_stop: Any = None  # the stop flags' reduction in flight
    stop_flag: torch.Tensor = field(default_factory=lambda: torch.zeros(1, dtype=torch.int32))

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def distributed(self) -> bool:
        return self.launch.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.launch.rank == 0

    # ------------------------------------------------------------------ set-up
    @classmethod
    def start(cls, options: Mapping[str, Any], requested: torch.device, batch_size: int) -> Replicas:
        """Join the run's process group when a launcher started several processes (one-line errors for a
        set-up that cannot work), or return a world of one. The process group outlives the run, for the
        process's next one (``trial_seeds`` train one after another); each run has its own flag group."""
        validate_distributed_options(options)
        launch = launch_from_environment(os.environ)
        replicas = cls(launch, sync_batchnorm=bool(options["sync_batchnorm"]))
        if not replicas.distributed:
            return replicas
        if batch_size % launch.world_size:
            nearest = launch.world_size * max(1, batch_size // launch.world_size)
            raise ConfigError(
                f"train.batch_size={batch_size} cannot be shared by {launch.world_size} processes; the global "
                f"batch must be a multiple of the world size, e.g. train.batch_size={nearest}"
            )
        device = replicas.device(requested)
        backend = training_backend(str(options["backend"]), device)
        if not dist.is_initialized():
            os.environ.setdefault("MASTER_ADDR", launch.master_addr)
            os.environ.setdefault("MASTER_PORT", str(launch.master_port))
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(
                backend, rank=launch.rank, world_size=launch.world_size,
                timeout=datetime.timedelta(seconds=int(options["timeout_s"])),
                device_id=device if backend == "nccl" else None,  # NCCL's eager set-up on this rank's GPU
            )  # fmt: skip
            atexit.register(leave_process_group)
        replicas.flag_group = dist.new_group(backend="gloo")  # host-side flags, apart from the training's collectives
        if not replicas.is_main:  # one log of the run: the other ranks only say what goes wrong
            logging.getLogger().setLevel(logging.WARNING)
        log.info("rank %d of %d (%s, %s)", launch.rank, launch.world_size, backend, device)
        return replicas

    def device(self, requested: torch.device) -> torch.device:
        """Each rank's device: GPU ``LOCAL_RANK`` of its node when the run trains on CUDA."""
        if not self.distributed or requested.type != "cuda":
            return requested
        if requested.index is not None and torch.cuda.device_count() > 1:
            raise ConfigError(
                f"device={requested} names one GPU, but {self.world_size} processes train this run; use "
                "device=cuda or device=auto (each process takes the GPU of its LOCAL_RANK)"
            )
        return torch.device("cuda", self.launch.local_rank % max(torch.cuda.device_count(), 1))

    def close(self, failed: bool = False) -> None:
        """End this run's part in the group. A run that failed here leaves the process group at once, so that
        the other ranks' next collective fails now (with one line, ``peer_failure``), not at the timeout."""
        if not self.distributed or not dist.is_initialized():
            return
        if failed:
            leave_process_group()
            return
        self.wait_for_stop_flags()
        dist.destroy_process_group(self.flag_group)

    def seed_own_stream(self, seed: int) -> None:
        """Give every rank but 0 a global random stream of its own (dropout), once the shared initialisation
        is drawn: rank 0 keeps the single process's stream, and no two ranks drop the same units."""
        if self.rank > 0:  # the CPU generator keeps 32 bits of a seed; an odd multiplier keeps the ranks apart
            torch.manual_seed((seed + self.rank * 0x9E3779B1) % 2**32)

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block before the other ranks do (a first download of the data into shared files)."""
        if self.distributed and not self.is_main:
            self.barrier()
        yield
        if self.distributed and self.is_main:
            self.barrier()

    def require_same(self, value: int, problem: str) -> None:
        """Stop every rank with ``problem`` as one line unless ``value`` is the same on every rank."""
        if self.distributed and len(set(self.gather_objects(value))) > 1:
            raise ConfigError(problem)

    # ------------------------------------------------------------------ the model
    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The model with batch norm over the global batch (before the optimizer sees its parameters)."""
        if not self.distributed or not self.sync_batchnorm:
            return model
        device = next(model.parameters()).device
        if device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return GlobalBatchNorm.convert(model)

    def wrap(self, model: nn.Module) -> nn.Module:
        """What the training step calls: DistributedDataParallel around ``model`` when there are several ranks.
        Buffers are not broadcast at each forward: the masks are buffers, equal on every rank by construction
        (and checked), and so are the global batch-norm statistics."""
        if not self.distributed:
            return model
        device = next(model.parameters()).device
        parallel = nn.parallel.DistributedDataParallel
        # Named forward_sync_buffers from PyTorch 2.14 on (broadcast_buffers before, deprecated since).
        newer = "forward_sync_buffers" in inspect.signature(parallel).parameters
        no_sync = "forward_sync_buffers" if newer else "broadcast_buffers"
        # A 1x1 convolution's gradient may come with other (equivalent) strides than its bucket's: DDP copies it
        # in, and would say so in a multi-line warning at the first step.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        return parallel(model, device_ids=[device] if device.type == "cuda" else None, **{no_sync: False})

    # ------------------------------------------------------------------ data
    def part(self, size: int) -> slice:
        """This rank's contiguous range of ``size`` items (a global batch, an evaluation set): parts differ in
        size by at most one; a world of one takes them all."""
        start = size * self.rank // self.world_size
        return slice(start, size * (self.rank + 1) // self.world_size)

    def sum(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum each tensor over the ranks, in place."""
        if self.distributed:
            for tensor in tensors:
                dist.all_reduce(tensor)

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable; tensors on the CPU), in rank order, over the flag group."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value, group=self.flag_group)
        return values

    def share_batchnorm_statistics(self, model: nn.Module) -> None:
        """With each rank normalising its own part (``sync_batchnorm: false``), give every rank rank 0's running
        statistics, as DistributedDataParallel's buffer broadcast would: evaluation and checkpoints then use
        one network. With global statistics they are equal already."""
        if not self.distributed or self.sync_batchnorm:
            return
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                for buffer in (module.running_mean, module.running_var, module.num_batches_tracked):
                    dist.broadcast(buffer, 0)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor``, stacked in rank order."""
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return torch.stack(parts)

    # ------------------------------------------------------------------ agreement
    def agree_to_stop(self, requested: bool) -> bool:
        """Whether the run stops after this step: the local request in a world of one; else whether any rank
        had been asked to stop at the previous step (the flags travel on a gloo group while this step runs, so
        no rank waits, and all of them decide alike)."""
        if not self.distributed:
            return requested
        decided = self.wait_for_stop_flags()
        self.stop_flag.fill_(int(requested))
        self.pending_stop = dist.all_reduce(self.stop_flag, op=dist.ReduceOp.MAX, group=self.flag_group,
                                            async_op=True)  # fmt: skip
        return decided

    def wait_for_stop_flags(self) -> bool:
        if self.pending_stop is None:
            return False
        self.pending_stop.wait()
        self.pending_stop = None
        return bool(self.stop_flag[0])

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self.flag_group)

    def highest(self, value: int) -> int:
        """The largest of the ranks' ``value`` (a host-side vote: rank 0's outcome, for instance)."""
        if not self.distributed:
            return value
        vote = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(vote, op=dist.ReduceOp.MAX, group=self.flag_group)
        return int(vote[0])

    def check_masks(self, masks: Mapping[str, torch.Tensor], step: int) -> None:
        """Stop every rank with one line if the ranks' masks (by layer name) differ after the topology update
        at ``step``."""
        if not self.distributed or not masks:
            return
        table = self.gather(mask_checksum(list(masks.values()))).cpu()
        differing = (table != table[0]).any(0).nonzero().flatten().tolist()
        if differing:
            names = list(masks)
            layers = ", ".join(sorted({names[index // 3] for index in differing}))
            raise ReplicasDiverged(
                f"after the topology update at step {step + 1} the ranks hold different masks (in {layers}); they "
                "would train different networks, so the run stops. Check that every rank runs the same code, "
                "config and library versions"
            )


class ReplicasDiverged(TrainingDiverged):
    """The ranks of one run no longer hold the same masks, or one of them stopped."""


def leave_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def peer_failure(error: BaseException) -> ReplicasDiverged | None:
    """A one-line error for a collective that failed because another rank stopped (it says why in its own
    log), or None for any other error. Gloo reports a lost peer as a RuntimeError naming the connection."""
    text = str(error)
    lost = ("closed by peer", "reset by peer", "Broken pipe", "timed out", "Timed out", "Socket Timeout")
    if not isinstance(error, dist.DistError) and not any(words in text for words in lost):
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return ReplicasDiverged(f"another process of this run stopped ({first[:160]}); its log says why")


def training_backend(name: str, device: torch.device) -> str:
    """The collective backend for ``device``, with one line for a backend this machine lacks."""
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; install one that has to train on several ranks")
    backend = ("nccl" if device.type == "cuda" else "gloo") if name == "auto" else name
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError(f"distributed.backend=nccl needs GPUs, but the run trains on {device}; use "
                          "distributed.backend=gloo (or auto)")  # fmt: skip
    available = dist.is_nccl_available() if backend == "nccl" else dist.is_gloo_available()
    if not available:
        raise ConfigError(f"distributed.backend={backend} is not available in this PyTorch build; use "
                          f"distributed.backend={'gloo' if backend == 'nccl' else 'nccl'}")  # fmt: skip
    return backend


def mask_checksum(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per mask: its active count, and the sums of the flat positions of its active entries and of their squares
    (integer sums, so equal masks give equal checksums on every device). One device tensor, read once."""
    rows = []
    for mask in masks:
        flat = mask.reshape(-1).long()
        positions = torch.arange(flat.numel(), device=flat.device)
        rows.append(torch.stack([flat.sum(), (flat * positions).sum(), (flat * positions * positions).sum()]))
    return torch.cat(rows)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch, for CPU ranks (gloo), where
    PyTorch's ``SyncBatchNorm`` refuses to run. The same parameters and buffers as ``BatchNorm2d``, so
    checkpoints are interchangeable. Outside training, or in a world of one, it is plain batch norm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        momentum = 0.0
        if self.track_running_stats:
            self.num_batches_tracked += 1
            # momentum None: a cumulative average, as BatchNorm keeps it
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return GlobalBatchNormFunction.apply(
            input, self.weight, self.bias, self.running_mean, self.running_var, self.eps, momentum
        )

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every ``BatchNorm{1,2,3}d`` replaced by this class, sharing its parameters and
        buffers (as ``SyncBatchNorm.convert_sync_batchnorm``)."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)  # fmt: skip
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
            converted.train(module.training)
            return converted
        for name, child in module.named_children():
            setattr(module, name, cls.convert(child))
        return module


class GlobalBatchNormFunction(torch.autograd.Function):
    """Batch norm over the examples of every rank: per-channel (count, sum, centred sum of squares) gathered from
    all ranks and merged (Chan et al.'s pairwise formula, in the same order everywhere, so every rank normalises
    alike); the backward pass sums the two per-channel reductions of the input gradient over the ranks."""

    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, eps, momentum):  # type: ignore[override]
        channels = input.shape[1]
        flat = input.transpose(0, 1).reshape(channels, -1).float()
        count = torch.full((channels,), float(flat.shape[1]), device=input.device)
        total = flat.sum(1)
        local_mean = total / count.clamp(min=1)
        squares = ((flat - local_mean[:, None]) ** 2).sum(1)
        gathered = [torch.empty(3, channels, device=input.device) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, torch.stack([count, total, squares]))
        counts, totals, all_squares = torch.stack(gathered).unbind(1)
        n = counts.sum(0)
        mean = totals.sum(0) / n
        rank_means = totals / counts.clamp(min=1)
        m2 = all_squares.sum(0) + (counts * (rank_means - mean) ** 2).sum(0)
        invstd = torch.rsqrt(m2 / n + eps)
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            running_var.mul_(1 - momentum).add_((m2 / (n - 1).clamp(min=1)).to(running_var.dtype), alpha=momentum)
        shape = (1, channels) + (1,) * (input.dim() - 2)
        normalised = (input.float() - mean.view(shape)) * invstd.view(shape)
        ctx.save_for_backward(normalised, weight, invstd, n)
        output = normalised
        if weight is not None:
            output = output * weight.view(shape) + bias.view(shape)
        return output.to(input.dtype)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        normalised, weight, invstd, n = ctx.saved_tensors
        channels = grad_output.shape[1]
        shape = (1, channels) + (1,) * (grad_output.dim() - 2)
        dims = [0] + list(range(2, grad_output.dim()))
        grad = grad_output.float()
        local_sum = grad.sum(dims)
        local_dot = (grad * normalised).sum(dims)
        reduced = torch.stack([local_sum, local_dot])
        dist.all_reduce(reduced)
        scale = invstd if weight is None else invstd * weight.float()
        mean_grad, mean_dot = (reduced / n).unbind(0)
        grad_input = scale.view(shape) * (grad - mean_grad.view(shape) - normalised * mean_dot.view(shape))
        grad_weight = grad_bias = None
        if weight is not None:  # this rank's share: DistributedDataParallel averages it with the others'
            grad_weight, grad_bias = local_dot.to(weight.dtype), local_sum.to(weight.dtype)
        return grad_input.to(grad_output.dtype), grad_weight, grad_bias, None, None, None, None
