"""The training recipe (the ``train`` config group), validated, its parameter groups and its learning-rate
schedule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from torch import nn

from rigl_repro.errors import ConfigError, require_bool, require_choice, require_in_range, require_int
from rigl_repro.sparsity.schedules import scaled_steps

SWITCHES = ("auto", "on", "off")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """SGD with momentum and a stepped learning rate (report, 4.2), plus the training-length multiplier."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    decay_norm_and_bias: bool  # False: no weight decay on 1-D parameters (the report's code)
    lr_decay_factor: float
    lr_decay_every: int  # steps, before the multiplier
    warmup_steps: int
    pruning_warmup_steps: int  # the warm-up of the report's Pruning rows (conf/variant/pruning.yaml reads it)
    label_smoothing: float
    length_multiplier: float
    amp: str  # bf16 autocast: auto = on for CUDA
    channels_last: str
    compile: str  # torch.compile of the model (the masked optimizer step stays eager)
    eval_batch_size: int

    def __post_init__(self) -> None:
        require_int("train.epochs", self.epochs, 1)
        require_int("train.batch_size", self.batch_size, 1)
        require_int("train.eval_batch_size", self.eval_batch_size, 1)
        require_int("train.lr_decay_every", self.lr_decay_every, 1)
        require_int("train.warmup_steps", self.warmup_steps, 0)
        require_int("train.pruning_warmup_steps", self.pruning_warmup_steps, 0)
        require_in_range("train.lr", self.lr, 0.0, math.inf, low_open=True, high_open=True)
        require_in_range("train.momentum", self.momentum, 0.0, 1.0, high_open=True)
        require_in_range("train.weight_decay", self.weight_decay, 0.0, 1.0)
        require_in_range("train.lr_decay_factor", self.lr_decay_factor, 0.0, 1.0, low_open=True)
        require_in_range("train.label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        require_in_range("train.length_multiplier", self.length_multiplier, 0.0, 100.0, low_open=True)
        require_choice("train.amp", self.amp, SWITCHES)
        require_choice("train.channels_last", self.channels_last, SWITCHES)
        require_choice("train.compile", self.compile, SWITCHES)
        require_bool("train.nesterov", self.nesterov)
        require_bool("train.decay_norm_and_bias", self.decay_norm_and_bias)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Recipe:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ConfigError(f"train.{unknown[0]} is not a training option; the options are: {', '.join(known)}")
        missing = [name for name in known if name not in cfg]
        if missing:
            raise ConfigError(f"the train config lacks: {', '.join(missing)}")
        return cls(**dict(cfg))

    @property
    def total_epochs(self) -> int:
        """Epochs under the training-length multiplier."""
        return max(1, scaled_steps(self.epochs, self.length_multiplier))

    def decay_interval(self) -> int:
        """Steps between learning-rate decays under the training-length multiplier."""
        return max(1, scaled_steps(self.lr_decay_every, self.length_multiplier))

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """The optimizer's parameter groups: weight decay on every parameter, or, with
        ``decay_norm_and_bias: false``, none on 1-D parameters (normalisation weights and biases), as the
        report's ``_add_weight_decay`` (``sparselearning/utils/train_helper.py``) and Evci et al.'s
        kernel-only L2."""
        parameters = [p for p in model.parameters() if p.requires_grad]
        if self.decay_norm_and_bias:
            return [{"params": parameters, "weight_decay": self.weight_decay}]
        return [
            {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0},
            {"params": [p for p in parameters if p.ndim > 1], "weight_decay": self.weight_decay},
        ]


def learning_rate_factor(
    step: int, warmup_steps: int, steps_per_epoch: int, decay_every: int, decay_factor: float
) -> float:
    """Multiplier of the base learning rate for the batch ``step``, as the report's code schedules it
    (``main.py`` with ``WarmUpLR`` and ``StepLR`` of ``sparselearning/utils``):

    - a linear warm-up (Goyal et al. 2017), ``step / warmup_steps``, starting at 0, for the whole epochs
      that ``warmup_steps`` reaches into: the scheduler is chosen once per epoch, so 3,500 warm-up steps of
      352-step epochs last 3,520 steps and end at 3,520 / 3,500 of the base rate;
    - then the rate the warm-up reached, times ``decay_factor`` every ``decay_every`` steps counted from
      the end of the warm-up (the chained ``StepLR`` steps only after it): with 1,760 warm-up steps the
      drops come at steps 21,760, 41,760 and 61,760.
    """
    if warmup_steps <= 0:
        return decay_factor ** (step // decay_every)
    warmup_end = math.ceil(warmup_steps / steps_per_epoch) * steps_per_epoch
    if step < warmup_end:
        return step / warmup_steps
    return warmup_end / warmup_steps * decay_factor ** ((step - warmup_end) // decay_every)


def enabled(switch: str, on_cuda: bool) -> bool:
    """Resolve an ``auto``/``on``/``off`` switch: ``auto`` is on exactly on CUDA devices."""
    return switch == "on" or (switch == "auto" and on_cuda)
