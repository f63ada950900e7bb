"""The FLOP and density table of a configuration, computed without data or training.

The topology is the configured layer-wise distribution; the schedule is the method's own for the
configured recipe. For methods whose layer densities stay fixed (dense, static, SET, RigL, lottery
tickets, small-dense) the figures are exact; for those whose densities move (pruning, SNFS, RigL with
redistribution) they assume the densities stay at the distribution's, and the run's ``summary.json``
holds the integrated values.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rigl_repro.flops.accounting import flop_summary, pretraining_flops

if TYPE_CHECKING:  # the plan is built by the composition root, a layer above this one
    from rigl_repro.run.build import RunPlan


def plan_flops(plan: RunPlan) -> dict[str, Any]:
    """Per-layer shapes, densities and FLOPs, and the run's inference and training FLOP totals, for the run
    ``rigl_repro.run.build.plan_run`` planned."""
    method, shapes, flops = plan.method, plan.shapes, plan.layer_flops
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    counts = method.layer_counts(shapes) if method.masked else sizes
    total_steps, reference_steps = plan.total_steps, plan.reference_steps
    method.plan(plan.schedule_steps)
    updates = [step for step in range(total_steps) if method.is_update_step(step)]
    ordered = [counts[name] for name in shapes]
    log = [(0, ordered)] + [(step + 1, ordered) for step in updates] if method.masked else []
    reference = plan.reference_inference
    summary = flop_summary(
        flops, sizes if method.masked else {}, log, total_steps, reference_steps, reference,
        method.dense_gradients, pretraining_flops(method, reference, reference_steps),
    )  # fmt: skip
    summary.pop("trajectory")
    layers = [
        {
            "name": name,
            "shape": list(shape),
            "size": sizes[name],
            "density": counts[name] / sizes[name],
            "dense_flops": flops[name],
            "flops": flops[name] * counts[name] / sizes[name],
        }
        for name, shape in shapes.items()
    ]
    return {
        "model": plan.config.model.name,
        "dataset": plan.config.dataset.name,
        "method": method.name,
        "distribution": method.distribution if method.masked else None,
        "density": sum(counts.values()) / sum(sizes.values()),
        "width_multiplier": plan.width,
        "steps": total_steps,
        "update_steps": len(updates),
        "exact": method.keeps_layer_densities(),
        "layers": layers,
        "totals": summary,
    }
