"""End-to-end runs on the embedded digits: summary.json, exact resumption, and every refusal."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from rigl_repro.errors import ConfigError, TrainingDiverged
from rigl_repro.training.checkpoint import CheckpointError, load_checkpoint
from rigl_repro.training.session import run
from rigl_repro.training.trainer import Trainer
from tests.helpers import compose_config, fake_cifar, run_killed_in_epoch

QUICK = ("train.epochs=3", "masking.delta_t=5")


def test_a_run_writes_its_summary_and_checkpoint(tmp_path):
    summary = run(compose_config(*QUICK, "masking=rigl", "masking.density=0.1"), tmp_path)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    assert 0.5 < summary["test_acc"] <= 1.0 and 0.5 < summary["val_acc"] <= 1.0
    assert summary["density"] == pytest.approx(0.1, abs=1e-3)
    layers = {"features.0.weight", "features.3.weight", "features.6.weight", "fc.weight"}
    assert set(summary["layer_densities"]) == layers
    assert summary["budgeted_layers"] == ["features.3.weight", "features.6.weight", "fc.weight"]  # Uniform's
    assert [entry["epoch"] for entry in summary["history"]] == [1, 2, 3]
    assert summary["steps"] == 3 * summary["steps_per_epoch"] == 3 * 20
    assert summary["config"]["masking"]["name"] == "rigl"
    assert (tmp_path / "checkpoint.pt").is_file()


def test_accuracy_is_counted_over_the_whole_split(tmp_path):
    trainer = Trainer(compose_config("train.epochs=3", "masking=dense", "train.eval_batch_size=7"), tmp_path)
    split = trainer.data.test
    trainer.model.eval()
    with torch.no_grad():
        expected = (trainer.model(trainer.prepare(split.images)).argmax(1) == split.labels).sum().item() / len(split)
    assert trainer.evaluate(split) == expected


def final_state(directory):
    return torch.load(directory / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.parametrize(
    "method, deterministic", [("rigl", False), ("snfs", False), ("dense", False), ("rigl", True)]
)
def test_an_interrupted_and_resumed_run_ends_exactly_like_an_uninterrupted_one(
    tmp_path, monkeypatch, method, deterministic
):
    interval = () if method == "dense" else ("masking.delta_t=3",)
    overrides = ("train.epochs=4", *interval, f"masking={method}", f"deterministic={deterministic}")
    run(compose_config(*overrides), tmp_path / "straight")

    run_killed_in_epoch(compose_config(*overrides), tmp_path / "resumed", epoch=3)  # after two checkpoints
    assert not (tmp_path / "resumed" / "summary.json").exists()
    resumed = run(compose_config(*overrides), tmp_path / "resumed")

    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert resumed["test_acc"] == straight["test_acc"] and resumed["layer_densities"] == straight["layer_densities"]
    a, b = final_state(tmp_path / "straight"), final_state(tmp_path / "resumed")
    assert a.keys() == b.keys() and any(key.endswith("weight_mask") for key in a) == (method != "dense")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_compiled_model_trains_under_its_masks_with_unchanged_checkpoint_keys(tmp_path):
    overrides = (*QUICK, "masking=rigl", "masking.density=0.1")
    eager = run(compose_config(*overrides), tmp_path / "eager")
    compiled = run(compose_config(*overrides, "train.compile=on"), tmp_path / "compiled")  # the CUDA default
    assert compiled["test_acc"] > 0.5 and abs(compiled["test_acc"] - eager["test_acc"]) < 0.1
    state = final_state(tmp_path / "compiled")
    assert state.keys() == final_state(tmp_path / "eager").keys()  # no "_orig_mod." prefix: checkpoints interchange
    initial = torch.load(tmp_path / "compiled" / "initial.pt", weights_only=True)
    masks = {key.removesuffix("_mask"): mask for key, mask in state.items() if key.endswith("weight_mask")}
    moved = [name for name, mask in masks.items() if not torch.equal(mask, initial[f"{name}_mask"])]
    assert len(masks) == 4 and len(moved) == 3  # the topology updates took effect (the first layer stays dense)
    for name, mask in masks.items():
        assert torch.all(state[name][~mask] == 0), name  # and the compiled model trained under them


def test_each_run_sets_its_own_kernel_determinism(tmp_path):
    deterministic = Trainer(compose_config(*QUICK, "deterministic=true"), tmp_path / "a")
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    default = Trainer(compose_config(*QUICK), tmp_path / "b")  # the next run in the same process does not inherit it
    assert not torch.are_deterministic_algorithms_enabled()
    assert deterministic.fingerprint() == default.fingerprint()  # so a run resumes under either setting


def test_a_nan_loss_stops_the_run_without_a_summary(tmp_path):
    trainer = Trainer(compose_config(*QUICK), tmp_path)
    trainer.criterion = lambda logits, labels: logits.sum() * float("nan")
    with pytest.raises(TrainingDiverged, match="loss became nan in epoch 1"):
        trainer.fit()
    assert not (tmp_path / "summary.json").exists()


def test_a_checkpoint_of_another_configuration_is_refused_and_kept(tmp_path):
    run(compose_config("train.epochs=1", "masking.density=0.1"), tmp_path)
    (tmp_path / "summary.json").unlink()  # as if interrupted before the end
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"different configuration \(masking.density: 0.1 -> 0.2"):
        run(compose_config("train.epochs=1", "masking.density=0.2"), tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_a_corrupted_checkpoint_is_refused_and_kept(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="cannot be read"):
        run(compose_config(*QUICK), tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"\x00garbage"


def test_speed_options_do_not_stop_a_run_from_resuming_or_being_reused(tmp_path):
    finished = run(compose_config(*QUICK, "train.compile=off", "train.eval_batch_size=50"), tmp_path)
    assert run(compose_config(*QUICK, "deterministic=true"), tmp_path) == finished  # reused, not refused
    trainer = Trainer(compose_config(*QUICK, "train.amp=on", "train.channels_last=on"), tmp_path)
    trainer.load_state_dict(load_checkpoint(tmp_path / "checkpoint.pt", trainer.fingerprint()))
    assert trainer.epoch == 3


def test_a_run_finished_under_the_previous_recipe_is_not_reused(tmp_path):
    """Runs trained before the report code's recipe (no dropout option, decay on every parameter, zero
    padding, floor drop counts, ...) hold configs without those keys: they are refused, never reused."""
    finished = run(compose_config(*QUICK), tmp_path)
    old = json.loads((tmp_path / "summary.json").read_text())
    for group, key in [("masking", "update_timing"), ("masking", "regrown"), ("train", "decay_norm_and_bias")]:
        del old["config"][group][key]
    old["config"]["train"]["warmup_epochs"] = old["config"]["train"].pop("warmup_steps")
    (tmp_path / "summary.json").write_text(json.dumps(old))
    with pytest.raises(CheckpointError, match=r"different configuration \(differs in: masking, train\)"):
        run(compose_config(*QUICK), tmp_path)
    assert finished["config"]["train"]["decay_norm_and_bias"] is False


def test_a_finished_run_is_reused_not_overwritten(tmp_path):
    first = run(compose_config("train.epochs=1"), tmp_path)
    stamp = (tmp_path / "summary.json").stat().st_mtime_ns
    assert run(compose_config("train.epochs=1"), tmp_path) == first
    assert (tmp_path / "summary.json").stat().st_mtime_ns == stamp
    with pytest.raises(CheckpointError, match="finished run of a different configuration"):
        run(compose_config("train.epochs=1", "seed=1"), tmp_path)


def test_small_dense_trains_a_narrower_dense_model(tmp_path):
    summary = run(compose_config("train.epochs=1", "masking=small_dense", "masking.density=0.2"), tmp_path)
    dense = run(compose_config("train.epochs=1", "masking=dense"), tmp_path / "dense")
    assert summary["width_multiplier"] < 0.6 and summary["layer_densities"] == {}
    assert summary["parameters"] < 0.3 * dense["parameters"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("masking.density=0", "masking.density=0 is out of range"),
        ("train.batch_size=0", "train.batch_size=0 is invalid"),
        ("dataset.val_size=5000", r"dataset.val_size=5000 must be in \[0, 1496\]"),
        ("device=cuda:7", "device='cuda:7' but CUDA is not available"),
        ("model.name=vgg", "model.name='vgg' is not known"),
        ("checkpoint.every_epochs=0", "checkpoint.every_epochs=0 is invalid; expected an integer >= 1"),
        ("logger.mode=loud", "logger.mode='loud' is not known; choose one of: online, offline, disabled"),
        ("seed=-1", r"seed=-1 is invalid; expected an integer in \[0, 4294967294\]"),
        ("model=lenet5", r"the model \(LeNet5\) does not take the dataset's 1x8x8 images .*choose a model"),
        ("dataset.augment=flip", "dataset.augment='flip' is not known; choose one of: reflect_crop_flip"),
    ],
)
def test_bad_options_fail_before_training(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run(compose_config(*QUICK, override), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written, not even initial weights


def test_a_cifar10_run_through_torchvision_with_augmentation(tmp_path, monkeypatch, local_server):
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {name: (rng.integers(0, 256, (12, 3, 32, 32), dtype="uint8"), rng.integers(0, 10, 12)) for name in names}
    fake_cifar(monkeypatch, local_server, "cifar10", batches)
    cfg = compose_config(
        "dataset=cifar10", f"dataset.root={tmp_path}/data", "dataset.train_pool=60", "dataset.val_size=10",
        "model.width=0.25", "train.epochs=2", "train.batch_size=16", "masking.delta_t=2", "masking.distribution=erk",
    )  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.data.augment == "reflect_crop_flip" and trainer.data.train.images.dtype == torch.uint8
    last_images = torch.from_numpy(batches["data_batch_5"][1][2:])  # the validation split: the last 10 images
    assert len(trainer.data.train) == 50 and torch.equal(trainer.data.val.labels, last_images)
    # The report's recipe as built: dropout in every block, no weight decay on BatchNorm and biases.
    assert {m.p for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}
    decay = {id(p): group["weight_decay"] for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(decay[id(p)] == (5e-4 if p.ndim > 1 else 0.0) for p in trainer.model.parameters())
    (tmp_path / "run").mkdir()
    summary = trainer.fit()
    assert summary["steps"] == 2 * 4 and summary["config"]["model"]["name"] == "wrn22_2"
    assert 0.0 <= summary["test_acc"] <= 1.0 and summary["density"] == pytest.approx(0.1, abs=1e-3)


def test_the_summary_carries_flops_integrated_over_the_run(tmp_path):
    summary = run(compose_config(*QUICK, "masking=rigl", "masking.density=0.1"), tmp_path)
    flops = summary["flops"]
    # T_end = 0.75 of the schedule length, 3 epochs x 1,247 images / 64 = 58.45 steps: 44. Updates on the
    # batches before it with (step + 1) % 5 == 0 (update_timing: report_code).
    updates = [step for step in range(summary["steps"]) if step < 44 and (step + 1) % 5 == 0]
    assert len(updates) == 8
    assert [entry[0] for entry in flops["trajectory"]] == [0] + [step + 1 for step in updates]
    assert flops["inference_relative"] == pytest.approx(flops["trajectory"][-1][1])
    f_s, f_d = flops["inference_flops"], flops["dense_inference_flops"]
    expected = (summary["steps"] - len(updates)) * 3 * f_s + len(updates) * (2 * f_s + f_d)
    assert flops["train_flops"] == pytest.approx(expected)
    assert flops["train_relative"] == pytest.approx(expected / (3 * f_d * summary["steps"]))


def test_lottery_counts_the_training_of_the_run_it_starts_from(tmp_path):
    dense = run(compose_config("train.epochs=2", "masking=dense"), tmp_path / "dense")
    checkpoint = torch.load(tmp_path / "dense" / "checkpoint.pt", weights_only=True)
    torch.save(checkpoint["model"], tmp_path / "initial.pt")  # stand-in initial weights of the same shape
    lottery = run(
        compose_config(
            "train.epochs=2", "masking=lottery", "masking.density=0.2",
            f"masking.trained_weights={tmp_path / 'dense' / 'checkpoint.pt'}",
            f"masking.initial_weights={tmp_path / 'initial.pt'}",
        ),
        tmp_path / "lottery",
    )  # fmt: skip
    assert lottery["flops"]["pretraining_flops"] == dense["flops"]["train_flops"]
    assert lottery["flops"]["train_relative"] == pytest.approx(1.0 + lottery["flops"]["inference_relative"])


@pytest.mark.skipif(not (Path("/usr/share/datasets/fashion-mnist").is_dir() or os.environ.get("CI")),
                    reason="Debian's dataset-fashion-mnist is not installed (CI installs it)")  # fmt: skip
def test_lenet5_learns_the_real_fashion_mnist_in_one_epoch(tmp_path):
    cfg = compose_config("dataset=fashion_mnist", f"dataset.root={tmp_path}/data", "train.epochs=1",
                         "masking=rigl", "masking.density=0.1")  # fmt: skip
    summary = run(cfg, tmp_path / "run")
    assert summary["steps"] == 430 and summary["config"]["model"]["name"] == "lenet5"
    assert summary["test_acc"] > 0.7 and summary["density"] == pytest.approx(0.1, abs=1e-3)


def test_the_summary_holds_the_mask_dynamics(tmp_path):
    static = run(compose_config("train.epochs=3", "masking=static", "masking.density=0.1"), tmp_path / "static")
    assert static["exploration"] == static["initial_density"] == static["density_all_layers"]  # it explores nothing
    assert static["layer_exploration"] == static["layer_densities"]
    assert all(epoch["mask_updates"] == [] for epoch in static["history"])

    rigl = run(compose_config(*QUICK, "masking=rigl", "masking.density=0.1"), tmp_path / "rigl")
    updates = [update for epoch in rigl["history"] for update in epoch["mask_updates"]]
    steps = [update["step"] for update in updates]
    assert steps == list(range(5, 5 * len(steps) + 1, 5)) and 5 * len(steps) <= 0.75 * 60  # every delta_t to T_end
    assert len(updates[0]["layer_replaced"]) == len(rigl["layer_densities"])
    assert all(0 < update["replaced"] <= 0.3 for update in updates)  # at most alpha, decaying with the cosine
    explored = [epoch["exploration"] for epoch in rigl["history"]]
    assert rigl["initial_density"] == rigl["density_all_layers"]  # RigL keeps its count of active weights
    assert rigl["density_all_layers"] < explored[0] <= explored[1] <= explored[2] == rigl["exploration"] <= 1
    assert explored[-1] == updates[-1]["exploration"]
