"""A finished run's ``summary.json``: its accuracies, densities, mask dynamics, FLOPs and history, the one
record that reports, exports and sweeps read."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rigl_repro.flops.accounting import flop_summary, pretraining_flops

if TYPE_CHECKING:
    from rigl_repro.training.trainer import Trainer


def run_flops(trainer: Trainer) -> dict[str, Any]:
    """Inference and training FLOPs of the run, integrated over the topologies it had."""
    plan, engine = trainer.plan, trainer.engine
    return flop_summary(
        plan.layer_flops,
        {layer.name: layer.size for layer in engine.layers},
        engine.topology_log,
        plan.total_steps,
        plan.reference_steps,
        plan.reference_inference,
        plan.method.dense_gradients,
        pretraining_flops(plan.method, plan.reference_inference, plan.reference_steps),
    )


def run_summary(trainer: Trainer, test_acc: float) -> dict[str, Any]:
    """The summary of ``trainer``'s finished run, whose test accuracy is ``test_acc``."""
    engine, method, config = trainer.engine, trainer.method, trainer.config
    budget = method.budget([layer.name for layer in engine.layers])
    return {
        "config": config.resolved,
        "method": method.name,
        "val_acc": trainer.history[-1]["val_acc"],
        "test_acc": test_acc,
        "density": engine.overall_density(budget or None),
        "budgeted_layers": budget,
        "density_all_layers": engine.overall_density(),
        "layer_densities": engine.layer_densities(),
        "initial_density": engine.initial_density(),
        "exploration": engine.overall_exploration(),
        "layer_exploration": engine.exploration(),
        "flops": run_flops(trainer),
        "width_multiplier": config.model.options.get("width") if trainer.plan.width is None else trainer.plan.width,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "epochs": trainer.epochs,
        "steps": trainer.total_steps,
        "steps_per_epoch": trainer.steps_per_epoch,
        "wall_time_s": trainer.state.wall_time,
        "cpu_threads": trainer.threads,
        "processes": trainer.processes.world_size,
        "history": trainer.history,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
