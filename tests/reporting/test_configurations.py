"""Statistics pool the seeds of one configuration only (the run identity without its seed): in the grouping
itself, the notebook's frame, scripts/mask_dynamics.py and scripts/demo_report.py, on small fake run folders."""

import json
import subprocess
import sys
from pathlib import Path

from rigl_repro.reporting.runs import RunIndex, configuration_id, differences, group_by_configuration, runs_frame
from tests.reporting.test_reporting import write_run

ROOT = Path(__file__).resolve().parents[2]


def config(seed=0, lr=0.1, method="rigl", density=0.1, dataset="digits", val_size=250, **masking):
    """A run's resolved configuration, with the parts its identity reads."""
    return {
        "dataset": {"name": dataset, "val_size": val_size}, "model": {"name": "small_cnn"},
        "masking": {"name": method, "distribution": "uniform", "density": density, **masking},
        "train": {"lr": lr, "epochs": 2, "amp": False, "length_multiplier": 1}, "seed": seed,
    }  # fmt: skip


def summary(cfg, test_acc=0.8, all_layers=0.105, exploration=0.2):
    """A finished run's summary.json with what the scripts read; ``all_layers`` None: written before the
    summary had ``density_all_layers``."""
    updates = [{"step": 5, "replaced": 0.3, "exploration": exploration - 0.05},
               {"step": 15, "replaced": 0.1, "exploration": exploration}]  # fmt: skip
    history = [{"epoch": 1, "step": 10, "val_acc": 0.5, "density": 0.1, "mask_updates": updates[:1]},
               {"epoch": 2, "step": 20, "val_acc": test_acc, "density": 0.1, "mask_updates": updates[1:]}]  # fmt: skip
    found = {"config": cfg, "method": cfg["masking"]["name"], "test_acc": test_acc, "val_acc": test_acc,
             "density": cfg["masking"]["density"], "epochs": 2, "wall_time_s": 1.0, "history": history,
             "initial_density": all_layers or 0.105, "exploration": exploration,
             "flops": {"train_relative": 0.2, "inference_relative": 0.1}}  # fmt: skip
    if all_layers is not None:
        found["density_all_layers"] = all_layers
    return found


def write(root, name, found):
    (root / name).mkdir(parents=True)
    (root / name / "summary.json").write_text(json.dumps(found))


def script(name, root):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), str(root)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_differences_name_the_options_that_set_configurations_apart():
    runs = [config(lr=0.1), config(lr=0.05), config(lr=0.1, alpha=0.4)]
    assert differences(runs) == ["masking.alpha=unset, train.lr=0.1", "masking.alpha=unset, train.lr=0.05",
                                 "masking.alpha=0.4, train.lr=0.1"]  # fmt: skip
    assert differences([config(seed=0), config(seed=1)]) == ["", ""]  # seeds of one configuration
    assert differences([config(density=0.1), config(density=0.2)], ignore=("masking.density",)) == ["", ""]
    # an option that follows from a differing dataset is left to the dataset's name, unless it tells runs apart
    assert differences([config(), config(dataset="fashion_mnist", val_size=5000)]) == [
        "dataset.name=digits", "dataset.name=fashion_mnist"
    ]
    assert differences([config(), config(val_size=100), config(dataset="fashion_mnist")]) == [
        "dataset.name=digits, dataset.val_size=250", "dataset.name=digits, dataset.val_size=100",
        "dataset.name=fashion_mnist, dataset.val_size=250",
    ]  # fmt: skip
    other_model = config(dataset="fashion_mnist") | {"model": {"name": "lenet5"}}  # each name stays, not the other
    assert differences([config(), other_model]) == ["dataset.name=digits, model.name=small_cnn",
                                                    "dataset.name=fashion_mnist, model.name=lenet5"]  # fmt: skip
    empty = config(custom_densities={})  # an identity of its own that no single option tells apart: its name does
    assert differences([config(), empty]) == [f"configuration {configuration_id(config())}",
                                              f"configuration {configuration_id(empty)}"]  # fmt: skip


def test_groups_pool_the_seeds_of_one_configuration_and_count_a_repeated_seed_once():
    runs = [summary(config(seed=0)), summary(config(seed=1)), summary(config(seed=0, lr=0.05)),
            summary(config(seed=1, amp=None) | {"run_dir": "copy"}), summary(config(seed=0, method="set"))]
    runs[3]["config"]["train"]["amp"] = True  # the same configuration: amp changes speed, not results
    groups = group_by_configuration(runs, lambda run: run["method"])
    found = {(group.key, group.differs): (len(group.runs), group.repeats) for group in groups}
    assert found == {("rigl", "train.lr=0.05"): (1, 0), ("rigl", "train.lr=0.1"): (2, 1), ("set", ""): (1, 0)}
    assert [group.label("rigl at 0.1") for group in groups[:2]] == ["rigl at 0.1, train.lr=0.05",
                                                                    "rigl at 0.1, train.lr=0.1"]  # fmt: skip


def test_the_runs_frame_names_each_run_s_configuration_and_what_sets_it_apart():
    runs = [summary(config(seed=seed, lr=lr)) for lr in (0.1, 0.05) for seed in (0, 1)]
    for run in runs:
        run["config"]["variant"] = "rigl"
    frame = runs_frame([*runs, summary(config(density=0.2)) | {"config": config(density=0.2) | {"variant": "rigl"}}])
    assert frame["configuration"].nunique() == 3 and frame.loc[0, "configuration"] == configuration_id(config())
    assert list(frame["setting"]) == ["train.lr=0.1"] * 2 + ["train.lr=0.05"] * 2 + ["train.lr=0.1"]
    counts = frame.pivot_table(index=["variant", "setting"], columns="density", values="seed", aggfunc="count")
    assert counts.loc[("rigl", "train.lr=0.1"), 0.1] == 2 and counts.loc[("rigl", "train.lr=0.05"), 0.1] == 2
    assert counts.loc[("rigl", "train.lr=0.1"), 0.2] == 1


def test_mask_dynamics_shows_one_row_per_configuration_with_both_densities(tmp_path):
    write(tmp_path, "lr0.1-seed0", summary(config(seed=0), exploration=0.2))
    write(tmp_path, "lr0.1-seed1", summary(config(seed=1), exploration=0.3))
    write(tmp_path, "lr0.1-seed1-again", summary(config(seed=1), exploration=0.9))  # a copy: counted once
    write(tmp_path, "lr0.05-seed0", summary(config(seed=0, lr=0.05), exploration=0.4))
    write(tmp_path, "old-static", summary(config(method="static"), all_layers=None, exploration=0.105))
    lines = script("mask_dynamics", tmp_path)
    header = next(line for line in lines if line.startswith("configuration"))
    assert header.split() == ["configuration", "seeds", "ever", "active", "density", "density_all_layers",
                              "replaced:", "first", "last"]  # fmt: skip
    rows = {line.split("  ")[0]: line.split()[-6:] for line in lines if " at 0.1" in line}
    assert rows == {
        "rigl (uniform) at 0.1, train.lr=0.05": ["1", "0.400", "0.100", "0.105", "0.300", "0.100"],
        "rigl (uniform) at 0.1, train.lr=0.1": ["2", "0.250", "0.100", "0.105", "0.300", "0.100"],
        "static (uniform) at 0.1": ["1", "0.105", "0.100", "-", "0.300", "0.100"],  # an old summary: no all-layers
    }
    assert any("pools its own seeds only" in line for line in lines)
    assert f"note: 1 runs repeat the configuration and seed of another run below {tmp_path}; each seed is counted " \
           "once (the first found)" in lines


def test_the_demo_report_pools_seeds_of_one_configuration(tmp_path):
    write(tmp_path, "a", summary(config(seed=0), test_acc=0.8))
    write(tmp_path, "b", summary(config(seed=1), test_acc=0.9))
    write(tmp_path, "c", summary(config(seed=0, lr=0.05), test_acc=0.5))
    lines = script("demo_report", tmp_path)
    rows = {" ".join(line.split()[:3]): line.split()[3:] for line in lines if line.startswith("rigl")}
    assert rows == {  # label: seeds, test and val accuracy (%), density, epochs, time (s)
        "rigl (uniform), train.lr=0.05": ["1", "50.0", "50.0", "0.100", "2", "1.0"],
        "rigl (uniform), train.lr=0.1": ["2", "85.0", "±", "7.1", "85.0", "±", "7.1", "0.100", "2", "1.0"],
    }


def test_a_sweep_trial_pools_the_seeds_of_one_configuration(tmp_path):
    index = RunIndex(tmp_path / "runs", "smoke")
    point = ["variant=rigl", "masking.density=0.1", "masking.alpha=0.2", "masking.delta_t=8"]
    for seed in (0, 1):
        write_run(index, "sweep_alpha_dt", point, seed, 0.8, val_acc=0.8)
    write_run(index, "sweep_alpha_dt", [*point, "train.lr=0.01"], 0, 0.5, val_acc=0.5)  # the study run again
    trials = RunIndex(index.root, "smoke").sweep_trials("digits", "rigl", 0.1)
    assert sorted(zip(trials["seeds"], trials["val_acc"])) == [(1, 50.0), (2, 80.0)]
