"""Where a run's files go: one folder per run configuration, below ``output_root``.

``<dataset>-<model>-<method><run_tag>/<options>``: the group names what the folder holds, the leaf the
command-line options whose values differ from the defaults of the command's experiment and scale (canonical
key order, each value as the composed config holds it: ``masking.density=0.10`` and ``0.1`` are one folder)
and always the seed, so that a run without overrides has a folder of its own (``seed=0``). Two commands
that compose the same run therefore find the same folder, whatever the order or spelling of their
overrides. Where the names of two commands still differ for one run (an experiment's value given again on
the command line of another), the run's identity decides: every run records it in its folder
(``identity.json``, or its ``summary.json``), and a command reuses or resumes the folder that holds its
identity. A folder of the earlier scheme (Hydra's ``override_dirname``) is found the same way, or by that
name while unfinished.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from rigl_repro.run.identity import identity_digest

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
FOLDER_NAME_LIMIT = 200  # bytes: file systems allow 255 per name; this leaves room for a hash and suffixes
IDENTITY_FILE = "identity.json"
SUMMARY_FILE = "summary.json"


def folder_name(text: str, limit: int = FOLDER_NAME_LIMIT) -> str:
    """``text`` as the name of one folder, whatever it holds: the one rule for every run-folder name built
    from config values (a run folder's group and its options part).

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


def group_folder(config: Mapping[str, Any] | DictConfig) -> str:
    """``<dataset>-<model>-<method><run_tag>``, as one folder name."""
    method = config["masking"]["name"]
    return folder_name(f"{config['dataset']['name']}-{config['model']['name']}-{method}{config['run_tag']}")


def render(value: Any) -> str:
    """A config value as the override that sets it is canonically written: ``0.1``, ``true``, ``null``,
    ``[1,2]``, ``{a:1}``."""
    if isinstance(value, (DictConfig, Mapping)):
        items = value.items() if isinstance(value, Mapping) else OmegaConf.to_container(value).items()
        return "{" + ",".join(f"{key}:{render(item)}" for key, item in items) + "}"
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        return "[" + ",".join(render(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


ABSENT = object()


def option_values(overrides: Sequence[str], job: DictConfig, excluded: Collection[str]) -> dict[str, Any]:
    """What each command-line override (of ``overrides``, except the ``excluded`` keys) set in the composed
    ``job`` config (its ``hydra`` node included): a group's chosen option, or the option's composed value,
    by key (``+`` and ``++`` prefixes dropped; a deletion as ``~key``)."""
    choices = job.hydra.runtime.choices
    values: dict[str, Any] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key in excluded or key.lstrip("~") in excluded:
            continue
        if override.is_delete():
            values[f"~{key}"] = ABSENT
        elif key in choices:
            values[key] = choices[key]
        else:
            values[key] = OmegaConf.select(job, key, default=None)
    return values


def run_options(
    job: DictConfig, base: DictConfig, overrides: Sequence[str], excluded: Collection[str]
) -> dict[str, Any]:
    """What names the run of ``job`` within its group: its overrides whose values differ from ``base`` (the
    config of the same command without them), and its seed."""
    base_choices, choices = base.hydra.runtime.choices, job.hydra.runtime.choices
    options: dict[str, Any] = {"seed": job.seed}
    for key, value in option_values(overrides, job, {*excluded, "seed"}).items():
        default = base_choices.get(key, ABSENT) if key in choices else OmegaConf.select(base, key, default=ABSENT)
        if value is ABSENT or value != default:
            options[key] = value
    return options


def options_folder(options: Mapping[str, Any]) -> str:
    """The leaf folder name of a run's ``options`` (key to value; ``ABSENT`` for a deleted key): sorted by key,
    ``key=value`` joined by ``,``, one folder name by ``folder_name``."""
    parts = [key if value is ABSENT else f"{key}={render(value)}" for key, value in sorted(options.items())]
    return folder_name(",".join(parts))


@functools.lru_cache(maxsize=32)
def compose(overrides: tuple[str, ...]) -> DictConfig:
    """The project's config composed from ``overrides`` with its ``hydra`` node, without touching Hydra's
    global state (this runs inside Hydra jobs, where ``hydra.compose`` is refused). Cached: a sweep's jobs
    share their base."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))
    return loader.load_configuration(config_name="config", overrides=list(overrides), run_mode=RunMode.RUN)


def base_overrides(overrides: Sequence[str], excluded: Collection[str]) -> tuple[str, ...]:
    """The overrides of a command that choose its defaults, not its run: its experiment, scale and the
    other options that are never part of a run's folder name (``override_dirname.exclude_keys``)."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return tuple(item.input_line for item in parsed if item.key_or_group.lstrip("~") in excluded)


def excluded_keys(job: DictConfig) -> list[str]:
    return list(job.hydra.job.config.override_dirname.exclude_keys)


def task_config(job: DictConfig) -> dict[str, Any]:
    """``job`` without its ``hydra`` node, resolved: the config ``main.py`` receives."""
    task = OmegaConf.masked_copy(job, [key for key in job if key != "hydra"])
    return OmegaConf.to_container(task, resolve=True)  # type: ignore[return-value]


def saved_digest(folder: Path) -> str | None:
    """The identity digest a run folder records: its ``identity.json``, else its finished run's config."""
    try:
        return json.loads((folder / IDENTITY_FILE).read_text())["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        return identity_digest(json.loads((folder / SUMMARY_FILE).read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def locate(root: Path, group: str, name: str, digest: str, legacy: str | None) -> str:
    """The leaf folder, in ``root/group``, for the run of identity ``digest`` whose name is ``name``: the
    folder that records that identity (the named one first), else an unfinished folder of the earlier
    scheme's ``legacy`` name, else ``name``, or ``name-<digest>`` where ``name`` holds another run."""
    folder = root / group
    recorded = saved_digest(folder / name) if (folder / name).is_dir() else None
    if recorded == digest:
        return name
    if folder.is_dir():
        for child in sorted(folder.iterdir()):
            if child.name != name and child.is_dir() and saved_digest(child) == digest:
                return child.name
    if recorded is not None:  # another run's folder
        return folder_name(f"{name}-{digest}")
    earlier = folder / legacy if legacy and legacy != name else None
    if earlier is not None and earlier.is_dir() and saved_digest(earlier) is None and not (folder / name).is_dir():
        return earlier.name  # a run of the earlier scheme, unfinished (a finished one records its identity)
    return name


def job_folder(job: DictConfig) -> str:
    """The folder, below ``output_root``, of the run a composed job config (with its ``hydra`` node) is."""
    overrides = list(job.hydra.overrides.task)
    excluded = excluded_keys(job)
    base = compose(base_overrides(overrides, excluded))
    group = group_folder(job)
    name = options_folder(run_options(job, base, overrides, excluded))
    legacy = folder_name(str(job.hydra.job.override_dirname))
    digest = identity_digest(task_config(job))
    return f"{group}/{locate(Path(os.path.abspath(str(job.output_root))), group, name, digest, legacy)}"


def source_folder(job: DictConfig | None, root_config: DictConfig, *overrides: str) -> str:
    """The folder of another run that a config reads (a lottery ticket's pruning run): the run that these
    ``key=value`` overrides give under the same experiment and scale as ``job`` (the current Hydra job's
    config, or None outside one: then the scale of ``root_config``)."""
    if job is not None and "hydra" in job:
        excluded = excluded_keys(job)
        fixed = base_overrides(list(job.hydra.overrides.task), excluded)
    else:
        fixed = (f"scale={root_config.scale}",) if root_config.get("scale") else ()
    source = compose((*fixed, *overrides))
    return job_folder(source)
