"""One training run: the loop over epochs and steps, validation every epoch, test at the end, checkpoints that
resume exactly, and ``summary.json``.

The run's parts come from the composition root (``rigl_repro.run.build``); the processes that train it
(``rigl_repro.training.processes``) answer everything that depends on how many there are, so the loop reads
the same for one process and for several. Nothing in the per-step path reads the device: losses and counts
accumulate on it and are read once per epoch (a NaN loss is caught at the end of the epoch it appears in).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rigl_repro.data import Split, augment_batch
from rigl_repro.errors import START_AFRESH, ConfigError, TrainingDiverged
from rigl_repro.loggers import Logger, RunLabels, build_logger
from rigl_repro.results import SUMMARY_FILE
from rigl_repro.run.build import build_run, count_correct
from rigl_repro.run.config import RunConfig
from rigl_repro.training.checkpoint import (
    CHECKPOINT_FILE,
    INITIAL_WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
)
from rigl_repro.training.preemption import StopRequest
from rigl_repro.training.processes import SingleProcess
from rigl_repro.training.state import EpochInProgress, RunState
from rigl_repro.training.summary import budget_of, run_summary, upgrade_densities

log = logging.getLogger(__name__)

# Called by the writing process after every epoch with the history so far and the run's number of epochs;
# returns whether the run should stop there (a sweep trial its pruner stops: ``rigl_repro.sweeps.trial``).
AfterEpoch = Callable[[Sequence[Mapping[str, Any]], int], bool]


# The summary.json entries a tracker's run summary holds, under the same names.
TRACKED_SUMMARY = ("test_acc", "val_acc", "density", "density_all_layers", "initial_density", "exploration", "flops",
                   "epochs", "steps", "wall_time_s", "parameters", "layer_densities")  # fmt: skip


class StoppedEarly(RuntimeError):
    """The run's ``after_epoch`` callback stopped it after ``epoch`` of its ``epochs``; its checkpoint is saved."""

    def __init__(self, epoch: int, epochs: int) -> None:
        super().__init__(f"stopped after epoch {epoch}/{epochs}; the checkpoint is saved")
        self.epoch, self.epochs = epoch, epochs


class Trainer:
    """A run built from its config; ``fit()`` trains it (or resumes it from its checkpoint) and returns the
    summary. ``processes`` is this process's part when several train the run; ``after_epoch`` may stop it
    early; ``labels`` name it for experiment trackers."""

    def __init__(
        self,
        config: RunConfig | DictConfig,
        output_dir: Path,
        processes: SingleProcess | None = None,
        after_epoch: AfterEpoch | None = None,
        labels: RunLabels | None = None,
    ):
        self.config = config if isinstance(config, RunConfig) else RunConfig.from_hydra(config)
        self.output_dir, self.processes = Path(output_dir), processes or SingleProcess()
        parts = build_run(self.config, self.processes)
        self.plan, self.device, self.precision, self.threads = parts.plan, parts.device, parts.precision, parts.threads
        self.data, self.model, self.forward_model = parts.data, parts.model, parts.forward_model
        self.optimizer, self.scheduler, self.engine = parts.optimizer, parts.scheduler, parts.engine
        self.criterion, self.method, self.recipe = parts.criterion, parts.plan.method, self.config.train
        plan = parts.plan
        self.steps_per_epoch, self.epochs, self.total_steps = plan.steps_per_epoch, plan.epochs, plan.total_steps
        self.state = RunState.start(self.config.seed, self.device)
        self.stop = StopRequest(self.config.checkpoint.on_signals)
        self.after_epoch, self.labels = after_epoch, labels
        self.budget = budget_of(self.method, self.engine)  # what "density" means: the summary's layers

    @property
    def epoch(self) -> int:
        return self.state.epoch

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images as the model's inputs (``Precision.prepare``)."""
        return self.precision.prepare(images, self.data)

    # ------------------------------------------------------------------ identity and checkpoints
    def fingerprint(self) -> dict[str, Any]:
        """The configuration that determines this run's results: a checkpoint must match it to resume."""
        return self.config.identity()

    def state_dict(self, streams: list[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "fingerprint": json.dumps(self.fingerprint(), sort_keys=True),
            "device_type": self.device.type,
            **self.state.state_dict(streams or []),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "engine": self.engine.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("device_type", self.device.type) != self.device.type:
            raise CheckpointError(
                f"the checkpoint was written on {state['device_type']} (its random-number states are that "
                f"device's); resume it with device={state['device_type']}"
            )
        parts = {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler, "engine": self.engine}
        for part, owner in parts.items():
            try:
                owner.load_state_dict(state[part])
            except ConfigError:  # already one line that says what is wrong
                raise
            except (RuntimeError, ValueError, KeyError, TypeError) as error:  # torch's own checks of the layout
                lines = [line.strip() for line in str(error).splitlines() if line.strip()]
                lines = [line for line in lines if not line.startswith("Error(s) in loading")]  # torch's header
                first = (lines or [type(error).__name__])[0]
                raise CheckpointError(
                    f"{self.output_dir / CHECKPOINT_FILE}: its {part} state does not fit this run "
                    f"(model={self.config.model.name}: {first}); {START_AFRESH}"
                ) from None
        rank, world_size = self.processes.rank, self.processes.world_size
        streams = self.state.load_state_dict(state, self.device, rank, world_size)
        upgrade_densities(self.history, {layer.name: layer.size for layer in self.engine.layers}, self.budget)
        self.processes.restore_own_stream(streams, self.config.seed + self.engine.step_count, self.device)

    def save(self, path: Path) -> None:
        """Checkpoint the run: every process takes part, the writing one writes."""
        self.processes.share_batchnorm_statistics(self.model)
        streams = self.processes.all_streams(self.own_stream())
        self.processes.save_checkpoint(path, self.state_dict(streams))

    def own_stream(self) -> dict[str, Any]:
        """This process's global random state (dropout), on the CPU and on its GPU."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"torch": torch.get_rng_state(), "cuda": cuda}

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        checkpoint = self.output_dir / CHECKPOINT_FILE
        if checkpoint.exists() and self.config.checkpoint.resume:
            self.load_state_dict(load_checkpoint(checkpoint, self.config.resolved))
            log.info("resumed from %s at epoch %d/%d, step %d", checkpoint, self.epoch, self.epochs,
                     self.engine.step_count)  # fmt: skip
        else:  # the starting weights, for lottery tickets that rewind to them
            self.processes.save_checkpoint(self.output_dir / INITIAL_WEIGHTS_FILE, self.model.state_dict())
        self.processes.require_same(self.engine.step_count, f"the processes of this run found different checkpoints "
                                    f"in {self.output_dir}; put output_root on a file system every node shares")
        logger = build_logger(self.config.logger, config=self.config.resolved, output_dir=self.output_dir,
                              history=self.history, enabled=self.processes.writes, labels=self.labels)  # fmt: skip
        try:
            with self.stop:
                self.train_epochs(logger, checkpoint)
            test_acc = self.evaluate(self.data.test)
            summary = run_summary(self.plan, self.engine, self.model, self.state, test_acc, self.threads,
                                  self.processes.world_size)  # fmt: skip
            logger.log({"test_acc": summary["test_acc"]}, step=self.total_steps)
            logger.summarize({key: summary[key] for key in TRACKED_SUMMARY})
        finally:
            logger.finish()
        self.processes.write_json(self.output_dir / SUMMARY_FILE, summary)
        return summary

    def train_epochs(self, logger: Logger, checkpoint: Path) -> None:
        """The remaining epochs, each logged and checkpointed; a stop request checkpoints the epoch in progress
        and hands the signal on (see ``preemption``)."""
        while self.epoch < self.epochs:
            metrics = self.train_epoch()
            if metrics is None:  # told to stop part-way through the epoch: every process's sums so far are saved
                epoch = self.state.in_progress
                epoch.loss_sum, epoch.correct = (self.processes.per_process(s) for s in (epoch.loss_sum, epoch.correct))
                self.save(checkpoint)
                self.processes.barrier()  # no process leaves before the checkpoint is written
                self.stop.forward(f"in epoch {self.epoch + 1} after step {self.engine.step_count}")
            self.state.epoch += 1
            self.history.append(metrics)
            logger.log(metrics, step=metrics["step"])
            log.info(
                "epoch %d/%d  step %d  loss %.4f  train %.2f%%  val %s  lr %.4g  %.0f img/s",
                self.epoch, self.epochs, metrics["step"], metrics["train_loss"], 100 * metrics["train_acc"],
                "-" if metrics["val_acc"] is None else f"{100 * metrics['val_acc']:.2f}%",
                metrics["lr"], metrics["images_per_s"],
            )  # fmt: skip
            saved = self.epoch % self.config.checkpoint.every_epochs == 0 or self.epoch == self.epochs
            if saved:
                self.save(checkpoint)
            if self.after_epoch is not None and self.stops_early():
                if not saved:
                    self.save(checkpoint)
                raise StoppedEarly(self.epoch, self.epochs)

    def stops_early(self) -> bool:
        """The writing process's ``after_epoch`` answer, shared by every process (the last epoch never stops)."""
        assert self.after_epoch is not None
        asked = self.processes.writes and self.after_epoch(self.history, self.epochs)
        return bool(self.processes.highest(int(asked))) and self.epoch < self.epochs

    def train_epoch(self) -> dict[str, Any] | None:
        """One pass over the training set in a fresh random order (or the rest of the epoch in progress); reads
        the device once, at the end. Returns None, keeping the epoch in progress, when told to stop."""
        self.model.train()
        train, state = self.data.train, self.state
        if state.in_progress is None:
            state.in_progress = EpochInProgress.start(
                torch.randperm(len(train), generator=state.order_generator, device=self.device))
        epoch = state.in_progress
        start = time.perf_counter()
        batches = epoch.order.split(self.recipe.batch_size)
        previous = self.history[-1]["train_loss"] if self.history else float("nan")
        bar = self.processes.progress_bar(
            total=len(train), initial=epoch.batches_done * self.recipe.batch_size,
            desc=f"epoch {self.epoch + 1}/{self.epochs}", unit="img", leave=False,
            postfix={"step": self.engine.step_count, "last loss": f"{previous:.4f}"},
        )  # fmt: skip
        for indices in batches[epoch.batches_done:]:
            bar.update(indices.shape[0])
            # Every process augments the whole global batch with the shared generator, then keeps its part.
            images = augment_batch(train.images[indices], self.data.augment, state.augment_generator)
            share = self.processes.part(indices.shape[0])
            images, labels = images[share], train.labels[indices[share]]
            with self.precision.autocast():
                logits = self.forward_model(self.prepare(images))
                loss = self.processes.batch_loss(self.criterion, logits, labels, indices.shape[0])
            self.processes.backward(loss)
            if self.engine.step():
                masks = {layer.name: layer.mask for layer in self.engine.layers}
                self.processes.check_masks(masks, self.engine.step_count - 1)
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            epoch.loss_sum += loss.detach().float()
            epoch.correct += (logits.argmax(1) == labels).sum()
            epoch.batches_done += 1
            if self.processes.agree_to_stop(self.stop.requested):
                break
        bar.close()
        epoch.seconds += time.perf_counter() - start
        if epoch.batches_done < len(batches):
            return None
        state.in_progress = None
        self.processes.sum([epoch.loss_sum, epoch.correct])
        mean_loss = epoch.loss_sum.item() / self.steps_per_epoch
        state.wall_time += epoch.seconds
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"the training loss became {mean_loss} in epoch {self.epoch + 1}; the run is stopped and no "
                "summary.json is written (try a lower train.lr)"
            )
        return {
            "epoch": self.epoch + 1,
            "step": (self.epoch + 1) * self.steps_per_epoch,
            "train_loss": mean_loss,
            "train_acc": epoch.correct.item() / len(train),
            "val_acc": None if self.data.val is None else self.evaluate(self.data.val),
            "lr": self.optimizer.param_groups[0]["lr"],
            "density": self.engine.overall_density(self.budget),
            "density_all_layers": self.engine.overall_density(),
            "layer_densities": self.engine.layer_densities(),
            "mask_updates": self.engine.read_mask_updates(),
            "exploration": self.engine.overall_exploration(),
            "images_per_s": len(train) / epoch.seconds,
        }

    def evaluate(self, split: Split) -> float:
        """Accuracy over the whole split from exact counts; each process counts its part, the counts summed."""
        self.processes.share_batchnorm_statistics(self.model)
        correct = count_correct(self.model, split.images, split.labels, self.data, self.precision,
                                self.recipe.eval_batch_size, self.processes.part(len(split)))  # fmt: skip
        self.model.train()
        self.processes.sum([correct])
        return correct.item() / len(split)
