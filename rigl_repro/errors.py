"""The exception types of the problems a run reports in one line: a bad configuration, a diverged training."""

from __future__ import annotations

# The remedy every refused checkpoint (or other file a run would resume from) ends with.
START_AFRESH = "delete it (or move it away) to train this run from the start"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the option and what it accepts."""


class TrainingDiverged(RuntimeError):
    """Training cannot go on: its loss stopped being finite, or its processes no longer train one network."""


def require_in_range(
    option: str,
    value: float,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` if it lies in the interval, else raise a ConfigError naming ``option``."""
    left, right = ("(" if low_open else "["), (")" if high_open else "]")
    interval = f"{left}{low}, {high}{right}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{option}={value!r} is not a number; expected a value in {interval}") from None
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (above and below):  # also rejects NaN
        raise ConfigError(f"{option}={value!r} is out of range; expected a value in {interval}")
    return number


def require_choice(option: str, value: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ConfigError listing them."""
    if value not in choices:
        raise ConfigError(f"{option}={value!r} is not known; choose one of: {', '.join(choices)}")
    return value


def require_bool(option: str, value: object) -> bool:
    """Return ``value`` if it is true or false, else raise a ConfigError naming ``option``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{option}={value!r} is invalid; expected true or false")
    return value


def require_int(option: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` if it is an integer in [``minimum``, ``maximum``] (not a bool), else raise a
    ConfigError naming it."""
    valid = not isinstance(value, bool) and isinstance(value, int) and value >= minimum
    if not valid or (maximum is not None and value > maximum):
        expected = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"{option}={value!r} is invalid; expected an integer {expected}")
    return value
