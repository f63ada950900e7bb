"""The project's Hydra configuration (``conf/``) composed outside a Hydra application: by the scripts, the
report builder and the tests, which need the exact config ``main.py`` would run but no run folder."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
FOLDER_NAME_LIMIT = 200  # bytes: file systems allow 255 per name; this leaves room for a hash and suffixes


def composition_error(error: Exception) -> str:
    """Hydra's composition error (an unknown option, group or value) as one line: its sentences, plus the
    group's available options when it lists them; not its search path or links."""
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


def check_command_line(arguments: Sequence[str]) -> str | None:
    """The one-line error that composing a single run's command-line overrides gives, or None. Sweeps
    (``-m``, ``hydra.mode=MULTIRUN``) and Hydra's own flags and ``hydra.*`` overrides are left to Hydra."""
    if any(argument.startswith(("-", "hydra.mode=")) for argument in arguments):
        return None
    overrides = [argument for argument in arguments if not argument.startswith(("hydra.", "hydra/", "+hydra"))]
    try:
        compose_config(overrides)
    except HydraException as error:
        return composition_error(error)
    return None


def run_folder_name(override_dirname: str, limit: int = FOLDER_NAME_LIMIT) -> str:
    """A run's folder name from its command-line overrides (Hydra's ``override_dirname``): one folder,
    never nested (``/`` in a value becomes ``%2F``), and at most ``limit`` bytes: a longer list keeps its
    start and ends in a hash of the whole, so the same command always finds the same folder. The full list
    stays in the folder's ``.hydra/overrides.yaml``; reports match runs by their configuration, not their
    folder name."""
    name = override_dirname.replace("%", "%25").replace("/", "%2F")
    encoded = name.encode()
    if len(encoded) <= limit:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    return f"{encoded[: limit - len(digest) - 1].decode(errors='ignore')}-{digest}"


# conf/config.yaml names run folders through this resolver. Registered on import: main.py and the Hydra
# callback module (which every launcher's job process unpickles before it resolves its folder) import it.
OmegaConf.register_new_resolver("run_folder_name", run_folder_name, replace=True)


def run_dir(config: Mapping[str, Any], method: str, *overrides: str) -> str:
    """The folder, below ``output_root``, of the run of ``method`` that ``config`` (any run's config: its
    dataset, model and ``run_tag``) would have with these ``key=value`` command-line overrides.

    The one spelling of the run-folder scheme: ``<dataset>-<model>-<method><run_tag>/`` and then the
    overrides sorted and joined by ``,`` as Hydra's ``override_dirname`` joins them, through
    ``run_folder_name``. conf/config.yaml's ``hydra.run.dir`` and ``hydra.sweep.subdir`` pass Hydra's
    ``override_dirname`` (already sorted and joined: one item); a config that reads another run's files (the
    lottery and re-initialisation variants) names that run by its overrides, in any order, and finds its
    folder however the scheme changes.
    """
    group = f"{config['dataset']['name']}-{config['model']['name']}-{method}{config['run_tag']}"
    return f"{group}/{run_folder_name(','.join(sorted(str(item) for item in overrides)))}"


# ``${run_dir:pruning,'masking.density=${masking.density}','seed=${seed}'}``: the run's folder below output_root
# (quoted: the interpolation grammar takes no bare '='). Registered on import, as run_folder_name is.
OmegaConf.register_new_resolver(
    "run_dir", lambda method, *overrides, _root_: run_dir(_root_, method, *overrides), replace=True
)


def compose_config(overrides: Sequence[str] = (), *, with_hydra: bool = False) -> DictConfig:
    """The config ``main.py`` composes from these command-line overrides (``with_hydra``: with its ``hydra``
    node, e.g. a sweep's parameters). Reads files only; writes nothing."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=with_hydra)
