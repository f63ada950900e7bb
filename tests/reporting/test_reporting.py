"""Tables and figures from runs, with summaries written for the exact configurations experiments run."""

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from omegaconf import OmegaConf

from rigl_repro.reporting import published
from rigl_repro.reporting.figures import FIGURES
from rigl_repro.reporting.runs import RunIndex, runs_frame, wandb_summaries
from rigl_repro.reporting.tables import STAND_IN_NOTE, TABLES, build_table, build_table4, write_table
from rigl_repro.training.session import run
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[2]


def write_run(index, experiment, overrides, seed, test_acc, val_acc=0.9, name=None):
    """A finished run's summary.json for the configuration ``experiment`` runs at this grid point."""
    config = OmegaConf.to_container(OmegaConf.merge(index.compose(experiment, overrides), {"seed": seed}), resolve=True)
    run_dir = index.root / (name or f"{experiment}-{'-'.join(overrides)}-{seed}".replace("=", "_"))
    run_dir.mkdir(parents=True)
    summary = {
        "config": config, "method": config["masking"]["name"], "test_acc": test_acc, "val_acc": val_acc,
        "density": config["masking"]["density"], "epochs": 4, "wall_time_s": 1.0,
        "layer_densities": {"features.0.weight": 1.0, "features.3.weight": 0.2, "features.6.weight": 0.1,
                            "fc.weight": 0.5},
        "flops": {"train_relative": 0.2, "inference_relative": 0.1, "trajectory": [[0, 0.1], [9, 0.12]]},
    }  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return summary


@pytest.fixture
def index(tmp_path):
    return RunIndex(tmp_path / "runs", "smoke")


@pytest.fixture
def paper(tmp_path):
    """Runs of the report's own settings (composed only: nothing is trained)."""
    return RunIndex(tmp_path / "runs", "paper")


def test_cells_report_mean_std_missing_seeds_best_and_the_report(paper):
    write_run(paper, "table2", ["variant=rigl", "masking.density=0.1"], 0, 0.90)
    write_run(paper, "table2", ["variant=rigl", "masking.density=0.1"], 1, 0.92)
    write_run(paper, "table2", ["variant=set", "masking.density=0.1"], 0, 0.80)
    # A look-alike from another grid (Figure 2's learning-rate sweep) must not be counted.
    write_run(paper, "sweep_lr", ["variant=rigl", "rigl_hparams=a0.4_dt200", "train.lr=0.05", "masking.density=0.1"],
              0, 0.10)  # fmt: skip
    frame = build_table(RunIndex(paper.root, "paper"), TABLES["table2"]).set_index(["variant", "density"])
    rigl, set_, static = frame.loc[("rigl", 0.1)], frame.loc[("set", 0.1)], frame.loc[("static", 0.1)]
    assert (rigl.seeds, rigl.expected_seeds) == (2, 3)  # the paper scale runs three seeds
    assert rigl.acc_mean == pytest.approx(91.0) and rigl.acc_std == pytest.approx(math.sqrt(2))
    assert rigl.report_acc == 91.7 and rigl.acc_diff == pytest.approx(-0.7)
    assert (set_.seeds, static.seeds) == (1, 0) and math.isnan(static.acc_mean)
    assert rigl.train_flops == 0.2 and rigl.report_train_flops == "0.10"


def test_written_tables_show_bold_best_and_missing_cells(paper, tmp_path):
    write_run(paper, "table2", ["variant=rigl", "masking.density=0.1"], 0, 0.90)
    write_run(paper, "table2", ["variant=set", "masking.density=0.1"], 0, 0.80)
    write_run(paper, "table2", ["variant=set", "masking.density=0.1"], 1, 0.82)
    paths = write_table("table2", RunIndex(paper.root, "paper"), tmp_path / "out")
    assert [p.suffix for p in paths] == [".md", ".tex", ".csv"]
    markdown = paths[0].read_text()
    assert markdown.splitlines()[:3] == [  # runs of the report's WRN-22-2 on CIFAR-10: the report's comparison
        "Table 2: WRN-22-2 on CIFAR-10", "",
        ("| Method | 1-s=0.1: ours | 1-s=0.1: FLOPs (train, test) | 1-s=0.1: report (ours - report) | 1-s=0.2: ours "
         "| 1-s=0.2: FLOPs (train, test) | 1-s=0.2: report (ours - report) |"),
    ]  # fmt: skip
    assert STAND_IN_NOTE not in markdown and paths[1].read_text().startswith(r"\begin{tabular}")
    rigl = next(line for line in markdown.splitlines() if line.startswith("| RigL |"))
    assert "**90.0** (1/3 seeds)" in rigl and "91.7 ± 0.2 (-1.7)" in rigl
    static = next(line for line in markdown.splitlines() if line.startswith("| Static |"))
    assert "– (0/3 seeds)" in static
    assert r"\textbf{90.0}" in paths[1].read_text()
    assert len(pd.read_csv(paths[2])) == sum(len(g) for g in TABLES["table2"].groups) * 2 + 1


def test_a_table_of_runs_of_another_dataset_and_model_says_so_and_compares_nothing(index, tmp_path):
    """make table2 SCALE=smoke: small_cnn on digits, not the report's WRN-22-2 on CIFAR-10."""
    write_run(index, "table2", ["variant=rigl", "masking.density=0.1"], 0, 0.90)
    write_run(index, "table2", ["variant=set", "masking.density=0.1"], 0, 0.80)
    markdown, latex, csv = write_table("table2", RunIndex(index.root, "smoke"), tmp_path / "out")
    lines = markdown.read_text().splitlines()
    assert lines[:3] == [
        "Table 2 at smoke scale: small_cnn on digits (the paper: WRN-22-2 on CIFAR-10)", "",
        "| Method | 1-s=0.1: ours | 1-s=0.1: FLOPs (train, test) | 1-s=0.2: ours | 1-s=0.2: FLOPs (train, test) |",
    ]  # fmt: skip
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    assert rows["| RigL"] == "| RigL | **90.0** (1/2 seeds) | 0.20x, 0.10x | – (0/2 seeds) |  |"
    assert "91.7" not in markdown.read_text() and lines[-1] == STAND_IN_NOTE  # no report value, no difference
    assert latex.read_text().splitlines()[0] == f"% {lines[0]}"
    frame = pd.read_csv(csv)
    assert frame["report_acc"].isna().all() and frame["acc_diff"].isna().all() and "RigL 2x" in set(frame["row"])


def test_table4_takes_the_trial_with_the_best_mean_validation_accuracy(paper):
    for seed, acc in ((0, 0.91), (1, 0.93)):
        write_run(paper, "table4_reference", ["variant=rigl", "masking.density=0.1"], seed, acc)
    for alpha, delta_t, val in ((0.2, 50, 0.95), (0.5, 300, 0.90)):
        for seed in (0, 1):
            overrides = ["variant=rigl", "masking.density=0.1", f"masking.alpha={alpha}", f"masking.delta_t={delta_t}"]
            write_run(paper, "sweep_alpha_dt", overrides, seed, 0.8 + seed / 100, val_acc=val)
    frame = build_table4(RunIndex(paper.root, "paper")).set_index(["initialization", "density"])
    row = frame.loc[("Random", 0.1)]
    assert (row.optimal_alpha, row.optimal_delta_t, row.trials) == (0.2, 50, 2)
    assert row.optimal_acc == pytest.approx(80.5) and row.reference_acc == pytest.approx(92.0)
    assert row.report_optimal == "0.197, 50" and row.report_optimal_acc == 91.8
    assert row.report_reference_acc == 91.7 and row.report_reference_std == 0.18


@pytest.mark.slow  # 35-40 s (a composed config per cell); tests/reporting/test_writes.py writes every figure
def test_every_figure_is_written_as_png_and_pdf(index, tmp_path):
    write_run(index, "fig1", ["variant=rigl", "masking.density=0.1"], 0, 0.9)
    write_run(index, "table5_cifar10", ["variant=rigl_sm", "masking.density=0.2"], 0, 0.9)
    rebuilt = RunIndex(index.root, "smoke")
    for name, draw in FIGURES.items():
        paths = draw(rebuilt, tmp_path / "figs")
        assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
        assert all(p.stat().st_size > 1000 for p in paths)


def test_runs_frame_and_wandb_runs_share_one_shape(index):
    summary = write_run(index, "table2", ["variant=rigl", "masking.density=0.1"], 0, 0.9)
    run = SimpleNamespace(id="abc", config=summary["config"], summary={k: summary[k] for k in
                          ("test_acc", "val_acc", "density", "flops", "epochs", "wall_time_s", "layer_densities")})
    unfinished = SimpleNamespace(id="def", config=summary["config"], summary={})
    api = SimpleNamespace(runs=lambda path: [run, unfinished])
    from_wandb = wandb_summaries("project", "team", api=api)
    assert len(from_wandb) == 1 and from_wandb[0]["run_dir"] == "wandb:team/project/abc"
    local = runs_frame(RunIndex(index.root, "smoke").summaries)
    remote = runs_frame(from_wandb)
    assert list(local.columns) == list(remote.columns)
    assert local.drop(columns="run_dir").equals(remote.drop(columns="run_dir"))
    assert local.loc[0, "variant"] == "rigl" and local.loc[0, "test_acc"] == 90.0


def test_published_numbers_cover_every_table():
    rows = published()
    assert {row["table"] for row in rows} == {"1", "2", "3", "4", "5"}
    assert all(row["accuracy"] for row in rows)


def test_the_fashion_mnist_table_has_no_report_column(index, tmp_path):
    write_run(index, "fmnist", ["variant=rigl", "masking.density=0.05"], 0, 0.86)
    write_run(index, "fmnist", ["variant=rigl_erk", "masking.density=0.05"], 0, 0.85)
    write_run(index, "fmnist_dense", ["variant=dense", "masking.density=1.0"], 0, 0.90)
    paths = write_table("fmnist", RunIndex(index.root, "smoke"), tmp_path / "out")
    lines = paths[0].read_text().splitlines()
    assert lines[0] == ("The Fashion-MNIST table (beyond the report) at smoke scale: small_cnn on digits "
                        "(as designed: LeNet-5 on Fashion-MNIST)")  # fmt: skip
    assert "report" not in lines[2]
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    assert "**86.0** (1/2 seeds)" in rows["| RigL"] and "**85.0** (1/2 seeds)" in rows["| RigL (ERK)"]
    assert "90.0 (1/2 seeds)" in rows["| Dense Baseline"]


def test_the_mask_dynamics_script_tables_and_plots_finished_runs(tmp_path):
    for method, interval in (("static", []), ("rigl", ["masking.delta_t=5"]), ("dense", [])):
        run(compose_config("train.epochs=2", *interval, f"masking={method}", "masking.density=0.1"),
            tmp_path / method)  # fmt: skip
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "mask_dynamics.py"), str(tmp_path)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    # the last six columns: seeds, ever active, density (budgeted), density_all_layers, replaced first and last
    rows = {line.split(" (")[0]: line.split()[-6:] for line in result.stdout.splitlines() if " at 0.1 " in line}
    assert set(rows) == {"static", "rigl"}  # dense explores nothing to plot
    static, rigl = rows["static"], rows["rigl"]
    assert static[1] == static[3] and static[4:] == ["-", "-"]  # ever active == all layers' density; no updates
    assert float(static[2]) == float(rigl[2]) == 0.1  # budgeted: the target (to 3 decimals)
    assert float(static[3]) > 0.1  # every masked layer: Uniform's dense first layer too
    assert float(rigl[1]) > float(rigl[3]) and float(rigl[4]) > float(rigl[5]) > 0  # explored; turnover decays
    assert (tmp_path / "mask_dynamics.png").stat().st_size > 10_000


def test_the_mask_dynamics_script_says_when_there_is_nothing_to_show(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "mask_dynamics.py"), str(tmp_path)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: no finished sparse run with mask dynamics below {tmp_path}"
    ]


@pytest.mark.parametrize("variant", ["dense", "static", "pruning", "small_dense"])
def test_runs_of_the_old_masking_layout_read_as_runs_of_the_new(index, variant):
    """Summaries written before each method took only its own options hold all the shared keys."""
    from tests.sparsity.test_config import OLD_SHARED

    summary = write_run(index, "table2", [f"variant={variant}", "masking.density=0.1"], 0, 0.9)
    old = json.loads(json.dumps(summary))
    old["config"]["masking"] = {**OLD_SHARED, **summary["config"]["masking"]}
    new_row, old_row = (runs_frame([s]).drop(columns="run_dir") for s in (summary, old))
    assert new_row.equals(old_row)
    assert new_row.loc[0, "density"] == 0.1 and new_row.loc[0, "method"] == variant
