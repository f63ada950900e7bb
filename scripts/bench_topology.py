"""Time one RigL topology update (drop + grow on every layer) against one training step of the same model.

    python scripts/bench_topology.py                       # CIFAR ResNet-50, batch 128, on CUDA if present
    python scripts/bench_topology.py --model wrn22_2 --device cpu --steps 5
    python scripts/bench_topology.py --json topology.json     # the figures also as JSON

The training step is forward, backward and the engine's masked optimizer step at the given batch size on
synthetic CIFAR-shaped data; the update is ``SparseEngine.update_topology`` at the step where the drop
fraction is largest. Both are timed in one process on the same device, after warm-up, and the script
prints the mean of each and their ratio (the bar: the update costs less than one step).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from rigl_repro.models import MODELS  # noqa: E402
from rigl_repro.results import atomic_write_json  # noqa: E402
from rigl_repro.sparsity import SparseEngine, build_method  # noqa: E402

NUM_CLASSES = {"wrn22_2": 10, "resnet50": 100, "small_cnn": 10}
INPUT_SHAPE = {"wrn22_2": (3, 32, 32), "resnet50": (3, 32, 32), "small_cnn": (1, 8, 8)}


def timed(fn: Callable[[], None], device: torch.device, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn``, synchronising the device around each."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet50")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--distribution", default="erk")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up)")
    parser.add_argument("--updates", type=int, default=3, help="timed topology updates (after one warm-up)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = MODELS[args.model](NUM_CLASSES[args.model]).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    method = build_method({"name": "rigl", "density": args.density, "distribution": args.distribution})
    engine = SparseEngine(model, optimizer, method, total_steps=10_000)
    inputs = torch.randn(args.batch_size, *INPUT_SHAPE[args.model], device=device)
    targets = torch.randint(0, NUM_CLASSES[args.model], (args.batch_size,), device=device)

    def training_step() -> None:
        nn.functional.cross_entropy(model(inputs), targets).backward()
        engine.step()
        optimizer.zero_grad(set_to_none=True)

    def topology_update() -> None:
        engine.update_topology(method.delta_t)  # the first update, where the drop fraction is largest

    step_times = timed(training_step, device, args.steps + 1)[1:]
    nn.functional.cross_entropy(model(inputs), targets).backward()  # RigL grows from this dense gradient
    update_times = timed(topology_update, device, args.updates + 1)[1:]

    weights = sum(layer.size for layer in engine.layers)
    step, update = statistics.mean(step_times), statistics.mean(update_times)
    print(f"model {args.model}, {weights:,} masked weights, density {args.density} ({args.distribution}), "
          f"batch {args.batch_size}, device {device} ({torch.get_num_threads()} CPU threads)")
    print(f"training step   : {step * 1e3:10.1f} ms  (mean of {len(step_times)})")
    print(f"topology update : {update * 1e3:10.1f} ms  (mean of {len(update_times)})")
    print(f"update / step   : {update / step:10.3f}  ({'meets' if update < step else 'MISSES'} the bar: < 1)")
    if args.json is not None:
        figures = {
            "model": args.model, "masked_weights": weights, "density": args.density,
            "distribution": args.distribution, "batch_size": args.batch_size, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
            "step_ms": step * 1e3, "update_ms": update * 1e3, "update_over_step": update / step,
            "step_times_ms": [t * 1e3 for t in step_times], "update_times_ms": [t * 1e3 for t in update_times],
        }  # fmt: skip
        atomic_write_json(args.json, figures)


if __name__ == "__main__":
    main()
