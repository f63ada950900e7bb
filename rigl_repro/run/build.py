"""The composition root: a run's parts built from its typed config, in one place.

``plan_run`` describes a run without data or memory (the model on the meta device: its sparsifiable weights,
their dense FLOPs, the step counts the schedules are fractions of); FLOP planning (``scripts/flops.py``) reads
it. ``build_run`` builds the run itself (device, precision, data, model, optimizer, schedule, sparse engine) for
the trainer and the benchmarks; the processes that train it (``rigl_repro.training.processes``) place it.

The order of ``build_run`` is part of a run's identity: the global random stream is seeded once and then drawn
by the model's initialisation alone, so every step below that draws from it keeps its place.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import torch
from torch import nn

from rigl_repro.data import DataSplits, load_splits, normalise
from rigl_repro.flops.accounting import model_layer_flops
from rigl_repro.flops.counting import layer_flops
from rigl_repro.models import build_model, count_sparsifiable_weights, meta_model
from rigl_repro.run.checks import degenerate_warnings, refuse_degenerate
from rigl_repro.run.config import RunConfig, resolve_device
from rigl_repro.run.recipe import enabled, learning_rate_factor
from rigl_repro.run.threads import apply_thread_policy
from rigl_repro.sparsity import SparseEngine
from rigl_repro.sparsity.masks import weight_shapes
from rigl_repro.sparsity.methods.base import SparseMethod
from rigl_repro.sparsity.methods.dense import Dense
from rigl_repro.sparsity.schedules import schedule_length

log = logging.getLogger(__name__)


class Placement(Protocol):
    """What building a run asks of the processes that train it (``rigl_repro.training.processes``)."""

    uses_global_batchnorm: bool

    def device(self, requested: torch.device) -> torch.device: ...
    def main_first(self) -> AbstractContextManager[None]: ...
    def prepare_model(self, model: nn.Module) -> nn.Module: ...
    def wrap(self, model: nn.Module) -> nn.Module: ...
    def seed_own_stream(self, seed: int) -> None: ...


@dataclass
class RunPlan:
    """A run before it is built: its method, model shapes, FLOP inputs and step counts."""

    config: RunConfig
    method: SparseMethod
    width: float | None  # the model's width multiplier when the method sets it (small-dense), else None
    shapes: dict[str, tuple[int, ...]]  # every sparsifiable weight's shape, by parameter name
    layer_flops: dict[str, int]  # dense FLOPs per example of each of those weights, at the run's width
    reference_inference: float  # dense FLOPs per example of the full-width model: the "1x" of relative FLOPs
    train_size: int  # training images
    steps_per_epoch: int  # the last, partial batch is a step
    warnings: list[str] = field(default_factory=list)  # the degenerate settings it trains with (run.checks)

    @property
    def epochs(self) -> int:
        return self.config.train.total_epochs

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def reference_steps(self) -> int:
        """Steps of the 1x schedule (relative training FLOPs divide by its dense cost)."""
        return self.config.train.epochs * self.steps_per_epoch

    @property
    def schedule_steps(self) -> float:
        """The length mask schedules are fractions of: the report code's count, examples / batch size."""
        return schedule_length(self.epochs, self.train_size, self.config.train.batch_size)


def plan_run(config: RunConfig, train_size: int | None = None) -> RunPlan:
    """Plan ``config``'s run without data: ``train_size`` is the training images the data hold (default: the
    dataset's declared ``train_pool - val_size``, which ``load_splits`` makes sure the data hold).

    Settings that make the run degenerate are refused here, in one line naming the option, or recorded in the
    plan's ``warnings`` (``rigl_repro.run.checks``)."""
    method, dataset = config.method(), config.dataset
    train_size = dataset.train_size if train_size is None else train_size
    batch_size = config.train.batch_size
    options, classes = config.model.options, dataset.num_classes
    width = method.width_multiplier(lambda w: count_sparsifiable_weights(options, classes, w))
    model = meta_model(options, classes, width)
    flops = layer_flops(model, dataset.input_shape)
    reference = flops if width is None else model_layer_flops(options, classes, dataset.input_shape)
    plan = RunPlan(config, method, width, weight_shapes(model), flops, float(sum(reference.values())),
                   train_size, math.ceil(train_size / batch_size))  # fmt: skip
    refuse_degenerate(plan)
    plan.warnings = degenerate_warnings(plan)
    return plan


@dataclass(frozen=True)
class Precision:
    """How a run computes on its device: bf16 autocast and channels_last (both on by default on CUDA only)."""

    device_type: str
    amp: bool
    channels_last: bool

    def autocast(self) -> AbstractContextManager[Any]:
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.amp)

    @property
    def memory_format(self) -> torch.memory_format | None:
        return torch.channels_last if self.channels_last else None

    def prepare(self, images: torch.Tensor, data: DataSplits) -> torch.Tensor:
        """uint8 images as the model's inputs: normalised, in the run's memory format."""
        inputs = normalise(images, data.mean, data.std)
        return inputs.contiguous(memory_format=torch.channels_last) if self.channels_last else inputs


def select_kernels(deterministic: bool, on_cuda: bool) -> None:
    """Deterministic kernels, or the fastest ones (cuDNN autotuning on CUDA).

    These are process-wide settings, like the seed: every run sets all of them, so one run never inherits
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


@dataclass
class RunParts:
    """Everything a run trains with, built by ``build_run``."""

    plan: RunPlan
    device: torch.device
    precision: Precision
    threads: int
    data: DataSplits
    model: nn.Module  # the model with its masks: what is checkpointed and evaluated
    forward_model: nn.Module  # what a training step calls (the model, or its data-parallel wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    engine: SparseEngine
    criterion: nn.Module


def build_run(config: RunConfig, processes: Placement) -> RunParts:
    """Build ``config``'s run for this process (its device, its share of the model's wrapping)."""
    recipe, seed = config.train, config.seed
    device = processes.device(resolve_device(str(config.options.device)))
    on_cuda = device.type == "cuda"
    precision = Precision(device.type, enabled(recipe.amp, on_cuda), enabled(recipe.channels_last, on_cuda))
    select_kernels(config.options.deterministic, on_cuda)
    threads = apply_thread_policy(config.options.threads)
    torch.manual_seed(seed)
    # Planned before the data are read (or downloaded), so that a degenerate setting stops the run at once; the
    # data hold the declared training images (``load_splits`` checks), and planning draws no random numbers.
    plan = plan_run(config)
    with processes.main_first():  # one download into shared files, then every rank reads them
        data = load_splits(config.dataset.options, device)
    model = build_model(config.model.options, config.dataset.num_classes, plan.width)
    model = processes.prepare_model(model.to(device, memory_format=precision.memory_format))
    optimizer = torch.optim.SGD(
        recipe.parameter_groups(model),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        fused=on_cuda,  # one kernel for the whole parameter list
    )
    schedule = partial(learning_rate_factor, warmup_steps=recipe.warmup_steps, steps_per_epoch=plan.steps_per_epoch,
                       decay_every=recipe.decay_interval(), decay_factor=recipe.lr_decay_factor)  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    # A small-dense run's model is already narrowed (plan.width): the engine trains it densely.
    engine_method = plan.method if plan.width is None else Dense()
    engine = SparseEngine(model, optimizer, engine_method, plan.schedule_steps, seed=seed)
    processes.seed_own_stream(seed)
    # Not by default under SyncBatchNorm, whose collectives torch.compile has not been seen to handle here.
    if enabled(recipe.compile, on_cuda and not processes.uses_global_batchnorm):
        # In place, so parameter and mask names (and checkpoints) are unchanged. Static shapes: the full
        # batches keep their specialised kernels, and an epoch's last, smaller batch gets its own.
        model.compile(dynamic=False)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    for warning in plan.warnings:  # once the run is built: a setting refused while building it is its one line
        log.warning("%s", warning)
    return RunParts(plan, device, precision, threads, data, model, processes.wrap(model), optimizer, scheduler,
                    engine, criterion)  # fmt: skip


def evaluation_batches(size: int, batch_size: int, part: slice | None = None) -> Iterator[slice]:
    """Slices of at most ``batch_size`` over ``part`` (default: all ``size`` items)."""
    part = part or slice(0, size)
    for start in range(part.start, part.stop, batch_size):
        yield slice(start, min(start + batch_size, part.stop))


@torch.no_grad()
def count_correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, data: DataSplits,
                  precision: Precision, batch_size: int, part: slice | None = None) -> torch.Tensor:  # fmt: skip
    """How many of ``images[part]`` the model (in eval mode) classifies right, as a device tensor: exact
    counts, never a mean of per-batch accuracies. The trainer and the export check both evaluate this way."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=labels.device)
    for batch in evaluation_batches(len(labels), batch_size, part):
        with precision.autocast():
            logits = model(precision.prepare(images[batch], data))
        correct += (logits.argmax(1) == labels[batch]).sum()
    return correct


__all__ = ["Placement", "Precision", "RunParts", "RunPlan", "build_run", "count_correct", "plan_run", "select_kernels"]
