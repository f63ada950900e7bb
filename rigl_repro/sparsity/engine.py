"""The engine that keeps a model sparse while it trains.

Usage, in place of ``optimizer.step()``::

    engine = SparseEngine(model, optimizer, build_method(cfg.masking), total_steps, seed=cfg.seed)
    for batch in data:
        loss(model, batch).backward()
        engine.step()                      # masks gradients and steps, or updates the topology
        optimizer.zero_grad(set_to_none=True)

Invariants, after construction and after every ``step()``:

- masked weights, and every optimizer state tensor of a masked weight (SGD momentum, Adam moments), are
  exactly zero. Gradients are masked before the optimizer steps, so with weights and state already zero at
  masked positions, weight decay and Nesterov momentum leave them at zero. A step allocates no
  weight-sized tensor (the masks are also kept in the weights' dtype, once, for the multiply), one foreach
  multiply covers all masked gradients, and nothing is read back from the device. The exception is a
  method with dense optimizer state (the report's SNFS): its gradients stay dense, the optimizer steps
  every weight, and one foreach multiply zeroes the masked weights after the step.
- each layer's active count is exact and known on the host.

Two choices, made once for every method:

- an update step changes the topology only: its batch's dense gradient feeds the growth criterion and the
  optimizer does not step, as in Evci et al.'s and the report's code. Such a step costs one sparse forward,
  one sparse backward for activations and one dense weight gradient (2 f_S + f_D), the term of RigL's
  training-FLOP formula.
- every newly grown weight starts at exactly zero, and so does its momentum unless the optimizer state is
  dense. A connection dropped and grown again in the same update keeps its momentum, and its weight unless
  the method zeroes regrown weights (``masking.regrown``).

Mask dynamics, recorded at topology updates only and read from the device once per epoch: the fraction of
active weights each update replaces (weights grown that were not active before the update, over those active
before it), and the in-time over-parameterisation rate of Liu et al. (2021, "Do We Actually Need Dense
Over-Parameterization? In-Time Over-Parameterization in Sparse Training", section 3: R_s, the fraction of
a layer's weights that have been active at least once so far).
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from rigl_repro.errors import START_AFRESH, ConfigError
from rigl_repro.sparsity.masks import (
    DEFAULT_POLICY,
    MaskPolicy,
    SparseLayer,
    attach_masks,
    excluding,
    restricted_to,
    sparsifiable_weights,
)
from rigl_repro.sparsity.methods.base import SparseMethod
from rigl_repro.sparsity.tracing import input_layer

# Above this fraction of the model's parameters left dense (outside the density budget), the engine warns:
# the density it reports would then say little about the model.
DENSE_SHARE_WARNING = 0.1


class DenseWeightsWarning(UserWarning):
    """Much of the model stays dense: its density is far above the budgeted density the engine reports."""


class SparseEngine:
    """Masks for the weight matrices of ``model`` that ``policy`` covers, kept exact under ``method``.

    ``total_steps`` (required) is the length, in steps, that the method's schedules are fractions of (T_end,
    the pruning window): for a run of E epochs of S optimizer steps each, ``E * S``
    (``rigl_repro.sparsity.schedules.steps_for(E, S)``); the report's CIFAR runs count examples seen over the
    batch size instead (``schedule_length(250, 45_000, 128)`` = 87,890.6). ``policy``: which weights take part
    (default: every Linear, Conv1d/2d/3d, Embedding and MultiheadAttention weight matrix). Uniform keeps dense
    the masked weight that reads the input: ``first_layer`` names it, else a forward pass on ``example_input``
    finds it, else a symbolic trace of the model does, else the first weight registered.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        method: SparseMethod,
        total_steps: float,
        seed: int = 0,
        *,
        policy: MaskPolicy = DEFAULT_POLICY,
        first_layer: str | None = None,
        example_input: Any = None,
    ) -> None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, (int, float)) or not total_steps >= 1:
            raise ConfigError(
                f"total training steps must be a number >= 1, got {total_steps!r}: the schedule length is the run's "
                "epochs x optimizer steps per epoch (rigl_repro.sparsity.schedules.steps_for)"
            )
        refusal = method.engine_refusal()
        if refusal:
            raise ConfigError(refusal)
        self.model, self.optimizer, self.method = model, optimizer, method
        device = next(model.parameters()).device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.layers: list[SparseLayer] = attach_masks(model, policy) if method.masked else []
        if self.layers:
            names = [layer.name for layer in self.layers]
            if first_layer is not None and first_layer not in names:
                raise ConfigError(f"first_layer={first_layer!r} is not a masked weight; the masked weights are: "
                                  f"{', '.join(names)}")  # fmt: skip
            if first_layer is None and getattr(method, "distribution", None) == "uniform":
                first_layer = input_layer(model, sparsifiable_weights(model, policy), example_input)
            method.input_layer = first_layer
        self.step_count = 0
        self._took_over_optimizer = False
        self.last_update: list[tuple[int, int]] = []  # (dropped, grown) per layer at the latest update
        # (first step, active count per layer) for every topology the run has had: read by FLOP accounting.
        self.topology_log: list[tuple[int, list[int]]] = []
        method.setup(model, self.layers, optimizer, total_steps, self.generator)
        if self.layers:
            counts = method.initial_counts()
            masks = method.initial_masks(counts)
            with torch.no_grad():
                for layer, mask, count in zip(self.layers, masks, counts):
                    layer.mask.copy_(mask)
                    layer.n_active = count
                    self._zero_inactive(layer)
        # The masks again in each weight's dtype and strides: the per-step multiply then takes the fused
        # multi-tensor path on CUDA (a bool operand would fall back to one kernel per layer).
        self.gradient_masks = [torch.empty_like(layer.weight).copy_(layer.mask) for layer in self.layers]
        self.topology_log.append((0, self.active_counts()))
        self.ever_active = [layer.mask.clone() for layer in self.layers]
        # (step after the update, active counts before it, device counts: replaced per layer then ever active
        # per layer), read by ``read_mask_updates``.
        self.pending_updates: list[tuple[int, list[int], torch.Tensor]] = []
        self._warn_if_mostly_dense()

    def _warn_if_mostly_dense(self) -> None:
        left_dense = 1.0 - self.budgeted_size() / max(1, sum(p.numel() for p in self.model.parameters()))
        if self.method.masked and left_dense > DENSE_SHARE_WARNING:
            warnings.warn(
                f"{100 * left_dense:.0f}% of the model's parameters stay dense (outside the density budget: "
                f"biases, normalisation, weights the mask policy leaves out or Uniform's first layer); the model's "
                f"density is {self.model_density():.4f}, its budgeted weights' {self.budgeted_density():.4f}",
                DenseWeightsWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ the per-step path
    def step(self, scaler: torch.amp.GradScaler | None = None) -> bool:
        """One training step after ``backward()``: returns True when it updated the topology instead of
        stepping the optimizer.

        With mixed precision, pass the ``GradScaler`` (this replaces ``scaler.step(optimizer)``; call
        ``scaler.update()`` after it as usual): the gradients are unscaled first, and a step whose gradients
        hold an inf or NaN is skipped as the scaler skips it: it neither steps the optimizer nor counts as a
        step of the method's schedule, so it is never a topology update.
        """
        if self._took_over_optimizer:
            raise RuntimeError(
                "this engine has taken over optimizer.step() (take_over_optimizer_step): call optimizer.step(), "
                "not engine.step()"
            )
        return self._step(self.optimizer.step, scaler)

    def take_over_optimizer_step(self) -> None:
        """Make ``optimizer.step(closure=None)`` do what ``step()`` does, for training loops that step the
        optimizer themselves (PyTorch Lightning, the Hugging Face ``Trainer``: ``rigl_repro.integrations``).

        The closure, when given, runs first, with gradients on, as ``torch.optim`` runs it (Lightning computes
        the loss and its backward inside it); a closure that returns None (a skipped batch) skips the step. A
        ``GradScaler`` that wraps the optimizer calls this step only for finite gradients, already unscaled,
        so a skipped fp16 step is not counted here either. Afterwards ``step()`` is refused.
        """
        if self._took_over_optimizer:
            return
        framework_step = self.optimizer.step

        def step(optimizer: torch.optim.Optimizer, closure: Any = None) -> Any:
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
                if loss is None:
                    return None
            self._step(framework_step, None)
            return loss

        # Bound to the optimizer, as the method it replaces (an LR scheduler built later wraps it so), and set
        # on this instance only: the optimizer's class is untouched.
        self.optimizer.step = types.MethodType(step, self.optimizer)
        self._took_over_optimizer = True

    def _step(self, optimizer_step: Any, scaler: torch.amp.GradScaler | None) -> bool:
        if scaler is not None and scaler.is_enabled():
            scaler.unscale_(self.optimizer)
            # One read of the device, which scaler.step makes anyway; the private accessor is the one
            # GradScaler itself uses between unscale_ and step.
            if sum(found.item() for found in scaler._found_inf_per_device(self.optimizer).values()):
                scaler.step(self.optimizer)  # skips, and records the skip for scaler.update()
                return False
            optimizer_step = lambda: scaler.step(self.optimizer)  # noqa: E731
        step = self.step_count
        self.step_count += 1
        if not self.layers:
            optimizer_step()
            return False
        grads = [layer.weight.grad for layer in self.layers]
        self.method.observe_gradients(grads)
        if self.method.is_update_step(step):
            self.update_topology(step)
            return True
        if self.method.dense_optimizer_state():
            optimizer_step()
            with torch.no_grad():
                torch._foreach_mul_([layer.weight for layer in self.layers], self.gradient_masks)
            return False
        present = [(g, mask) for g, mask in zip(grads, self.gradient_masks) if g is not None]
        if present:
            masked_grads, masks = zip(*present)
            torch._foreach_mul_(list(masked_grads), list(masks))
        optimizer_step()
        return False

    # ------------------------------------------------------------------ topology updates
    @torch.no_grad()
    def update_topology(self, step: int) -> None:
        """Drop and grow in every layer as the method decides for ``step``."""
        wanted = self.method.drop_counts(step)
        structures = [self.method.update_structure(index) for index in range(len(self.layers))]
        dropped = [
            structure.legal_drop(tuple(layer.weight.shape), layer.n_active, n_drop) if n_drop else 0
            for layer, structure, n_drop in zip(self.layers, structures, wanted)
        ]
        grown = self.method.grow_counts(step, dropped)
        self.last_update = list(zip(dropped, grown))
        before = self.active_counts()
        replaced = [torch.zeros((), dtype=torch.long, device=layer.mask.device) for layer in self.layers]
        for index, (layer, gradient_mask, structure, n_drop, n_grow) in enumerate(
            zip(self.layers, self.gradient_masks, structures, dropped, grown)
        ):
            if n_drop == 0 and n_grow == 0:
                continue
            kept_count = layer.n_active - n_drop
            if kept_count < 0 or n_grow > layer.size - kept_count:
                raise RuntimeError(f"{layer.name}: cannot drop {n_drop} and grow {n_grow} of {layer.n_active}")
            new_mask = structure.keep(restricted_to(layer.mask, self.method.drop_scores(layer)), kept_count)
            if n_grow:
                grown_mask = structure.grow(new_mask, excluding(new_mask, self.method.grow_scores(layer)), n_grow)
                if self.method.zeroes_regrown():
                    layer.weight.data.masked_fill_(grown_mask & layer.mask, 0.0)
                replaced[index] = (grown_mask & ~layer.mask).sum()
                self.ever_active[index] |= grown_mask
                new_mask |= grown_mask
            if structure.counts_on_device:  # the structure chose the counts: one read of the device, here only
                total, n_grow = (int(count) for count in torch.stack([new_mask.sum(), grown_mask.sum()]).tolist())
                kept_count = total - n_grow
                self.last_update[index] = (layer.n_active - kept_count, n_grow)
            layer.mask.copy_(new_mask)
            gradient_mask.copy_(new_mask)
            layer.n_active = kept_count + n_grow
            self._zero_inactive(layer)
        self.topology_log.append((step + 1, self.active_counts()))
        ever = [mask.sum() for mask in self.ever_active]
        self.pending_updates.append((step + 1, before, torch.stack(replaced + ever)))

    def _zero_inactive(self, layer: SparseLayer) -> None:
        """Zero the weight and, unless the method keeps it dense, its optimizer state wherever the mask is
        false."""
        layer.weight.data.mul_(layer.mask)
        if self.method.dense_optimizer_state():
            return
        for value in self.optimizer.state.get(layer.weight, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == layer.weight.shape:
                value.mul_(layer.mask)

    # ------------------------------------------------------------------ reading the topology
    def active_counts(self) -> list[int]:
        """Active weights per masked layer, in layer order."""
        return [layer.n_active for layer in self.layers]

    def layer_densities(self) -> dict[str, float]:
        """Realised density of every masked layer (exact, from host-side counts)."""
        return {layer.name: layer.density for layer in self.layers}

    def overall_density(self, names: list[str] | None = None) -> float:
        """Active fraction over the named masked layers (default: all); 1.0 for an unmasked model."""
        chosen = [layer for layer in self.layers if names is None or layer.name in names]
        if not chosen:
            return 1.0
        return sum(layer.n_active for layer in chosen) / sum(layer.size for layer in chosen)

    def budgeted_size(self) -> int:
        """Weights in the density budget (the layers the method's distribution spreads the target over)."""
        budget = set(self.method.budget([layer.name for layer in self.layers]))
        return sum(layer.size for layer in self.layers if layer.name in budget)

    def budgeted_density(self) -> float:
        """Active fraction of the budgeted weights: the density the method was asked for (within one weight per
        layer); 1.0 for an unmasked model."""
        budget = self.method.budget([layer.name for layer in self.layers])
        return self.overall_density(budget) if self.layers else 1.0

    def model_density(self) -> float:
        """Non-zero fraction of all the model's parameters, counting every unmasked one (biases, normalisation,
        weights left out) as dense."""
        total = sum(p.numel() for p in self.model.parameters())
        masked = sum(layer.size for layer in self.layers)
        return (total - masked + sum(self.active_counts())) / total

    def read_mask_updates(self) -> list[dict[str, Any]]:
        """The topology updates since the last call, reading the device once: for each, the step after it,
        ``replaced`` (the fraction of the active weights it replaced, over all masked layers),
        ``layer_replaced`` (the same per layer, in layer order) and ``exploration`` (the in-time
        over-parameterisation rate after it, over all masked layers)."""
        if not self.pending_updates:
            return []
        counts = torch.stack([record for _, _, record in self.pending_updates]).tolist()
        total = sum(layer.size for layer in self.layers)
        updates = []
        for (step, before, _), row in zip(self.pending_updates, counts):
            replaced, ever = row[: len(self.layers)], row[len(self.layers) :]
            updates.append({
                "step": step,
                "replaced": sum(replaced) / max(1, sum(before)),
                "layer_replaced": [count / max(1, active) for count, active in zip(replaced, before)],
                "exploration": sum(ever) / total,
            })  # fmt: skip
        self.pending_updates = []
        return updates

    def exploration(self) -> dict[str, float]:
        """In-time over-parameterisation rate of every masked layer: the fraction of its weights that have been
        active at least once (Liu et al. 2021). Reads the device."""
        if not self.layers:
            return {}
        ever = torch.stack([mask.sum() for mask in self.ever_active]).tolist()
        return {layer.name: count / layer.size for layer, count in zip(self.layers, ever)}

    def initial_density(self) -> float:
        """The active fraction of all masked layers at step 0, where exploration starts."""
        if not self.layers:
            return 1.0
        return sum(self.topology_log[0][1]) / sum(layer.size for layer in self.layers)

    def overall_exploration(self) -> float:
        """The in-time over-parameterisation rate over all masked layers (1.0 for an unmasked model)."""
        rates = self.exploration()
        if not rates:
            return 1.0
        return sum(rate * layer.size for rate, layer in zip(rates.values(), self.layers)) / sum(
            layer.size for layer in self.layers
        )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Step, random state, active counts and the method's state. The masks themselves are buffers in
        the model's ``state_dict``."""
        return {
            "step": self.step_count,
            "generator": self.generator.get_state(),
            "n_active": {layer.name: layer.n_active for layer in self.layers},
            "topology_log": [[start, list(counts)] for start, counts in self.topology_log],
            "ever_active": list(self.ever_active),
            "pending_updates": [[step, before, record] for step, before, record in self.pending_updates],
            "method": self.method.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``; call after the model's (and so the masks') state has been loaded. A run's
        checkpoint has had its layout checked (``rigl_repro.training.checkpoint``); the masks are checked here
        against this model's layers."""
        saved = dict(state["n_active"])
        names = [layer.name for layer in self.layers]
        if sorted(saved) != sorted(names):
            raise ConfigError(
                f"the checkpoint's masked layers ({', '.join(saved)}) are not this model's ({', '.join(names)}); "
                f"{START_AFRESH}"
            )
        actual = torch.stack([layer.mask.sum() for layer in self.layers]).tolist() if self.layers else []
        for layer, count in zip(self.layers, actual):
            if count != saved[layer.name]:
                raise ConfigError(
                    f"checkpoint is inconsistent: mask of {layer.name} has {count} active weights, "
                    f"its record says {saved[layer.name]}; {START_AFRESH}"
                )
            layer.n_active = count
        if self.layers:
            with torch.no_grad():
                torch._foreach_copy_(self.gradient_masks, [layer.mask for layer in self.layers])
        self.step_count = int(state["step"])
        self.topology_log = [(int(start), list(counts)) for start, counts in state["topology_log"]]
        self.generator.set_state(state["generator"])
        self.method.load_state_dict(state["method"])
        if "ever_active" in state:  # checkpoints from before mask dynamics start from the current masks
            with torch.no_grad():
                for ever, saved_ever in zip(self.ever_active, state["ever_active"]):
                    ever.copy_(saved_ever)
        else:
            self.ever_active = [layer.mask.clone() for layer in self.layers]
        self.pending_updates = [
            (int(step), list(before), record.to(self.generator.device))
            for step, before, record in state.get("pending_updates", [])
        ]
