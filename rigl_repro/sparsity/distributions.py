"""Layer-wise density distributions: how a global density target is split across layers.

These are the "initialisations" of the report (section 3, "Mask Initialization"): Uniform (the tables'
"Random"), Erdos-Renyi (ER) and Erdos-Renyi-Kernel (ERK), plus an explicit per-layer map used for the
re-initialisation rows of Table 5. Every function here is pure: it maps weight shapes to densities.

Shapes follow PyTorch's layout: a conv weight is ``(out, in, *kernel)``, a linear weight ``(out, in)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rigl_repro.errors import ConfigError, require_choice, require_in_range

DISTRIBUTIONS = ("uniform", "er", "erk", "custom")

Shapes = Mapping[str, Sequence[int]]


def uniform_densities(shapes: Shapes, density: float, input_layer: str | None = None) -> dict[str, float]:
    """The report's "Uniform"/"Random": every layer at ``density``, except the first, which stays dense.

    As in the original authors' code, the first layer (``input_layer``, the one that reads the input; by
    default the first of ``shapes``) is left out of the budget: the other layers alone meet the target, so
    the whole network is slightly denser than ``density``. A model with a single masked layer has no other
    layer to carry the budget, so that layer is sparse.
    """
    budget = budgeted_layers("uniform", shapes, input_layer)
    return {name: (density if name in budget else 1.0) for name in shapes}


def _erdos_renyi_score(shape: Sequence[int], with_kernel: bool) -> float:
    """Raw ER score of one layer: (sum of dims) / (product of dims); ER uses the channel dims only."""
    dims = list(shape) if with_kernel else list(shape[:2])
    return sum(dims) / math.prod(dims)


def erdos_renyi_densities(
    shapes: Shapes, density: float, *, with_kernel: bool = True, power_scale: float = 1.0
) -> dict[str, float]:
    """ER (``with_kernel=False``) or ERK densities (report, section 3; Evci et al. 2020, appendix).

    Layer l gets density ``eps * raw_l`` with ``raw_l = (sum(dims_l) / prod(dims_l)) ** power_scale`` and
    ``eps`` solving ``sum_l eps * raw_l * N_l = density * N``. While the densest layer would exceed 1,
    every layer with the largest raw score is made dense, its weights are taken out of the budget and
    ``eps`` is solved again (the overflow loop of the original code).
    """
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: _erdos_renyi_score(shape, with_kernel) ** power_scale for name, shape in shapes.items()}
    target_nonzeros = density * sum(sizes.values())
    dense: set[str] = set()
    while True:
        sparse = [name for name in shapes if name not in dense]
        if not sparse:
            return {name: 1.0 for name in shapes}
        budget = target_nonzeros - sum(sizes[name] for name in dense)
        eps = budget / sum(raw[name] * sizes[name] for name in sparse)
        top_score = max(raw[name] for name in sparse)
        if eps * top_score <= 1.0:
            return {name: (1.0 if name in dense else eps * raw[name]) for name in shapes}
        dense.update(name for name in sparse if raw[name] == top_score)


def validate_custom_densities(shapes: Shapes, custom: Mapping[str, float] | None) -> dict[str, float]:
    """Check an explicit per-layer density map against the model's masked layers and return it."""
    if not custom:
        raise ConfigError("masking.distribution=custom needs masking.custom_densities: a map layer -> density")
    unknown = sorted(set(custom) - set(shapes))
    if unknown:
        raise ConfigError(
            f"masking.custom_densities names layers the model lacks: {', '.join(unknown)}; "
            f"the model's masked layers are: {', '.join(shapes)}"
        )
    missing = [name for name in shapes if name not in custom]
    if missing:
        raise ConfigError(f"masking.custom_densities has no density for: {', '.join(missing)}")
    return {
        name: require_in_range(f"masking.custom_densities[{name}]", custom[name], 0.0, 1.0, low_open=True)
        for name in shapes
    }


def layer_densities(
    distribution: str,
    shapes: Shapes,
    density: float,
    *,
    erk_power_scale: float = 1.0,
    custom_densities: Mapping[str, float] | None = None,
    input_layer: str | None = None,
) -> dict[str, float]:
    """Per-layer densities for one of ``DISTRIBUTIONS`` at the global ``density`` (``input_layer``: Uniform's
    dense first layer, by default the first of ``shapes``)."""
    require_choice("masking.distribution", distribution, DISTRIBUTIONS)
    if distribution == "uniform":
        return uniform_densities(shapes, density, input_layer)
    if distribution == "er":
        return erdos_renyi_densities(shapes, density, with_kernel=False)
    if distribution == "erk":
        return erdos_renyi_densities(shapes, density, with_kernel=True, power_scale=erk_power_scale)
    return validate_custom_densities(shapes, custom_densities)


def budgeted_layers(distribution: str, shapes: Shapes, input_layer: str | None = None) -> list[str]:
    """The layers whose weights count towards the density target: Uniform leaves out the first,
    ``input_layer`` (the one that reads the input, ``rigl_repro.sparsity.tracing``), by default the first of
    ``shapes``."""
    names = list(shapes)
    if distribution != "uniform" or len(names) < 2:
        return names
    first = input_layer if input_layer in shapes else names[0]
    return [name for name in names if name != first]


def nonzero_counts(shapes: Shapes, densities: Mapping[str, float]) -> dict[str, int]:
    """Exact number of active weights per layer: ``round(density * size)``, at least one weight.

    Rounding to the nearest integer keeps the overall density within one weight per layer of the target.
    """
    counts = {}
    for name, shape in shapes.items():
        size = math.prod(shape)
        counts[name] = min(size, max(1, math.floor(densities[name] * size + 0.5)))
    return counts
