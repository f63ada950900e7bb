"""A stored study and the command that resumes it agree, or the sweep stops before it touches the study.

A study is created for one sweep: its direction (stored by Optuna), its search space and the fixed overrides
that define what a trial trains (recorded in the study's user attributes when it is created). A command
asking for another direction, space or fixed override would mix incomparable trials into the study, and
report the best of the wrong ones; it is refused in one line naming each difference. A new study name is the
way to change them. A study created before these were recorded adopts the first command that resumes it.

The fixed overrides compared are those that name a trial's run folder: Hydra's ``override_dirname`` leaves out
the options that do not change what a run trains (``output_root``, ``device``, ``sweep_trials``, ...), and so
does the study.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from rigl_repro.run.identity import EXECUTION_OPTIONS

SPACE_ATTR = "search_space"  # {key: the distribution, as Optuna's JSON (distribution_to_json)}
FIXED_ATTR = "fixed_overrides"  # {key: value as typed}
OBJECTIVES_ATTR = "objectives"  # [name, ...]; a study stored before it was recorded optimised val_acc


def describe(distribution: BaseDistribution) -> str:
    """The distribution in the sweep syntax that asks for it (one spelling per distribution)."""
    if isinstance(distribution, CategoricalDistribution):
        return f"choice({', '.join(map(repr, distribution.choices))})"
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        low, high = distribution.low, distribution.high
        if distribution.log:
            return f"tag(log, interval({low!r}, {high!r}))"
        if isinstance(distribution, IntDistribution) or distribution.step is not None:
            return f"range({low!r}, {high!r}, step={distribution.step!r})"
        return f"interval({low!r}, {high!r})"
    return repr(distribution)


def objective(fixed: Mapping[str, str], not_identity: Collection[str]) -> dict[str, str]:
    """The fixed overrides that define what a trial trains: all but the keys left out of run folders' names and
    the training options a run may resume under with other values (``run.identity.EXECUTION_OPTIONS``)."""
    execution = {f"train.{option}" for option in EXECUTION_OPTIONS}
    return {key: value for key, value in fixed.items() if key not in not_identity and key not in execution}


def record(
    space: Mapping[str, BaseDistribution], fixed: Mapping[str, str], objectives: Sequence[str] = ("val_acc",)
) -> dict[str, Any]:
    """The study's user attributes describing the sweep it was created for."""
    return {
        SPACE_ATTR: {key: distribution_to_json(value) for key, value in space.items()},
        FIXED_ATTR: dict(fixed),
        OBJECTIVES_ATTR: list(objectives),
    }


def settings(
    direction: str,
    space: Mapping[str, BaseDistribution],
    fixed: Mapping[str, str],
    objectives: Sequence[str] = ("val_acc",),
) -> dict[str, str]:
    """What a sweep asks of its study, key by key, as it is spelt on the command line."""
    return {
        "hydra.sweeper.direction": direction,
        "hydra.sweeper.objectives": f"[{','.join(objectives)}]",
        **{key: describe(distribution) for key, distribution in space.items()},
        **fixed,
    }


def stored_settings(direction: str, user_attrs: Mapping[str, Any]) -> dict[str, str] | None:
    """What a stored study was created for (as :func:`settings`), or None if it predates the record."""
    if SPACE_ATTR not in user_attrs or FIXED_ATTR not in user_attrs:
        return None
    space = {key: json_to_distribution(text) for key, text in user_attrs[SPACE_ATTR].items()}
    return settings(direction, space, user_attrs[FIXED_ATTR], user_attrs.get(OBJECTIVES_ATTR, ("val_acc",)))


def shown(setting: str | None) -> str:
    """A setting in a message; an absent one as such."""
    return "not set" if setting is None else setting


def differences(stored: Mapping[str, str], asked: Mapping[str, str]) -> list[str]:
    """Each key whose setting differs, as ``key: <stored> in the study, <asked> in this command``."""
    lines = []
    for key in [*stored, *(key for key in asked if key not in stored)]:
        old, new = stored.get(key), asked.get(key)
        if old != new:
            lines.append(f"{key}: {shown(old)} in the study, {shown(new)} in this command")
    return lines


def disagreement(name: str, url: str, stored: Mapping[str, str], asked: Mapping[str, str]) -> str | None:
    """The one-line refusal of a command that asks a stored study for another sweep, or None if they agree."""
    found = differences(stored, asked)
    if not found:
        return None
    return (
        f"study {name!r} in {url} was created for another sweep ({'; '.join(found)}): its trials would not compare "
        f"with this command's; run it as it was created, or change them under a new hydra.sweeper.study_name=..."
    )
