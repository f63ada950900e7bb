"""Hydra finds plugins only in the ``hydra_plugins`` namespace: this registers the project's sweepers
(``rigl_repro/sweeps``; configs in ``conf/hydra/sweeper``).

The grid sweeper is stored under Hydra's own name, ``hydra/sweeper=basic`` (and as ``grid``), replacing Hydra's
entry: Hydra scans its core plugins before this package, so every ``-m`` grid gets the project's error handling
while an experiment file (``override /hydra/sweeper: optuna``) or the command line (``hydra/sweeper=optuna``)
still chooses another sweeper by name. Overriding the group in ``conf/config.yaml`` would not do: an override in
the primary config wins over an experiment's.
"""

from hydra.core.config_store import ConfigStore

from rigl_repro.sweeps import GridSweeperBase, OptunaStudySweeperBase

GRID_SWEEPER = {"_target_": "hydra_plugins.rigl_repro_sweeper.GridSweeper", "max_batch_size": None, "params": None}
for _name in ("basic", "grid"):
    ConfigStore.instance().store(group="hydra/sweeper", name=_name, node=GRID_SWEEPER, provider="rigl_repro")


class GridSweeper(GridSweeperBase):
    """``-m`` grids with one-line errors and exit code 2 for failed runs."""


class OptunaStudySweeper(OptunaStudySweeperBase):
    """Optuna ask-and-tell over a study (stored: resumed exactly after a kill), any Optuna sampler and pruner."""
