"""The typed run config: Hydra's composed config, read once, validated once, one dataclass per part.

``RunConfig.from_hydra(cfg)`` is the only place that turns ``cfg.*`` into values the training side uses; every
bad value stops there, in one line naming the option, before any file is touched. Its ``identity`` and
``changes_from`` are those of ``rigl_repro.run.identity``, which reports and exports apply to saved configs.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from rigl_repro.data.splits import validate_dataset_options
from rigl_repro.errors import ConfigError, require_bool, require_choice, require_int
from rigl_repro.loggers import validate_logger_options
from rigl_repro.run.identity import identity_changes, run_identity
from rigl_repro.run.recipe import Recipe
from rigl_repro.run.threads import validate_threads
from rigl_repro.sparsity import build_method
from rigl_repro.sparsity.methods.base import SparseMethod

BACKENDS = ("auto", "nccl", "gloo")
RUN_OPTIONS = ("seed", "device", "threads", "deterministic")  # top-level options of one run
UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}


def signal_numbers(names: Sequence[str] | str | None) -> list[signal.Signals]:
    """``["SIGUSR2"]`` (or ``"USR2"``) -> the signals, with a one-line error for anything that is not a list of
    signals a process can catch here."""
    if names is None:
        return []
    if isinstance(names, (int, float)) or not isinstance(names, (str, Sequence)):
        raise ConfigError(f"checkpoint.on_signals={names!r} is invalid; expected a list of signal names such as "
                          "[SIGUSR2], or [] for none")  # fmt: skip
    numbers = []
    for name in [names] if isinstance(names, str) else names:
        key = str(name).upper()
        number = signal.Signals.__members__.get(key if key.startswith("SIG") else f"SIG{key}")
        if number is None or number in UNCATCHABLE:
            reason = "cannot be caught" if number is not None else "is not a signal here"
            raise ConfigError(
                f"checkpoint.on_signals contains {name!r}, which {reason}; expected names such as SIGUSR2 or "
                "SIGTERM, or [] for none"
            )
        numbers.append(number)
    return numbers


def typed(cls: type, options: Mapping[str, Any], group: str) -> Any:
    """``cls(**options)``, with a one-line error naming an option the ``group`` does not have."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{group}.{unknown[0]} is not an option; the options are: {', '.join(known)}")
    return cls(**options)


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


MAX_SEED = 2**32 - 2  # seed + 1 seeds the augmentation, and NumPy takes seeds < 2^32

@dataclass(frozen=True)
class DatasetConfig:
    """The ``dataset`` group: what the run reads by name, and every option for the dataset's loader. The sizes
    are read when a run is planned; the loader checks them against the data (``load_splits``)."""

    name: str
    num_classes: int
    channels: int
    image_size: int
    options: dict[str, Any]

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> DatasetConfig:
        validate_dataset_options(options)
        return cls(str(options["name"]), int(options["num_classes"]), int(options["channels"]),
                   int(options["image_size"]), dict(options))  # fmt: skip

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.channels, self.image_size, self.image_size

    @property
    def train_size(self) -> int:
        """Training images once the validation set is held out (the planned count; the data confirm it)."""
        return int(self.options["train_pool"]) - int(self.options["val_size"])


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` group: a name, a width multiplier and the model's own options (``build_model``)."""

    name: str
    options: dict[str, Any]


@dataclass(frozen=True)
class DistributedConfig:
    """``distributed.*``: how several processes of one run talk (``rigl_repro.training.distributed``)."""

    backend: str = "auto"
    sync_batchnorm: bool = True
    timeout_s: int = 600

    def __post_init__(self) -> None:
        require_choice("distributed.backend", self.backend, BACKENDS)
        require_bool("distributed.sync_batchnorm", self.sync_batchnorm)
        require_int("distributed.timeout_s", self.timeout_s, 1)


@dataclass(frozen=True)
class CheckpointConfig:
    """``checkpoint.*``: how often to save, whether to resume, and the signals that save mid-epoch."""

    every_epochs: int = 1
    resume: bool = True
    on_signals: tuple[str, ...] = ("SIGUSR2",)

    def __post_init__(self) -> None:
        require_int("checkpoint.every_epochs", self.every_epochs, 1)
        require_bool("checkpoint.resume", self.resume)
        signal_numbers(self.on_signals)


@dataclass(frozen=True)
class RunOptions:
    """The run's own options: its seed and where and how it computes (none of them but the seed changes
    what it computes)."""

    seed: int = 0
    device: str = "auto"
    threads: Any = "auto"
    deterministic: bool = False

    def __post_init__(self) -> None:
        require_int("seed", self.seed, 0, MAX_SEED)
        require_bool("deterministic", self.deterministic)
        validate_threads(self.threads)
        resolve_device(str(self.device))


@dataclass(frozen=True)
class RunConfig:
    """One run, as the composed config describes it: each part typed and validated."""

    dataset: DatasetConfig
    model: ModelConfig
    train: Recipe
    masking: dict[str, Any]  # the method's options (``build_method`` makes a fresh method from them per run)
    distributed: DistributedConfig
    logger: dict[str, Any]
    checkpoint: CheckpointConfig
    options: RunOptions
    resolved: dict[str, Any]  # the whole resolved config: saved in checkpoints, summaries and exports

    @classmethod
    def from_hydra(cls, cfg: DictConfig | Mapping[str, Any]) -> RunConfig:
        """Read and validate a composed config (Hydra's, or the same resolved as a plain mapping)."""
        resolved = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        config = cls(
            dataset=DatasetConfig.from_options(resolved["dataset"]),
            model=ModelConfig(str(resolved["model"]["name"]), dict(resolved["model"])),
            train=Recipe.from_config(resolved["train"]),
            masking=dict(resolved["masking"]),
            distributed=typed(DistributedConfig, resolved["distributed"], "distributed"),
            logger=dict(resolved["logger"]),
            checkpoint=typed(CheckpointConfig, resolved["checkpoint"], "checkpoint"),
            options=RunOptions(**{key: resolved[key] for key in RUN_OPTIONS if key in resolved}),
            resolved=resolved,
        )
        config.method()  # refuses an unknown method or option now, before anything is built
        validate_logger_options(config.logger)
        return config

    @property
    def seed(self) -> int:
        return int(self.options.seed)

    def method(self) -> SparseMethod:
        """A fresh instance of the run's sparse-training method (methods hold per-run state)."""
        return build_method(self.masking)

    def identity(self) -> dict[str, Any]:
        """What determines this run's results (``rigl_repro.run.identity.run_identity``)."""
        return run_identity(self.resolved)

    def changes_from(self, saved: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
        """How this run differs from the run of a saved config: ``(option, saved, this)`` per option."""
        return identity_changes(saved, self.resolved)
