"""A PyTorch Lightning callback that keeps a ``LightningModule`` sparse under any method of the engine.

::

    from rigl_repro.integrations.lightning import SparseTraining

    trainer = lightning.Trainer(max_epochs=10, callbacks=[SparseTraining({"name": "rigl", "density": 0.1})])
    trainer.fit(module, train_loader)               # and trainer.fit(module, train_loader, ckpt_path=...)

Lightning calls ``optimizer.step(closure)`` with the forward and backward inside the closure, so the engine
takes that step over (``SparseEngine.take_over_optimizer_step``): every optimizer step masks the gradients
and steps, or updates the topology. The masks are buffers of the module, so Lightning's checkpoints hold them;
the engine's own state (step, random state, counts, method state) is this callback's state in the same file.
The statistics of ``rigl_repro.integrations.common.mask_statistics`` go to the trainer's logger after every
training epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl

from rigl_repro.errors import ConfigError
from rigl_repro.integrations.common import EngineSpec, MethodSpec, mask_statistics
from rigl_repro.sparsity.engine import SparseEngine
from rigl_repro.sparsity.masks import DEFAULT_POLICY, MaskPolicy


class SparseTraining(pl.Callback):
    """Train the module sparse under ``method`` (a ``SparseMethod`` or its options, as
    ``rigl_repro.sparsity.build_method`` takes them).

    ``total_steps``, the schedule length in optimizer steps, defaults to the trainer's
    ``estimated_stepping_batches`` (epochs x batches / gradient accumulation, or ``max_steps``). ``seed``,
    ``policy``, ``first_layer`` and ``example_input`` are the engine's. One optimizer only.
    """

    def __init__(
        self,
        method: MethodSpec,
        total_steps: float | None = None,
        *,
        seed: int = 0,
        policy: MaskPolicy = DEFAULT_POLICY,
        first_layer: str | None = None,
        example_input: Any = None,
    ) -> None:
        self.spec = EngineSpec(method, total_steps, seed, policy, first_layer, example_input)
        self.engine: SparseEngine | None = None
        self._resume_state: Mapping[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # The mask buffers must exist before Lightning loads a checkpoint's state_dict into the module.
        self.spec.attach_masks(pl_module)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise ConfigError(
                f"SparseTraining needs exactly one optimizer; configure_optimizers returned {len(trainer.optimizers)}"
            )
        if self.engine is not None and self._resume_state is None:  # a second fit() continues the first
            self._resume_state = self.engine.state_dict()
        self.engine = self.spec.start(pl_module, trainer.optimizers[0], trainer.estimated_stepping_batches,
                                      self._resume_state)  # fmt: skip
        self._resume_state = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.engine is not None:
            pl_module.log_dict(mask_statistics(self.engine), on_step=False, on_epoch=True)

    def state_dict(self) -> dict[str, Any]:
        return self.engine.state_dict() if self.engine is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.engine is None:  # the usual order: the checkpoint is read before on_fit_start
            self._resume_state = state_dict
        else:  # strategies that restore after setup (DeepSpeed, FSDP) do it once the engine exists
            self.engine.load_state_dict(state_dict)
