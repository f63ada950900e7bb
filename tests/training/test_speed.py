"""The benchmark script, and (on a GPU) that a training step never synchronises with the host."""

import importlib
import multiprocessing
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rigl_repro.data import random_crop_flip
from rigl_repro.training import Trainer
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[2]


def test_bench_prints_throughput_and_overheads_side_by_side(tmp_path):
    command = [
        sys.executable, str(ROOT / "scripts" / "bench.py"), "device=cpu", "model=small_cnn", "dataset.image_size=8",
        "dataset.channels=1", "dataset.mean=[0.5]", "dataset.std=[0.29]", "dataset.train_pool=256", "--epochs", "1",
        "--concurrent", "2",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()}
    assert {"dense", "static", "rigl"} <= set(rows)
    assert float(rows["dense"][3]) == 1.0 and float(rows["rigl"][1]) > 0
    assert "topology update" in result.stdout and "amortised over delta_t=100" in result.stdout
    concurrent = re.search(
        r"concurrent: 2 RigL runs at once, combined (\d+) images/s; one after another (\d+) images/s; ([\d.]+) x",
        result.stdout,
    )
    together, alone, ratio = (float(value) for value in concurrent.groups())
    assert together > 0 and alone == float(rows["rigl"][1])
    assert abs(ratio - together / alone) < 0.01


@pytest.mark.parametrize(
    "arguments, message",
    [(["--methods", "dense", "--concurrent", "2"], "keep rigl in --methods"), (["--concurrent", "-1"], "invalid")],
)
def test_bench_refuses_bad_concurrent_options(tmp_path, arguments, message):
    command = [sys.executable, str(ROOT / "scripts" / "bench.py"), *arguments]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr.splitlines()[-1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_training_step_never_synchronises_with_the_host(tmp_path):
    cfg = compose_config("dataset=synthetic", "dataset.train_pool=512", "masking=rigl", "masking.delta_t=2")
    trainer = Trainer(cfg, tmp_path)
    train = trainer.data.train
    batches = torch.randperm(len(train), device=trainer.device).split(trainer.recipe.batch_size)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for indices in batches:  # a mask update every other step
            images = random_crop_flip(train.images[indices], 4, trainer.augment_generator)
            with trainer.autocast():
                loss = trainer.criterion(trainer.model(trainer.prepare(images)), train.labels[indices])
            loss.backward()
            trainer.engine.step()  # RigL's updates too: counts live on the host, selection stays on the device
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.scheduler.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_a_failing_concurrent_run_stops_the_benchmark_instead_of_hanging(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # the spawned runs import the script by name too
    bench = importlib.import_module("bench")
    configs = [compose_config("device=cpu", "train.epochs=1"), compose_config("device=cpu", "masking.density=2")]
    with pytest.raises(SystemExit, match="a concurrent run failed: ConfigError: masking.density=2"):
        bench.concurrent_images_per_second(configs, epochs=1)
    assert multiprocessing.active_children() == []  # the healthy run, waiting for the start, was stopped

