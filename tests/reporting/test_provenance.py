"""Tables and figures say what their runs trained: a stand-in (scale=smoke: small_cnn on digits) says so in its
title and compares nothing with the report; runs of the report's datasets and models keep its titles."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from omegaconf import OmegaConf

from rigl_repro.reporting import figures
from rigl_repro.reporting.runs import Cell, Provenance, Setting
from rigl_repro.reporting.tables import STAND_IN_NOTE, TABLES, column_labels, write_table


class ComposedIndex:
    """A RunIndex without runs whose experiments compose to the dataset and model they train at ``scale``,
    without Hydra: the report's at ``paper``, the embedded digits with the small CNN at ``smoke``."""

    def __init__(self, scale: str) -> None:
        self.scale = scale
        self.summaries: list = []

    def compose(self, experiment, overrides=()):
        if self.scale == "smoke":
            dataset, model = "digits", "small_cnn"
        elif experiment.startswith("table3") or experiment.endswith("cifar100"):
            dataset, model = "cifar100", "resnet50"
        elif experiment.startswith("fmnist"):
            dataset, model = "fashion_mnist", "lenet5"
        else:
            dataset, model = "cifar10", "wrn22_2"
        return OmegaConf.create({"dataset": {"name": dataset}, "model": {"name": model}})

    def cell(self, experiment, overrides=()):
        return Cell([], 2, OmegaConf.to_container(self.compose(experiment)))

    def sweep_trials(self, dataset, variant, density):
        return pd.DataFrame(columns=["alpha", "delta_t", "seed", "val_acc", "test_acc", "test_std", "seeds"])


def test_a_stand_in_title_names_what_ran_and_what_the_paper_ran():
    origin = Provenance("smoke", (Setting("digits", "small_cnn"),), (Setting("cifar10", "wrn22_2"),))
    assert not origin.faithful
    assert origin.title("Table 2: WRN-22-2 on CIFAR-10", "Table 2") == (
        "Table 2 at smoke scale: small_cnn on digits (the paper: WRN-22-2 on CIFAR-10)"
    )
    faithful = Provenance("paper", (Setting("cifar10", "wrn22_2"),), (Setting("cifar10", "wrn22_2"),))
    assert faithful.faithful and faithful.title("Table 2: WRN-22-2 on CIFAR-10", "Table 2") == (
        "Table 2: WRN-22-2 on CIFAR-10"
    )


def test_table5_at_smoke_scale_labels_each_column_by_what_ran_and_has_no_report_column(tmp_path):
    md, tex, csv = write_table("table5", ComposedIndex("smoke"), tmp_path)
    lines = md.read_text().splitlines()
    assert lines[0] == ("Table 5 at smoke scale: effect of redistribution during RigL updates, small_cnn on digits "
                        "(the paper: WRN-22-2 on CIFAR-10, ResNet-50 on CIFAR-100)")  # fmt: skip
    assert lines[2].startswith("| Method | digits for CIFAR-10 1-s=0.1: ours | digits for CIFAR-10 1-s=0.1: FLOPs")
    assert "report" not in lines[2] and "digits for CIFAR-100 1-s=0.2: ours" in lines[2]
    assert lines[-1] == STAND_IN_NOTE
    assert tex.read_text().splitlines()[0] == f"% {lines[0]}"
    frame = pd.read_csv(csv)
    assert set(frame["dataset"]) == {"digits for CIFAR-10", "digits for CIFAR-100"}
    assert frame["report_acc"].isna().all() and frame["acc_diff"].isna().all()
    assert "RigL-SM (Random)" in set(frame["row"])  # the report's row names stay


def test_table5_of_the_report_s_settings_keeps_its_title_and_report_columns(tmp_path):
    md, tex, csv = write_table("table5", ComposedIndex("paper"), tmp_path)
    lines = md.read_text().splitlines()
    assert lines[0] == "Table 5: Effect of redistribution during RigL updates"
    assert "| CIFAR-10 1-s=0.1: report (ours - report) |" in lines[2] and STAND_IN_NOTE not in md.read_text()
    assert tex.read_text().startswith(r"\begin{tabular}")
    frame = pd.read_csv(csv)
    assert set(frame["dataset"]) == {"CIFAR-10", "CIFAR-100"} and frame["report_acc"].notna().any()


@pytest.mark.parametrize("scale, title, header", [
    ("paper", "Table 4: reference vs optimal (alpha, delta_t) on CIFAR-10 (Optuna TPE)",
     ("| Initialization | Density | Reference (0.3, 100): ours | report | Optimal (alpha, dT): ours | accuracy "
      "| report | report accuracy |")),
    ("smoke", ("Table 4 at smoke scale: reference vs optimal (alpha, delta_t) (Optuna TPE), small_cnn on digits "
               "(the paper: WRN-22-2 on CIFAR-10)"),
     "| Initialization | Density | Reference (0.3, 100): ours | Optimal (alpha, dT): ours | accuracy |"),
])  # fmt: skip
def test_table4_compares_with_the_report_only_for_its_settings(tmp_path, scale, title, header):
    md, tex, csv = write_table("table4", ComposedIndex(scale), tmp_path)
    lines = md.read_text().splitlines()
    assert lines[:3] == [title, "", header]
    frame = pd.read_csv(csv)
    assert frame["report_reference_acc"].notna().all() == (scale == "paper")
    assert tex.read_text().count(" & ") == (7 if scale == "paper" else 4) * 7  # header and six rows


def test_column_labels_of_the_report_s_settings_are_the_report_s():
    spec = TABLES["table5"]
    assert column_labels(spec, None) == ["CIFAR-10", "CIFAR-100"]


PAPER_TITLES = {  # as they were before issue 25
    "fig1": ["Figure 1: test accuracy vs density (cifar10, wrn22_2)", "Random", "ERK", "2x longer"],
    "fig2": ["Figure 2: learning rate vs density", "RigL (Random)", "RigL (ERK)"],
    "fig3": ["Figure 3: accuracy vs training FLOPs, Random vs ERK", "cifar10", "cifar100"],
    "fig4": ["Figure 4: effect of redistribution (density 0.2)", "FLOPs during training", ""],
    "fig_fmnist": ["Test accuracy vs density (fashion_mnist, lenet5)", "Random", "ERK"],
    "contours": ["(alpha, delta_t) trial space of the Optuna studies"],
}
SMOKE_TITLES = {
    "fig1": "Figure 1 at smoke scale: test accuracy vs density, small_cnn on digits (the paper: WRN-22-2 on CIFAR-10)",
    "fig2": "Figure 2 at smoke scale: learning rate vs density, small_cnn on digits (the paper: WRN-22-2 on CIFAR-10)",
    "fig3": "Figure 3 at smoke scale: accuracy vs training FLOPs, Random vs ERK, small_cnn on digits (the paper: "
            "WRN-22-2 on CIFAR-10, ResNet-50 on CIFAR-100)",
    "fig4": "Figure 4 at smoke scale: effect of redistribution (density 0.2), small_cnn on digits (the paper: WRN-22-2 "
            "on CIFAR-10)",
    "fig_fmnist": "The Fashion-MNIST figure (beyond the report) at smoke scale: test accuracy vs density, small_cnn on "
                  "digits (as designed: LeNet-5 on Fashion-MNIST)",
    "contours": "The (alpha, delta_t) trial space of Table 4's Optuna studies at smoke scale: small_cnn on digits (the "
                "paper: WRN-22-2 on CIFAR-10)",
}  # fmt: skip


@pytest.fixture
def titles(monkeypatch):
    """The titles (figure's, then each panel's) of every figure drawn, by name, instead of its files."""
    drawn = {}

    def save(figure, out_dir, name):
        drawn[name] = [figure.get_suptitle(), *(axis.get_title() for axis in figure.axes)]
        plt.close(figure)
        return []

    monkeypatch.setattr(figures, "save", save)
    return drawn


@pytest.mark.parametrize("name", PAPER_TITLES)
def test_a_figure_of_the_report_s_settings_keeps_its_title(tmp_path, titles, name):
    figures.FIGURES[name](ComposedIndex("paper"), tmp_path)
    expected = PAPER_TITLES[name]
    assert titles[name][: len(expected)] == expected


@pytest.mark.parametrize("name", SMOKE_TITLES)
def test_a_figure_of_another_dataset_and_model_says_so_in_its_title(tmp_path, titles, name):
    figures.FIGURES[name](ComposedIndex("smoke"), tmp_path)
    assert titles[name][0] == SMOKE_TITLES[name]
    if name == "fig3":
        assert titles[name][1:] == ["digits (Table 2's runs)", "digits (Table 3's runs)"]
