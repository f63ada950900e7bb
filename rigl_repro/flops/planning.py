"""The FLOP and density table of a configuration, computed without data or training.

The topology is the configured layer-wise distribution; the schedule is the method's own for the
configured recipe. For methods whose layer densities stay fixed (dense, static, SET, RigL, lottery
tickets, small-dense) the figures are exact; for those whose densities move (pruning, SNFS, RigL with
redistribution) they assume the densities stay at the distribution's, and the run's ``summary.json``
holds the integrated values.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from rigl_repro.flops.accounting import flop_summary, model_layer_flops, pretraining_flops, steps_per_epoch
from rigl_repro.models import build_model, count_sparsifiable_weights
from rigl_repro.sparsity import build_method
from rigl_repro.sparsity.distributions import nonzero_counts
from rigl_repro.sparsity.masks import weight_shapes
from rigl_repro.sparsity.schedules import schedule_length
from rigl_repro.training.recipe import Recipe


def plan_flops(cfg: DictConfig) -> dict[str, Any]:
    """Per-layer shapes, densities and FLOPs, and the run's inference and training FLOP totals."""
    recipe = Recipe.from_config(OmegaConf.to_container(cfg.train, resolve=True))
    method = build_method(OmegaConf.to_container(cfg.masking, resolve=True))
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    dataset = cfg.dataset
    num_classes = int(dataset.num_classes)
    input_shape = (int(dataset.channels), int(dataset.image_size), int(dataset.image_size))
    width = method.width_multiplier(lambda w: count_sparsifiable_weights(model_cfg, num_classes, w))
    with torch.device("meta"):
        shapes = weight_shapes(build_model(model_cfg, num_classes, width))
    flops = model_layer_flops(model_cfg, num_classes, input_shape, width)
    reference = float(sum(model_layer_flops(model_cfg, num_classes, input_shape).values()))
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    counts = nonzero_counts(shapes, method.distribution_densities(shapes)) if method.masked else sizes

    train_size = int(dataset.train_pool) - int(dataset.val_size)
    per_epoch = steps_per_epoch(train_size, recipe.batch_size)
    total_steps, reference_steps = recipe.total_epochs * per_epoch, recipe.epochs * per_epoch
    method.plan(schedule_length(recipe.total_epochs, train_size, recipe.batch_size))
    updates = [step for step in range(total_steps) if method.is_update_step(step)]
    ordered = [counts[name] for name in shapes]
    log = [(0, ordered)] + [(step + 1, ordered) for step in updates] if method.masked else []
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
        "model": model_cfg["name"],
        "dataset": dataset.name,
        "method": method.name,
        "distribution": method.distribution if method.masked else None,
        "density": sum(counts.values()) / sum(sizes.values()),
        "width_multiplier": width,
        "steps": total_steps,
        "update_steps": len(updates),
        "exact": method.keeps_layer_densities(),
        "layers": layers,
        "totals": summary,
    }
