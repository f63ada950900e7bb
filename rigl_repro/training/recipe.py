"""The training recipe (the ``train`` config group), validated, and its learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

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
    lr_decay_factor: float
    lr_decay_every: int  # steps, before the multiplier
    warmup_epochs: float
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
        require_in_range("train.lr", self.lr, 0.0, math.inf, low_open=True, high_open=True)
        require_in_range("train.momentum", self.momentum, 0.0, 1.0, high_open=True)
        require_in_range("train.weight_decay", self.weight_decay, 0.0, 1.0)
        require_in_range("train.lr_decay_factor", self.lr_decay_factor, 0.0, 1.0, low_open=True)
        require_in_range("train.warmup_epochs", self.warmup_epochs, 0.0, math.inf, high_open=True)
        require_in_range("train.label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        require_in_range("train.length_multiplier", self.length_multiplier, 0.0, 100.0, low_open=True)
        require_choice("train.amp", self.amp, SWITCHES)
        require_choice("train.channels_last", self.channels_last, SWITCHES)
        require_choice("train.compile", self.compile, SWITCHES)
        require_bool("train.nesterov", self.nesterov)

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


def learning_rate_factor(step: int, warmup_steps: int, decay_every: int, decay_factor: float) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up over ``warmup_steps`` (Goyal et al.
    2017, as the report's CIFAR-100 recipe), times ``decay_factor`` every ``decay_every`` steps."""
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warmup * decay_factor ** (step // decay_every)


def enabled(switch: str, on_cuda: bool) -> bool:
    """Resolve an ``auto``/``on``/``off`` switch: ``auto`` is on exactly on CUDA devices."""
    return switch == "on" or (switch == "auto" and on_cuda)
