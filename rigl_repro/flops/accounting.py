"""FLOP figures of a finished run (its ``summary.json``) and of a configuration before any training.

Units: FLOPs per example. ``train_flops`` is the sum over every training step of one example's cost, so
multiplying by the batch size gives a run's total. Relative figures divide by the dense model of the same
architecture at full width trained for the 1x schedule: ``3 f_D`` per step times its number of steps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rigl_repro.flops.counting import layer_flops
from rigl_repro.flops.training import integrate_training_flops, topology_flops
from rigl_repro.models import meta_model
from rigl_repro.sparsity.methods.base import SparseMethod


def model_layer_flops(
    model_cfg: Mapping[str, Any], num_classes: int, input_shape: Sequence[int], width: float | None = None
) -> dict[str, int]:
    """Per-layer dense FLOPs of the configured model, built on the meta device (no memory, no data)."""
    return layer_flops(meta_model(model_cfg, num_classes, width), input_shape)


def pretraining_flops(method: SparseMethod, reference_inference: float, reference_steps: int) -> float:
    """Training FLOPs per example of the run a method starts from (lottery tickets: the run whose trained
    weights give the mask). Read from that run's ``summary.json`` when it sits beside the weights; otherwise
    a dense run of the 1x schedule is assumed. Zero for methods that start from scratch."""
    weights = getattr(method, "trained_weights", "")
    if not weights:
        return 0.0
    summary = Path(weights).parent / "summary.json"
    if summary.is_file():
        recorded = json.loads(summary.read_text()).get("flops", {}).get("train_flops")
        if recorded is not None:
            return float(recorded)
    return 3.0 * reference_inference * reference_steps


def flop_summary(
    flops: Mapping[str, int],
    sizes: Mapping[str, int],
    log: Sequence[tuple[int, Sequence[int]]],
    total_steps: int,
    reference_steps: int,
    reference_inference: float,
    dense_gradients: str,
    pretraining: float = 0.0,
) -> dict[str, Any]:
    """The FLOP entry of a run's summary: final inference FLOPs, training FLOPs integrated over ``log``
    (the engine's ``(first step, active counts)`` topologies; empty for unmasked models), both absolute
    and relative to the dense 1x reference, and the inference-FLOP trajectory sampled at every update."""
    masked = [name for name in flops if name in sizes]
    if log:
        unmasked = sum(value for name, value in flops.items() if name not in sizes)
        costs = [cost + unmasked for cost in topology_flops({n: flops[n] for n in masked}, sizes, log)]
        starts = [start for start, _ in log]
    else:
        costs, starts = [float(sum(flops.values()))], [0]
    own_dense = float(sum(flops.values()))
    train = integrate_training_flops(costs, starts, total_steps, own_dense, dense_gradients) + pretraining
    return {
        "dense_inference_flops": reference_inference,
        "dense_train_flops_per_step": 3.0 * reference_inference,
        "inference_flops": costs[-1],
        "inference_relative": costs[-1] / reference_inference,
        "train_flops": train,
        "train_relative": train / (3.0 * reference_inference * reference_steps),
        "pretraining_flops": pretraining,
        "trajectory": [[start, cost / reference_inference] for start, cost in zip(starts, costs)],
    }


def steps_per_epoch(train_examples: int, batch_size: int) -> int:
    """Optimisation steps per epoch; the last, partial batch counts as a step."""
    return math.ceil(train_examples / batch_size)
