"""Sparse training at a glance: dense, static, SET and RigL at density 0.1 on an embedded dataset.

    python scripts/demo.py [--epochs 30] [--density 0.1] [--seed 0]

Uses scikit-learn's bundled 8x8 digits (1,797 images, no download) and the small CNN, trains each method
with the same seed, recipe and data order, and prints test accuracy and realised density side by side.
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import load_digits
from torch import nn
from tqdm import tqdm

from rigl_repro.models import small_cnn
from rigl_repro.sparsity import SparseEngine, build_method

METHODS = ["dense", "static", "set", "rigl"]


def digits(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train (80%) and test (20%) splits of the digits, images scaled to [0, 1], fixed by ``seed``."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(labels))
    return images[order[:cut]], labels[order[:cut]], images[order[cut:]], labels[order[cut:]]


def train_one(method_name: str, args: argparse.Namespace, data: tuple[torch.Tensor, ...]) -> dict[str, float]:
    train_x, train_y, test_x, test_y = data
    torch.manual_seed(args.seed)
    model = small_cnn(10)
    steps_per_epoch = -(-len(train_y) // args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)
    masking = {"name": method_name, "density": args.density, "distribution": "erk", "delta_t": args.delta_t}
    engine = SparseEngine(model, optimizer, build_method(masking), total_steps, seed=args.seed)
    order_generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    progress = tqdm(range(args.epochs), desc=f"{method_name:>6}", leave=False)
    for _ in progress:
        model.train()
        loss_sum = torch.zeros(())
        for batch in torch.randperm(len(train_y), generator=order_generator).split(args.batch_size):
            loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
            loss.backward()
            engine.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            loss_sum += loss.detach()
        progress.set_postfix(loss=f"{loss_sum.item() / steps_per_epoch:.3f}")  # one read per epoch
    model.eval()
    with torch.no_grad():
        correct = (model(test_x).argmax(1) == test_y).sum().item()
    return {
        "accuracy": correct / len(test_y),
        "density": engine.overall_density(),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--delta-t", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = digits(args.seed)
    results = {name: train_one(name, args, data) for name in METHODS}
    print(f"\n{'method':<8} {'test acc':>9} {'density':>8} {'time (s)':>9}")
    for name, result in results.items():
        print(f"{name:<8} {100 * result['accuracy']:8.1f}% {result['density']:8.3f} {result['seconds']:9.1f}")


if __name__ == "__main__":
    main()
