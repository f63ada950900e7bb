"""The benchmark script: its figures, its JSON and its refusals (the CUDA paths: tests/training/test_cuda.py)."""

import importlib
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rigl_repro.launchers import usable_cores
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[2]


def load_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # spawned runs import the script by name too
    return importlib.import_module("bench")


@pytest.mark.slow  # 11 s: the benchmark script end to end (make bench); its parts are tested by default
def test_bench_prints_and_writes_throughput_and_overheads_side_by_side(tmp_path):
    command = [
        sys.executable, str(ROOT / "scripts" / "bench.py"), "device=cpu", "model=small_cnn", "dataset.image_size=8",
        "dataset.channels=1", "dataset.mean=[0.5]", "dataset.std=[0.29]", "dataset.train_pool=256", "--epochs", "1",
        "--concurrent", "2", "--json", str(tmp_path / "bench.json"),
    ]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    # Both figures under the trainer's thread policy: all the cores for one run, half each for two at once.
    assert report["setup"]["cpu_threads"] == usable_cores()
    assert report["concurrent"]["cpu_threads_each"] == max(1, usable_cores() // 2)
    assert report["setup"]["model"] == "small_cnn" and report["setup"]["device"] == "cpu"
    assert report["setup"]["steps_per_epoch"] == 2 and report["setup"]["batch_size"] == 128
    methods = report["methods"]
    assert list(methods) == ["dense", "static", "rigl"] and methods["dense"]["vs_dense"] == 1.0
    assert methods["rigl"]["delta_t"] == 100 and methods["rigl"]["update_ms"] > 0
    concurrent = report["concurrent"]
    assert concurrent["runs"] == 2 and concurrent["alone_images_per_second"] == methods["rigl"]["images_per_second"]
    assert concurrent["ratio"] == concurrent["combined_images_per_second"] / concurrent["alone_images_per_second"]
    # The printed table is the JSON's figures, rounded: whatever the machine's load made them.
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()}
    for method, row in methods.items():
        assert rows[method][1:] == [f"{row['images_per_second']:.0f}", f"{row['ms_per_step']:.1f}",
                                    f"{row['vs_dense']:.3f}"]  # fmt: skip
    assert f"amortised over delta_t=100: {methods['rigl']['amortised_ms_per_step']:.1f} ms/step" in result.stdout
    assert (f"concurrent: 2 RigL runs at once, combined {concurrent['combined_images_per_second']:.0f} images/s; "
            f"one after another {concurrent['alone_images_per_second']:.0f} images/s; {concurrent['ratio']:.2f} x"
            ) in result.stdout  # fmt: skip


def test_bench_ratios_and_amortised_update_from_given_timings(monkeypatch):
    bench = load_bench(monkeypatch)
    results = {
        "dense": bench.Measured(images_per_second=1000.0, seconds_per_step=0.128),
        "static": bench.Measured(images_per_second=980.0, seconds_per_step=0.130),
        "rigl": bench.Measured(images_per_second=900.0, seconds_per_step=0.144, update_seconds=0.4, delta_t=100),
    }
    figures = bench.method_figures(results)
    assert figures["dense"] == {"images_per_second": 1000.0, "ms_per_step": 128.0, "vs_dense": 1.0}
    assert figures["static"]["vs_dense"] == pytest.approx(0.130 / 0.128) and "update_ms" not in figures["static"]
    rigl = figures["rigl"]
    assert rigl["vs_dense"] == pytest.approx(1.125) and rigl["update_ms"] == pytest.approx(400.0)
    assert rigl["amortised_ms_per_step"] == pytest.approx(148.0)  # 144 ms + 400 ms / 100 steps
    assert rigl["amortised_vs_dense"] == pytest.approx(148.0 / 128.0)
    without_dense = bench.method_figures({"rigl": results["rigl"]})["rigl"]
    assert without_dense["vs_dense"] is None and without_dense["amortised_vs_dense"] is None
    assert bench.concurrent_figures(3, 2400.0, 900.0) == {
        "runs": 3, "combined_images_per_second": 2400.0, "alone_images_per_second": 900.0,
        "ratio": 2400.0 / 900.0, "pays": True,
    }  # fmt: skip
    assert bench.concurrent_figures(2, 850.0, 900.0)["pays"] is False


@pytest.mark.parametrize(
    "arguments, message",
    [(["--methods", "dense", "--concurrent", "2"], "keep rigl in --methods"), (["--concurrent", "-1"], "invalid")],
)
def test_bench_refuses_bad_concurrent_options(tmp_path, arguments, message):
    command = [sys.executable, str(ROOT / "scripts" / "bench.py"), *arguments]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr.splitlines()[-1]


def test_a_failing_concurrent_run_stops_the_benchmark_instead_of_hanging(monkeypatch):
    bench = load_bench(monkeypatch)
    configs = [compose_config("device=cpu", "train.epochs=1"), compose_config("device=cpu", "masking.density=2")]
    with pytest.raises(SystemExit, match="a concurrent run failed: ConfigError: masking.density=2"):
        bench.concurrent_images_per_second(configs, epochs=1)
    assert multiprocessing.active_children() == []  # the healthy run, waiting for the start, was stopped

