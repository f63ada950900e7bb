"""What the two Fashion-MNIST examples share: the command line, the data (loaded once into tensors on the
model's device; where it may be, its MD5 and its normalisation from conf/dataset/fashion_mnist.yaml), the
method's options, the train and test loops and the one-line result (and its JSON record).

Each example script builds its own model, optimizer, method and ``SparseEngine``; nothing sparse happens here
except calling ``engine.step()`` where a plain loop calls ``optimizer.step()``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn import functional as F

from rigl_repro.data.fashion_mnist import load_fashion_mnist
from rigl_repro.sparsity import SparseEngine

# Where the data may already be (Debian's dataset-fashion-mnist), the official files' MD5 and the per-pixel mean and
# standard deviation: the project's own dataset config, so the examples and main.py read the same data the same way.
DATASET = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "dataset" / "fashion_mnist.yaml")
SYSTEM_ROOT: str | None = DATASET.system_root
(MEAN,), (STD,) = DATASET.mean, DATASET.std
METHODS = ("dense", "static", "set", "rigl")
RECORD_KEYS = ("model", "method", "density", "seed", "epochs", "test_acc", "budgeted_density", "wall_s", "threads")


def parse_args(description: str, *, epochs: int, batch_size: int, lr: float, weight_decay: float,
               argv: list[str] | None = None) -> argparse.Namespace:  # fmt: skip
    """The examples' shared options; ``epochs``, ``batch_size``, ``lr`` and ``weight_decay`` are each script's
    defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--method", choices=METHODS, default="rigl")
    parser.add_argument("--density", type=float, default=0.1, help="target density of the masked weights (ERK)")
    parser.add_argument("--distribution", default="erk", choices=("erk", "er", "uniform"))
    parser.add_argument("--delta-t", type=int, default=100, help="steps between topology updates (SET, RigL)")
    parser.add_argument("--alpha", type=float, default=0.3, help="initial drop fraction (SET, RigL)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr, help="peak learning rate (cosine decay to 0)")
    parser.add_argument("--weight-decay", type=float, default=weight_decay)
    parser.add_argument("--train-subset", type=int, default=None, metavar="N", help="train on the first N images")
    parser.add_argument("--test-subset", type=int, default=None, metavar="N", help="test on the first N images")
    parser.add_argument("--data-root", default=os.environ.get("RIGL_DATA", "data"),
                        help=f"holds FashionMNIST/raw (filled from {SYSTEM_ROOT}, else downloaded)")  # fmt: skip
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading missing data")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the run's record here")
    return parser.parse_args(argv)


def method_config(args: argparse.Namespace) -> dict[str, Any]:
    """The ``build_method`` options of ``args.method``: each method refuses options it does not read, so dense
    gets only its density, static also its distribution, SET and RigL also their drop-and-grow schedule."""
    if args.method == "dense":
        return {"name": "dense", "density": 1.0}
    config = {"name": args.method, "density": args.density, "distribution": args.distribution}
    if args.method in ("set", "rigl"):
        config.update(delta_t=args.delta_t, alpha=args.alpha)
    return config


def load_data(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    """Train images, train labels, test images, test labels on ``args.device``: images as normalised float32
    (N, 1, 28, 28), labels int64; the whole set is 220 MB as float32, so it stays in memory."""
    raw_md5 = OmegaConf.to_container(DATASET.raw_md5)
    train_x, train_y, test_x, test_y = load_fashion_mnist(args.data_root, SYSTEM_ROOT, not args.no_download, raw_md5)
    if args.train_subset:
        train_x, train_y = train_x[: args.train_subset], train_y[: args.train_subset]
    if args.test_subset:
        test_x, test_y = test_x[: args.test_subset], test_y[: args.test_subset]

    def prepare(images: torch.Tensor) -> torch.Tensor:
        return ((images.to(args.device, torch.float32) / 255 - MEAN) / STD).contiguous()

    return prepare(train_x), train_y.to(args.device), prepare(test_x), test_y.to(args.device)


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    return math.ceil(train_size / batch_size)


def train(model: nn.Module, optimizer: torch.optim.Optimizer, engine: SparseEngine,
          scheduler: torch.optim.lr_scheduler.LRScheduler, images: torch.Tensor, labels: torch.Tensor,
          epochs: int, batch_size: int, seed: int) -> None:  # fmt: skip
    """``epochs`` passes over the training set in a fresh random order each (last batch partial), the learning
    rate stepped per batch; prints the mean training loss of each epoch (one read of the device per epoch)."""
    order = torch.Generator(device="cpu").manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        permutation = torch.randperm(len(images), generator=order).to(images.device)
        total = torch.zeros((), device=images.device)
        for start in range(0, len(images), batch_size):
            batch = permutation[start : start + batch_size]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            loss.backward()
            engine.step()  # instead of optimizer.step(): masks the gradients, steps, or updates the topology
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            total += loss.detach() * len(batch)
        print(f"epoch {epoch + 1}/{epochs}: train loss {total.item() / len(images):.4f}", flush=True)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy on ``images``."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for start in range(0, len(images), batch_size):
        correct += (model(images[start : start + batch_size]).argmax(1) == labels[start : start + batch_size]).sum()
    return correct.item() / len(images)


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total_steps``; stepped per batch."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def report(args: argparse.Namespace, model_name: str, engine: SparseEngine, test_acc: float, wall_s: float) -> dict:
    """Print the run's one line and write its record to ``args.json`` when given."""
    record = {
        "model": model_name,
        "method": args.method,
        "density": 1.0 if args.method == "dense" else args.density,
        "seed": args.seed,
        "epochs": args.epochs,
        "test_acc": test_acc,
        "budgeted_density": engine.budgeted_density(),
        "wall_s": round(wall_s, 2),
        "threads": torch.get_num_threads(),
        "train_subset": args.train_subset,
        "test_subset": args.test_subset,
        "device": str(args.device),
    }
    print(f"{model_name} {args.method} seed {args.seed}: test accuracy {test_acc:.4f}, budgeted density "
          f"{record['budgeted_density']:.4f}, {wall_s:.1f} s on {record['threads']} thread(s)")  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.json.with_name(f".{args.json.name}.tmp")
        temporary.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(temporary, args.json)
    return record


class Timer:
    """``with Timer() as timer: ...`` then ``timer.seconds``: wall time of the block."""

    def __enter__(self) -> Timer:  # noqa: PYI034
        self.start = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.start
