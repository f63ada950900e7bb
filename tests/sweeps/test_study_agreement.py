"""The command and the stored state agree or the run stops (issue 23, family 4), and storages are not read
on trust (family 3): every disagreement between a command and its stored Optuna study, every hostile storage
and every bad ``trial_seeds`` ends the sweep in one line with exit code 2, the study and the file untouched.

The sweeper runs in-process with a launcher that returns a value for each trial (no training); one end-to-end
case per family goes through main.py."""

import logging
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution

from rigl_repro.errors import ConfigError
from rigl_repro.sweeps.agreement import FIXED_ATTR, SPACE_ATTR
from rigl_repro.sweeps.optuna_study import OptunaStudySweeperBase
from rigl_repro.sweeps.seeds import SEED_KEYS, check_trial_seeds

pytestmark = pytest.mark.filterwarnings(
    "ignore:Heartbeat of storage is supposed to be used with", "ignore::optuna.exceptions.ExperimentalWarning"
)

ROOT = Path(__file__).resolve().parents[2]
NOT_IDENTITY = list(OmegaConf.load(ROOT / "conf" / "config.yaml").hydra.job.config.override_dirname.exclude_keys)
PARAMS = {
    "masking.alpha": "interval(0.1, 0.6)",
    "masking.delta_t": "range(50, 1000, step=50)",
    "masking.distribution": "choice(uniform, erk)",
}
ARGUMENTS = ["experiment=sweep_alpha_dt", "masking.density=0.2", "train.epochs=2", "output_root=/tmp/a"]


class ValueLauncher:
    """A launcher whose jobs all return 0.5 at once; it records the overrides it was given."""

    def __init__(self):
        self.launched = []

    def launch(self, job_overrides, initial_job_idx):
        self.launched.extend(job_overrides)
        return [JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value=0.5) for o in job_overrides]


def sweeper(tmp_path, storage=None, params=PARAMS, trial_seeds=None, **options):
    """The project's Optuna sweeper over ``tmp_path/optuna.db``, with the config a sweep would give it."""
    made = OptunaStudySweeperBase(
        study_name="s", storage=storage or f"sqlite:///{tmp_path}/optuna.db", params=dict(params),
        sampler={"seed": 1, "n_startup_trials": 1}, heartbeat_interval=1, grace_period=2, **options,
    )  # fmt: skip
    made.config = OmegaConf.create({
        "trial_seeds": trial_seeds,
        "hydra": {"sweep": {"dir": str(tmp_path / "sweep")},
                  "job": {"config": {"override_dirname": {"exclude_keys": NOT_IDENTITY}}}},
    })  # fmt: skip
    made.launcher = ValueLauncher()
    return made


def refused(made, arguments, caplog):
    """The one error line a sweep that must stop logs (its exit code checked); no trial launched."""
    caplog.clear()
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stop:
        made.sweep(list(arguments))
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert stop.value.code == 2 and len(errors) == 1 and "\n" not in errors[0], errors
    assert errors[0].startswith("error: ") and made.launcher.launched == []
    return errors[0]


def snapshot(database):
    """Everything a study stores, read without Optuna (which could write): every row of every table."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: sorted(map(repr, connection.execute(f"SELECT * FROM {table}"))) for table in tables}


def replaced(items, key, value):
    """``key=value`` overrides with ``key``'s own replaced (or dropped when value is None)."""
    kept = [item for item in items if not item.startswith(f"{key}=")]
    return kept if value is None else [*kept, f"{key}={value}"]


DISAGREEMENTS = [  # (what changed, sweeper options, command-line overrides, the difference the line names)
    ("direction", {"direction": "minimize"}, ARGUMENTS,
     "hydra.sweeper.direction: maximize in the study, minimize in this command"),
    ("parameter added", {}, [*ARGUMENTS, "train.lr=interval(0.01, 0.1)"],
     "train.lr: not set in the study, interval(0.01, 0.1) in this command"),
    ("parameter removed", {"params": {k: v for k, v in PARAMS.items() if k != "masking.distribution"}}, ARGUMENTS,
     "masking.distribution: choice('uniform', 'erk') in the study, not set in this command"),
    ("range changed", {}, [*ARGUMENTS, "masking.alpha=interval(0.2, 0.6)"],
     "masking.alpha: interval(0.1, 0.6) in the study, interval(0.2, 0.6) in this command"),
    ("step changed", {}, [*ARGUMENTS, "masking.delta_t=range(50, 1000, step=25)"],
     "masking.delta_t: range(50, 1000, step=50) in the study, range(50, 1000, step=25) in this command"),
    ("log scale", {}, [*ARGUMENTS, "masking.alpha=tag(log, interval(0.1, 0.6))"],
     "masking.alpha: interval(0.1, 0.6) in the study, tag(log, interval(0.1, 0.6)) in this command"),
    ("choices changed", {}, [*ARGUMENTS, "masking.distribution=choice(uniform, erk, er)"],
     "masking.distribution: choice('uniform', 'erk') in the study, choice('uniform', 'erk', 'er') in this command"),
    ("fixed override changed", {}, replaced(ARGUMENTS, "train.epochs", "3"),
     "train.epochs: 2 in the study, 3 in this command"),
    ("fixed override added", {}, [*ARGUMENTS, "train.lr=0.2"], "train.lr: not set in the study, 0.2 in this command"),
    ("fixed override removed", {}, replaced(ARGUMENTS, "masking.density", None),
     "masking.density: 0.2 in the study, not set in this command"),
    ("fixed override searched", {}, replaced(ARGUMENTS, "train.epochs", "range(1, 3)"),
     "train.epochs: 2 in the study, range(1, 3, step=1) in this command"),
]  # fmt: skip


@pytest.mark.parametrize("options, arguments, difference", [case[1:] for case in DISAGREEMENTS],
                         ids=[case[0] for case in DISAGREEMENTS])  # fmt: skip
def test_a_command_that_disagrees_with_its_stored_study_is_refused_in_one_line(
    tmp_path, caplog, options, arguments, difference
):
    sweeper(tmp_path, n_trials=2).sweep(list(ARGUMENTS))
    before = snapshot(tmp_path / "optuna.db")
    line = refused(sweeper(tmp_path, n_trials=3, **options), arguments, caplog)
    assert difference in line and "hydra.sweeper.study_name=" in line and f"sqlite:///{tmp_path}/optuna.db" in line
    assert snapshot(tmp_path / "optuna.db") == before  # not a trial, attribute or heartbeat more


def test_a_command_that_agrees_resumes_its_study_and_options_outside_a_run_s_identity_may_change(tmp_path):
    sweeper(tmp_path, n_trials=2).sweep(list(ARGUMENTS))
    resumed = sweeper(tmp_path, n_trials=3)
    # output_root, sweep_trials and experiment are left out of run folders' names: not the study's either
    # and the training options a run itself may resume under with other values (run.identity.EXECUTION_OPTIONS)
    resumed.sweep([*replaced(ARGUMENTS, "output_root", "/tmp/b"), "sweep_trials=3", "logger.mode=disabled",
                   "train.compile=off", "train.eval_batch_size=64"])  # fmt: skip
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert len(study.trials) == 3 and len(resumed.launcher.launched) == 1
    assert study.user_attrs[FIXED_ATTR] == {"masking.density": "0.2", "train.epochs": "2"}
    assert sorted(study.user_attrs[SPACE_ATTR]) == sorted(PARAMS)


def test_a_study_stored_before_the_record_adopts_the_first_command_then_holds_to_it(tmp_path, caplog):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    old = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    old.add_trial(optuna.trial.create_trial(params={"masking.alpha": 0.3}, value=0.4,
                                            distributions={"masking.alpha": FloatDistribution(0.1, 0.6)}))  # fmt: skip
    with caplog.at_level(logging.INFO):
        sweeper(tmp_path, n_trials=2).sweep(list(ARGUMENTS))
    assert "has no record of its search space and fixed overrides; recording this command's" in caplog.text
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 2 and study.user_attrs[FIXED_ATTR]["train.epochs"] == "2"
    before = snapshot(tmp_path / "optuna.db")
    line = refused(sweeper(tmp_path, n_trials=3), replaced(ARGUMENTS, "train.epochs", "5"), caplog)
    assert "train.epochs: 2 in the study, 5 in this command" in line and snapshot(tmp_path / "optuna.db") == before


def test_an_unrecorded_study_keeps_its_own_direction(tmp_path, caplog):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    before = snapshot(tmp_path / "optuna.db")
    line = refused(sweeper(tmp_path, direction="minimize"), ARGUMENTS, caplog)
    assert "hydra.sweeper.direction: maximize in the study, minimize in this command" in line
    assert snapshot(tmp_path / "optuna.db") == before  # nothing recorded for a command that was refused


def corrupt(path):
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)


def foreign(path):
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE foo (x)")
        connection.execute("INSERT INTO foo VALUES (1)")
        connection.commit()


def study_file(path):
    sweeper(path.parent, n_trials=2).sweep(list(ARGUMENTS))
    return bytearray(path.read_bytes())


def truncated(path):
    path.write_bytes(study_file(path)[: 3 * 4096])


def damaged(path):
    content = study_file(path)
    middle = len(content) // 4096 // 2 * 4096  # a page of the trials' tables, its header overwritten
    content[middle : middle + 4096] = bytes((7 * i + 3) % 256 for i in range(4096))
    path.write_bytes(bytes(content))


def random_bytes(path):
    path.write_bytes(bytes((7 * i + 3) % 256 for i in range(4096)))


HOSTILE = [  # (storage, how to make it, what the line says)
    ("corrupt file", random_bytes, "is not a readable SQLite database (file is not a database)"),
    ("corrupt header", corrupt, "is not a readable SQLite database"),
    ("foreign sqlite", foreign, "is an SQLite database of something else (tables: foo), not an Optuna storage"),
    ("truncated study", truncated, "is not a readable SQLite database (database disk image is malformed)"),
    ("damaged study", damaged, "is a damaged SQLite database (quick_check: *** in database main *** Page "),
    ("a directory", lambda path: path.mkdir(), "is a directory, not a database file"),
]  # fmt: skip


def contents(path):
    return path.read_bytes() if path.is_file() else sorted(path.iterdir())


@pytest.mark.parametrize("make, problem", [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_a_storage_that_is_not_an_optuna_one_is_refused_in_one_line_and_left_as_it_was(
    tmp_path, caplog, make, problem
):
    database = tmp_path / "optuna.db"
    make(database)
    before, files = contents(database), sorted(tmp_path.rglob("*"))
    line = refused(sweeper(tmp_path), ARGUMENTS, caplog)
    assert f"hydra.sweeper.storage=sqlite:///{database}: {database} {problem}" in line
    assert contents(database) == before and sorted(tmp_path.rglob("*")) == files  # no journal, no results


@pytest.mark.parametrize("url, reason", [
    ("foo://nowhere", "Can't load plugin: sqlalchemy.dialects:foo"),
    ("not a url", "Could not parse SQLAlchemy URL"),
    ("postgresql://user@127.0.0.1:1/db", "postgresql://user@127.0.0.1:1/db cannot be opened: "),
])  # fmt: skip
def test_a_storage_that_cannot_be_opened_is_one_line_naming_its_url(tmp_path, caplog, url, reason):
    line = refused(sweeper(tmp_path, storage=url), ARGUMENTS, caplog)
    assert f"hydra.sweeper.storage={url} cannot be opened: " in line and reason in line
    assert "check the URL" in line and list(tmp_path.iterdir()) == []


def test_a_storage_whose_folder_cannot_be_made_is_one_line(tmp_path, caplog):
    (tmp_path / "a_file").write_text("not a folder")
    url = f"sqlite:///{tmp_path}/a_file/optuna.db"
    line = refused(sweeper(tmp_path, storage=url), ARGUMENTS, caplog)
    assert f"hydra.sweeper.storage={url} cannot be" in line and (tmp_path / "a_file").read_text() == "not a folder"


def test_an_empty_sqlite_file_becomes_a_storage(tmp_path):
    (tmp_path / "optuna.db").touch()  # e.g. made by `touch` or a failed first attempt
    sweeper(tmp_path, n_trials=1).sweep(list(ARGUMENTS))
    assert len(optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db").trials) == 1


BAD_TRIAL_SEEDS = [  # (value, what the line says)
    ([0, 0], "trial_seeds=[0, 0] repeats seed 0"),
    ([], "trial_seeds=[] lists no seed"),
    (["a", "b"], "trial_seeds[0]='a' is invalid; expected an integer in [0, 4294967294]"),
    ([0, -1], "trial_seeds[1]=-1 is invalid"),
    ([True], "trial_seeds[0]=True is invalid"),
    (3, "trial_seeds=3 is invalid; expected a list of seeds such as [0,1,2], or null for a single run"),
    ("0,1", "trial_seeds='0,1' is invalid; expected a list of seeds"),
]  # fmt: skip


@pytest.mark.parametrize("value, message", BAD_TRIAL_SEEDS, ids=[repr(case[0]) for case in BAD_TRIAL_SEEDS])
def test_bad_trial_seeds_are_refused_by_a_study_before_it_is_touched(tmp_path, caplog, value, message):
    with pytest.raises(ConfigError, match="trial_seeds") as error:
        check_trial_seeds(OmegaConf.create({"v": value}).v)
    assert message in str(error.value)
    line = refused(sweeper(tmp_path, trial_seeds=value), ARGUMENTS, caplog)
    assert message in line and list(tmp_path.iterdir()) == []


def test_good_trial_seeds_are_the_seeds_and_null_is_a_single_run():
    assert check_trial_seeds(None) is None
    assert check_trial_seeds(OmegaConf.create([2, 0, 1])) == (2, 0, 1)  # in the order given, as run folders


@pytest.mark.parametrize("key", SEED_KEYS)
def test_a_study_never_searches_seeds(tmp_path, caplog, key):
    line = refused(sweeper(tmp_path), [*ARGUMENTS, f"{key}=choice(0, 1)"], caplog)
    assert f"{key}=choice(0, 1): an Optuna study never searches seeds" in line and "trial_seeds=[" in line
    assert list(tmp_path.iterdir()) == []


def main_py(tmp_path, *overrides, multirun=False):
    command = [sys.executable, str(ROOT / "main.py"), *(["-m"] if multirun else []), "scale=smoke",
               "logger.mode=disabled", "train.epochs=1", f"output_root={tmp_path / 'runs'}", *overrides]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    return result.returncode, (result.stdout + result.stderr).strip().splitlines()


@pytest.mark.parametrize("value, message", [("[0,0]", "trial_seeds=[0, 0] repeats seed 0"),
                                            ("[a,b]", "trial_seeds[0]='a' is invalid")])  # fmt: skip
def test_main_py_refuses_bad_trial_seeds_in_one_line(tmp_path, value, message):
    code, output = main_py(tmp_path, f"trial_seeds={value}")
    assert code == 2 and len(output) == 1 and "error: " in output[0] and message in output[0], output
    assert not list(tmp_path.rglob("checkpoint.pt"))


def test_main_py_refuses_a_sweep_that_disagrees_with_its_study_and_a_searched_seed(tmp_path):
    database = tmp_path / "runs" / "optuna.db"
    database.parent.mkdir()
    old = optuna.create_study(study_name="alpha_dt-digits-rigl-0.2", storage=f"sqlite:///{database}")  # minimize
    before = snapshot(database)
    for extra, message in [([], "hydra.sweeper.direction: minimize in the study, maximize in this command"),
                           (["grid_seeds=0,1"], "grid_seeds=0,1: an Optuna study never searches seeds")]:  # fmt: skip
        code, output = main_py(tmp_path, "experiment=sweep_alpha_dt", "masking.density=0.2", *extra, multirun=True)
        assert code == 2 and len(output) == 1 and message in output[0], output
    assert snapshot(database) == before and old.trials == []
