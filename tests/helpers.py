"""Small, deterministic training set-ups shared by the tests."""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from rigl_repro.models import small_cnn
from rigl_repro.sparsity import SparseEngine, build_method


def make_run(
    masking: Mapping[str, Any],
    total_steps: int = 100,
    seed: int = 0,
    optimizer: str = "sgd",
    model: nn.Module | None = None,
) -> tuple[nn.Module, torch.optim.Optimizer, SparseEngine]:
    """A quarter-width small CNN, an optimizer with momentum and weight decay, and its sparse engine."""
    torch.manual_seed(seed)
    model = model if model is not None else small_cnn(width=0.25)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=5e-4)
    engine = SparseEngine(model, opt, build_method(dict(masking)), total_steps, seed=seed)
    return model, opt, engine


def batch_for(step: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of a step, a function of the step alone so that resumed runs see the same data."""
    generator = torch.Generator().manual_seed(10_000 + step)
    return torch.randn(size, 1, 8, 8, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    engine: SparseEngine,
    steps: int,
    after_step: Callable[[bool], None] | None = None,
) -> None:
    """Run ``steps`` training steps; ``after_step(updated)`` checks invariants after each one."""
    for _ in range(steps):
        inputs, targets = batch_for(engine.step_count)
        nn.functional.cross_entropy(model(inputs), targets).backward()
        updated = engine.step()
        opt.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step(updated)


CONF_DIR = __import__("pathlib").Path(__file__).resolve().parents[1] / "conf"


def compose_config(*overrides: str):
    """The config ``main.py`` would see with these overrides (W&B disabled, digits unless overridden)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["dataset=digits", "logger.mode=disabled", *overrides])


def write_archive(path, folder, batches, label_key):
    """A .tar.gz holding ``folder/<name>`` pickles with uint8 data rows and labels, as the official ones."""
    with tarfile.open(path, "w:gz") as tar:
        for name, (images, labels) in batches.items():
            payload = pickle.dumps({b"data": images.reshape(len(images), -1), label_key.encode(): labels.tolist()})
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
