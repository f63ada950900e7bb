"""Sweeps: the grid sweeper behind ``-m`` (one-line errors), Optuna studies that a killed sweep resumes
without losing or repeating trials and that refuse a command asking for another sweep, and the rules on seeds.

The sweepers are imported on first use, not with the package: Hydra's plugin scan executes its own
``BasicSweeper`` module again, so a subclass defined before the scan (when ``main.py`` imports
``rigl_repro.sweeps.seeds``) would no longer be one of the class Hydra instantiates.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "GridSweeperBase": "rigl_repro.sweeps.grid",
    "OptunaStudySweeperBase": "rigl_repro.sweeps.optuna_study",
    "finished_trials": "rigl_repro.sweeps.optuna_study",
    "search_space": "rigl_repro.sweeps.optuna_study",
    "check_trial_seeds": "rigl_repro.sweeps.seeds",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``rigl_repro.sweeps.X``: the export, imported from its module when first asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
