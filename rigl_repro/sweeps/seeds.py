"""Seeds in sweeps: ``trial_seeds`` lists distinct seeds (every seed trained once, their mean returned), and a
study never searches a seed, which would pick its best trial partly by luck."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rigl_repro.errors import ConfigError, require_int
from rigl_repro.run.config import MAX_SEED

SEED_KEYS = ("seed", "grid_seeds", "trial_seeds")  # the options that choose seeds (conf/config.yaml)


def check_trial_seeds(value: object) -> tuple[int, ...] | None:
    """The seeds ``trial_seeds`` lists, or None when it is null (a single run with ``seed``). A list typed
    empty, a repeated seed or anything but non-negative integers is refused: each would train other runs than
    the ones asked for (``[]`` once, ``[0,0]`` once counted twice)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"trial_seeds={value!r} is invalid; expected a list of seeds such as [0,1,2], "
                          "or null for a single run")  # fmt: skip
    seeds = tuple(require_int(f"trial_seeds[{index}]", seed, 0, MAX_SEED) for index, seed in enumerate(value))
    if not seeds:
        raise ConfigError("trial_seeds=[] lists no seed; list the seeds each run trains and averages, e.g. "
                          "trial_seeds=[0,1,2], or leave it null for a single run")  # fmt: skip
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ConfigError(f"trial_seeds={list(seeds)} repeats seed {', '.join(map(str, repeated))}; a seed trains "
                          "one run, so list distinct seeds, e.g. [0,1,2]")  # fmt: skip
    return seeds


def run_trial_seeds(cfg: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The seeds a run's config asks each trial to train (``check_trial_seeds``), or None for a single run;
    refused too when there is no validation split, whose accuracy the trial averages."""
    seeds = check_trial_seeds(cfg.get("trial_seeds"))
    if seeds is not None and not cfg["dataset"].get("val_size"):
        raise ConfigError("trial_seeds averages validation accuracies: it needs dataset.val_size > 0")
    return seeds


def refuse_searched_seeds(sweeps: Mapping[str, str]) -> None:
    """Refuse, in one line, a seed option among a study's searched keys (``sweeps``: key -> the override as
    typed). Seeds are averaged by every trial (``trial_seeds``), never searched."""
    for key in SEED_KEYS:
        if key in sweeps:
            raise ConfigError(
                f"{sweeps[key]}: an Optuna study never searches seeds (its best trial would be partly chosen by "
                "luck); give every trial the same seeds to train and average with trial_seeds=[0,1,2]"
            )
