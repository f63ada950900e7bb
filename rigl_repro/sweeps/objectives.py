"""What a study optimises: numbers of a run's ``summary.json`` by name (``hydra.sweeper.objectives``), a trial's
being the mean over the seeds it trains (``trial_seeds``).

The test accuracy is never one: a study that chooses by it tunes on the test set, and the accuracy reported for
the chosen trial is no longer a held-out estimate (the report selects on a validation split, section 5.3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rigl_repro.errors import ConfigError

# objective name -> its path in summary.json
OBJECTIVES: dict[str, tuple[str, ...]] = {
    "val_acc": ("val_acc",),
    "train_flops": ("flops", "train_relative"),
    "inference_flops": ("flops", "inference_relative"),
    "density": ("density",),
    "wall_time_s": ("wall_time_s",),
}
DEFAULT_OBJECTIVES = ("val_acc",)


def check_objectives(names: Any) -> tuple[str, ...]:
    """The objectives ``hydra.sweeper.objectives`` names, in order; an unknown, repeated or held-out one is
    refused in one line."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, Sequence) or not names:
        raise ConfigError(f"hydra.sweeper.objectives={names!r} is invalid; expected a list such as [val_acc] or "
                          "[val_acc,train_flops]")  # fmt: skip
    for name in names:
        if name == "test_acc":
            raise ConfigError(
                "hydra.sweeper.objectives: test_acc cannot be an objective: choosing trials by it tunes on the test "
                "set, and the chosen trial's test accuracy is no longer held out; use val_acc (the validation split)"
            )
        if name not in OBJECTIVES:
            raise ConfigError(f"hydra.sweeper.objectives: {name!r} is not an objective; choose from "
                              f"{', '.join(OBJECTIVES)}")  # fmt: skip
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ConfigError(f"hydra.sweeper.objectives lists {', '.join(repeated)} twice; list each once")
    return tuple(names)


def run_objectives(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """Every objective of one run's summary (None where the run has no such number: no validation split)."""
    values: dict[str, float | None] = {}
    for name, path in OBJECTIVES.items():
        value: Any = summary
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        values[name] = None if value is None else float(value)
    return values


def mean_objectives(runs: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """The mean of each objective over a trial's runs (its seeds); None if any run lacks it."""
    means: dict[str, float | None] = {}
    for name in OBJECTIVES:
        values = [run.get(name) for run in runs]
        means[name] = None if not values or any(v is None for v in values) else sum(values) / len(values)
    return means


def trial_values(returned: Any, names: Sequence[str]) -> list[float]:
    """The values a trial's job returned for the study's objectives, in their order; a ValueError saying which
    is missing. A bare number (a task function other than ``main.py``'s) is the first objective."""
    if isinstance(returned, (int, float)) and not isinstance(returned, bool) and len(names) == 1:
        return [float(returned)]
    if not isinstance(returned, Mapping):
        raise ValueError(f"the run returned {returned!r}, not its objectives")
    values = []
    for name in names:
        value = returned.get(name)
        if value is None:
            why = " (the run has no validation split: set dataset.val_size > 0)" if name == "val_acc" else ""
            raise ValueError(f"the run has no {name}{why}")
        values.append(float(value))
    return values
