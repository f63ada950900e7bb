"""Training throughput of one RigL run trained by one process and by N (data-parallel, docs/benchmarks.md).

    python scripts/bench_distributed.py                                # 1 and 2 processes, WRN-22-2, batch 128
    python scripts/bench_distributed.py --processes 8 model=resnet50 dataset.num_classes=100
    python scripts/bench_distributed.py device=cpu dataset.train_pool=1280 --epochs 1   # a quick CPU figure
    python scripts/bench_distributed.py --json bench_distributed.json

Each run is the trainer's own epoch loop (``rigl_repro/training/distributed.py``: DistributedDataParallel,
global batch norm, the mask checksum after every update) on synthetic CIFAR-shaped data, timed over
``--epochs`` epochs after one warm-up epoch, at the recipe's global batch. On GPUs every process takes one GPU
(NCCL); on a CPU the processes share its cores (gloo), each computing with its share of them (unless
``threads=N`` is given), so the figures compare the same hardware used by one process or by N. Positional
arguments are Hydra overrides, as for main.py.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from rigl_repro.config import compose_config  # noqa: E402
from rigl_repro.launchers import usable_cores  # noqa: E402
from rigl_repro.results import atomic_write_json  # noqa: E402
from rigl_repro.run.config import RunConfig, resolve_device  # noqa: E402
from rigl_repro.training.distributed import start_processes  # noqa: E402
from rigl_repro.training.trainer import Trainer  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_worker(rank: int, world_size: int, port: int, overrides: list[str], epochs: int, out: Path) -> None:
    """One process of the run: a warm-up epoch, then ``epochs`` timed epochs; rank 0 writes its figures."""
    if world_size > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    config = RunConfig.from_hydra(compose_config(["dataset=synthetic", "masking=rigl", "logger.mode=disabled",
                                                  *overrides]))  # fmt: skip
    processes = start_processes(config.distributed, resolve_device(config.options.device), config.train.batch_size)
    try:
        trainer = Trainer(config, out / f"rank{rank}", processes)
        trainer.train_epoch()
        processes.barrier()
        start = time.perf_counter()
        for _ in range(epochs):
            trainer.train_epoch()  # ends with a host read of the summed losses: every device is done
        seconds = time.perf_counter() - start
        if processes.writes:
            figures = {
                "processes": world_size,
                "device": str(trainer.device),
                "cpu_threads_each": trainer.threads,
                "images": len(trainer.data.train) * epochs,
                "seconds": seconds,
                "images_per_s": len(trainer.data.train) * epochs / seconds,
                "ms_per_step": 1000 * seconds / (trainer.steps_per_epoch * epochs),
            }
            atomic_write_json(out / f"{world_size}.json", figures)
    finally:
        processes.close()


def measure(world_size: int, overrides: list[str], epochs: int, scratch: Path) -> dict[str, Any]:
    on_cpu = not torch.cuda.is_available() or any(o.startswith("device=cpu") for o in overrides)
    chosen = any(o.startswith("threads=") for o in overrides)  # else each process gets its share of the cores
    threads = [f"threads={max(1, usable_cores() // world_size)}"] if on_cpu and not chosen else []
    arguments = (world_size, free_port(), [*overrides, *threads], epochs, scratch)
    if world_size == 1:
        rank_worker(0, *arguments)
    else:
        mp.start_processes(rank_worker, args=arguments, nprocs=world_size, start_method="spawn")
    return json.loads((scratch / f"{world_size}.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (model=..., device=..., train.batch_size=...)")
    parser.add_argument("--processes", type=int, default=2, metavar="N", help="compared with one process")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    if args.processes < 2:
        parser.error(f"--processes {args.processes} is invalid; expected 2 or more (compared with one)")
    if torch.cuda.is_available() and "device=cpu" not in args.overrides and torch.cuda.device_count() < args.processes:
        parser.error(f"--processes {args.processes} needs as many GPUs; this machine has {torch.cuda.device_count()}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for world_size in (1, args.processes):
            rows.append(measure(world_size, args.overrides, args.epochs, Path(scratch)))
    alone = rows[0]["images_per_s"]
    print(f"RigL, {' '.join(args.overrides) or 'WRN-22-2 on synthetic CIFAR-shaped data'}, {args.epochs} timed epochs")
    print(f"{'processes':>9}  {'device':>8}  {'threads':>7}  {'images/s':>9}  {'ms/step':>8}  speed-up")
    for row in rows:
        row["speed_up"] = row["images_per_s"] / alone
        print(f"{row['processes']:>9}  {row['device']:>8}  {row['cpu_threads_each']:>7}  {row['images_per_s']:>9.0f}  "
              f"{row['ms_per_step']:>8.1f}  {row['speed_up']:.2f}x")
    if args.json:
        atomic_write_json(args.json, {"command": sys.argv[1:], "runs": rows})


if __name__ == "__main__":
    main()
