"""The project's Hydra configuration (``conf/``) composed outside a Hydra application: by the scripts, the
report builder and the tests, which need the exact config ``main.py`` would run but no run folder."""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import shlex
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, OverrideType, ValueType
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from rigl_repro.run.folders import FOLDER_NAME_LIMIT, folder_name, job_folder, source_folder  # noqa: F401 (re-exported)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
MULTIRUN_FLAGS = ("-m", "--multirun")
LEXER_ERROR = "LexerNoViableAltException: "  # Hydra's prefix for a character its override grammar does not take


def composition_error(error: Exception) -> str:
    """Hydra's composition error (an unknown option, group or value, an override it cannot parse) as one
    line: its sentences, plus the group's available options when it lists them; not its search path or links."""
    if isinstance(error, OverrideParseException):
        return parse_error(error.override, error.message)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    ends = ("Available options", "Config search path", "See https://")
    cut = next((i for i, line in enumerate(lines) if line.startswith(ends)), len(lines))
    message = " ".join(lines[:cut]) or error.__class__.__name__
    if "Could not override" in message and "To append to your config use" in message:
        # Hydra suggests adding the key with '+', which the option's group then refuses (a masking method
        # takes only its own options): say what the key is instead.
        message = message.split(" To append to your config use")[0] + (
            " It is not an option of this config: check its spelling, or the options of the group you chose "
            "(`python main.py <your overrides> --cfg job` lists them)"
        )
    if cut < len(lines) and lines[cut].startswith("Available options"):
        options = [line for line in lines[cut + 1 :] if not line.startswith(("Config search path", "provider="))]
        message += f"; choose one of: {', '.join(options)}"
    return message


def parse_error(override: str, message: str) -> str:
    """Hydra's message for an ``override`` its grammar cannot parse, in plain words: which override, why, and
    what to write instead. A lexer error (a character the grammar takes only inside quotes, such as ``é``)
    names the character, which Hydra marks with a caret under the line; any other keeps Hydra's own sentence
    (e.g. "no viable alternative at input '[1'")."""
    key, _, value = override.partition("=")
    lexer = re.match(rf"{LEXER_ERROR}.*\n( *)\^", message)
    at = len(lexer.group(1)) - len(LEXER_ERROR) if lexer else -1
    if 0 <= at < len(key):
        return (f"the override {override} could not be parsed ({override[at]!r} is not allowed in an option's "
                "name); check its spelling (`python main.py --help` lists the options)")  # fmt: skip
    if 0 <= at < len(override):
        reason, advice = f"{override[at]!r} may appear only inside a quoted value", "quote its value"
    else:
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        sentences = [line for line in lines if not line.startswith(("See https://", "Error parsing override", "^"))]
        reason = (sentences[0] if sentences else message.strip()).removeprefix(LEXER_ERROR)
        advice = "check its brackets and commas, or quote a value meant as text"
    # As typed in a shell, which removes the outer quotes and leaves Hydra the inner ones.
    quoted = f"\"'{value}'\"" if "'" not in value else f'"\\"{value}\\""'
    return f"the override {override} could not be parsed ({reason}); {advice}, e.g. {key}={quoted}"


# The sweepers whose jobs check_command_line checks: the project's grid (stored as Hydra's "basic") and Hydra's own
# basic sweeper it replaces; the project's Optuna sweeper. Another sweeper's jobs are left to it.
GRID_SWEEPERS = (
    "hydra_plugins.rigl_repro_sweeper.GridSweeper",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
)
OPTUNA_SWEEPER = "hydra_plugins.rigl_repro_sweeper.OptunaStudySweeper"
JOBS_NAMED = 3  # jobs of a refused sweep listed by their swept values; the others are counted


def check_command_line(arguments: Sequence[str]) -> str | None:
    """The one-line error that ``main.py``'s command line would end in, or None; checked before Hydra starts,
    so a refused command creates nothing (Hydra makes the run folder, its ``.hydra/`` and log first, and a
    sweep's ``multirun.yaml``).

    Every command: its overrides parse, its fixed overrides compose (Hydra composes a sweep's config from them
    alone, so no swept group can supply an option they lack) and ``output_root`` can hold runs. A single run
    also: it sweeps nothing, names every grid parameter of its experiment itself (else it would silently run
    one default run of a grid, which needs ``-m``), its folder lies inside ``output_root``, and its run config
    validates. A sweep (``-m``) also: its choice of sweeper, sampler and pruner (``hydra/sweeper...``), and
    every job composes and (a grid's) validates as a single run's would (``sweep_problem``). Hydra's other
    flags (``--cfg``, ``--help``, ...) and ``hydra.*`` overrides are left to Hydra."""
    if any(argument.startswith("-") and argument not in MULTIRUN_FLAGS for argument in arguments):
        return None
    multirun = any(argument in (*MULTIRUN_FLAGS, "hydra.mode=MULTIRUN") for argument in arguments)
    overrides = [argument for argument in arguments
                 if not argument.startswith(("-", "hydra.", "hydra/", "+hydra"))]  # fmt: skip
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as error:
        return composition_error(error)
    swept = [item for item in parsed if item.is_sweep_override()]
    if swept and not multirun:
        return sweep_without_multirun(swept[0], arguments)
    fixed = [item.input_line for item in parsed if not item.is_sweep_override()]
    try:
        cfg = sweep_cfg = compose_config(fixed, with_hydra=True)
    except HydraException as error:
        return composition_error(error)
    sweeper = [argument for argument in arguments
               if argument.lstrip("+~").startswith(("hydra/sweeper", "hydra.sweeper."))]  # fmt: skip
    if sweeper:  # a sweeper's groups are never swept: an option they lack is a typo
        try:
            sweep_cfg = compose_config([*fixed, *sweeper], with_hydra=True)
        except HydraException as error:
            message = str(error)
            if message.startswith("Could not override 'hydra/sweeper/"):  # a group of Optuna's sweeper only
                group = message.split("'")[1]
                return (f"{group} is an option of the Optuna sweeper, and this sweep uses the grid sweeper; add "
                        "hydra/sweeper=optuna")  # fmt: skip
            if message.startswith("Could not override 'hydra.sweeper."):
                key = message.split("'")[1]
                return (f"{key} is not set by the sweeper, sampler or pruner in use (`python main.py <your "
                        f"overrides> --cfg hydra` lists theirs); to pass an option they take, add it: +{key}=...")
            return composition_error(error)
    if not multirun:
        problem = unrun_grid_problem(sweep_cfg, [item.input_line for item in parsed], arguments)
        if problem:
            return problem
    problem = output_root_problem(cfg.output_root)
    if problem:
        return problem
    if multirun:
        return sweep_problem(sweep_cfg, [item.input_line for item in parsed])
    return run_folder_problem(cfg) or run_config_problem(cfg)


def sweep_without_multirun(override: Override, arguments: Sequence[str]) -> str:
    """Why a single run cannot take a sweep (``seed=0,1``), and the two things it may have meant."""
    command = shlex.join(["python", "main.py", "-m", *arguments])
    if override.value_type == ValueType.SIMPLE_CHOICE_SWEEP:
        key, values = override.get_key_element(), ",".join(override.sweep_string_iterator())
        return (f"{override.input_line} is a sweep, which needs -m to run each value: {command}; for one run with "
                f"a list write {key}=[{values}], with text quote it: {key}=\"'{values}'\"")  # fmt: skip
    return f"{override.input_line} is a sweep, which needs -m: {command}"


def sweeper_params(cfg: DictConfig) -> dict[str, str] | None:
    """The sweep's ``hydra.sweeper.params`` resolved, as its sweeper receives them (``key: value`` strings, such
    as ``seed: 0,1,2``), or None when one cannot be resolved here (its sweep is left to Hydra)."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params")
    if not params:
        return {}
    try:
        with hydra_config(cfg):
            return {str(key): str(value) for key, value in OmegaConf.to_container(params, resolve=True).items()}
    except OmegaConfBaseException:
        return None


def sweeper_kind(cfg: DictConfig) -> str | None:
    """``grid`` or ``optuna`` for the project's sweepers (and Hydra's basic one), else None."""
    target = OmegaConf.select(cfg, "hydra.sweeper._target_")
    return {**dict.fromkeys(GRID_SWEEPERS, "grid"), OPTUNA_SWEEPER: "optuna"}.get(target)


def unrun_grid_problem(cfg: DictConfig, overrides: Sequence[str], arguments: Sequence[str]) -> str | None:
    """Why a single run of this command would not be what its experiment defines, or None: the experiment's
    sweep (``hydra.sweeper.params``) applies with ``-m`` only, so without it, the run would silently train the
    defaults of each parameter the command line does not set itself (``experiment=table2``: one run, of no row
    of the table)."""
    params = sweeper_params(cfg)
    given = {item.key_or_group for item in OverridesParser.create().parse_overrides(list(overrides))}
    if not params or all(key in given for key in params):
        return None
    experiment = OmegaConf.select(cfg, "hydra.runtime.choices.experiment")
    source = f"experiment={experiment}" if experiment else "conf/config.yaml"
    kind, what = sweeper_kind(cfg), "a sweep"
    if kind == "grid":
        try:
            runs = len(grid_jobs([*(f"{key}={value}" for key, value in params.items()), *overrides]))
            what = f"a grid of {runs} run{'' if runs == 1 else 's'}"
        except HydraException:
            pass
    elif kind == "optuna":
        trials = OmegaConf.select(cfg, "hydra.sweeper.n_trials", default=None)
        what = f"an Optuna study of {trials} trials" if isinstance(trials, int) else "an Optuna study"
    command = shlex.join(["python", "main.py", "-m", *arguments])
    return f"{source} defines {what} (hydra.sweeper.params); add -m to run it: {command}"


def grid_jobs(overrides: Sequence[str]) -> list[list[str]]:
    """The grid sweeper's jobs for these overrides (``rigl_repro.sweeps.grid.grid_jobs``)."""
    from rigl_repro.sweeps.grid import grid_jobs as jobs  # lazy: after Hydra's plugin scan, as the sweeper

    return jobs(overrides)


def sweep_problem(cfg: DictConfig, overrides: Sequence[str]) -> str | None:
    """The one line a sweep (``-m``, its config ``cfg`` composed from the fixed overrides and its sweeper's)
    would end in before its first job starts, or None: a job that does not compose (an option, group or value
    that only a swept value gets wrong) or, in a grid, that would be refused as a single run (a bad value), in
    one line naming the jobs. A sweeper other than the project's, a ``glob`` or a parameter that cannot be
    resolved here are left to Hydra."""
    kind, params = sweeper_kind(cfg), sweeper_params(cfg)
    if kind is None or params is None:
        return None
    every = [*(f"{key}={value}" for key, value in params.items()), *overrides]
    if kind == "optuna":
        return study_problem(every)
    try:
        jobs = grid_jobs(every)
    except HydraException as error:
        if "does not support sweep type" not in str(error):
            return None  # a glob: its options are Hydra's config loader's to list
        swept = [item for item in OverridesParser.create().parse_overrides(every)
                 if item.is_sweep_override() and not item.is_discrete_sweep()]  # fmt: skip
        return (f"{swept[0].input_line} is a sweep the grid sweeper cannot run (it samples); list the values "
                f"({swept[0].get_key_element()}=a,b,c) or add hydra/sweeper=optuna")  # fmt: skip
    return grid_problem(jobs, OmegaConf.select(cfg, "hydra.job.config.override_dirname.exclude_keys", default=[]))


def is_group(override: Override) -> bool:
    """Whether ``override`` chooses a config group's option (a folder of ``conf/``) rather than sets a value."""
    return override.package is not None or (CONF_DIR / override.key_or_group).is_dir()


def sets_value(override: Override, base_keys: Collection[str] = ()) -> bool:
    """Whether ``override`` sets a plain value on an existing key (``train.lr=0.1``, ``seed=2``): not a group's
    choice, an addition (``+``), a deletion (``~``) or a dict (merged key by key), nor one of ``base_keys``, the
    options that choose a command's defaults (``override_dirname.exclude_keys``: its experiment, scale,
    output_root...), whose config the run folder of a run's source (a lottery ticket's pruning run) is named in."""
    return (override.type == OverrideType.CHANGE and not is_group(override) and not isinstance(override.value(), dict)
            and override.key_or_group not in base_keys)  # fmt: skip


def composition_part(override: Override, base_keys: Collection[str] = ()) -> str:
    """What of ``override`` decides whether its job composes: for a value set on an existing key
    (``sets_value``), the key and the value's type; all of any other override. Jobs alike in every part
    compose alike."""
    if sets_value(override, base_keys):
        return f"{override.key_or_group}: {type(override.value()).__name__}"
    return override.input_line


def grid_problem(jobs: Sequence[Sequence[str]], base_keys: Collection[str] = ()) -> str | None:
    """Why the grid of ``jobs`` cannot run, or None: jobs that do not compose, else jobs whose run config is
    refused (``run_config_problem``), in one line naming them. One job of each kind (``composition_part``) is
    composed, and every job of that kind is that config with its own values set, as Hydra sets them: a grid of
    many values and seeds costs one composition per combination of its groups (0.3 s each), then 3 ms per job
    and one plan (``plan_run``: 30 ms for the small CNN, 0.26 s for WRN-22-2) per config but its seed."""
    parser = OverridesParser.create()
    parsed: dict[str, Override] = {}
    kinds: dict[tuple[str, ...], list[int]] = {}
    for index, job in enumerate(jobs):
        for text in job:
            if text not in parsed:
                parsed[text] = parser.parse_override(text)
        kinds.setdefault(tuple(composition_part(parsed[text], base_keys) for text in job), []).append(index)
    composed: list[tuple[DictConfig, list[int]]] = []
    uncomposed: dict[str, list[int]] = {}
    for members in kinds.values():
        try:
            composed.append((compose_config(jobs[members[0]], with_hydra=True), members))
        except HydraException as error:
            uncomposed.setdefault(composition_error(error), []).extend(members)
    refused: dict[str, list[int]] = {}
    plans: dict[str, str | None] = {}
    for cfg, members in [] if uncomposed else composed:  # a grid that does not compose is told that first
        with hydra_config(cfg):
            for index in members:
                problem = job_problem(cfg, [parsed[text] for text in jobs[index]], base_keys, plans)
                if problem:
                    refused.setdefault(problem, []).append(index)
    problems = uncomposed or refused
    told = [f"{message} ({which_jobs(members, jobs, message)})" if len(jobs) > 1 else message
            for message, members in list(problems.items())[:JOBS_NAMED]]  # fmt: skip
    more = len(problems) - len(told)
    return "; also ".join(told) + (f"; and {more} other problem{'s' if more > 1 else ''}" if more else "") or None


def job_problem(
    cfg: DictConfig, job: Sequence[Override], base_keys: Collection[str], plans: dict[str, str | None]
) -> str | None:
    """``run_config_problem`` of one job of a grid, inside ``hydra_config(cfg)``: ``cfg``, composed for a job
    of its kind, with this job's values set in place (every job of a kind sets the same keys, so none keeps
    another's), its run config read from the resolved task as ``main.py`` gets it, and its plan checked once per
    entry of ``plans`` (a plan never reads the seed). A value that only the run can resolve is left to it."""
    from rigl_repro.errors import ConfigError
    from rigl_repro.run.build import plan_run  # lazy: these import torch and the training side
    from rigl_repro.run.config import RunConfig
    from rigl_repro.sweeps.seeds import run_trial_seeds

    try:
        for override in job:
            if sets_value(override, base_keys):
                OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
        task = {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
                for key in cfg if key != "hydra"}  # fmt: skip
        seeds = run_trial_seeds(task)
        if seeds:
            task["seed"] = seeds[0]
        config = RunConfig.from_hydra(task)
        plan = json.dumps({key: value for key, value in task.items() if key != "seed"}, sort_keys=True, default=str)
        if plan not in plans:
            try:
                plan_run(config)
                plans[plan] = None
            except ConfigError as error:
                plans[plan] = str(error)
        return plans[plan]
    except ConfigError as error:
        return str(error)
    except OmegaConfBaseException:
        return None


def which_jobs(members: Sequence[int], jobs: Sequence[Sequence[str]], message: str = "") -> str:
    """Jobs ``members`` of a grid in a few words: by the swept values they alone share (``2 of 6 runs: those
    with masking=static``; just counted when ``message``, their problem, names those values already), else by
    each one's swept values."""
    if len(members) == len(jobs):
        return f"all {len(jobs)} runs"
    varying = [i for i in range(len(jobs[0])) if any(job[i] != jobs[0][i] for job in jobs)]
    first = jobs[members[0]]
    shared = [i for i in varying if all(jobs[member][i] == first[i] for member in members)]
    alike = sum(all(job[i] == first[i] for i in shared) for job in jobs)
    count = f"{len(members)} of {len(jobs)} runs"
    if shared and alike == len(members):
        if all(first[i] in message for i in shared):
            return count
        return f"{count}: {'the one' if len(members) == 1 else 'those'} with {' '.join(first[i] for i in shared)}"
    labels = [" ".join(jobs[member][i] for i in varying) for member in members]
    shown = "; ".join(labels[:JOBS_NAMED])
    return f"{count}: {shown}" + (f" and {len(labels) - JOBS_NAMED} more" if len(labels) > JOBS_NAMED else "")


def study_problem(overrides: Sequence[str]) -> str | None:
    """Why an Optuna study's trials would not compose, or None. Each option of a searched group
    (``variant=choice(rigl,rigl_erk)``) is composed with one value of every other searched option (its first,
    an interval's start), so a misspelt option or group choice is one line before the study starts; the
    sampled values themselves are the runs' to check. The search space is the sweeper's: a later override of a
    key replaces an earlier one (``rigl_repro.sweeps.optuna_study.search_space``)."""
    final: dict[str, Override] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        final.pop(override.get_key_element(), None)
        final[override.get_key_element()] = override
    axes = []
    for override in final.values():
        key = override.get_key_element()
        if not override.is_sweep_override():
            values = [override.input_line]
        elif override.is_discrete_sweep():
            values = [f"{key}={item}" for item in override.sweep_string_iterator()]
        elif isinstance(override.value(), IntervalSweep):
            values = [f"{key}={override.value().start}"]
        else:
            return None  # a glob: the sweeper refuses it in one line
        axes.append(values if is_group(override) else values[:1])
    for trial in itertools.product(*axes):
        try:
            compose_config(trial, with_hydra=True)
        except HydraException as error:
            choices = [text for text, axis in zip(trial, axes) if len(axis) > 1]
            message = composition_error(error)
            return f"{message} (the study's trials with {' '.join(choices)})" if choices else message
    return None


def output_root_problem(value: Any) -> str | None:
    """Why ``output_root`` cannot hold runs, or None; checked without creating anything. An empty value would
    put the runs at the file system's root (``${output_root}/<run folder>``) or in the working directory; a
    path that exists only in part must have a writable folder as its deepest existing part."""
    text = "" if value is None else str(value)
    if not text.strip():
        shown = "null" if value is None else repr(text)
        return f"output_root={shown} is empty; set it to the folder the runs go in, e.g. output_root=outputs/runs"
    path = Path(os.path.abspath(text))
    for existing in (path, *path.parents):  # the deepest part that exists ("/" always does)
        try:
            os.lstat(existing)
            break
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:  # a name too long, a folder that cannot be searched
            return f"output_root={text} cannot be written ({error.strerror or error}); choose a folder you can write to"
    if not existing.is_dir():
        reason = f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"{existing} is not writable"
    else:
        return None
    return f"output_root={text} cannot be written ({reason}); choose a folder you can write to"


@contextmanager
def hydra_config(cfg: DictConfig) -> Iterator[None]:
    """Let the ``${hydra:...}`` resolver read ``cfg``'s hydra node while the block runs, as in a Hydra job."""
    instance = HydraConfig.instance()
    previous = instance.cfg
    instance.set_config(cfg)
    try:
        yield
    finally:
        instance.cfg = previous


def run_folder_problem(cfg: DictConfig) -> str | None:
    """Why a single run's folder (``hydra.run.dir``, as Hydra will resolve it) is not strictly inside
    ``output_root``, or None. Compared as written, ``..`` folded: a symbolic link inside output_root is the
    user's own choice of where runs go."""
    with hydra_config(cfg):
        folder = os.path.normpath(os.path.abspath(str(cfg.hydra.run.dir)))
    root = os.path.normpath(os.path.abspath(str(cfg.output_root)))
    if os.path.commonpath([root, folder]) == root and folder != root:
        return None
    return (f"the run folder {folder} is not inside output_root={cfg.output_root}; hydra.run.dir in "
            "conf/config.yaml must name it through the run_dir resolver")  # fmt: skip


def run_config_problem(cfg: DictConfig) -> str | None:
    """The one line a single run's config would be refused with once it starts (``RunConfig.from_hydra``, then
    ``plan_run``'s degenerate settings: on the meta device, without data), or None. With ``trial_seeds``,
    those seeds are checked and the run of the first one stands for them all."""
    from rigl_repro.errors import ConfigError
    from rigl_repro.run.build import plan_run  # lazy: these import torch and the training side
    from rigl_repro.run.config import RunConfig
    from rigl_repro.sweeps.seeds import run_trial_seeds

    task = copy.deepcopy(cfg)
    with open_dict(task):
        del task["hydra"]  # as Hydra hands the config to main.py
    try:
        seeds = run_trial_seeds(task)
        if seeds:
            task.seed = seeds[0]
        with hydra_config(cfg):
            plan_run(RunConfig.from_hydra(task))
    except ConfigError as error:
        return str(error)
    return None


# ``${run_folder:}`` (conf/config.yaml's hydra.run.dir and hydra.sweep.subdir): this job's run folder below
# output_root; ``${run_folder_of:'variant=pruning','seed=${seed}'}``: the folder of the run those overrides give
# under this command's experiment and scale (a lottery ticket's pruning run). Registered on import: main.py and
# the Hydra callback module (which every launcher's job process unpickles before it resolves its folder) import
# this module.
OmegaConf.register_new_resolver("run_folder", lambda _root_: job_folder(_root_), replace=True)
OmegaConf.register_new_resolver(
    "run_folder_of",
    lambda *overrides, _root_: source_folder(HydraConfig.instance().cfg, _root_, *(str(item) for item in overrides)),
    replace=True,
)


def compose_config(overrides: Sequence[str] = (), *, with_hydra: bool = False) -> DictConfig:
    """The config ``main.py`` composes from these command-line overrides (``with_hydra``: with its ``hydra``
    node, e.g. a sweep's parameters). Reads files only; writes nothing."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=with_hydra)
