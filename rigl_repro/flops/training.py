"""Training FLOPs of sparse methods, integrated over the topologies a run actually had.

Per example and step (Evci et al. 2020, appendix H; report, section 5.1), with f the sparse forward cost
at that step's densities and f_D the dense one:

- a step that needs no dense gradient costs 3 f: the forward pass, the backward pass for activations and
  the weight gradients (dense training, static, SET, lottery tickets, pruning: f follows the densities);
- a step that needs the dense weight gradient costs 2 f + f_D: RigL's mask-update steps, every SNFS step.

For RigL with constant densities this gives Evci et al.'s (3 f_S dT + 2 f_S + f_D) / (dT + 1) per step
while masks still change (every dT-th step is an update here, so the exact average over a cycle is
((dT - 1) 3 f_S + 2 f_S + f_D) / dT), and 3 f_S after T_end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rigl_repro.flops.counting import inference_flops

DENSE_GRADIENTS = ("never", "update_steps", "every_step")


def step_cost(sparse: float, dense: float, needs_dense_gradient: bool) -> float:
    """FLOPs per example of one training step: ``2 f + f_D`` with a dense gradient, else ``3 f``."""
    return 2 * sparse + dense if needs_dense_gradient else 3 * sparse


def topology_flops(
    flops: Mapping[str, int], sizes: Mapping[str, int], log: Sequence[tuple[int, Sequence[int]]]
) -> list[float]:
    """Inference FLOPs per example of each topology in ``log`` (``(first step, active counts)`` entries,
    counts in the order of ``flops``); layers that ``log`` does not cover count as dense."""
    names = list(flops)
    result = []
    for _, counts in log:
        densities = {name: count / sizes[name] for name, count in zip(names, counts)}
        result.append(inference_flops(flops, densities))
    return result


def integrate_training_flops(
    topology_costs: Sequence[float],
    starts: Sequence[int],
    total_steps: int,
    dense: float,
    dense_gradients: str,
) -> float:
    """Total training FLOPs per example over ``total_steps`` steps.

    ``starts[i]`` is the first step of topology ``i`` and ``topology_costs[i]`` its inference FLOPs; every
    topology after the first was made by an update on the step just before it starts, and that step ran
    with the previous topology (updates change the masks after the step's forward and backward passes).
    """
    if dense_gradients not in DENSE_GRADIENTS:
        raise ValueError(f"dense_gradients must be one of {DENSE_GRADIENTS}, got {dense_gradients!r}")
    if not starts or starts[0] != 0:
        raise ValueError("the first topology must start at step 0")
    every = dense_gradients == "every_step"
    total = 0.0
    for index, (start, sparse) in enumerate(zip(starts, topology_costs)):
        end = starts[index + 1] if index + 1 < len(starts) else total_steps
        steps = max(0, min(end, total_steps) - start)
        if steps == 0:
            continue
        update_last = index + 1 < len(starts) and end <= total_steps
        plain = steps - 1 if update_last else steps
        total += plain * step_cost(sparse, dense, every)
        if update_last:
            total += step_cost(sparse, dense, every or dense_gradients == "update_steps")
    return total
