"""A run's mutable state: where it is (epoch, history, time), its random streams and the epoch in progress.

The model, optimizer, schedule and engine checkpoint themselves; this is the rest, with its own part of the
checkpoint (``epoch``, ``history``, ``wall_time``, ``epoch_in_progress`` and ``rng``, as every earlier layout
wrote them, so those checkpoints resume). ``rigl_repro.training.checkpoint`` validates that part, its layout and
its consistency with the recipe, before it is loaded here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EpochInProgress:
    """An epoch part-way through: its order of examples, the batches done and the sums so far (on the device).
    Checkpointed when a run is told to stop mid-epoch, so that the resumed run finishes the same epoch."""

    order: torch.Tensor
    loss_sum: torch.Tensor
    correct: torch.Tensor
    batches_done: int = 0
    seconds: float = 0.0

    @classmethod
    def start(cls, order: torch.Tensor) -> EpochInProgress:
        device = order.device
        return cls(order, torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device))

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order, "loss_sum": self.loss_sum, "correct": self.correct,
                "batches_done": self.batches_done, "seconds": self.seconds}  # fmt: skip

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: torch.device, rank: int = 0, world_size: int = 1
                   ) -> EpochInProgress:  # fmt: skip
        """The epoch as this rank resumes it. Sums saved by several ranks hold one entry per rank: each rank
        takes its own under the same world size (so the epoch's totals are summed as if never cut); otherwise
        rank 0 carries their total and the other ranks start from zero."""
        sums = []
        for key in ("loss_sum", "correct"):
            saved = state[key].to(device)
            if saved.dim() == 1 and len(saved) == world_size:
                sums.append(saved[rank].clone())
            else:
                total = saved.sum()
                sums.append(total if rank == 0 else torch.zeros_like(total))
        return cls(state["order"].to(device), *sums, batches_done=int(state["batches_done"]),
                   seconds=float(state["seconds"]))  # fmt: skip


@dataclass
class RunState:
    """Everything about a run in progress that its parts do not hold themselves."""

    order_generator: torch.Generator  # each epoch's order of examples
    augment_generator: torch.Generator  # every batch's augmentation
    epoch: int = 0  # epochs finished
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time: float = 0.0
    in_progress: EpochInProgress | None = None

    @classmethod
    def start(cls, seed: int, device: torch.device) -> RunState:
        """A run at its start: the data streams seeded from the run's seed (augmentation from ``seed + 1``)."""
        order, augment = torch.Generator(device=device), torch.Generator(device=device)
        return cls(order.manual_seed(seed), augment.manual_seed(seed + 1))

    def state_dict(self, streams: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """This state's part of a checkpoint, with the global random stream of this process (and of every
        process of the run, ``streams``, when there are several)."""
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "order": self.order_generator.get_state(),
            "augment": self.augment_generator.get_state(),
        }
        if streams:
            rng["ranks"] = list(streams)
        return {
            "epoch": self.epoch,
            "history": self.history,
            "wall_time": self.wall_time,
            "epoch_in_progress": None if self.in_progress is None else self.in_progress.state_dict(),
            "rng": rng,
        }

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device, rank: int = 0,
                        world_size: int = 1) -> list[Mapping[str, Any]]:  # fmt: skip
        """Restore ``state_dict()``'s part of a checkpoint, as ``load_checkpoint`` has validated it; returns the
        per-process streams it holds (empty when one process wrote it)."""
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.order_generator.set_state(rng["order"])
        self.augment_generator.set_state(rng["augment"])
        self.epoch, self.history, self.wall_time = state["epoch"], list(state["history"]), state["wall_time"]
        saved = state.get("epoch_in_progress")
        self.in_progress = None if saved is None else EpochInProgress.from_state(saved, device, rank, world_size)
        return list(rng.get("ranks", []))
