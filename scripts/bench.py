"""Training throughput of dense, static and RigL, measured side by side in one process.

    python scripts/bench.py                                   # WRN-22-2, batch 128, CUDA if present
    python scripts/bench.py model=resnet50 dataset.num_classes=100 --epochs 2
    python scripts/bench.py device=cpu dataset.train_pool=1280 --epochs 1      # a quick CPU figure
    python scripts/bench.py --concurrent 3          # also 3 RigL runs at once on the device (seeds of a table)
    python scripts/bench.py --json bench.json       # every figure also as JSON (rewritten after each method)

Runs the trainer's own epoch loop (data resident on the device as uint8, augmentation on the device,
forward, backward, masking, optimizer, LR schedule) on synthetic CIFAR-shaped data (``dataset=synthetic``),
after one warm-up epoch, for each method at the same model, recipe and batch size. Prints images/s,
ms/step and the ratio to dense. RigL's topology update is timed separately and amortised over delta_t,
which gives its steady-state cost per step whatever the window measured. Positional arguments are
Hydra overrides, as for main.py.

``--concurrent N`` then starts N RigL runs (seeds 0..N-1) in N processes on the same device, as
``LAUNCHER=parallel`` does, and times their timed epochs from the moment all have warmed up: their combined
images/s against one RigL run at a time tells whether running a table's seeds together pays on this device.
On a CPU the processes split the cores between them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.synchronize
import os
import queue
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from rigl_repro.config import compose_config  # noqa: E402
from rigl_repro.launchers import usable_cores  # noqa: E402
from rigl_repro.run.threads import thread_count  # noqa: E402
from rigl_repro.training.trainer import Trainer  # noqa: E402


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def update_seconds(trainer: Trainer, repeats: int = 3) -> float:
    """Mean wall time of one topology update (drop and grow on every layer) after a dense backward."""
    images = trainer.data.train.images[: trainer.recipe.batch_size]
    labels = trainer.data.train.labels[: trainer.recipe.batch_size]
    times = []
    for _ in range(repeats):
        with trainer.precision.autocast():
            nn.functional.cross_entropy(trainer.model(trainer.prepare(images)), labels).backward()
        synchronise(trainer.device)
        start = time.perf_counter()
        trainer.engine.update_topology(trainer.method.delta_t)
        synchronise(trainer.device)
        times.append(time.perf_counter() - start)
        trainer.optimizer.zero_grad(set_to_none=True)
    return statistics.mean(times)


def bench_config(method: str, density: float, seed: int, overrides: list[str]) -> DictConfig:
    """The run's config on synthetic CIFAR-shaped data."""
    return compose_config([
        "dataset=synthetic", f"masking={method}", f"masking.density={density}", "logger.mode=disabled", f"seed={seed}",
        *overrides,
    ])  # fmt: skip


def time_epochs(trainer: Trainer, epochs: int) -> list[float]:
    """Wall seconds of each of ``epochs`` training epochs (each ends with a host read, so the device is done)."""
    timed = []
    for _ in range(epochs):
        start = time.perf_counter()
        trainer.train_epoch()
        timed.append(time.perf_counter() - start)
    return timed


def concurrent_worker(
    cfg: DictConfig, epochs: int, go: multiprocessing.synchronize.Event, messages: multiprocessing.Queue
) -> None:
    """One of the concurrent runs: warm up, say so, wait for the others, train ``epochs`` epochs, report the
    images it trained on. A failure is reported too, so the benchmark never waits for a run that is gone."""
    parent = multiprocessing.parent_process()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            trainer = Trainer(cfg, Path(scratch))
            trainer.train_epoch()
            messages.put(("ready", 0))
            while not go.wait(timeout=1.0):
                if not parent.is_alive():  # the benchmark was stopped: give the device back
                    return
            time_epochs(trainer, epochs)
            messages.put(("done", epochs * len(trainer.data.train)))
    except BaseException as error:
        messages.put(("failed", f"{type(error).__name__}: {error}"))
        raise


def collect(messages: multiprocessing.Queue, workers: list[multiprocessing.Process]) -> list[int]:
    """One message from every worker, in any order; stops the benchmark if a run fails or dies."""
    values: list[int] = []
    while len(values) < len(workers):
        try:
            kind, value = messages.get(timeout=1.0)
        except queue.Empty:
            dead = [worker.exitcode for worker in workers if worker.exitcode not in (None, 0)]
            if dead:
                raise SystemExit(f"a concurrent run died (exit code {dead[0]})") from None
            continue
        if kind == "failed":
            raise SystemExit(f"a concurrent run failed: {value}")
        values.append(value)
    return values


def concurrent_images_per_second(configs: list[DictConfig], epochs: int) -> float:
    """Combined training images/s of one process per config, all on the device at once, after their warm-up."""
    context = torch.multiprocessing.get_context("spawn")  # a fresh process, and CUDA context, per run
    go, messages = context.Event(), context.Queue()
    workers = [context.Process(target=concurrent_worker, args=(cfg, epochs, go, messages)) for cfg in configs]
    for worker in workers:
        worker.start()
    try:
        collect(messages, workers)  # every run has warmed up
        go.set()
        start = time.perf_counter()
        images = sum(collect(messages, workers))
        return images / (time.perf_counter() - start)
    except BaseException:
        for worker in workers:
            worker.terminate()
        raise
    finally:
        for worker in workers:
            worker.join()


@dataclass(frozen=True)
class Measured:
    """One method's steady-state speed."""

    images_per_second: float
    seconds_per_step: float
    update_seconds: float = 0.0  # RigL's topology update
    delta_t: int = 0


def measure(trainer: Trainer, epochs: int) -> Measured:
    """Median of ``epochs`` timed epochs after a warm-up one, and RigL's topology update."""
    trainer.train_epoch()  # warm-up: allocator, cuDNN autotuning, compilation
    seconds = statistics.median(time_epochs(trainer, epochs))
    measured = Measured(len(trainer.data.train) / seconds, seconds / trainer.steps_per_epoch)
    if trainer.method.name == "rigl":
        return replace(measured, update_seconds=update_seconds(trainer), delta_t=trainer.method.delta_t)
    return measured


def method_figures(results: dict[str, Measured]) -> dict[str, dict[str, Any]]:
    """Each method's images/s, ms/step and ratio to dense (None without a dense run); for RigL also the topology
    update and the step time with it amortised over delta_t (the steady-state cost per step)."""
    dense = results["dense"].seconds_per_step if "dense" in results else None
    figures: dict[str, dict[str, Any]] = {}
    for method, measured in results.items():
        seconds = measured.seconds_per_step
        row: dict[str, Any] = {
            "images_per_second": measured.images_per_second,
            "ms_per_step": seconds * 1e3,
            "vs_dense": None if dense is None else seconds / dense,
        }
        if measured.update_seconds:
            amortised = seconds + measured.update_seconds / measured.delta_t
            row.update(update_ms=measured.update_seconds * 1e3, delta_t=measured.delta_t,
                       amortised_ms_per_step=amortised * 1e3,
                       amortised_vs_dense=None if dense is None else amortised / dense)  # fmt: skip
        figures[method] = row
    return figures


def concurrent_figures(runs: int, together: float, alone: float) -> dict[str, Any]:
    """N runs at once against one after another: combined images/s over one run's images/s."""
    return {"runs": runs, "combined_images_per_second": together, "alone_images_per_second": alone,
            "ratio": together / alone, "pays": together > alone}  # fmt: skip


def ratio_text(ratio: float | None, width: int = 0) -> str:
    return f"{'-' if ratio is None else f'{ratio:.3f}':>{width}}"


def print_table(figures: dict[str, dict[str, Any]]) -> None:
    """The figures as a table (the JSON holds the same numbers unrounded)."""
    print(f"\n{'method':<8} {'images/s':>10} {'ms/step':>9} {'vs dense':>9}")
    for method, row in figures.items():
        speed = f"{row['images_per_second']:10.0f} {row['ms_per_step']:9.1f}"
        print(f"{method:<8} {speed} {ratio_text(row['vs_dense'], 9)}")
        if "update_ms" in row:
            print(f"{'':<8} topology update {row['update_ms']:.1f} ms; amortised over delta_t={row['delta_t']}: "
                  f"{row['amortised_ms_per_step']:.1f} ms/step, {ratio_text(row['amortised_vs_dense'])} x dense")


def print_concurrent(row: dict[str, Any]) -> None:
    verdict = "pays" if row["pays"] else "does not pay"
    print(f"\nconcurrent: {row['runs']} RigL runs at once, combined {row['combined_images_per_second']:.0f} "
          f"images/s; one after another {row['alone_images_per_second']:.0f} images/s; {row['ratio']:.2f} x, "
          f"running them together {verdict}")


def write_json(path: Path | None, report: dict[str, Any]) -> None:
    """The figures so far, replaced whole (a benchmark stopped part-way still leaves the methods it measured)."""
    if path is None:
        return
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(path)


def setup_figures(trainer: Trainer, density: float, epochs: int) -> dict[str, Any]:
    """What was measured, on what: the first method's trainer stands for all (same model, recipe and device)."""
    device = trainer.device
    return {
        "model": trainer.config.model.name, "batch_size": trainer.recipe.batch_size, "density": density,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "steps_per_epoch": trainer.steps_per_epoch, "timed_epochs": epochs,
        "amp": trainer.precision.amp, "channels_last": trainer.precision.channels_last,
        "compile": str(trainer.recipe.compile), "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (model=..., device=..., train.batch_size=...)")
    parser.add_argument("--methods", default="dense,static,rigl", help="comma-separated masking configs")
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per method (after one warm-up)")
    parser.add_argument("--concurrent", type=int, default=0, metavar="N", help="then N RigL runs at once")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write every figure here")
    args = parser.parse_args()
    if args.concurrent < 0:
        parser.error(f"--concurrent {args.concurrent} is invalid; expected the number of runs at once, >= 1")
    if args.concurrent and "rigl" not in args.methods.split(","):
        parser.error("--concurrent compares against one RigL run: keep rigl in --methods")

    results: dict[str, Measured] = {}
    report: dict[str, Any] = {"command": sys.argv[1:], "setup": {}, "methods": {}, "concurrent": None}
    with tempfile.TemporaryDirectory() as scratch:
        for method in args.methods.split(","):
            trainer = Trainer(bench_config(method, args.density, 0, args.overrides), Path(scratch) / method)
            results[method] = measure(trainer, args.epochs)
            if len(results) == 1:
                report["setup"] = setup = setup_figures(trainer, args.density, args.epochs)
                print(f"{setup['model']}, batch {setup['batch_size']}, density {args.density}, "
                      f"device {setup['device']}, {setup['steps_per_epoch']} steps/epoch x {args.epochs} timed "
                      f"epochs, amp={setup['amp']}, channels_last={setup['channels_last']}, "
                      f"torch {setup['torch']}, {setup['cpu_threads']} CPU threads")
            report["methods"] = method_figures(results)
            write_json(args.json, report)
            del trainer  # its model, data and optimizer leave the device before the next method's
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        # The trainer's thread policy (rigl_repro/run/threads.py) for both figures: one run alone uses its
        # share for one run, each of N runs at once its share for N, as under LAUNCHER=parallel JOBS=N.
        setting = bench_config("rigl", args.density, 0, args.overrides).threads
        share = thread_count(setting, usable_cores(), max(1, args.concurrent), os.environ)
        seeds = range(args.concurrent)
        concurrent_configs = [
            bench_config("rigl", args.density, seed, [*args.overrides, f"threads={share}"]) for seed in seeds
        ]

    print_table(report["methods"])
    if concurrent_configs:
        together = concurrent_images_per_second(concurrent_configs, args.epochs)
        report["concurrent"] = concurrent_figures(args.concurrent, together, results["rigl"].images_per_second)
        report["concurrent"]["cpu_threads_each"] = share
        write_json(args.json, report)
        print_concurrent(report["concurrent"])


if __name__ == "__main__":
    main()
