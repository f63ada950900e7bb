"""A Hugging Face ``Trainer`` callback that keeps the model sparse under any method of the engine.

::

    from rigl_repro.integrations.huggingface import SparseTrainingCallback

    trainer = transformers.Trainer(model, args, train_dataset=data,
                                   callbacks=[SparseTrainingCallback({"name": "rigl", "density": 0.1})])
    trainer.train()                                   # and trainer.train(resume_from_checkpoint=True)

The Trainer (through Accelerate) calls the optimizer's ``step()`` itself, after gradient accumulation and
clipping, so the engine takes that step over (``SparseEngine.take_over_optimizer_step``). The masks are buffers
of the model, so the Trainer's ``checkpoint-N/`` folders hold them with the weights; the engine's own state goes
beside them, as ``checkpoint-N/sparse_engine.pt``, and is read back when training resumes from that folder.
Every log record (``on_log``: the console, ``trainer.state.log_history``, and the reporting integrations that
come after this callback) gets the statistics of ``rigl_repro.integrations.common.mask_statistics``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from rigl_repro.errors import ConfigError
from rigl_repro.integrations.common import EngineSpec, MethodSpec, mask_statistics
from rigl_repro.results import atomic_file
from rigl_repro.sparsity.engine import SparseEngine
from rigl_repro.sparsity.masks import DEFAULT_POLICY, MaskPolicy

ENGINE_FILE = "sparse_engine.pt"


class SparseTrainingCallback(transformers.TrainerCallback):
    """Train the model sparse under ``method`` (a ``SparseMethod`` or its options, as
    ``rigl_repro.sparsity.build_method`` takes them).

    ``total_steps``, the schedule length in optimizer steps, defaults to the Trainer's ``max_steps`` (its
    optimizer steps, after gradient accumulation). ``seed``, ``policy``, ``first_layer`` and ``example_input``
    are the engine's. ``resume_from``: the checkpoint folder training resumes from, where it is not the
    Trainer's own ``output_dir/checkpoint-<step>``.
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
        resume_from: str | os.PathLike | None = None,
    ) -> None:
        self.spec = EngineSpec(method, total_steps, seed, policy, first_layer, example_input)
        self.resume_from = resume_from
        self.engine: SparseEngine | None = None

    def on_init_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        # The mask buffers must exist before the Trainer loads a checkpoint's weights into the model.
        if model is not None:
            self.spec.attach_masks(model)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                       optimizer: Any = None, **kwargs: Any) -> None:  # fmt: skip
        optimizer = getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper holds the torch optimizer
        resume_state = self._engine_state(args, state) if state.global_step > 0 else None
        self.engine = self.spec.start(model, optimizer, state.max_steps, resume_state)

    def _engine_state(self, args: Any, state: Any) -> dict[str, Any]:
        folder = self.resume_from or os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        path = os.path.join(folder, ENGINE_FILE)
        if not os.path.isfile(path):
            raise ConfigError(
                f"training resumes at step {state.global_step}, but {path} is not there: the sparse engine's state "
                f"is saved beside the Trainer's checkpoint; pass SparseTrainingCallback(..., resume_from=FOLDER) "
                f"where the checkpoint is elsewhere"
            )
        return torch.load(path, weights_only=True)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.engine is None or not state.is_world_process_zero:
            return
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if os.path.isdir(folder):  # the Trainer writes its checkpoint first, then calls on_save
            with atomic_file(Path(folder) / ENGINE_FILE) as temporary:
                torch.save(self.engine.state_dict(), temporary)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:  # fmt: skip
        if self.engine is None or logs is None:
            return
        statistics = mask_statistics(self.engine)
        logs.update(statistics)
        if state.log_history:  # the Trainer keeps a copy of each record
            state.log_history[-1].update(statistics)
