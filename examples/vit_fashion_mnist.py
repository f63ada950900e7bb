"""A small vision transformer (7x7 patches: 16 tokens and a class token, width 64, 2 pre-norm blocks of 4
heads, MLP ratio 2) on Fashion-MNIST, dense or sparse at density 0.1 (ERK) with static, SET or RigL masks,
through the plain-PyTorch API.

    python examples/vit_fashion_mnist.py --method rigl --seed 0 [--json outputs/examples/vit_rigl.json]

AdamW (betas 0.9, 0.999), learning rate 2e-3 with a linear warm-up over the first 5% of the steps then a
cosine decay per batch, weight decay 0.05, batch 128, 6 epochs on the 60,000 training images; tested on the
10,000 test images. Every Linear weight is masked (patch embedding, attention projections, MLPs, head); the
class token, position embeddings, biases and LayerNorms stay dense.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository root importable for ``examples.common``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples import common  # the plumbing both examples share: options, data, loops, the record
from rigl_repro.models.examples import vit
from rigl_repro.sparsity import SparseEngine, build_method
from rigl_repro.sparsity.schedules import steps_for

SIZE = {"patch": 7, "dim": 64, "depth": 2, "heads": 4, "mlp_ratio": 2}
DEFAULTS = {"epochs": 6, "batch_size": 128, "lr": 2e-3, "weight_decay": 0.05}


def build_model() -> torch.nn.Module:
    return vit(num_classes=10, **SIZE)


def main(argv: list[str] | None = None) -> dict:
    args = common.parse_args(__doc__.splitlines()[0], argv=argv, **DEFAULTS)
    torch.manual_seed(args.seed)
    train_x, train_y, test_x, test_y = common.load_data(args)

    model = build_model().to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    total_steps = steps_for(args.epochs, common.steps_per_epoch(len(train_x), args.batch_size))
    method = build_method(common.method_config(args))  # e.g. {"name": "rigl", "density": 0.1, "distribution": "erk"}
    engine = SparseEngine(model, optimizer, method, total_steps, seed=args.seed)
    scheduler = common.cosine_schedule(optimizer, total_steps, warmup=total_steps // 20)

    with common.Timer() as timer:
        common.train(model, optimizer, engine, scheduler, train_x, train_y, args.epochs, args.batch_size, args.seed)
        test_acc = common.evaluate(model, test_x, test_y)
    return common.report(args, "vit", engine, test_acc, timer.seconds)


if __name__ == "__main__":
    main()
