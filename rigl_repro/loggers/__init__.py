"""Experiment loggers, one module each, chosen by ``logger=<name>`` (``conf/logger``). Every module in this
package is imported here, so a new logger is one new file (a ``Logger`` subclass with a ``name``) plus one
``conf/logger/<name>.yaml``; the trainer only ever calls ``build_logger``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rigl_repro.errors import ConfigError, require_choice
from rigl_repro.loggers.base import Logger, NullLogger, RunLabels
from rigl_repro.loggers.labels import run_labels
from rigl_repro.registry import import_modules, named_subclasses

import_modules(__name__, __path__)


def available_loggers() -> dict[str, type[Logger]]:
    """Every registered logger by name."""
    return named_subclasses(Logger)


def validate_logger_options(options: Mapping[str, Any]) -> None:
    """Check the ``logger`` config node (``name`` plus options) without starting anything: an unknown logger
    or option, or a bad value, is a one-line ConfigError naming it. The trainer calls this even when a
    finished run is reused, so that a bad value is never silently accepted."""
    loggers = available_loggers()
    options = dict(options)
    name = options.pop("name", None)
    require_choice("logger.name", name, tuple(loggers))
    cls = loggers[name]
    unknown = sorted(set(options) - set(cls.defaults) - set(cls.ignored))
    if unknown:
        accepted = ", ".join(cls.defaults) or "none"
        raise ConfigError(f"logger.{unknown[0]} is not an option of logger {name!r}; its options are: {accepted}")
    cls.validate_options({**cls.defaults, **{key: value for key, value in options.items() if key in cls.defaults}})


def build_logger(
    options: Mapping[str, Any],
    *,
    config: Mapping[str, Any],
    output_dir: Path,
    history: Sequence[Mapping[str, Any]] = (),
    enabled: bool = True,
    labels: RunLabels | None = None,
) -> Logger:
    """The logger that ``options`` (the composed ``logger`` node as a plain dict) selects, for the run in
    ``output_dir`` with resolved ``config``, resuming after ``history`` (the checkpoint's epochs).

    ``labels`` file the run in trackers; without them, the run's own (``run_labels(config)``: named by method,
    density and seed, grouped by table cell). ``enabled=False`` gives a logger that does nothing, for
    processes that must not write (ranks other than 0); the options are checked all the same, so every process
    refuses a bad one alike.
    """
    validate_logger_options(options)
    if not enabled:
        return NullLogger()
    options = dict(options)
    cls = available_loggers()[options.pop("name")]
    chosen = {**cls.defaults, **{key: value for key, value in options.items() if key in cls.defaults}}
    return cls(
        **chosen,
        config=config,
        output_dir=Path(output_dir),
        history=history,
        labels=run_labels(config) if labels is None else labels,
    )


__all__ = [
    "Logger",
    "NullLogger",
    "RunLabels",
    "available_loggers",
    "build_logger",
    "run_labels",
    "validate_logger_options",
]
