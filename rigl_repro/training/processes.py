"""How many processes train a run, as one interface: the training loop asks it and never asks "distributed?".

``SingleProcess`` is a run trained by this process alone, where every answer is the plain thing (the whole
batch is its share, sums are already global, it writes the run folder). ``rigl_repro.training.distributed``'s
``DataParallel`` answers the same questions for one rank of several; its ``start_processes`` picks one of the
two from what the launcher says (``rigl_repro.launchers``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from rigl_repro.results import atomic_write_json
from rigl_repro.training.checkpoint import save_checkpoint
from rigl_repro.training.run_folder import run_folder_lock


class SingleProcess:
    """One process trains the run: its device is the requested one, it takes every example, writes every file."""

    rank = 0
    world_size = 1
    uses_global_batchnorm = False  # batch norm over several processes' batches (changes compile's default)

    # ------------------------------------------------------------------ set-up and teardown
    def device(self, requested: torch.device) -> torch.device:
        return requested

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block on the writing process before the others (a first download into shared files)."""
        yield

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The model with the batch norm the run normalises with, before the optimizer sees its parameters."""
        return model

    def wrap(self, model: nn.Module) -> nn.Module:
        """What a training step calls."""
        return model

    def seed_own_stream(self, seed: int) -> None:
        """Give this process its own global random stream (dropout), once the shared initialisation is drawn."""

    def restore_own_stream(self, streams: Sequence[Mapping[str, Any]], seed: int, device: torch.device) -> None:
        """This process's global random stream from a checkpoint's per-process ``streams`` (none: the
        single-process stream is the checkpoint's own, already restored)."""

    def close(self, failed: bool = False) -> None:
        """End this process's part in the run."""

    def lost_peer(self, error: BaseException) -> BaseException | None:
        """The one-line error for a failure caused by another process of the run stopping, or None."""
        return None

    # ------------------------------------------------------------------ the training step
    def part(self, size: int) -> slice:
        """This process's contiguous range of ``size`` items (a global batch, an evaluation set)."""
        return slice(0, size)

    def batch_loss(self, criterion: nn.Module, logits: torch.Tensor, labels: torch.Tensor,
                   global_batch: int) -> torch.Tensor:  # fmt: skip
        """The loss whose gradient is the global batch's mean loss gradient: here the batch's mean."""
        return criterion(logits, labels)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def check_masks(self, masks: Mapping[str, torch.Tensor], step: int) -> None:
        """After the topology update at ``step``: stop if the processes hold different masks."""

    def agree_to_stop(self, requested: bool) -> bool:
        """Whether the run stops after this step, given this process's own request."""
        return requested

    # ------------------------------------------------------------------ sums and agreement
    def sum(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum each tensor over the processes, in place."""

    def per_process(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's ``tensor`` for a checkpoint of the epoch in progress: here the tensor itself."""
        return tensor

    def all_streams(self, stream: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Every process's global random stream for a checkpoint: none beyond the checkpoint's own here."""
        return []

    def share_batchnorm_statistics(self, model: nn.Module) -> None:
        """Make every process's running batch-norm statistics one network's (before evaluating and saving)."""

    def barrier(self) -> None:
        """Wait for every process (none to wait for)."""

    def require_same(self, value: int, problem: str) -> None:
        """Stop every process with ``problem`` unless ``value`` is the same on all of them."""

    def highest(self, value: int) -> int:
        """The largest of the processes' ``value`` (a host-side vote: the writing process's decision)."""
        return value

    # ------------------------------------------------------------------ the run folder
    @contextlib.contextmanager
    def folder_lock(self, folder: Path, wait: bool) -> Iterator[None]:
        """Hold ``folder``'s lock for the run (``run_folder_lock``)."""
        with run_folder_lock(folder, wait=wait):
            yield

    def save_checkpoint(self, path: Path, state: Mapping[str, Any]) -> None:
        save_checkpoint(path, state)

    def write_json(self, path: Path, data: Any) -> None:
        atomic_write_json(path, data)

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files, logs and progress (loggers built elsewhere ask)."""
        return True

    def progress_bar(self, **options: Any) -> tqdm:
        """A progress bar, shown on a terminal (not in logs or CI)."""
        return tqdm(disable=None, **options)
