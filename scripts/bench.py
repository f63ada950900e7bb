"""Training throughput of dense, static and RigL, measured side by side in one process.

    python scripts/bench.py                                   # WRN-22-2, batch 128, CUDA if present
    python scripts/bench.py model=resnet50 dataset.num_classes=100 --epochs 2
    python scripts/bench.py device=cpu dataset.train_pool=1280 --epochs 1      # a quick CPU figure

Runs the trainer's own epoch loop (data resident on the device as uint8, augmentation on the device,
forward, backward, masking, optimizer, LR schedule) on synthetic CIFAR-shaped data (``dataset=synthetic``),
after one warm-up epoch, for each method at the same model, recipe and batch size. Prints images/s,
ms/step and the ratio to dense. RigL's topology update is timed separately and amortised over delta_t,
which gives its steady-state cost per step whatever the window measured. Positional arguments are
Hydra overrides, as for main.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from rigl_repro.training import Trainer  # noqa: E402


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def update_seconds(trainer: Trainer, repeats: int = 3) -> float:
    """Mean wall time of one topology update (drop and grow on every layer) after a dense backward."""
    images = trainer.data.train.images[: trainer.recipe.batch_size]
    labels = trainer.data.train.labels[: trainer.recipe.batch_size]
    times = []
    for _ in range(repeats):
        with trainer.autocast():
            nn.functional.cross_entropy(trainer.model(trainer.prepare(images)), labels).backward()
        synchronise(trainer.device)
        start = time.perf_counter()
        trainer.engine.update_topology(trainer.method.delta_t)
        synchronise(trainer.device)
        times.append(time.perf_counter() - start)
        trainer.optimizer.zero_grad(set_to_none=True)
    return statistics.mean(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (model=..., device=..., train.batch_size=...)")
    parser.add_argument("--methods", default="dense,static,rigl", help="comma-separated masking configs")
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per method (after one warm-up)")
    args = parser.parse_args()

    config_dir = Path(__file__).resolve().parents[1] / "conf"
    results = {}
    initialize = initialize_config_dir(config_dir=str(config_dir), version_base="1.3")
    with tempfile.TemporaryDirectory() as scratch, initialize:
        for method in args.methods.split(","):
            cfg = compose("config", overrides=[
                "dataset=synthetic", f"masking={method}", f"masking.density={args.density}", "logger.mode=disabled",
                *args.overrides,
            ])  # fmt: skip
            trainer = Trainer(cfg, Path(scratch) / method)
            trainer.train_epoch()  # warm-up: allocator, cuDNN autotuning, compilation
            timed = []
            for _ in range(args.epochs):
                start = time.perf_counter()
                trainer.train_epoch()  # ends with one host read, so the device has finished
                timed.append(time.perf_counter() - start)
            seconds = statistics.median(timed) / trainer.steps_per_epoch
            update = update_seconds(trainer) if method == "rigl" else 0.0
            results[method] = (trainer, seconds, update)

    first = next(iter(results.values()))[0]
    amp = first.autocast.keywords["enabled"]
    print(f"{cfg.model.name}, batch {first.recipe.batch_size}, density {args.density}, device {first.device}, "
          f"{first.steps_per_epoch} steps/epoch x {args.epochs} timed epochs, amp={amp}, "
          f"channels_last={first.channels_last}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    dense = results.get("dense", (None, float("nan"), 0.0))[1]
    print(f"\n{'method':<8} {'images/s':>10} {'ms/step':>9} {'vs dense':>9}")
    for method, (trainer, seconds, update) in results.items():
        print(f"{method:<8} {trainer.recipe.batch_size / seconds:10.0f} {seconds * 1e3:9.1f} {seconds / dense:9.3f}")
        if update:
            delta_t = trainer.method.delta_t
            amortised = seconds + update / delta_t
            print(f"{'':<8} topology update {update * 1e3:.1f} ms; amortised over delta_t={delta_t}: "
                  f"{amortised * 1e3:.1f} ms/step, {amortised / dense:.3f} x dense")


if __name__ == "__main__":
    main()
