"""Hydra finds plugins only in the ``hydra_plugins`` namespace: this registers the project's sweepers
(``rigl_repro/sweeps``; configs in ``conf/hydra/sweeper``)."""

from rigl_repro.sweeps import GridSweeperBase, OptunaStudySweeperBase


class GridSweeper(GridSweeperBase):
    """``-m`` grids with one-line errors and exit code 2 for failed runs."""


class OptunaStudySweeper(OptunaStudySweeperBase):
    """Optuna ask-and-tell over a stored study, resumed exactly after a kill."""
