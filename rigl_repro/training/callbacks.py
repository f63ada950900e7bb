"""Hydra callbacks of the training entry point."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

import rigl_repro.config  # noqa: F401  (registers the run_dir resolver in every job process)


class CreateOutputRoot(Callback):
    """Create ``output_root`` before a run or sweep starts (the Optuna sweeper opens its study there before
    any run has made a folder); if it cannot be made, say so in one line and exit 2, before Hydra tries to
    write its logs there."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        create_output_root(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        create_output_root(config)


def create_output_root(config: DictConfig) -> None:
    try:
        Path(config.output_root).mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=config.output_root)
        probe.close()
    except OSError as error:
        print(f"error: output_root={config.output_root} cannot be written ({error.strerror or error}); "
              "choose a folder you can write to", file=sys.stderr)  # fmt: skip
        raise SystemExit(2) from None  # not an Exception: Hydra prints no traceback
