"""What the framework callbacks share: an engine built on a model and optimizer that a framework owns (and may
already have restored from its own checkpoint), and the mask statistics they log."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rigl_repro.sparsity.engine import SparseEngine
from rigl_repro.sparsity.masks import DEFAULT_POLICY, MaskPolicy, attach_masks
from rigl_repro.sparsity.methods import build_method
from rigl_repro.sparsity.methods.base import SparseMethod

MethodSpec = SparseMethod | Mapping[str, Any]


def as_method(method: MethodSpec) -> SparseMethod:
    """A method object as given, or built from its options (``{"name": "rigl", "density": 0.1, ...}``, as
    ``conf/masking/<name>.yaml`` spells them)."""
    return method if isinstance(method, SparseMethod) else build_method(dict(method))


def start_engine(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    method: SparseMethod,
    total_steps: float,
    resume_state: Mapping[str, Any] | None = None,
    **engine_options: Any,
) -> SparseEngine:
    """The engine on ``model``, stepping through ``optimizer.step()`` (``take_over_optimizer_step``).

    Frameworks restore the model (masks included: they are buffers) and often the optimizer before the hook
    that can build the engine runs, and building it writes the initial masks into both. So with
    ``resume_state`` (the engine's ``state_dict`` from the checkpoint), the restored model and optimizer
    states are kept aside, the engine is built, and the three are loaded back in the order the engine's own
    resume takes: model, optimizer, engine. The run then continues bit for bit.
    """
    restored = None
    if resume_state is not None:
        restored = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    engine = SparseEngine(model, optimizer, method, total_steps, **engine_options)
    if restored is not None:
        model.load_state_dict(restored[0])
        optimizer.load_state_dict(restored[1])
        engine.load_state_dict(resume_state)
    engine.take_over_optimizer_step()
    return engine


@dataclass
class EngineSpec:
    """What a callback is given to build the engine once the framework has made the model and optimizer: the
    method (or its options), the schedule length (None: the framework's count of optimizer steps) and the
    engine's own options."""

    method: MethodSpec
    total_steps: float | None = None
    seed: int = 0
    policy: MaskPolicy = DEFAULT_POLICY
    first_layer: str | None = None
    example_input: Any = None

    def attach_masks(self, model: nn.Module) -> None:
        """The mask buffers, which must exist before a framework loads a checkpoint's state into the model."""
        attach_masks(model, self.policy)

    def start(self, model: nn.Module, optimizer: torch.optim.Optimizer, framework_steps: float,
              resume_state: Mapping[str, Any] | None) -> SparseEngine:  # fmt: skip
        """``start_engine`` with this spec, the schedule ``framework_steps`` long unless ``total_steps`` says."""
        total_steps = self.total_steps if self.total_steps is not None else framework_steps
        options = {"seed": self.seed, "policy": self.policy, "first_layer": self.first_layer,
                   "example_input": self.example_input}  # fmt: skip
        return start_engine(model, optimizer, as_method(self.method), total_steps, resume_state, **options)


def mask_statistics(engine: SparseEngine, prefix: str = "sparsity/") -> dict[str, float]:
    """The masks' statistics under the names the project's runs log them by: ``density`` (over the budgeted
    weights), ``density_all_layers`` (over every masked weight), ``model_density`` (over all parameters),
    ``exploration`` (the in-time over-parameterisation rate), ``updates`` (topology updates since the last
    call) and, when there were any, ``replaced`` (the mean fraction of active weights they replaced).
    Reads the device once or twice; call it when logging, not every step."""
    updates = engine.read_mask_updates()
    stats = {
        "density": engine.budgeted_density(),
        "density_all_layers": engine.overall_density(),
        "model_density": engine.model_density(),
        "exploration": engine.overall_exploration(),
        "updates": float(len(updates)),
    }
    if updates:
        stats["replaced"] = sum(update["replaced"] for update in updates) / len(updates)
    return {prefix + name: value for name, value in stats.items()}
