"""Data-parallel training: one run trained by several processes, each taking its share of every global batch.

Started by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) or as the
tasks of one SLURM job step (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``; the first host of
the step is the master). ``DataParallel`` answers ``rigl_repro.training.processes``' questions for one rank;
a plain process is a ``SingleProcess``, and nothing here changes its run.

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
  ``SyncBatchNorm`` on GPUs, and on CPUs, which it does not support, ``training.batchnorm.GlobalBatchNorm``;
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
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from rigl_repro.errors import ConfigError, TrainingDiverged
from rigl_repro.launchers import Launch, launch_from_environment
from rigl_repro.training.batchnorm import GlobalBatchNorm
from rigl_repro.training.processes import SingleProcess
from rigl_repro.training.run_folder import RunFolderBusy, run_folder_lock

log = logging.getLogger(__name__)

FOLDER_POLL_S = 5  # how often ranks waiting for a busy run folder ask again (each round is a vote)


class DataParallel(SingleProcess):
    """One rank of the processes that train one run together."""

    def __init__(self, launch: Launch, sync_batchnorm: bool = True, flag_group: Any = None) -> None:
        self.launch, self.sync_batchnorm = launch, sync_batchnorm
        self.flag_group = flag_group  # a gloo group for host-side agreement (stop requests), beside the training's
        self.pending_stop: Any = None  # the stop flags' reduction in flight
        self.stop_flag = torch.zeros(1, dtype=torch.int32)

    @property
    def rank(self) -> int:  # type: ignore[override]
        return self.launch.rank

    @property
    def world_size(self) -> int:  # type: ignore[override]
        return self.launch.world_size

    @property
    def uses_global_batchnorm(self) -> bool:  # type: ignore[override]
        return self.sync_batchnorm

    @property
    def writes(self) -> bool:
        return self.launch.rank == 0

    # ------------------------------------------------------------------ set-up
    @classmethod
    def start(cls, launch: Launch, options: Any, requested: torch.device, batch_size: int) -> DataParallel:
        """Join the run's process group (one-line errors for a set-up that cannot work). The process group
        outlives the run, for the process's next one (``trial_seeds`` train one after another); each run has
        its own flag group."""
        processes = cls(launch, sync_batchnorm=bool(options.sync_batchnorm))
        if batch_size % launch.world_size:
            nearest = launch.world_size * max(1, batch_size // launch.world_size)
            raise ConfigError(
                f"train.batch_size={batch_size} cannot be shared by {launch.world_size} processes; the global "
                f"batch must be a multiple of the world size, e.g. train.batch_size={nearest}"
            )
        device = processes.device(requested)
        backend = training_backend(str(options.backend), device)
        if not dist.is_initialized():
            os.environ.setdefault("MASTER_ADDR", launch.master_addr)
            os.environ.setdefault("MASTER_PORT", str(launch.master_port))
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(
                backend, rank=launch.rank, world_size=launch.world_size,
                timeout=datetime.timedelta(seconds=int(options.timeout_s)),
                device_id=device if backend == "nccl" else None,  # NCCL's eager set-up on this rank's GPU
            )  # fmt: skip
            atexit.register(leave_process_group)
        processes.flag_group = dist.new_group(backend="gloo")  # host-side flags, apart from the training's
        if not processes.writes:  # one log of the run: the other ranks only say what goes wrong
            logging.getLogger().setLevel(logging.WARNING)
        log.info("rank %d of %d (%s, %s)", launch.rank, launch.world_size, backend, device)
        return processes

    def device(self, requested: torch.device) -> torch.device:
        """Each rank's device: GPU ``LOCAL_RANK`` of its node when the run trains on CUDA."""
        if requested.type != "cuda":
            return requested
        if requested.index is not None and torch.cuda.device_count() > 1:
            raise ConfigError(
                f"device={requested} names one GPU, but {self.world_size} processes train this run; use "
                "device=cuda or device=auto (each process takes the GPU of its LOCAL_RANK)"
            )
        return torch.device("cuda", self.launch.local_rank % max(torch.cuda.device_count(), 1))

    def close(self, failed: bool = False) -> None:
        """End this run's part in the group. A run that failed here leaves the process group at once, so that
        the other ranks' next collective fails now (with one line, ``lost_peer``), not at the timeout."""
        if not dist.is_initialized():
            return
        if failed:
            leave_process_group()
            return
        self.wait_for_stop_flags()
        dist.destroy_process_group(self.flag_group)

    def lost_peer(self, error: BaseException) -> BaseException | None:
        return None if isinstance(error, TrainingDiverged) else peer_failure(error)

    def seed_own_stream(self, seed: int) -> None:
        """Give every rank but 0 a global random stream of its own (dropout), once the shared initialisation
        is drawn: rank 0 keeps the single process's stream, and no two ranks drop the same units."""
        if self.rank > 0:  # the CPU generator keeps 32 bits of a seed; an odd multiplier keeps the ranks apart
            torch.manual_seed((seed + self.rank * 0x9E3779B1) % 2**32)

    def restore_own_stream(self, streams: Sequence[Mapping[str, Any]], seed: int, device: torch.device) -> None:
        """This rank's stream as the checkpoint saved it, or, from a checkpoint of another number of
        processes, a fresh stream of this rank's own (``seed`` differs per resumed step)."""
        if len(streams) != self.world_size:
            self.seed_own_stream(seed)
            return
        stream = streams[self.rank]
        torch.set_rng_state(stream["torch"])
        if stream["cuda"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(stream["cuda"], device)

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block before the other ranks do (a first download of the data into shared files)."""
        if not self.writes:
            self.barrier()
        yield
        if self.writes:
            self.barrier()

    def require_same(self, value: int, problem: str) -> None:
        """Stop every rank with ``problem`` as one line unless ``value`` is the same on every rank."""
        if len(set(self.gather_objects(value))) > 1:
            raise ConfigError(problem)

    def progress_bar(self, **options: Any) -> Any:
        """Rank 0's bar alone: one bar per run."""
        return super().progress_bar(**options) if self.writes else tqdm(disable=True, **options)

    # ------------------------------------------------------------------ the model
    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The model with batch norm over the global batch (before the optimizer sees its parameters)."""
        if not self.sync_batchnorm:
            return model
        device = next(model.parameters()).device
        if device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return GlobalBatchNorm.convert(model)

    def wrap(self, model: nn.Module) -> nn.Module:
        """What the training step calls: DistributedDataParallel around ``model``. Buffers are not broadcast at
        each forward: the masks are buffers, equal on every rank by construction (and checked), and so are the
        global batch-norm statistics."""
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

    def batch_loss(self, criterion: nn.Module, logits: torch.Tensor, labels: torch.Tensor,
                   global_batch: int) -> torch.Tensor:  # fmt: skip
        """This rank's part of the global batch's mean loss: its summed loss over the global batch size. Its
        gradients, averaged by DistributedDataParallel and times the world size (``backward``), sum to the
        mean's however the batch is split (an epoch's last batch may leave a rank with fewer examples)."""
        smoothing = getattr(criterion, "label_smoothing", 0.0)
        return nn.functional.cross_entropy(logits, labels, label_smoothing=smoothing, reduction="sum") / global_batch

    def backward(self, loss: torch.Tensor) -> None:
        (loss * self.world_size).backward()

    def sum(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum each tensor over the ranks, in place."""
        for tensor in tensors:
            dist.all_reduce(tensor)

    def per_process(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor``, stacked in rank order (a resumed run gives each rank its own entry)."""
        return self.gather(tensor)

    def all_streams(self, stream: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        return self.gather_objects(stream)

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable; tensors on the CPU), in rank order, over the flag group."""
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value, group=self.flag_group)
        return values

    def share_batchnorm_statistics(self, model: nn.Module) -> None:
        """With each rank normalising its own part (``sync_batchnorm: false``), give every rank rank 0's running
        statistics, as DistributedDataParallel's buffer broadcast would: evaluation and checkpoints then use
        one network. With global statistics they are equal already."""
        if self.sync_batchnorm:
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
        """Whether any rank had been asked to stop at the previous step: the flags travel on a gloo group while
        this step runs, so no rank waits, and all of them decide alike."""
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
        dist.barrier(group=self.flag_group)

    def highest(self, value: int) -> int:
        """The largest of the ranks' ``value`` (a host-side vote: rank 0's outcome, for instance)."""
        vote = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(vote, op=dist.ReduceOp.MAX, group=self.flag_group)
        return int(vote[0])

    def check_masks(self, masks: Mapping[str, torch.Tensor], step: int) -> None:
        """Stop every rank with one line if the ranks' masks (by layer name) differ after the topology update
        at ``step``."""
        if not masks:
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

    # ------------------------------------------------------------------ the run folder
    @contextmanager
    def folder_lock(self, folder: Path, wait: bool) -> Iterator[None]:
        """The run folder's lock, held by rank 0 for every rank of the run. Ranks wait for a busy folder by
        asking again every few seconds, so that none of them blocks beyond the collectives' timeout."""
        locked, busy, failed = 0, 1, 2
        with ExitStack() as stack:
            while True:
                outcome, problem = locked, None
                if self.writes:
                    try:
                        stack.enter_context(run_folder_lock(folder, wait=False))
                    except RunFolderBusy as error:
                        outcome, problem = busy, error
                    except Exception as error:  # told to the other ranks, then raised here
                        outcome, problem = failed, error
                decided = self.highest(outcome)
                if decided == locked:
                    break
                if decided == busy and wait:
                    log.info("%s is in use by another process; waiting for it to end", folder)
                    time.sleep(FOLDER_POLL_S)
                    continue
                raise problem or RunFolderBusy(f"{folder} could not be locked by this run's rank 0 (see its log)")
            yield

    def save_checkpoint(self, path: Path, state: Mapping[str, Any]) -> None:
        if self.writes:
            super().save_checkpoint(path, state)

    def write_json(self, path: Path, data: Any) -> None:
        if self.writes:
            super().write_json(path, data)


def start_processes(options: Any, requested: torch.device, batch_size: int) -> SingleProcess:
    """This process's part of the run: a single process, or one rank of several when a launcher started
    several (``DataParallel.start`` joins their process group, with one-line errors for a set-up that cannot
    work)."""
    launch = launch_from_environment(os.environ)
    if launch.world_size == 1:
        return SingleProcess()
    return DataParallel.start(launch, options, requested, batch_size)


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
