"""The project's Hydra configuration (``conf/``) composed outside a Hydra application: by the scripts, the
report builder and the tests, which need the exact config ``main.py`` would run but no run folder."""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
FOLDER_NAME_LIMIT = 200  # bytes: file systems allow 255 per name; this leaves room for a hash and suffixes
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


def check_command_line(arguments: Sequence[str]) -> str | None:
    """The one-line error that ``main.py``'s command line would end in, or None; checked before Hydra starts,
    so a refused single run creates nothing (Hydra makes the run folder, its ``.hydra/`` and log first).

    Every command: its overrides parse and ``output_root`` can hold runs. A single run also: its config
    composes, its folder lies inside ``output_root``, and its run config validates. A sweep (``-m``) is
    checked on its fixed overrides only, and a composition error is left to Hydra: a swept group may provide
    an option the defaults lack; its choice of sweeper, sampler and pruner (``hydra/sweeper...``) is checked
    with them. Hydra's other flags (``--cfg``, ``--help``, ...) and ``hydra.*`` overrides are
    left to Hydra."""
    if any(argument.startswith("-") and argument not in MULTIRUN_FLAGS for argument in arguments):
        return None
    multirun = any(argument in (*MULTIRUN_FLAGS, "hydra.mode=MULTIRUN") for argument in arguments)
    overrides = [argument for argument in arguments
                 if not argument.startswith(("-", "hydra.", "hydra/", "+hydra"))]  # fmt: skip
    try:
        fixed = [item.input_line for item in OverridesParser.create().parse_overrides(overrides)
                 if not item.is_sweep_override()]  # fmt: skip
        cfg = compose_config(fixed, with_hydra=True)
    except OverrideParseException as error:
        return composition_error(error)
    except HydraException as error:
        return None if multirun else composition_error(error)
    sweeper = [argument for argument in arguments
               if argument.lstrip("+~").startswith(("hydra/sweeper", "hydra.sweeper."))]  # fmt: skip
    if sweeper:  # a sweeper's groups are never swept: an option they lack is a typo
        try:
            compose_config([*fixed, *sweeper], with_hydra=True)
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
    problem = output_root_problem(cfg.output_root)
    if problem or multirun:
        return problem
    return run_folder_problem(cfg) or run_config_problem(cfg)


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


def folder_name(text: str, limit: int = FOLDER_NAME_LIMIT) -> str:
    """``text`` as the name of one folder, whatever it holds: the one rule for every run-folder name built
    from config values (a run folder's group and its overrides part).

    ``%`` becomes ``%25`` and ``/`` becomes ``%2F``, so the name never nests and two texts never share a
    name; a name of ``.`` or ``..`` has its dots written ``%2E``, so it never climbs out: no result can be an
    absolute path or a ``..`` segment. At most ``limit`` bytes: a longer name keeps its start and ends in a
    hash of the whole, so the same text always finds the same folder. Names of letters, digits and
    ``_-.=,`` stay as they are."""
    name = text.replace("%", "%25").replace("/", "%2F")
    if name in (".", ".."):
        name = name.replace(".", "%2E")
    encoded = name.encode(errors="surrogateescape")  # an argument's undecodable bytes stay the same bytes
    if len(encoded) <= limit:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    return f"{encoded[: limit - len(digest) - 1].decode(errors='ignore')}-{digest}"


def run_dir(config: Mapping[str, Any], method: str, *overrides: str) -> str:
    """The folder, below ``output_root``, of the run of ``method`` that ``config`` (any run's config: its
    dataset, model and ``run_tag``) would have with these ``key=value`` command-line overrides.

    The one spelling of the run-folder scheme: ``<dataset>-<model>-<method><run_tag>/`` and then the
    overrides sorted and joined by ``,`` as Hydra's ``override_dirname`` joins them, each part one folder
    name by ``folder_name``: whatever the values, the path stays below ``output_root``. conf/config.yaml's
    ``hydra.run.dir`` and ``hydra.sweep.subdir`` pass Hydra's ``override_dirname`` (already sorted and
    joined: one item); a config that reads another run's files (the lottery and re-initialisation variants)
    names that run by its overrides, in any order, and finds its folder however the scheme changes. The full
    override list stays in the folder's ``.hydra/overrides.yaml``; reports match runs by their configuration,
    not their folder name.
    """
    group = f"{config['dataset']['name']}-{config['model']['name']}-{method}{config['run_tag']}"
    return f"{folder_name(group)}/{folder_name(','.join(sorted(str(item) for item in overrides)))}"


# ``${run_dir:pruning,'masking.density=${masking.density}','seed=${seed}'}``: the run's folder below output_root
# (quoted: the interpolation grammar takes no bare '='). Registered on import: main.py and the Hydra callback
# module (which every launcher's job process unpickles before it resolves its folder) import this module.
OmegaConf.register_new_resolver(
    "run_dir", lambda method, *overrides, _root_: run_dir(_root_, method, *overrides), replace=True
)


def compose_config(overrides: Sequence[str] = (), *, with_hydra: bool = False) -> DictConfig:
    """The config ``main.py`` composes from these command-line overrides (``with_hydra``: with its ``hydra``
    node, e.g. a sweep's parameters). Reads files only; writes nothing."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=with_hydra)
