"""A finished run's ``summary.json``: its accuracies, densities, mask dynamics, FLOPs and history, the one
record that reports, exports and sweeps read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from torch import nn

from rigl_repro.flops.accounting import flop_summary, pretraining_flops
from rigl_repro.run.build import RunPlan
from rigl_repro.sparsity import SparseEngine
from rigl_repro.sparsity.methods import SparseMethod
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


def budget_of(method: SparseMethod, engine: SparseEngine) -> list[str] | None:
    """The masked layers whose weights count towards the density target (``SparseMethod.budget``), or None
    for all of them: what ``density`` means in every history entry, the summary and the trackers."""
    return method.budget([layer.name for layer in engine.layers]) or None


def upgrade_densities(history: list[dict[str, Any]], sizes: Mapping[str, int], budget: list[str] | None) -> None:
    """Give the epochs of a checkpoint written before ``density`` meant the budgeted density (issue 25: it was
    the density over every masked layer) today's two entries: ``density_all_layers`` takes the old value and
    ``density`` is recounted over ``budget`` from the epoch's exact per-layer counts (``layer_densities`` times
    ``sizes``), so a resumed run's history has one meaning throughout. Epochs without per-layer densities
    (the earliest layout) keep their value, which is the budgeted one whenever every layer is budgeted."""
    names = list(budget or sizes)
    for entry in history:
        if "density_all_layers" in entry:
            continue
        entry["density_all_layers"] = entry["density"]
        layers = entry.get("layer_densities") or {}
        if names and all(name in layers for name in names):
            active = sum(round(layers[name] * sizes[name]) for name in names)
            entry["density"] = active / sum(sizes[name] for name in names)


def run_summary(plan: RunPlan, engine: SparseEngine, model: nn.Module, state: RunState, test_acc: float,
                cpu_threads: int, processes: int) -> dict[str, Any]:  # fmt: skip
    """The summary of the finished run ``plan`` describes, trained with ``engine`` and ``model`` to ``state``,
    whose test accuracy is ``test_acc``."""
    method, config = plan.method, plan.config
    budget = budget_of(method, engine)
    return {
        "config": config.resolved,
        "method": method.name,
        "val_acc": state.history[-1]["val_acc"],
        "test_acc": test_acc,
        "density": engine.overall_density(budget or None),
        "budgeted_layers": budget or [],
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


def summary_line(summary: Mapping[str, Any], folder: Any) -> str:
    """A finished run in one console line: its accuracies, density, training FLOPs relative to a dense run
    (``flops.train_relative``: the report's Figure 1 axis), training time and where its files are."""
    def percent(value: Any) -> str:
        return "-" if value is None else f"{100 * value:.2f}%"

    train_flops = (summary.get("flops") or {}).get("train_relative")
    flops = "-" if train_flops is None else f"{train_flops:.3g}x dense"
    return (f"val {percent(summary.get('val_acc'))}  test {percent(summary.get('test_acc'))}  density "
            f"{summary['density']:.4f}  training FLOPs {flops}  {summary.get('wall_time_s', 0):.1f} s  in {folder}")
