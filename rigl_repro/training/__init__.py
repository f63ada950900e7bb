"""The training loop: recipe, checkpoints, tracking and the trainer."""

from rigl_repro.training.trainer import Trainer, TrainingDiverged, run

__all__ = ["Trainer", "TrainingDiverged", "run"]
