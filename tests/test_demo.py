"""The demo's two scripts: fetching the data (a one-line error when it cannot be had) and the report."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def script(name, *args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], cwd=cwd, capture_output=True,
                          text=True, check=False)  # fmt: skip


def test_missing_data_stops_with_one_line_that_says_how_to_get_it(tmp_path):
    result = script("fetch_data.py", "dataset=fashion_mnist", f"dataset.root={tmp_path}", "dataset.system_root=null",
                    "dataset.download=false", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "apt-get install dataset-fashion-mnist" in result.stderr


def test_fetching_the_embedded_digits_reports_the_splits(tmp_path):
    result = script("fetch_data.py", "dataset=digits", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "digits: 1247 train, 250 val, 300 test images of shape (1, 8, 8)"


def test_the_demo_and_the_fmnist_experiment_run_lenet5_on_fashion_mnist():
    from rigl_repro.config import compose_config

    demo = compose_config(["experiment=demo"], with_hydra=True)
    fmnist = compose_config(["experiment=fmnist"], with_hydra=True)
    for cfg in (demo, fmnist):
        assert (cfg.dataset.name, cfg.model.name, cfg.train.batch_size) == ("fashion_mnist", "lenet5", 128)
    assert (demo.train.epochs, demo.masking.density) == (5, 0.05)
    assert demo.hydra.sweeper.params.masking == "dense,static,set,rigl,snfs"
    assert fmnist.train.epochs == 10 and fmnist.hydra.sweeper.params["masking.density"] == "0.05,0.1,0.2"


def summary(method, seed, test_acc):
    history = [{"epoch": epoch, "val_acc": test_acc - 0.1 / epoch} for epoch in (1, 2, 3)]
    config = {"masking": {"name": method, "distribution": "uniform", "density": 0.05},
              "dataset": {"name": "fashion_mnist"}, "model": {"name": "lenet5"}}  # fmt: skip
    return {"config": config, "test_acc": test_acc, "val_acc": test_acc, "density": 1.0 if method == "dense" else 0.05,
            "epochs": 3, "wall_time_s": 2.0, "history": history}  # fmt: skip


def test_the_report_averages_seeds_orders_methods_and_plots(tmp_path):
    runs = [("rigl", 0, 0.86), ("rigl", 1, 0.88), ("static", 0, 0.82), ("dense", 0, 0.9)]
    for method, seed, acc in runs:
        folder = tmp_path / f"{method}-{seed}"
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps(summary(method, seed, acc)))
    result = script("demo_report.py", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines()[2:5]]
    assert rows == ["dense", "static", "rigl"]
    assert "87.0 ± 1.4" in result.stdout and (tmp_path / "accuracy.png").stat().st_size > 1000
