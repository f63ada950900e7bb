"""Which masked weight reads a model's input: the "first layer" that the Uniform distribution keeps dense.

The report's code keeps the first convolution of its models dense under Uniform (``random_init`` in
``sparselearning/funcs/init_scheme.py`` skips it), which for those models is also the first module they
register. In a model of one's own the first module registered need not be the first one run (a transformer
may define its head before its embedding), so the layer is found from the order of a forward pass: the first
masked weight that a pass uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import fx, nn


def input_layer(
    model: nn.Module, weights: Mapping[str, tuple[nn.Module, nn.Parameter]], example_input: Any = None
) -> str | None:
    """The name, among ``weights`` (name -> (owning module, parameter)), of the first weight a forward pass of
    ``model`` uses; None when that cannot be told.

    With ``example_input`` the model runs once on it (no gradients) with hooks on the owning modules. Without,
    the model is traced symbolically (``torch.fx``: no data, no computation), which fails on models whose
    control flow depends on their inputs: then None, and the caller falls back to the first weight registered.
    """
    owners: dict[int, str] = {}
    for name, (module, _) in weights.items():
        owners.setdefault(id(module), name)  # a module with several masked weights: its first
    if example_input is not None:
        return _first_run(model, owners, example_input)
    by_parameter = {id(parameter): name for name, (_, parameter) in weights.items()}
    try:
        graph = _OwnersTracer(model, owners).trace(model)
    except Exception:  # any model fx cannot trace: the caller falls back
        return None
    for node in graph.nodes:
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            if id(module) in owners:
                return owners[id(module)]
        elif node.op == "get_attr":
            found = _attribute(model, node.target)
            if id(found) in by_parameter:
                return by_parameter[id(found)]
    return None


class _OwnersTracer(fx.Tracer):
    """Enters only modules that hold a masked weight somewhere below them: the others (a batch norm that
    reduces across processes, a loss) are leaves whose forward never runs, so tracing has no side effects
    there and cannot fail on their code."""

    def __init__(self, model: nn.Module, owners: Mapping[int, str]) -> None:
        super().__init__()
        self.holding = {id(module) for module in model.modules()
                        if any(id(inner) in owners for inner in module.modules())}  # fmt: skip

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return id(module) not in self.holding or super().is_leaf_module(module, qualified_name)


def _attribute(model: nn.Module, target: str) -> object:
    owner, _, name = target.rpartition(".")
    return getattr(model.get_submodule(owner) if owner else model, name, None)


def _first_run(model: nn.Module, owners: Mapping[int, str], example_input: Any) -> str | None:
    order: list[str] = []
    handles = [
        module.register_forward_pre_hook(lambda module, args, name=owners[id(module)]: order.append(name))
        for module in model.modules()
        if id(module) in owners
    ]
    training = model.training
    model.eval()  # a pass in training mode would move BatchNorm's running statistics
    try:
        with torch.no_grad():
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return order[0] if order else None
