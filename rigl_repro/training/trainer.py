"""One training run: data on the device, the sparse engine, validation every epoch, test at the end,
checkpoints that resume exactly, and ``summary.json``.

Nothing in the per-step path reads the device: losses and counts accumulate on it and are read once per
epoch (a NaN loss is therefore caught at the end of the epoch in which it appears).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from rigl_repro.data import Split, augment_batch, load_splits, normalise
from rigl_repro.errors import ConfigError, TrainingDiverged, require_bool, require_int
from rigl_repro.flops.accounting import flop_summary, model_layer_flops, pretraining_flops
from rigl_repro.flops.counting import layer_flops
from rigl_repro.models import build_model, count_sparsifiable_weights
from rigl_repro.results import SUMMARY_FILE, atomic_write_json, read_summary, run_identity
from rigl_repro.sparsity import SparseEngine, build_method
from rigl_repro.sparsity.schedules import schedule_length
from rigl_repro.training.checkpoint import (
    CHECKPOINT_FILE,
    INITIAL_WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from rigl_repro.training.distributed import Replicas, peer_failure, validate_distributed_options
from rigl_repro.training.preemption import StopRequest
from rigl_repro.training.recipe import Recipe, enabled, learning_rate_factor
from rigl_repro.training.run_folder import RunFolderBusy, run_folder_lock
from rigl_repro.training.threads import apply_thread_policy, thread_count
from rigl_repro.training.tracking import Tracker, validate_logger

log = logging.getLogger(__name__)


@dataclass
class EpochInProgress:
    """An epoch part-way through: its order of examples, the batches done and the sums so far (on the device).
    Checkpointed when a run is told to stop mid-epoch, so that the resumed run finishes the same epoch."""

    order: torch.Tensor
    loss_sum: torch.Tensor
    correct: torch.Tensor
    batches_done: int = 0
    seconds: float = 0.0

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


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; anything else must name an available device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name!r} is not a device to train on; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=cpu or device=auto")
    return device


def select_kernels(deterministic: bool, on_cuda: bool) -> None:
    """Deterministic kernels, or the fastest ones (cuDNN autotuning on CUDA).

    These are process-wide settings, like the seed: every Trainer sets all of them, so one run never inherits
    another's. On the CPU the kernels are deterministic either way. An op with no deterministic CUDA
    implementation warns, naming itself, rather than stopping a long run.
    """
    if deterministic and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        if torch.cuda.is_initialized():  # cuBLAS may have read its configuration already
            log.warning("deterministic=true after CUDA started in this process: set CUBLAS_WORKSPACE_CONFIG=:4096:8 "
                        "in the environment for deterministic cuBLAS")
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = on_cuda and not deterministic


def validate_run_options(cfg: DictConfig) -> None:
    """The run's own options (not the dataset's, model's or method's), checked even when a finished run
    is reused, so that a bad value is never silently accepted."""
    require_int("seed", cfg.seed, 0, 2**32 - 2)  # seed + 1 seeds the augmentation; NumPy takes < 2^32
    require_int("checkpoint.every_epochs", cfg.checkpoint.every_epochs, 1)
    require_bool("checkpoint.resume", cfg.checkpoint.resume)
    require_bool("deterministic", cfg.deterministic)
    validate_logger(cfg.logger.mode, cfg.logger.project)
    resolve_device(str(cfg.device))
    StopRequest(cfg.checkpoint.on_signals)
    thread_count(cfg.threads, 1, 1, {})
    validate_distributed_options(cfg.distributed)


class Trainer:
    """Builds everything a run needs from the composed config; ``fit()`` trains and returns the summary.
    With ``replicas`` of several processes, this process trains its share of the run (``distributed``)."""

    def __init__(self, cfg: DictConfig, output_dir: Path, replicas: Replicas | None = None) -> None:
        self.cfg, self.output_dir = cfg, Path(output_dir)
        self.replicas = replicas or Replicas()
        validate_run_options(cfg)
        deterministic = bool(cfg.deterministic)
        self.recipe = Recipe.from_config(OmegaConf.to_container(cfg.train, resolve=True))
        masking = OmegaConf.to_container(cfg.masking, resolve=True)
        self.method = build_method(masking)
        self.device = self.replicas.device(resolve_device(str(cfg.device)))
        on_cuda = self.device.type == "cuda"
        self.autocast = partial(
            torch.autocast, self.device.type, dtype=torch.bfloat16, enabled=enabled(self.recipe.amp, on_cuda)
        )
        self.channels_last = enabled(self.recipe.channels_last, on_cuda)

        select_kernels(deterministic, on_cuda)
        self.threads = apply_thread_policy(cfg.threads)
        torch.manual_seed(int(cfg.seed))
        with self.replicas.main_first():  # one download into shared files, then every rank reads them
            self.data = load_splits(OmegaConf.to_container(cfg.dataset, resolve=True), self.device)
        num_classes = int(cfg.dataset.num_classes)
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        self.width = self.method.width_multiplier(
            lambda width: count_sparsifiable_weights(model_cfg, num_classes, width)
        )
        model = build_model(model_cfg, num_classes, self.width)
        self.model = model.to(self.device, memory_format=torch.channels_last if self.channels_last else None)
        input_shape = (int(cfg.dataset.channels), int(cfg.dataset.image_size), int(cfg.dataset.image_size))
        self.layer_flops = layer_flops(self.model, input_shape)  # once; updates only change densities
        reference = self.layer_flops if self.width is None else model_layer_flops(model_cfg, num_classes, input_shape)
        self.reference_inference = float(sum(reference.values()))
        self.model = self.replicas.prepare_model(self.model)

        if self.recipe.batch_size > len(self.data.train):
            raise ConfigError(
                f"train.batch_size={self.recipe.batch_size} is larger than the {len(self.data.train)} training "
                "images; expected at most their number"
            )
        self.steps_per_epoch = math.ceil(len(self.data.train) / self.recipe.batch_size)
        self.epochs = self.recipe.total_epochs
        self.total_steps = self.epochs * self.steps_per_epoch
        # Mask schedules are fractions of the report code's count of steps (examples / batch size).
        self.schedule_steps = schedule_length(self.epochs, len(self.data.train), self.recipe.batch_size)
        self.optimizer = torch.optim.SGD(
            self.recipe.parameter_groups(self.model),
            lr=self.recipe.lr,
            momentum=self.recipe.momentum,
            nesterov=self.recipe.nesterov,
            fused=on_cuda,  # one kernel for the whole parameter list
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            partial(
                learning_rate_factor,
                warmup_steps=self.recipe.warmup_steps,
                steps_per_epoch=self.steps_per_epoch,
                decay_every=self.recipe.decay_interval(),
                decay_factor=self.recipe.lr_decay_factor,
            ),
        )
        self.engine = SparseEngine(self.model, self.optimizer, self.method, self.schedule_steps, seed=int(cfg.seed))
        self.replicas.seed_own_stream(int(cfg.seed))
        # Not by default under SyncBatchNorm, whose collectives torch.compile has not been seen to handle here.
        global_norm = self.replicas.distributed and self.replicas.sync_batchnorm
        if enabled(self.recipe.compile, on_cuda and not global_norm):
            # In place, so parameter and mask names (and checkpoints) are unchanged. Static shapes: the full
            # batches keep their specialised kernels, and an epoch's last, smaller batch gets its own.
            self.model.compile(dynamic=False)
        self.forward_model = self.replicas.wrap(self.model)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing)
        self.summed_criterion = nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing, reduction="sum")
        self.order_generator = torch.Generator(device=self.device).manual_seed(int(cfg.seed))
        self.augment_generator = torch.Generator(device=self.device).manual_seed(int(cfg.seed) + 1)
        self.epoch, self.history, self.wall_time = 0, [], 0.0
        self.in_progress: EpochInProgress | None = None
        self.stop = StopRequest(cfg.checkpoint.on_signals)

    # ------------------------------------------------------------------ identity and checkpoints
    def fingerprint(self) -> dict[str, Any]:
        """The configuration that determines this run's results: a checkpoint must match it to resume."""
        return run_identity(OmegaConf.to_container(self.cfg, resolve=True))

    def state_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": json.dumps(self.fingerprint(), sort_keys=True),
            "device_type": self.device.type,
            "epoch": self.epoch,
            "history": self.history,
            "wall_time": self.wall_time,
            "epoch_in_progress": None if self.in_progress is None else self.in_progress.state_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "engine": self.engine.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "order": self.order_generator.get_state(),
                "augment": self.augment_generator.get_state(),
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("device_type", self.device.type) != self.device.type:
            raise CheckpointError(
                f"the checkpoint was written on {state['device_type']} (its random-number states are that "
                f"device's); resume it with device={state['device_type']}"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise ConfigError(f"the checkpoint's weights do not fit model={self.cfg.model.name}: {first}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.engine.load_state_dict(state["engine"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.order_generator.set_state(state["rng"]["order"])
        self.augment_generator.set_state(state["rng"]["augment"])
        own = state["rng"].get("ranks", [])  # every rank's global stream, saved by several processes
        if len(own) == self.replicas.world_size:
            self.restore_own_stream(own[self.replicas.rank])
        else:  # saved by another number of processes: a fresh stream of this rank's own
            self.replicas.seed_own_stream(int(self.cfg.seed) + self.engine.step_count)
        self.epoch, self.history, self.wall_time = state["epoch"], list(state["history"]), state["wall_time"]
        in_progress = state.get("epoch_in_progress")
        self.in_progress = None if in_progress is None else EpochInProgress.from_state(
            in_progress, self.device, self.replicas.rank, self.replicas.world_size
        )

    def save(self, path: Path) -> None:
        """Checkpoint the run: every rank takes part, rank 0 writes."""
        self.replicas.share_batchnorm_statistics(self.model)
        streams = self.replicas.gather_objects(self.own_stream()) if self.replicas.distributed else []
        if self.replicas.is_main:
            state = self.state_dict()
            if streams:
                state["rng"]["ranks"] = streams
            save_checkpoint(path, state)

    def own_stream(self) -> dict[str, Any]:
        """This process's global random state (dropout), on the CPU and on its GPU."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"torch": torch.get_rng_state(), "cuda": cuda}

    def restore_own_stream(self, stream: Mapping[str, Any]) -> None:
        torch.set_rng_state(stream["torch"])
        if stream["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(stream["cuda"], self.device)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        checkpoint = self.output_dir / CHECKPOINT_FILE
        if checkpoint.exists() and self.cfg.checkpoint.resume:
            self.load_state_dict(load_checkpoint(checkpoint, self.fingerprint()))
            log.info("resumed from %s at epoch %d/%d, step %d", checkpoint, self.epoch, self.epochs,
                     self.engine.step_count)
        elif self.replicas.is_main:  # the starting weights, for lottery tickets that rewind to them
            save_checkpoint(self.output_dir / INITIAL_WEIGHTS_FILE, self.model.state_dict())
        self.replicas.require_same(self.engine.step_count, f"the processes of this run found different checkpoints "
                                   f"in {self.output_dir}; put output_root on a file system every node shares")
        tracker = Tracker(
            self.cfg.logger.mode if self.replicas.is_main else "disabled",
            self.cfg.logger.project,
            self.cfg.logger.entity,
            OmegaConf.to_container(self.cfg, resolve=True),
            self.output_dir,
            history=self.history,
        )
        try:
            with self.stop:
                self.train_epochs(tracker, checkpoint)
            summary = self.summary(test_acc=self.evaluate(self.data.test))
            tracker.log({"test_acc": summary["test_acc"]}, step=self.total_steps)
            keys = ("test_acc", "val_acc", "density", "flops", "epochs", "wall_time_s", "layer_densities")
            tracker.summarize({key: summary[key] for key in keys})
        finally:
            tracker.finish()
        if self.replicas.is_main:
            atomic_write_json(self.output_dir / SUMMARY_FILE, summary)
        return summary

    def train_epochs(self, tracker: Tracker, checkpoint: Path) -> None:
        """The remaining epochs, each logged and checkpointed; a stop request checkpoints the epoch in progress
        and hands the signal on (see ``preemption``)."""
        while self.epoch < self.epochs:
            metrics = self.train_epoch()
            if metrics is None:  # told to stop part-way through the epoch
                if self.replicas.distributed:  # rank 0 saves every rank's sums so far
                    epoch = self.in_progress
                    epoch.loss_sum, epoch.correct = (self.replicas.gather(s) for s in (epoch.loss_sum, epoch.correct))
                self.save(checkpoint)
                self.replicas.barrier()  # no rank leaves before the checkpoint is written
                self.stop.forward(f"in epoch {self.epoch + 1} after step {self.engine.step_count}")
            self.epoch += 1
            self.history.append(metrics)
            tracker.log(metrics, step=metrics["step"])
            log.info(
                "epoch %d/%d  step %d  loss %.4f  train %.2f%%  val %s  lr %.4g  %.0f img/s",
                self.epoch, self.epochs, metrics["step"], metrics["train_loss"], 100 * metrics["train_acc"],
                "-" if metrics["val_acc"] is None else f"{100 * metrics['val_acc']:.2f}%",
                metrics["lr"], metrics["images_per_s"],
            )  # fmt: skip
            if self.epoch % int(self.cfg.checkpoint.every_epochs) == 0 or self.epoch == self.epochs:
                self.save(checkpoint)

    def train_epoch(self) -> dict[str, Any] | None:
        """One pass over the training set in a fresh random order (or the rest of the epoch in progress); reads
        the device once, at the end. Returns None, keeping the epoch in progress, when told to stop."""
        self.model.train()
        train = self.data.train
        if self.in_progress is None:
            self.in_progress = EpochInProgress(
                order=torch.randperm(len(train), generator=self.order_generator, device=self.device),
                loss_sum=torch.zeros((), device=self.device),
                correct=torch.zeros((), dtype=torch.long, device=self.device),
            )
        epoch = self.in_progress
        start = time.perf_counter()
        batches = epoch.order.split(self.recipe.batch_size)
        previous = self.history[-1]["train_loss"] if self.history else float("nan")
        bar = tqdm(
            total=len(train),
            initial=epoch.batches_done * self.recipe.batch_size,
            desc=f"epoch {self.epoch + 1}/{self.epochs}",
            unit="img",
            disable=None if self.replicas.is_main else True,  # none off a terminal (logs, CI), one per run
            leave=False,
            postfix={"step": self.engine.step_count, "last loss": f"{previous:.4f}"},
        )
        for indices in batches[epoch.batches_done:]:
            bar.update(indices.shape[0])
            # Every rank augments the whole global batch with the shared generator, then keeps its part.
            images = augment_batch(train.images[indices], self.data.augment, self.augment_generator)
            share = self.replicas.part(indices.shape[0])
            images, labels = images[share], train.labels[indices[share]]
            with self.autocast():
                logits = self.forward_model(self.prepare(images))
                loss = self.batch_loss(logits, labels, indices.shape[0])
            (loss * self.replicas.world_size if self.replicas.distributed else loss).backward()
            if self.engine.step():
                self.replicas.check_masks({layer.name: layer.mask for layer in self.engine.layers},
                                          self.engine.step_count - 1)  # fmt: skip
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            epoch.loss_sum += loss.detach().float()
            epoch.correct += (logits.argmax(1) == labels).sum()
            epoch.batches_done += 1
            if self.replicas.agree_to_stop(self.stop.requested):
                break
        bar.close()
        epoch.seconds += time.perf_counter() - start
        if epoch.batches_done < len(batches):
            return None
        self.in_progress = None
        self.replicas.sum([epoch.loss_sum, epoch.correct])
        mean_loss = epoch.loss_sum.item() / self.steps_per_epoch
        self.wall_time += epoch.seconds
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
            "density": self.engine.overall_density(),
            "layer_densities": self.engine.layer_densities(),
            "mask_updates": self.engine.read_mask_updates(),
            "exploration": self.engine.overall_exploration(),
            "images_per_s": len(train) / epoch.seconds,
        }

    def batch_loss(self, logits: torch.Tensor, labels: torch.Tensor, global_batch: int) -> torch.Tensor:
        """The batch's mean loss; on several ranks, this rank's part of it (its summed loss over the global batch
        size), whose gradients DistributedDataParallel averages: times the world size, they sum to the mean's."""
        if not self.replicas.distributed:
            return self.criterion(logits, labels)
        return self.summed_criterion(logits, labels) / global_batch

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        inputs = normalise(images, self.data.mean, self.data.std)
        return inputs.contiguous(memory_format=torch.channels_last) if self.channels_last else inputs

    @torch.no_grad()
    def evaluate(self, split: Split) -> float:
        """Accuracy over the whole split from exact counts (never a mean of per-batch accuracies)."""
        self.replicas.share_batchnorm_statistics(self.model)
        self.model.eval()
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        part = self.replicas.part(len(split))  # each rank counts its part; the counts are summed
        for start in range(part.start, part.stop, self.recipe.eval_batch_size):
            stop = min(start + self.recipe.eval_batch_size, part.stop)
            with self.autocast():
                logits = self.model(self.prepare(split.images[start:stop]))
            correct += (logits.argmax(1) == split.labels[start:stop]).sum()
        self.model.train()
        self.replicas.sum([correct])
        return correct.item() / len(split)

    def summary(self, test_acc: float) -> dict[str, Any]:
        budget = self.method.budget([layer.name for layer in self.engine.layers])
        last = self.history[-1]
        return {
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "method": self.method.name,
            "val_acc": last["val_acc"],
            "test_acc": test_acc,
            "density": self.engine.overall_density(budget or None),
            "budgeted_layers": budget,
            "density_all_layers": self.engine.overall_density(),
            "layer_densities": self.engine.layer_densities(),
            "initial_density": self.engine.initial_density(),
            "exploration": self.engine.overall_exploration(),
            "layer_exploration": self.engine.exploration(),
            "flops": self.flops(),
            "width_multiplier": self.cfg.model.width if self.width is None else self.width,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "epochs": self.epochs,
            "steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "wall_time_s": self.wall_time,
            "cpu_threads": self.threads,
            "processes": self.replicas.world_size,
            "history": self.history,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


    def flops(self) -> dict[str, Any]:
        """Inference and training FLOPs of the run, integrated over the topologies it had."""
        reference_steps = self.recipe.epochs * self.steps_per_epoch
        return flop_summary(
            self.layer_flops,
            {layer.name: layer.size for layer in self.engine.layers},
            self.engine.topology_log,
            self.total_steps,
            reference_steps,
            self.reference_inference,
            self.method.dense_gradients,
            pretraining_flops(self.method, self.reference_inference, reference_steps),
        )


def run(cfg: DictConfig, output_dir: Path, wait_for_folder: bool = False) -> dict[str, Any]:
    """Train the configured run in ``output_dir``, or return its summary if it has already finished there.
    If another process trains in the folder, refuse, or with ``wait_for_folder`` (sweeps) wait for it and
    reuse its result. Under a launcher of several processes, this process trains its share of the run."""
    validate_run_options(cfg)
    replicas = Replicas.start(cfg.distributed, resolve_device(str(cfg.device)), int(cfg.train.batch_size))
    failed = True
    try:
        summary = train_or_reuse(cfg, Path(output_dir), replicas, wait_for_folder)
        failed = False
        return summary
    except RuntimeError as error:
        lost = peer_failure(error) if replicas.distributed and not isinstance(error, TrainingDiverged) else None
        if lost is None:
            raise
        raise lost from None
    finally:
        replicas.close(failed)


def train_or_reuse(cfg: DictConfig, output_dir: Path, replicas: Replicas, wait_for_folder: bool) -> dict[str, Any]:
    finished = read_summary(output_dir)
    replicas.require_same(finished is None, f"the processes of this run see different files in {output_dir}; "
                          "put output_root on a file system every node shares")  # fmt: skip
    if finished is None:
        trainer = Trainer(cfg, output_dir, replicas)  # validates everything before the folder is touched
        with folder_lock(output_dir, replicas, wait_for_folder):
            finished = read_summary(output_dir)  # finished by the process that held the lock
            if finished is None:
                return trainer.fit()
    current, saved = run_identity(OmegaConf.to_container(cfg, resolve=True)), run_identity(finished["config"])
    changed = sorted(key for key in saved.keys() | current.keys() if saved.get(key) != current.get(key))
    if changed:
        raise CheckpointError(
            f"{output_dir} holds a finished run of a different configuration (differs in: {', '.join(changed)}); "
            "use another output directory (hydra.run.dir=...)"
        )
    log.info("%s already holds this finished run; reusing its summary (delete the folder to train again)", output_dir)
    return finished


@contextmanager
def folder_lock(output_dir: Path, replicas: Replicas, wait: bool) -> Iterator[None]:
    """The run folder's lock, held by rank 0 for every rank of the run. Several ranks wait for a busy folder
    by asking again every few seconds, so that none of them blocks beyond the collectives' timeout."""
    if not replicas.distributed:
        with run_folder_lock(output_dir, wait=wait):
            yield
        return
    locked, busy, failed = 0, 1, 2
    with ExitStack() as stack:
        while True:
            outcome, problem = locked, None
            if replicas.is_main:
                try:
                    stack.enter_context(run_folder_lock(output_dir, wait=False))
                except RunFolderBusy as error:
                    outcome, problem = busy, error
                except Exception as error:  # told to the other ranks, then raised here
                    outcome, problem = failed, error
            decided = replicas.highest(outcome)
            if decided == locked:
                break
            if decided == busy and wait:
                log.info("%s is in use by another process; waiting for it to end", output_dir)
                time.sleep(5)
                continue
            raise problem or RunFolderBusy(f"{output_dir} could not be locked by this run's rank 0 (see its log)")
        yield
