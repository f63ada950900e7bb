"""The registry of dataset sources: what each ``dataset.source`` value loads, and which of its options only
say where its files are found.

A source module registers its loader with ``@register_source("name", location_options=(...))``; the
package imports every module it holds, so registering is all a new source module has to do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rigl_repro.errors import ConfigError

# Train images, train labels, test images, test labels: uint8 (N, C, H, W) and int64 (N,), in file order.
RawData = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Loader = Callable[[Mapping[str, Any]], RawData]
Validator = Callable[[Mapping[str, Any]], None]

# Where-options every run has always left out of its identity, whatever its source. A source reading one of
# these names gets it dropped without declaring it, and the identities of runs already on disk never change.
STANDARD_LOCATION_OPTIONS = ("root", "system_root", "download", "raw_md5")


@dataclass(frozen=True)
class Source:
    """One ``dataset.source`` value: its loader, its where-options, and the check of its own options."""

    name: str
    load: Loader  # the dataset options -> RawData
    location_options: tuple[str, ...] = ()  # options that say where the files are found, not what they are
    validate: Validator | None = None  # raises ConfigError on a bad option of this source, before loading


REGISTRY: dict[str, Source] = {}


def register_source(
    *names: str, location_options: Sequence[str] = (), validate: Validator | None = None
) -> Callable[[Loader], Loader]:
    """A decorator registering a loader under each of ``names`` (the ``dataset.source`` values it serves;
    the loader reads ``cfg["source"]`` when it serves several). A name taken by another loader is a
    programming error, reported at import."""

    def register(load: Loader) -> Loader:
        for name in names:
            taken = REGISTRY.get(name)
            if taken is not None and qualified(taken.load) != qualified(load):
                raise ValueError(f"dataset source {name!r} is registered twice: {qualified(taken.load)}, "
                                 f"{qualified(load)}")  # fmt: skip
            REGISTRY[name] = Source(name, load, tuple(location_options), validate)
        return load

    return register


def qualified(function: Callable[..., Any]) -> str:
    """A function's import path: the same loader registered again (a module reloaded) is not a clash."""
    return f"{function.__module__}.{function.__qualname__}"


def available_sources() -> tuple[str, ...]:
    """Every registered ``dataset.source`` value, sorted."""
    return tuple(sorted(REGISTRY))


def get_source(name: Any) -> Source:
    """The source registered as ``name``; a ConfigError listing the registered ones if there is none."""
    source = REGISTRY.get(name) if isinstance(name, str) else None
    if source is None:
        raise ConfigError(f"dataset.source={name!r} is not known; choose one of: {', '.join(available_sources())}")
    return source


def location_options(dataset: Mapping[str, Any]) -> tuple[str, ...]:
    """The options of this ``dataset`` config that say where its files are found, not what they are: a run's
    identity leaves them out, so moving the data or fetching it another way keeps finished runs and
    checkpoints valid. ``STANDARD_LOCATION_OPTIONS`` then the source's own; only the standard ones when the
    source is not registered (a run made with a source since removed still has an identity)."""
    source = dataset.get("source")
    registered = REGISTRY.get(source) if isinstance(source, str) else None
    own = registered.location_options if registered is not None else ()
    return (*STANDARD_LOCATION_OPTIONS, *(option for option in own if option not in STANDARD_LOCATION_OPTIONS))
