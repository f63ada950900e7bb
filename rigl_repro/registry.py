"""Registries by subclassing: every module of a package imported, every subclass with a ``name`` found.

Sparse-training methods (``rigl_repro.sparsity.methods``) and loggers (``rigl_repro.loggers``) are registered
this way, so a new one is one module defining a subclass with a ``name``, and nothing else to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T", bound=type)


def import_modules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (whose ``__path__`` is ``path``), so that its classes register."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")


def named_subclasses(base: T) -> dict[str, T]:
    """``base`` and its subclasses at any depth that set a non-empty ``name``, by name, sorted."""
    found: dict[str, T] = {}
    pending = [base]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if getattr(cls, "name", ""):
            found[cls.name] = cls
    return dict(sorted(found.items()))
