"""The project's Hydra configuration (``conf/``) composed outside a Hydra application: by the scripts, the
report builder and the tests, which need the exact config ``main.py`` would run but no run folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: Sequence[str] = (), *, with_hydra: bool = False) -> DictConfig:
    """The config ``main.py`` composes from these command-line overrides (``with_hydra``: with its ``hydra``
    node, e.g. a sweep's parameters). Reads files only; writes nothing."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=with_hydra)
