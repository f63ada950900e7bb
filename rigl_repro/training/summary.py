"""A finished run's ``summary.json``: its accuracies, densities, mask dynamics, FLOPs and history, the one
record that reports, exports and sweeps read."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from torch import nn

from rigl_repro.flops.accounting import flop_summary, pretraining_flops
from rigl_repro.run.build import RunPlan
from rigl_repro.sparsity import SparseEngine
from rigl_repro.training.state import RunState


def run_flops(plan: RunPlan, engine: SparseEngine) -> dict[str, Any]:
    """Inference and training FLOPs of the run, integrated over the topologies it had."""
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


def run_summary(plan: RunPlan, engine: SparseEngine, model: nn.Module, state: RunState, test_acc: float,
                cpu_threads: int, processes: int) -> dict[str, Any]:  # fmt: skip
    """The summary of the finished run ``plan`` describes, trained with ``engine`` and ``model`` to ``state``,
    whose test accuracy is ``test_acc``."""
    method, config = plan.method, plan.config
    budget = method.budget([layer.name for layer in engine.layers])
    return {
        "config": config.resolved,
        "method": method.name,
        "val_acc": state.history[-1]["val_acc"],
        "test_acc": test_acc,
        "density": engine.overall_density(budget or None),
        "budgeted_layers": budget,
        "density_all_layers": engine.overall_density(),
        "layer_densities": engine.layer_densities(),
        "initial_density": engine.initial_density(),
        "exploration": engine.overall_exploration(),
        "layer_exploration": engine.exploration(),
        "flops": run_flops(plan, engine),
        "width_multiplier": config.model.options.get("width") if plan.width is None else plan.width,
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": plan.epochs,
        "steps": plan.total_steps,
        "steps_per_epoch": plan.steps_per_epoch,
        "wall_time_s": state.wall_time,
        "cpu_threads": cpu_threads,
        "processes": processes,
        "history": state.history,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
