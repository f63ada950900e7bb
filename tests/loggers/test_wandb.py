"""The W&B logger (``logger=wandb``, the default): one-line failures, resumed offline runs, per-layer charts,
runs named, grouped and tagged by their config, one W&B id per run folder, and nothing written when disabled."""

import json
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rigl_repro.errors import ConfigError
from rigl_repro.loggers import NullLogger, build_logger, run_labels, validate_logger_options
from rigl_repro.loggers.wandb import RUN_ID_FILE, WandbLogger, effective_mode, legacy_run_id, validate_wandb
from rigl_repro.training.session import run
from tests.helpers import compose_config, run_killed_in_epoch

WANDB = {"name": "wandb", "mode": "offline", "project": "rigl-repro", "entity": None}


@pytest.fixture(autouse=True)
def no_wandb_environment(monkeypatch):
    """The tests choose the mode: a WANDB_MODE of the machine running them would override it."""
    for variable in ("WANDB_MODE", "WANDB_DISABLED"):
        monkeypatch.delenv(variable, raising=False)


class FakeRun:
    """What the logger uses of a W&B run: ``log``, ``summary``, ``dir`` and ``finish``."""

    def __init__(self, options):
        self.options, self.logged, self.summary, self.finished = options, [], {}, False
        self.dir = str(Path(options["dir"]) / "wandb" / f"run-{options['id']}" / "files")

    def log(self, metrics, step):
        self.logged.append((dict(metrics), step))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    """``wandb.init`` replaced by one that records its options; returns the runs it started, in order."""
    import wandb

    started = []

    def init(**options):
        started.append(FakeRun(options))
        return started[-1]

    monkeypatch.setattr(wandb, "init", init)
    return started


def resolved(*overrides):
    return OmegaConf.to_container(compose_config(*overrides), resolve=True)


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
    run_id = (tmp_path / "wandb" / RUN_ID_FILE).read_text().strip()  # one W&B run: the same id, kept in the folder
    assert first.name.endswith(f"-{run_id}") and folder.name.endswith(f"-{run_id}")
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
    labels = run_labels(resolved(*overrides))  # the run record names, groups and tags it by its config
    assert labels.name == "set uniform d=0.1 seed 0"
    for text in (labels.name, labels.group, *labels.tags, "train"):
        assert text.encode() in logged, text


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


def test_a_sweep_trial_s_run_is_named_grouped_and_summarised_by_its_labels(tmp_path, fake_wandb):
    from rigl_repro.sweeps.trial import TrialLink

    config = resolved("masking=rigl", "seed=1")
    link = TrialLink(study="alpha_dt", storage=None, trial_id=9, number=3, params={"masking.alpha": 0.4},
                     objectives=("val_acc", "train_flops"))  # fmt: skip
    tracker = WandbLogger("offline", "rigl-repro", None, config, tmp_path, labels=link.labels(config))
    (started,) = fake_wandb
    options = started.options
    assert (options["name"], options["group"], options["job_type"]) == (
        "trial 3 · rigl uniform d=0.1 seed 1", "alpha_dt", "sweep-trial")  # fmt: skip
    assert options["tags"] == ["digits", "small_cnn", "rigl", "uniform", "paper"]
    assert options["config"] == {**config, "trial": {"study": "alpha_dt", "number": 3,
                                                     "params": {"masking.alpha": 0.4},
                                                     "objectives": ["val_acc", "train_flops"]}}  # fmt: skip
    tracker.summarize({"val_acc": 0.9, "test_acc": 0.8, "density": 0.1, "wall_time_s": 3.0,
                       "flops": {"train_relative": 0.25, "inference_relative": 0.2}})  # fmt: skip
    assert started.summary["objective/val_acc"] == 0.9 and started.summary["objective/train_flops"] == 0.25


def test_outside_a_sweep_a_run_is_labelled_by_its_config_not_its_folder(tmp_path, fake_wandb):
    config = resolved("variant=rigl_erk", "seed=2", "logger.mode=offline")
    build_logger(WANDB, config=config, output_dir=tmp_path / "dataset=digits,masking=rigl")
    WandbLogger("offline", "rigl-repro", None, config, tmp_path / "direct")  # built directly: the same labels
    for started in fake_wandb:
        options = started.options
        assert options["name"] == "rigl erk d=0.1 seed 2" != Path(options["dir"]).name
        assert options["group"] == run_labels(config).group and options["group"].startswith("digits small_cnn rigl erk")
        assert options["tags"] == ["digits", "small_cnn", "rigl", "erk", "paper", "rigl_erk"]
        assert options["job_type"] == "train"


SUMMARY = {  # what the trainer passes: every scalar of summary.json, and its dicts
    "test_acc": 0.8, "val_acc": None, "density": 0.1, "density_all_layers": 0.12, "initial_density": 0.1,
    "exploration": 0.3, "epochs": 3, "steps": 60, "wall_time_s": 4.5, "parameters": 1234,
    "flops": {"train_relative": 0.25, "inference_relative": 0.2, "exact": True},
    "layer_densities": {"features.0.weight": 0.5, "classifier.weight": 0.05},
}  # fmt: skip


def test_the_run_summary_holds_what_it_is_given_under_summary_json_s_names(tmp_path, fake_wandb):
    """Dicts stay nested, as in summary.json (``reporting.wandb_summaries`` reads ``flops`` so)."""
    tracker = build_logger(WANDB, config=resolved(), output_dir=tmp_path)
    tracker.summarize(SUMMARY)
    tracker.finish()
    (started,) = fake_wandb
    assert started.summary == SUMMARY and started.finished


def test_every_epoch_logs_the_budgeted_density_and_the_density_over_all_layers(tmp_path, fake_wandb):
    tracker = build_logger(WANDB, config=resolved(), output_dir=tmp_path)
    entry = {"epoch": 1, "step": 20, "train_loss": 1.0, "density": 0.1, "density_all_layers": 0.12,
             "layer_densities": {"fc.weight": 0.1}, "mask_updates": [], "exploration": 0.2}  # fmt: skip
    tracker.log(entry, step=20)
    (started,) = fake_wandb
    ((logged, step),) = started.logged
    assert step == 20 and logged["density"] == 0.1 and logged["density_all_layers"] == 0.12
    assert logged["density/fc.weight"] == 0.1 and logged["mask/exploration"] == 0.2


def test_a_resumed_run_keeps_its_w_and_b_id_and_a_run_started_afresh_gets_a_new_one(tmp_path, fake_wandb):
    config, epoch = resolved(), {"epoch": 1, "step": 20, "train_loss": 1.0}
    build_logger(WANDB, config=config, output_dir=tmp_path)  # a new run: a new id, stored in the folder
    first = fake_wandb[-1].options["id"]
    assert (tmp_path / "wandb" / RUN_ID_FILE).read_text().strip() == first
    for mode in ("offline", "online"):  # resumed from its checkpoint: the same W&B run
        build_logger({**WANDB, "mode": mode}, config=config, output_dir=tmp_path, history=[epoch])
        assert (fake_wandb[-1].options["id"], fake_wandb[-1].options["resume"]) == (first, "allow")
    build_logger(WANDB, config=config, output_dir=tmp_path)  # trained again from epoch 1: a new W&B run
    second = fake_wandb[-1].options["id"]
    assert second != first and (tmp_path / "wandb" / RUN_ID_FILE).read_text().strip() == second
    other = tmp_path / "other"  # another folder, even with the same history: its own id
    build_logger(WANDB, config=config, output_dir=other, history=[epoch])
    assert fake_wandb[-1].options["id"] not in (first, second)


def test_a_run_resumed_from_before_the_id_file_keeps_the_id_it_had(tmp_path, fake_wandb):
    config, epoch = resolved(), {"epoch": 1, "step": 20, "train_loss": 1.0}
    build_logger(WANDB, config=config, output_dir=tmp_path, history=[epoch])
    assert fake_wandb[-1].options["id"] == legacy_run_id(tmp_path)
    (tmp_path / "wandb" / RUN_ID_FILE).write_text("not an id!\n")  # damaged: a new id, stored
    build_logger(WANDB, config=config, output_dir=tmp_path, history=[epoch])
    chosen = fake_wandb[-1].options["id"]
    assert chosen != legacy_run_id(tmp_path) and (tmp_path / "wandb" / RUN_ID_FILE).read_text().strip() == chosen


@pytest.mark.parametrize(
    "mode, environment, expected",
    [
        ("offline", {}, "offline"),
        ("offline", {"WANDB_MODE": "disabled"}, "disabled"),
        ("online", {"WANDB_MODE": "offline"}, "offline"),
        ("online", {"WANDB_MODE": "dryrun"}, "offline"),
        ("offline", {"WANDB_MODE": "online"}, "offline"),  # the environment never makes a run less private
        ("disabled", {"WANDB_MODE": "online"}, "disabled"),
        ("online", {"WANDB_DISABLED": "true"}, "disabled"),
        ("offline", {"WANDB_MODE": "unknown"}, "offline"),
    ],
)  # fmt: skip
def test_the_environment_can_make_a_run_more_private_never_less(mode, environment, expected):
    assert effective_mode(mode, environment) == expected


def files_under(*folders):
    return sorted(path for folder in folders for path in Path(folder).rglob("*"))


@pytest.mark.parametrize("how", ["logger.mode=disabled", "WANDB_MODE=disabled", "WANDB_DISABLED=true"])
def test_a_disabled_w_and_b_writes_nothing_anywhere(tmp_path, monkeypatch, how):
    """Neither in the run folder nor in W&B's own folders (home, cache, config): W&B is never started."""
    import wandb

    def never(**options):
        raise AssertionError("W&B was started")

    monkeypatch.setattr(wandb, "init", never)
    home, run_dir = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    run_dir.mkdir()
    for variable in ("HOME", "WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(home))
    key, value = how.split("=")
    mode = value if key == "logger.mode" else "offline"
    if key != "logger.mode":
        monkeypatch.setenv(key, value)
    tracker = build_logger({**WANDB, "mode": mode}, config=resolved(), output_dir=run_dir,
                           history=[{"epoch": 1, "step": 20, "train_loss": 1.0}])  # fmt: skip
    tracker.log({"epoch": 2, "step": 40, "train_loss": 0.5, "layer_densities": {}, "mask_updates": []}, step=40)
    tracker.summarize(SUMMARY)
    tracker.finish()
    assert tracker.run is None and files_under(run_dir, home) == []


def test_a_run_under_wandb_mode_disabled_has_no_w_and_b_folder(tmp_path, monkeypatch):
    """The whole trainer, with the config asking for an offline run: the environment wins."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    summary = run(compose_config("train.epochs=1", "masking=set", "logger.mode=offline"), tmp_path)
    assert summary["epochs"] == 1 and not (tmp_path / "wandb").exists()
