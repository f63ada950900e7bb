"""SRigL (Lasby et al. 2024, "Dynamic Sparse Training with Structured Sparsity"; calgaryml/condensed-sparsity,
``src/rigl_torch/rigl_constant_fan.py``): RigL under constant fan-in, with the ablation of neurons that hold too
few salient weights.

At every update, per layer (its code's ``_update_mask``, ``_get_neurons_to_ablate``):

1. ``n_prune = floor(f(t) x n_active)`` (the cosine drop fraction, ``drop_rounding: floor`` as its code) and
   ``n_keep = n_active - n_prune``.
2. Salient weights: the union of the ``n_keep`` largest |w| and the ``n_prune`` largest |dense gradient| of the
   whole layer. A neuron holding fewer than the threshold is ablated: ``min_salient_weights_per_neuron`` itself
   when it is 1 or more, else ``max(1, floor(min_salient_weights_per_neuron x F))``, with F the layer's
   constant fan-in before ablation (``use_sparse_const_fan_in_for_ablation``, its code's default in its
   configs) or the dense fan-in. The threshold is lowered where it would leave fewer than
   ``ceil(n_active / dense fan-in) + 1`` neurons; ablation is decided afresh at every update, so an ablated
   neuron can come back.
3. The live neurons share the layer's budget (its initial count): ``fan_in = floor(budget / live)``, at most
   the dense fan-in.
4. Keep the ``n_keep`` largest |w| of the layer, the ablated neurons' below every other, and trim every neuron
   to ``fan_in``; grow every live neuron back to ``fan_in`` by its largest |dense gradient|. A connection
   dropped and grown back keeps its weight (``regrown: keep``), a new one starts at zero.

The ablation reads each layer's salient counts from the device once per update (never per step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rigl_repro.errors import ConfigError, require_bool, require_in_range
from rigl_repro.sparsity.masks import top_k_mask
from rigl_repro.sparsity.methods.rigl import RigL
from rigl_repro.sparsity.schedules import cosine_drop_fraction, drop_count, schedule_step
from rigl_repro.sparsity.structure import FAN_IN, MaskStructure, NeuronTargets, rows_and_fan_in


@dataclass(kw_only=True, eq=False)
class SRigL(RigL):
    """RigL with constant fan-in and dynamic neuron ablation (``conf/masking/srigl.yaml``)."""

    name = "srigl"
    structure: str = FAN_IN
    distribution: str = "erk"
    drop_rounding: str = "floor"
    regrown: str = "keep"
    adjust_prune_rate: bool = False
    dynamic_ablation: bool = True
    min_salient_weights_per_neuron: float = 0.05
    use_sparse_const_fan_in_for_ablation: bool = True

    def __post_init__(self) -> None:
        if self.structure != FAN_IN:  # before the shared checks, whose advice would be for another method
            raise ConfigError(f"masking.structure={self.structure}: SRigL keeps a constant fan-in; use "
                              "masking.structure=fan_in, or masking=rigl for another structure")  # fmt: skip
        super().__post_init__()
        require_bool("masking.dynamic_ablation", self.dynamic_ablation)
        require_bool("masking.use_sparse_const_fan_in_for_ablation", self.use_sparse_const_fan_in_for_ablation)
        require_in_range("masking.min_salient_weights_per_neuron", self.min_salient_weights_per_neuron, 0.0,
                         math.inf)  # fmt: skip

    def setup(self, model, layers, optimizer, total_steps, generator) -> None:  # type: ignore[override]
        super().setup(model, layers, optimizer, total_steps, generator)
        self.budgets = self.initial_counts()  # what the live neurons of each layer share
        self.structures: list[MaskStructure] = [self.mask_structure] * len(layers)

    def keeps_layer_densities(self) -> bool:
        return not self.dynamic_ablation  # ablation leaves floor(budget / live) x live, at most live - 1 fewer

    def update_structure(self, index: int) -> MaskStructure:
        return self.structures[index]

    def drop_counts(self, step: int) -> list[int]:
        fraction = cosine_drop_fraction(schedule_step(step, self.update_timing), self.alpha, self.t_end)
        counts = []
        for index, (layer, updated) in enumerate(zip(self.layers, self.updated)):
            n_prune = drop_count(fraction, layer.n_active, self.drop_rounding) if updated else 0
            counts.append(n_prune)
            if n_prune:
                self.structures[index] = self.neuron_targets(layer, self.budgets[index], n_prune)
        return counts

    def neuron_targets(self, layer, budget: int, n_prune: int) -> NeuronTargets:
        """The live neurons and their fan-in for this update of ``layer`` (step 2 and 3 of the module's
        docstring)."""
        shape = tuple(layer.weight.shape)
        rows, dense_fan_in = rows_and_fan_in(shape)
        device = layer.weight.device
        live = torch.ones(rows, dtype=torch.bool, device=device)
        if self.dynamic_ablation and self.min_salient_weights_per_neuron > 0:
            grad = layer.weight.grad if layer.weight.grad is not None else torch.zeros_like(layer.weight)
            n_keep = layer.n_active - n_prune
            salient = top_k_mask(layer.weight.detach().abs(), n_keep) | top_k_mask(grad.abs(), n_prune)
            per_neuron = salient.reshape(rows, -1).sum(dim=1)
            live = per_neuron >= self.ablation_threshold(per_neuron, budget, rows, dense_fan_in, layer.n_active)
            if budget // max(1, int(live.sum())) > dense_fan_in:  # too few left for the budget: the fewest that can
                fewest = torch.sort(per_neuron, descending=True).indices[: math.ceil(layer.n_active / dense_fan_in)]
                live = torch.zeros_like(live).index_fill_(0, fewest, True)
        fan_in = min(dense_fan_in, budget // max(1, int(live.sum())))
        return NeuronTargets(live=live, fan_in=fan_in)

    def ablation_threshold(self, per_neuron: torch.Tensor, budget: int, rows: int, dense_fan_in: int,
                           n_active: int) -> int:  # fmt: skip
        """The salient weights a neuron needs to stay, lowered so that enough neurons stay to hold the
        layer's weights."""
        if self.min_salient_weights_per_neuron >= 1:
            threshold = int(self.min_salient_weights_per_neuron)
        else:
            fan_in = budget // rows if self.use_sparse_const_fan_in_for_ablation else dense_fan_in
            threshold = max(1, int(self.min_salient_weights_per_neuron * fan_in))
        floor_rank = math.ceil(n_active / dense_fan_in)
        if floor_rank < rows:
            ranked = torch.sort(per_neuron, descending=True).values
            threshold = min(threshold, int(ranked[floor_rank]))
        return threshold
