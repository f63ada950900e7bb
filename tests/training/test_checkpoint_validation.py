"""Family 3 of issue 23, nothing read on trust: a checkpoint, and the weights, masks and densities of other runs,
are validated before use, and every problem is refused in one line naming the file (never a traceback).

One real checkpoint is made once for the module: a tiny digits run stopped in its second epoch, so that it
holds every part a checkpoint can hold, the epoch in progress included. Each test damages a copy of it.
"""

from __future__ import annotations

import copy
import json
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from rigl_repro.errors import ConfigError
from rigl_repro.models import small_cnn
from rigl_repro.run.config import RunConfig
from rigl_repro.sparsity import SparseEngine
from rigl_repro.training.checkpoint import CheckpointError, load_checkpoint
from rigl_repro.training.preemption import Stopped
from rigl_repro.training.session import run
from tests.helpers import compose_config, make_run

OVERRIDES = ("train.epochs=2", "masking=rigl", "masking.delta_t=5", "masking.density=0.2")  # 20 steps an epoch
STOP_AT_STEP = 25  # the 5th batch of the second epoch
START_AFRESH = "delete it (or move it away) to train this run from the start"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Any]:
    """The checkpoint of the run of ``OVERRIDES`` stopped (as SLURM stops it) after step ``STOP_AT_STEP``."""
    folder = tmp_path_factory.mktemp("stopped")
    original = SparseEngine.step

    def step_and_signal(self):
        updated = original(self)
        if self.step_count == STOP_AT_STEP:
            signal.raise_signal(signal.SIGUSR2)
        return updated

    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the run then stops with Stopped, checkpointed
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(SparseEngine, "step", step_and_signal)
            with pytest.raises(Stopped):
                run(compose_config(*OVERRIDES), folder)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    return torch.load(folder / "checkpoint.pt", weights_only=True)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return RunConfig.from_hydra(compose_config(*OVERRIDES)).resolved


def parse(path: str) -> list[str | int]:
    """``"history.0.step"`` -> ``["history", 0, "step"]``."""
    return [int(part) if part.lstrip("-").isdigit() else part for part in path.split(".")]


def shown(path: str) -> str:
    """A key's path as refusals spell it: ``history[0].step``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parse(path)).removeprefix(".")


def parent_and_key(state: dict[str, Any], path: str) -> tuple[Any, str | int]:
    *parents, key = parse(path)
    node = state
    for part in parents:
        node = node[part]
    return node, key


def load_damaged(tmp_path: Path, config, state: Any) -> dict[str, Any]:
    path = tmp_path / "checkpoint.pt"
    torch.save(state, path)
    return load_checkpoint(path, config)


def refused(tmp_path: Path, config, state: Any, *fragments: str) -> str:
    """The one line in which loading ``state`` as a checkpoint is refused; it names the file and ``fragments``."""
    with pytest.raises(CheckpointError) as error:
        load_damaged(tmp_path, config, state)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "checkpoint.pt") in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------------- the layout: every key, every type
# Every key the project writes in a checkpoint (its own parts whole, torch's optimizer and schedule in the parts
# it reads), each required or optional (absent from an earlier layout). A key added to the checkpoint must be
# declared here: test_every_key_written_is_declared fails until it is, and then the tests below cover it.
REQUIRED = [
    "fingerprint", "epoch", "history", "wall_time", "rng", "model", "optimizer", "scheduler", "engine",
    "rng.torch", "rng.cuda", "rng.order", "rng.augment",
    "engine.step", "engine.generator", "engine.n_active", "engine.topology_log", "engine.method",
    "epoch_in_progress.order", "epoch_in_progress.loss_sum", "epoch_in_progress.correct",
    "epoch_in_progress.batches_done", "epoch_in_progress.seconds",
    "history.0.epoch", "history.0.step", "history.0.train_loss", "history.0.train_acc", "history.0.val_acc",
    "history.0.lr", "history.0.density",
    "optimizer.state", "optimizer.param_groups", "scheduler.last_epoch", "scheduler.base_lrs",
]  # fmt: skip
OPTIONAL = [
    "device_type", "engine.ever_active", "engine.pending_updates", "history.0.layer_densities",
    "history.0.density_all_layers", "history.0.mask_updates", "history.0.exploration", "history.0.images_per_s",
]  # fmt: skip
OWN_PARTS = ("rng", "engine", "epoch_in_progress", "history.0")  # written whole by the project
TORCH_KEYS = {"optimizer.state", "optimizer.param_groups", "scheduler.last_epoch", "scheduler.base_lrs"}


def written_keys(state: dict[str, Any]) -> set[str]:
    """The keys of a checkpoint's top level and of every part the project writes whole."""
    keys = set(state)
    for part in OWN_PARTS:
        node, _ = parent_and_key(state, f"{part}.key")
        keys |= {f"{part}.{key}" for key in node}
    return keys


def test_every_key_written_is_declared(saved):
    assert written_keys(saved) == (set(REQUIRED) | set(OPTIONAL) | {"epoch_in_progress"}) - TORCH_KEYS


def test_the_checkpoint_as_written_loads(tmp_path, config, saved):
    state = load_damaged(tmp_path, config, saved)
    assert state["epoch"] == 1 and state["engine"]["step"] == STOP_AT_STEP


@pytest.mark.parametrize("path", OPTIONAL)
def test_a_checkpoint_of_an_earlier_layout_without_an_optional_key_loads(tmp_path, config, saved, path):
    state = copy.deepcopy(saved)
    node, key = parent_and_key(state, path)
    del node[key]
    assert load_damaged(tmp_path, config, state)["epoch"] == 1


@pytest.mark.parametrize("path", REQUIRED)
def test_a_checkpoint_missing_a_key_is_refused_naming_it(tmp_path, config, saved, path):
    state = copy.deepcopy(saved)
    node, key = parent_and_key(state, path)
    del node[key]
    expected = "is not a rigl-repro checkpoint" if path == "fingerprint" else f"{shown(path)} is missing"
    refused(tmp_path, config, state, expected, START_AFRESH)


@pytest.mark.parametrize("path", REQUIRED + OPTIONAL + ["epoch_in_progress"])
def test_a_checkpoint_with_a_key_of_the_wrong_type_is_refused_naming_it(tmp_path, config, saved, path):
    state = copy.deepcopy(saved)
    node, key = parent_and_key(state, path)
    node[key] = 5 if isinstance(node[key], str) else "x"  # the wrong type for every key
    refused(tmp_path, config, state, f"is damaged or of another version: {shown(path)} is ", START_AFRESH)


# ---------------------------------------------------------------------- contents: values and consistency
def first_mask(state: dict[str, Any]) -> str:
    return next(name for name in state["model"] if name.endswith("weight_mask"))


def set_path(path: str, value: Any):
    """The damage that sets the key at ``path`` to ``value`` (a function: of the key's value)."""

    def damage(state):
        node, key = parent_and_key(state, path)
        node[key] = value(node[key]) if callable(value) else value

    return damage


def set_in(part: str, key: str, value: Any):
    """``set_path`` for a key that holds dots (a model's tensor, a layer's count) of the part at ``part``."""

    def damage(state):
        node = parent_and_key(state, f"{part}.key")[0]
        node[key] = value(node[key]) if callable(value) else value

    return damage


def delete(path: str):
    def damage(state):
        node, key = parent_and_key(state, path)
        del node[key]

    return damage


DAMAGE = {  # what is damaged -> (the damage, what the refusal says)
    "epoch beyond the recipe's": (set_path("epoch", 99), "epoch=99 is not in [0, 2], the recipe's epochs"),
    "negative epoch": (set_path("epoch", -5), "epoch=-5 is not in [0, 2]"),
    "epoch the history lacks": (set_path("epoch", 2), "its history holds the epochs [1], but epoch=2"),
    "empty history": (set_path("history", []), "its history holds the epochs [], but epoch=1"),
    "history with an epoch twice": (set_path("history", lambda h: h + h), "its history holds the epochs [1, 1]"),
    "history step of another epoch length": (set_path("history.0.step", 19), "its history 19 steps an epoch"),
    "history with a bool epoch": (set_path("history.0.epoch", True), "history[0].epoch is a bool"),
    "epoch in progress lost": (delete("epoch_in_progress"), "its engine is at step 25, its epochs and batches done "
                               "make step 20"),  # fmt: skip
    "batches done beyond the epoch": (set_path("epoch_in_progress.batches_done", 500), "has done 500 batches"),
    "negative batches done": (set_path("epoch_in_progress.batches_done", -1), "has done -1 batches"),
    "order that is no permutation": (set_path("epoch_in_progress.order", lambda o: o.clamp(max=5)),
                                     "is not a permutation of the training examples"),  # fmt: skip
    "order of another training set": (set_path("epoch_in_progress.order", torch.randperm(600)),
                                      "its epoch in progress has 10 steps, its history 20"),  # fmt: skip
    "order of floats": (set_path("epoch_in_progress.order", lambda o: o.float()), "order is a torch.float32 tensor"),
    "engine a step ahead": (set_path("engine.step", 26), "its engine is at step 26"),
    "schedule a step behind": (set_path("scheduler.last_epoch", 24), "its learning-rate schedule is at step 24"),
    "schedule of more parameter groups": (set_path("scheduler.base_lrs", lambda b: b + b),
                                          "different numbers of parameter groups"),  # fmt: skip
    "torch RNG state too short": (set_path("rng.torch", torch.zeros(3, dtype=torch.uint8)),
                                  "rng.torch holds 3 values, expected 5056"),  # fmt: skip
    "order RNG state of floats": (set_path("rng.order", lambda r: r.float()), "rng.order is a torch.float32 tensor"),
    "engine RNG state of two dimensions": (set_path("engine.generator", lambda r: r.view(2, -1)),
                                           "engine.generator has 2 dimensions"),  # fmt: skip
    "optimizer without parameter groups": (set_path("optimizer.param_groups", []),
                                           "optimizer.param_groups has 0 entries, expected at least 1"),  # fmt: skip
    "parameter group without parameters": (delete("optimizer.param_groups.0.params"),
                                           "optimizer.param_groups[0].params is missing"),  # fmt: skip
    "fingerprint that is not JSON": (set_path("fingerprint", "{not json"), "has an unreadable fingerprint"),
    "fingerprint of another run": (set_path("fingerprint", lambda f: json.dumps({**json.loads(f), "seed": 7})),
                                   "belongs to a different configuration (seed: 7 -> 0)"),  # fmt: skip
    "model entry that is no tensor": (set_in("model", "fc.bias", "x"), "model['fc.bias'] is a str, expected a tensor"),
    "engine count that is no mask's": (set_in("engine.n_active", "fc.weight", lambda n: n + 1),
                                       "the mask of fc.weight has"),  # fmt: skip
    "mask lost from the model": (lambda s: s["model"].pop(first_mask(s)), "its model has masks of"),
    "mask of floats": (lambda s: s["model"].__setitem__(first_mask(s), s["model"][first_mask(s)].float()),
                       "is a torch.float32 tensor, expected torch.bool"),  # fmt: skip
    "topology log behind the masks": (set_path("engine.topology_log.-1", lambda entry: [entry[0], [0] * 4]),
                                      "the last topology of its engine's log is not that of its masks"),  # fmt: skip
    "empty topology log": (set_path("engine.topology_log", []), "engine.topology_log has 0 entries"),
    "ever-active record of another shape": (set_path("engine.ever_active.0", torch.ones(3, dtype=torch.bool)),
                                            "weights ever active does not have the shapes of its masks"),  # fmt: skip
}


@pytest.mark.parametrize("damage, expected", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_or_inconsistent_checkpoint_is_refused_in_one_line(tmp_path, config, saved, damage, expected):
    state = copy.deepcopy(saved)
    damage(state)
    refused(tmp_path, config, state, expected)


FILES = {  # a file at the checkpoint's place that is no checkpoint -> what the refusal says
    "truncated": (lambda path, data: path.write_bytes(data[: len(data) // 2]), "cannot be read"),
    "not a torch file": (lambda path, data: path.write_text("epoch: 3\n"), "cannot be read"),
    "a directory": (lambda path, data: path.mkdir(), "is a directory, not a checkpoint file"),
    "a list": (lambda path, data: torch.save([1, 2], path), "is not a rigl-repro checkpoint"),
    "weights alone": (lambda path, data: torch.save({"fc.weight": torch.zeros(2)}, path), "is not a rigl-repro"),
}


@pytest.mark.parametrize("write, expected", FILES.values(), ids=FILES.keys())
def test_a_file_that_is_no_checkpoint_is_refused_in_one_line(tmp_path, config, saved, write, expected):
    torch.save(saved, tmp_path / "whole.pt")
    path = tmp_path / "checkpoint.pt"
    write(path, (tmp_path / "whole.pt").read_bytes())
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, config)
    assert "\n" not in str(error.value) and str(path) in str(error.value) and expected in str(error.value)
    assert START_AFRESH in str(error.value)


def test_a_run_resuming_from_an_inconsistent_checkpoint_stops_and_writes_no_summary(tmp_path, saved):
    state = copy.deepcopy(saved)
    state["epoch"] = 99
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint.pt is inconsistent: epoch=99 is not in \[0, 2\]"):
        run(compose_config(*OVERRIDES), tmp_path)
    assert not (tmp_path / "summary.json").exists()


def one_parameter_fewer(state: dict[str, Any]) -> None:
    state["optimizer"]["param_groups"][0]["params"].pop()


def a_weight_renamed(state: dict[str, Any]) -> None:
    name = next(key for key in state["model"] if key.endswith(".bias"))
    state["model"][name.replace(".bias", ".offset")] = state["model"].pop(name)


@pytest.mark.parametrize(
    "damage, part",
    [(one_parameter_fewer, "optimizer"), (a_weight_renamed, "model")],
    ids=["optimizer of another parameter count", "model with a renamed tensor"],
)  # fmt: skip
def test_a_checkpoint_that_passes_its_layout_but_does_not_fit_the_run_is_one_line(tmp_path, saved, damage, part):
    state = copy.deepcopy(saved)
    damage(state)
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError) as error:
        run(compose_config(*OVERRIDES), tmp_path)
    message = str(error.value)
    assert "\n" not in message and f"its {part} state does not fit this run" in message and START_AFRESH in message
    assert str(tmp_path / "checkpoint.pt") in message and not (tmp_path / "summary.json").exists()
    assert "Error(s) in loading" not in message  # what differs, not torch's header


# ---------------------------------------------------------------------- weights, masks and densities of other runs
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Files of two runs: ``own``, of make_run's model (small_cnn at width 0.25), and ``wider``, of the same
    model at width 0.5; each a checkpoint holding weights and masks and a file of initial weights."""
    folder = tmp_path_factory.mktemp("sources")
    paths = {}
    for name, width in [("own", 0.25), ("wider", 0.5)]:
        model, _, _ = make_run({"name": "rigl", "density": 0.2}, model=small_cnn(width=width))
        torch.save({"model": model.state_dict()}, folder / f"{name}_checkpoint.pt")
        torch.save(model.state_dict(), folder / f"{name}_initial.pt")
        paths[f"{name} checkpoint"], paths[f"{name} initial"] = (folder / f"{name}_{kind}.pt" for kind in
                                                                    ("checkpoint", "initial"))  # fmt: skip
    return paths


def masking_with(option: str, path: Path | str, files: dict[str, Path]) -> dict[str, Any]:
    """A method reading ``option`` from ``path``, its other files those of make_run's own model."""
    if option == "custom_densities":
        return {"name": "rigl", "density": 0.2, "distribution": "custom", "custom_densities": str(path)}
    if option == "initial_mask":
        return {"name": "rigl", "density": 0.2, "initial_mask": str(path)}
    own = {"trained_weights": str(files["own checkpoint"]), "initial_weights": str(files["own initial"])}
    return {"name": "lottery", "density": 0.2, **own, option: str(path)}


def refused_method(masking: dict[str, Any], *fragments: str) -> str:
    with pytest.raises(ConfigError) as error:
        make_run(masking, total_steps=20)
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("option, source", [("trained_weights", "wider checkpoint"),
                                            ("initial_weights", "wider initial"),
                                            ("initial_mask", "wider checkpoint")])  # fmt: skip
def test_weights_or_masks_of_a_model_of_another_shape_are_refused_naming_the_file_and_tensor(files, option, source):
    refused_method(masking_with(option, files[source], files), f"masking.{option}='{files[source]}'",
                   "holds another model's weights: its features.0.weight has shape (16, 1, 3, 3), this model's has "
                   "(8, 1, 3, 3)")  # fmt: skip


@pytest.mark.parametrize("option", ["trained_weights", "initial_mask"])
@pytest.mark.parametrize("values, expected", [
    (torch.ones, "is a torch.float32 tensor"),
    (lambda shape: torch.full(shape, 0.5), "holds values other than 0 and 1"),
])  # fmt: skip
def test_a_mask_that_is_not_boolean_is_refused(tmp_path, files, option, values, expected):
    state = torch.load(files["own checkpoint"], weights_only=True)
    name = first_mask(state)
    state["model"][name] = values(state["model"][name].shape)
    torch.save(state, tmp_path / "checkpoint.pt")
    refused_method(masking_with(option, tmp_path / "checkpoint.pt", files),
                   f"masking.{option}='{tmp_path / 'checkpoint.pt'}': its {name} {expected}")  # fmt: skip


@pytest.mark.parametrize("option", ["trained_weights", "initial_weights", "initial_mask", "custom_densities"])
def test_a_directory_given_as_a_file_is_refused_as_one(tmp_path, files, option):
    refused_method(masking_with(option, tmp_path, files), f"masking.{option}='{tmp_path}' is a directory; give the "
                   "path of", ", a file")  # fmt: skip


def summary_with(tmp_path: Path, densities: dict[str, Any]) -> Path:
    path = tmp_path / "summary.json"
    summary = {"config": {}, "test_acc": 0.5, "val_acc": 0.5, "density": 0.2, "layer_densities": densities}
    path.write_text(json.dumps(summary))
    return path


OWN_LAYERS = ["features.0.weight", "features.3.weight", "features.6.weight", "fc.weight"]
SUMMARIES = {  # a summary's layer densities -> what the refusal says
    "a layer fewer": ({name: 0.2 for name in OWN_LAYERS[1:]}, "holds the densities of another model's 3 layers"),
    "another model's layers": ({"conv1.weight": 0.2, "fc.weight": 0.2}, "another model's 2 layers (conv1.weight"),
    "a layer renamed": ({**{name: 0.2 for name in OWN_LAYERS[:3]}, "head.weight": 0.2}, "not of this model's 4"),
    "a density of zero": ({name: 0.0 for name in OWN_LAYERS}, "layer_densities[features.0.weight]=0.0 is out of "
                          "range"),  # fmt: skip
    "no densities": ({}, "has no layer_densities"),
}


@pytest.mark.parametrize("densities, expected", SUMMARIES.values(), ids=SUMMARIES.keys())
def test_densities_of_a_summary_not_of_this_model_are_refused_naming_the_file(tmp_path, files, densities, expected):
    path = summary_with(tmp_path, densities)
    refused_method(masking_with("custom_densities", path, files), f"masking.custom_densities='{path}'", expected)


def test_densities_of_a_summary_of_this_model_are_used(tmp_path, files):
    densities = {name: 0.5 for name in OWN_LAYERS}
    _, _, engine = make_run(masking_with("custom_densities", summary_with(tmp_path, densities), files), 20)
    assert engine.layer_densities() == pytest.approx(densities, abs=0.02)
