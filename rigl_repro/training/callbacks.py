"""Hydra callbacks of the training entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

import rigl_repro.config  # noqa: F401  (registers the run_folder_name resolver in every job process)


class CreateOutputRoot(Callback):
    """Create ``output_root`` before a sweep starts: the Optuna sweeper opens its SQLite study there before
    any run has made the folder."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        Path(config.output_root).mkdir(parents=True, exist_ok=True)
