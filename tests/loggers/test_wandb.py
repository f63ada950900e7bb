"""The W&B logger (``logger=wandb``, the default): one-line failures, resumed offline runs, per-layer charts."""

import json
import time
from pathlib import Path

import pytest

from rigl_repro.errors import ConfigError
from rigl_repro.loggers import NullLogger, build_logger, validate_logger_options
from rigl_repro.loggers.wandb import WandbLogger, validate_wandb
from rigl_repro.training.session import run
from tests.helpers import compose_config, run_killed_in_epoch


def test_a_w_and_b_that_cannot_start_is_one_line_naming_the_ways_out(tmp_path, monkeypatch):
    import wandb

    def no_network(**kwargs):
        assert kwargs["settings"].init_timeout == 60  # a bounded wait, not W&B's own
        raise wandb.errors.CommError("Network error (ConnectionError), entering retry loop.\nmore lines")

    monkeypatch.setattr(wandb, "init", no_network)
    message = r"W&B could not start a online run \(Network error \(ConnectionError\), entering retry loop.\); .*offline"
    with pytest.raises(ConfigError, match=message):
        WandbLogger("online", "rigl-repro", None, {}, tmp_path)


@pytest.mark.parametrize("project", ["a/b", "what?", "", "x:y"])
def test_project_names_w_and_b_refuses_are_refused_first(project):
    with pytest.raises(ConfigError, match="logger.project="):
        validate_wandb("offline", project)
    assert validate_wandb("disabled", project) == "disabled"  # not used, not checked
    options = {"name": "wandb", "mode": "offline", "project": project, "entity": None}
    with pytest.raises(ConfigError, match="logger.project="):  # the same check through the registry
        validate_logger_options(options)
    validate_logger_options({**options, "mode": "disabled"})


@pytest.mark.parametrize("entity", ["a/b", "my team", "", "a:b", True, ["team"]])  # numbers: quoted, below
def test_entity_names_w_and_b_refuses_are_refused_before_anything_is_written(entity):
    options = {"name": "wandb", "mode": "offline", "project": "rigl-repro", "entity": entity}
    with pytest.raises(ConfigError) as refused:
        validate_logger_options(options)
    assert str(refused.value) == (f"logger.entity={entity!r} is invalid; expected null (your default entity) or a "
                                  "W&B user or team name of letters, digits, - and _")  # fmt: skip
    validate_logger_options({**options, "mode": "disabled"})  # not used, not checked


@pytest.mark.parametrize("entity", [None, "my-team", "user_1", "Lab42"])
def test_entity_names_w_and_b_takes_are_accepted(entity):
    assert validate_wandb("online", "rigl-repro", entity) == "online"


@pytest.mark.parametrize("project", [None, "p" * 129])  # numbers: quoted, below
def test_project_values_w_and_b_cannot_take_are_refused(project):
    with pytest.raises(ConfigError, match=r"^logger.project=.* is invalid; expected "):
        validate_wandb("offline", project)


@pytest.mark.parametrize("option", ["project", "entity"])
def test_a_name_hydra_read_as_a_number_is_refused_saying_to_quote_it(option):
    names = {"project": "rigl-repro", "entity": None, option: 2024}
    with pytest.raises(ConfigError, match=f"logger.{option}=2024 is a number, not a name; quote it"):
        validate_wandb("offline", names["project"], names["entity"])


def test_the_run_config_refuses_a_bad_entity_before_the_run_is_built():
    from rigl_repro.run.config import RunConfig

    with pytest.raises(ConfigError, match=r"^logger.entity='a/b' is invalid"):
        RunConfig.from_hydra(compose_config("logger.mode=offline", "logger.entity=a/b"))


def offline_folders(output_dir):
    return sorted((output_dir / "wandb").glob("offline-run-*"))


def test_a_resumed_offline_run_keeps_one_w_and_b_folder_holding_every_epoch(tmp_path, monkeypatch):
    """W&B cannot resume offline runs: the resumed run logs its history again into one new folder."""
    overrides = ("train.epochs=3", "masking=set", "masking.delta_t=5", "logger.mode=offline")
    run_killed_in_epoch(compose_config(*overrides), tmp_path, epoch=3)
    (first,) = offline_folders(tmp_path)
    summary = run(compose_config(*overrides), tmp_path)

    (folder,) = offline_folders(tmp_path)
    assert folder != first
    (records,) = folder.glob("*.wandb")
    # W&B stores each logged value as JSON text inside its records, written by its service process. Once (in a
    # clean-clone CI run) the file lacked an epoch right after the run ended, so it is read again until it
    # holds every epoch, for 30 s at most.
    expected = [json.dumps(entry["train_loss"]).encode() for entry in summary["history"]]
    logged, deadline = b"", time.monotonic() + 30
    while not all(value in logged for value in expected) and time.monotonic() < deadline:
        time.sleep(0.2 if logged else 0)
        logged = records.read_bytes()
    for entry, value in zip(summary["history"], expected):
        assert value in logged, entry["epoch"]
    assert b"density/features.3.weight" in logged


def test_layer_densities_are_logged_one_chart_per_layer():
    logged = []

    class FakeRun:
        def log(self, metrics, step):
            logged.append((metrics, step))

    tracker = WandbLogger("disabled", "rigl-repro", None, {}, Path("."))
    tracker.run = FakeRun()
    tracker.log({"train_loss": 1.5, "layer_densities": {"fc.weight": 0.1, "conv.weight": 0.2}}, step=7)
    assert logged == [({"train_loss": 1.5, "density/fc.weight": 0.1, "density/conv.weight": 0.2}, 7)]


def test_the_registry_builds_w_and_b_from_the_composed_logger_node(tmp_path):
    options = {"name": "wandb", "mode": "disabled", "project": "rigl-repro", "entity": None}
    tracker = build_logger(options, config={}, output_dir=tmp_path)
    assert isinstance(tracker, WandbLogger) and tracker.run is None
    tracker.log({"epoch": 1, "step": 4, "train_loss": 1.0}, step=4)
    tracker.summarize({"test_acc": 0.5})
    tracker.finish()
    assert not (tmp_path / "wandb").exists()
    # A process that writes nothing (ranks other than 0) gets a logger that does nothing, even for offline W&B.
    offline = build_logger({**options, "mode": "offline"}, config={}, output_dir=tmp_path, enabled=False)
    assert isinstance(offline, NullLogger) and not (tmp_path / "wandb").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"name": "wandb", "mode": "loud", "project": "p", "entity": None},
         "^logger.mode='loud' is not known; choose one of: online, offline, disabled$"),
        ({"name": "wandb", "mode": "offline", "project": "p", "entity": None, "team": "x"},
         "^logger.team is not an option of logger 'wandb'; its options are: mode, project, entity$"),
        ({"name": "x"}, "^logger.name='x' is not known; choose one of: csv, wandb$"),
    ],
)  # fmt: skip
def test_bad_logger_options_are_one_line_naming_the_option(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        validate_logger_options(options)
    with pytest.raises(ConfigError, match=message):  # also for a process that would log nothing
        build_logger(options, config={}, output_dir=tmp_path, enabled=False)
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_trial_s_run_is_named_grouped_and_summarised_by_its_labels(tmp_path, monkeypatch):
    import wandb

    from rigl_repro.sweeps.trial import TrialLink

    started, summaries = {}, {}

    class FakeRun:
        summary = summaries
        dir = str(tmp_path)

        def finish(self):
            pass

    def init(**options):
        started.update(options)
        return FakeRun()

    monkeypatch.setattr(wandb, "init", init)
    link = TrialLink(study="alpha_dt", storage=None, trial_id=9, number=3, params={"masking.alpha": 0.4},
                     objectives=("val_acc", "train_flops"))  # fmt: skip
    tracker = WandbLogger("offline", "rigl-repro", None, {"seed": 1}, tmp_path, labels=link.labels(seed=1))
    assert (started["name"], started["group"], started["job_type"]) == ("trial 3 seed 1", "alpha_dt", "sweep-trial")
    assert started["config"] == {"seed": 1, "trial": {"study": "alpha_dt", "number": 3,
                                                      "params": {"masking.alpha": 0.4},
                                                      "objectives": ["val_acc", "train_flops"]}}  # fmt: skip
    tracker.summarize({"val_acc": 0.9, "test_acc": 0.8, "density": 0.1, "wall_time_s": 3.0,
                       "flops": {"train_relative": 0.25, "inference_relative": 0.2}})  # fmt: skip
    assert summaries["objective/val_acc"] == 0.9 and summaries["objective/train_flops"] == 0.25

    WandbLogger("offline", "rigl-repro", None, {"seed": 1}, tmp_path / "plain")  # outside a sweep: as before
    assert (started["name"], started["group"], started["job_type"]) == ("plain", None, None)
