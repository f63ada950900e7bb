"""An MLP (LeNet-300-100: 784 -> 300 -> 100 -> 10) on Fashion-MNIST, dense or sparse at density 0.1 (ERK)
with static, SET or RigL masks, through the plain-PyTorch API.

    python examples/mlp_fashion_mnist.py --method rigl --seed 0 [--json outputs/examples/mlp_rigl.json]

SGD with Nesterov momentum 0.9, learning rate 0.05 decayed by a cosine per batch, weight decay 5e-4, batch 128,
20 epochs on the 60,000 training images; tested on the 10,000 test images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository root importable for ``examples.common``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples import common  # the plumbing both examples share: options, data, loops, the record
from rigl_repro.models.examples import mlp
from rigl_repro.sparsity import SparseEngine, build_method
from rigl_repro.sparsity.schedules import steps_for

HIDDEN = (300, 100)
DEFAULTS = {"epochs": 20, "batch_size": 128, "lr": 0.05, "weight_decay": 5e-4}


def build_model() -> torch.nn.Module:
    return mlp(num_classes=10, hidden=HIDDEN)


def main(argv: list[str] | None = None) -> dict:
    args = common.parse_args(__doc__.splitlines()[0], argv=argv, **DEFAULTS)
    torch.manual_seed(args.seed)
    train_x, train_y, test_x, test_y = common.load_data(args)

    model = build_model().to(args.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                                weight_decay=args.weight_decay)  # fmt: skip
    total_steps = steps_for(args.epochs, common.steps_per_epoch(len(train_x), args.batch_size))
    method = build_method(common.method_config(args))  # e.g. {"name": "rigl", "density": 0.1, "distribution": "erk"}
    engine = SparseEngine(model, optimizer, method, total_steps, seed=args.seed)
    scheduler = common.cosine_schedule(optimizer, total_steps)

    with common.Timer() as timer:
        common.train(model, optimizer, engine, scheduler, train_x, train_y, args.epochs, args.batch_size, args.seed)
        test_acc = common.evaluate(model, test_x, test_y)
    return common.report(args, "mlp", engine, test_acc, timer.seconds)


if __name__ == "__main__":
    main()
