"""Train one configured run (or a sweep with -m): ``python main.py dataset=cifar10 masking=rigl masking.density=0.1``.

Returns the validation accuracy, so Hydra's Optuna sweeper can maximise it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rigl_repro.errors import ConfigError
from rigl_repro.training import TrainingDiverged, run

log = logging.getLogger("main")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, output_dir)
    except ConfigError as error:
        log.error("error: %s", error)
        sys.exit(2)
    except TrainingDiverged as error:
        log.error("error: %s", error)
        sys.exit(3)
    log.info(
        "done: test accuracy %.2f%%, density %.4f, summary in %s",
        100 * summary["test_acc"], summary["density"], output_dir / "summary.json",
    )  # fmt: skip
    return summary["val_acc"]


if __name__ == "__main__":
    main()
