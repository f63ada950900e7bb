"""Sparse-training methods, one module each. Every module in this package is imported here, so a new
method is one new file (a ``SparseMethod`` subclass with a ``name``) plus one ``conf/masking/*.yaml``."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from rigl_repro.errors import ConfigError
from rigl_repro.sparsity.methods.base import DropAndGrow, SparseMethod

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def available_methods() -> dict[str, type[SparseMethod]]:
    """Every registered method by name."""
    found: dict[str, type[SparseMethod]] = {}
    pending = [SparseMethod]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.name:
            found[cls.name] = cls
    return dict(sorted(found.items()))


def build_method(config: Mapping[str, Any]) -> SparseMethod:
    """The method that ``config`` (a ``masking`` config group: ``name`` plus options) describes.

    Raises ConfigError for an unknown method or option, or an option outside its allowed values.
    """
    options = dict(config)
    name = options.pop("name", None)
    methods = available_methods()
    if name not in methods:
        raise ConfigError(f"masking.name={name!r} is not a known method; choose one of: {', '.join(methods)}")
    cls = methods[name]
    unknown = sorted(set(options) - set(cls.option_names()))
    if unknown:
        raise ConfigError(
            f"masking.{unknown[0]} is not an option of method {name!r}; its options are: "
            f"{', '.join(cls.option_names())}"
        )
    if isinstance(options.get("custom_densities"), Mapping):
        options["custom_densities"] = dict(options["custom_densities"])
    return cls(**options)


__all__ = ["DropAndGrow", "SparseMethod", "available_methods", "build_method"]
