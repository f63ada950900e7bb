"""Small, deterministic training set-ups shared by the tests."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig
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


def compose_config(*overrides: str):
    """The config ``main.py`` would see with these overrides (W&B disabled, digits unless overridden)."""
    from rigl_repro.config import compose_config as compose

    return compose(["dataset=digits", "logger.mode=disabled", *overrides])


CIFAR_LAYOUT = {  # torchvision's class, its folder, label key, metadata file and key
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "labels", "batches.meta", "label_names"),
    "cifar100": ("CIFAR100", "cifar-100-python", "fine_labels", "meta", "fine_label_names"),
}


def fake_cifar(monkeypatch, server, name, batches):
    """A small CIFAR archive in the official layout, served by ``server`` (``LocalServer``), which
    torchvision's class for ``name`` then downloads and checks: its URL and checksums are patched to these.

    ``batches`` maps file names (``data_batch_1``, ``test_batch`` / ``train``, ``test``) to (uint8 images
    (N, 3, 32, 32), labels). Returns the archive's path.
    """
    import torchvision.datasets

    class_name, folder, label_key, meta_file, meta_key = CIFAR_LAYOUT[name]
    payloads = {
        file: pickle.dumps({"data": images.reshape(len(images), -1), label_key: labels.tolist()})
        for file, (images, labels) in batches.items()
    }
    payloads[meta_file] = pickle.dumps({meta_key: [f"class {i}" for i in range(100)]})
    archive = server.directory / f"{folder}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for file, payload in payloads.items():
            info = tarfile.TarInfo(f"{folder}/{file}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    md5 = {file: hashlib.md5(payload).hexdigest() for file, payload in payloads.items()}
    dataset_class = getattr(torchvision.datasets, class_name)
    train_files = [file for file in batches if file.startswith(("data_batch", "train"))]
    test_files = [file for file in batches if file not in train_files]
    monkeypatch.setattr(dataset_class, "url", server.url(archive.name))
    monkeypatch.setattr(dataset_class, "filename", archive.name)
    monkeypatch.setattr(dataset_class, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(dataset_class, "train_list", [[file, md5[file]] for file in train_files])
    monkeypatch.setattr(dataset_class, "test_list", [[file, md5[file]] for file in test_files])
    monkeypatch.setattr(dataset_class, "meta", {"filename": meta_file, "key": meta_key, "md5": md5[meta_file]})
    return archive


class LocalServer:
    """An HTTP server on localhost for one folder, in a thread: downloads go through the real network path."""

    def __init__(self, directory: Path) -> None:
        import functools
        import http.server
        import threading

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(QuietHandler, directory=str(self.directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _quiet_handler():
    import http.server

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # no request lines in the test output
            pass

    return Handler


QuietHandler = _quiet_handler()


def run_killed_in_epoch(cfg: DictConfig, output_dir: Path, epoch: int = 3) -> int:
    """Start the run and stop it with KeyboardInterrupt as its ``epoch``-th epoch begins (after the checkpoints
    of the epochs before), as a killed run would stop; returns how many epochs were started."""
    from rigl_repro.training.session import run
    from rigl_repro.training.trainer import Trainer

    original = Trainer.train_epoch
    started = 0

    def interrupted(self: Trainer) -> dict[str, Any] | None:
        nonlocal started
        started += 1
        if started == epoch:
            raise KeyboardInterrupt
        return original(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run(cfg, output_dir)
    return started
