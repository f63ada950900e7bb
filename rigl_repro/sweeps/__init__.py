"""Sweeps: the grid sweeper behind ``-m`` (one-line errors) and Optuna studies that a killed sweep resumes
without losing or repeating trials."""

from rigl_repro.sweeps.grid import GridSweeperBase
from rigl_repro.sweeps.optuna_study import OptunaStudySweeperBase, finished_trials, search_space

__all__ = ["GridSweeperBase", "OptunaStudySweeperBase", "finished_trials", "search_space"]
