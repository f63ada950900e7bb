"""The runs behind a table cell or a figure point.

Every finished run's ``summary.json`` under a root is indexed by the configuration that determines its
results (dataset, model, masking, train, seed). A cell is found by composing the exact configuration its
experiment runs (``experiment=..., scale=..., variant=..., masking.density=...`` and each seed) and looking
that configuration up, so a run is never attributed to the wrong cell, and a missing run is reported as
missing instead of being replaced by a look-alike.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from rigl_repro.config import compose_config
from rigl_repro.results import SummaryError, check_summary, collect_summaries, warn_left_out
from rigl_repro.run.identity import run_identity
from rigl_repro.sparsity.methods import canonical_masking


def fingerprint(config: Mapping[str, Any]) -> str:
    """The identity of a run: its result-determining configuration as canonical JSON."""
    return json.dumps(run_identity(config), sort_keys=True)


@dataclass
class Cell:
    """The runs of one configuration over the experiment's seeds."""

    summaries: list[dict[str, Any]]
    expected: int
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def seeds(self) -> int:
        return len(self.summaries)

    def values(self, key: str) -> list[float]:
        """A number from every run: ``test_acc``/``val_acc`` in percent, or a ``flops`` entry."""
        if key in ("test_acc", "val_acc"):
            return [100 * s[key] for s in self.summaries if s[key] is not None]
        return [s["flops"][key] for s in self.summaries]

    def mean(self, key: str) -> float:
        values = self.values(key)
        return statistics.fmean(values) if values else math.nan

    def std(self, key: str) -> float:
        """Sample standard deviation over seeds (nan with fewer than two)."""
        values = self.values(key)
        return statistics.stdev(values) if len(values) > 1 else math.nan


class RunIndex:
    """Every finished run under ``root``, and the composition of the configurations experiments run."""

    def __init__(self, root: Path, scale: str, output_root: str | None = None) -> None:
        """``output_root`` is the value the runs were launched with (default: the scale's own), which paths
        in their configuration (lottery tickets, re-initialisations) contain."""
        self.root, self.scale, self.output_root = Path(root), scale, output_root
        self.summaries = collect_summaries(self.root)
        self.by_fingerprint = {fingerprint(summary["config"]): summary for summary in self.summaries}

    def compose(self, experiment: str, overrides: Sequence[str] = ()) -> DictConfig:
        """The job configuration ``main.py -m experiment=...`` runs for one grid point."""
        root = [f"output_root={self.output_root}"] if self.output_root else []
        return compose_config([f"experiment={experiment}", f"scale={self.scale}", *root, *overrides])

    def cell(self, experiment: str, overrides: Sequence[str] = ()) -> Cell:
        """The finished runs of a grid point, over every seed of the experiment's ``grid_seeds``."""
        config = self.compose(experiment, overrides)
        seeds = [int(seed) for seed in str(config.grid_seeds).split(",")]
        found = []
        for seed in seeds:
            resolved = OmegaConf.to_container(OmegaConf.merge(config, {"seed": seed}), resolve=True)
            summary = self.by_fingerprint.get(fingerprint(resolved))
            if summary is not None:
                found.append(summary)
        return Cell(found, len(seeds), OmegaConf.to_container(config, resolve=True))

    def sweep_trials(self, dataset: str, variant: str, density: float) -> pd.DataFrame:
        """The Optuna trials of one (alpha, delta_t) study: one row per trial, with its mean validation
        accuracy and the test accuracies of its seeds."""
        rows = []
        for summary in self.summaries:
            config = summary["config"]
            if not config.get("trial_seeds") or config.get("variant") != variant:
                continue
            masking = canonical_masking(config["masking"])
            if config["dataset"]["name"] != dataset or not math.isclose(masking.get("density", math.nan), density):
                continue
            rows.append(
                {
                    "alpha": masking.get("alpha", math.nan),
                    "delta_t": masking.get("delta_t", math.nan),
                    "seed": config["seed"],
                    "val_acc": math.nan if summary["val_acc"] is None else 100 * summary["val_acc"],
                    "test_acc": 100 * summary["test_acc"],
                }
            )
        frame = pd.DataFrame(rows, columns=["alpha", "delta_t", "seed", "val_acc", "test_acc"])
        return frame.groupby(["alpha", "delta_t"], as_index=False).agg(
            val_acc=("val_acc", "mean"), test_acc=("test_acc", "mean"), test_std=("test_acc", "std"),
            seeds=("seed", "count"),
        )  # fmt: skip


def runs_frame(summaries: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: its configuration's main axes, accuracies (%), densities and FLOPs. A masking option
    the run's method does not take is None (or NaN), whichever layout its summary's config has."""
    rows = []
    for summary in summaries:
        config = summary["config"]
        masking = canonical_masking(config["masking"])
        rows.append(
            {
                "run_dir": summary.get("run_dir"),
                "dataset": config["dataset"]["name"],
                "model": config["model"]["name"],
                "variant": config.get("variant"),
                "method": summary["method"],
                "distribution": masking.get("distribution"),
                "redistribution": masking.get("redistribution"),
                "density": masking.get("density", math.nan),
                "realised_density": summary["density"],
                "alpha": masking.get("alpha", math.nan),
                "delta_t": masking.get("delta_t", math.nan),
                "lr": config["train"]["lr"],
                "length_multiplier": config["train"]["length_multiplier"],
                "seed": config["seed"],
                "sweep_trial": bool(config.get("trial_seeds")),
                "val_acc": math.nan if summary["val_acc"] is None else 100 * summary["val_acc"],
                "test_acc": 100 * summary["test_acc"],
                "train_flops": summary["flops"]["train_relative"],
                "test_flops": summary["flops"]["inference_relative"],
                "epochs": summary["epochs"],
                "wall_time_s": summary["wall_time_s"],
            }
        )
    return pd.DataFrame(rows)


def plain(value: Any) -> Any:
    """``value`` with every dict-like part a dict and every list a list: W&B's nested summary values are
    dict-like objects of its own, which the summary check (and JSON) would not take for dicts."""
    if hasattr(value, "items") and not isinstance(value, (str, bytes)):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def wandb_summaries(project: str, entity: str | None = None, api: Any = None) -> list[dict[str, Any]]:
    """Summaries of the finished runs of a W&B project, in the shape of ``summary.json``.

    Each run's config is the run's resolved configuration and its W&B summary holds the ``summary.json``
    numbers (the trainer logs them there at the end); runs without them (unfinished) are skipped, and runs
    whose numbers are invalid are left out and named once, as ``collect_summaries`` does for files.
    """
    if api is None:
        import wandb

        api = wandb.Api()
    path = f"{entity}/{project}" if entity else project
    summaries, invalid = [], []
    for run in api.runs(path):
        final = plain(dict(run.summary))
        if "test_acc" not in final or "flops" not in final:
            continue
        summary = {
            "config": dict(run.config),
            "method": run.config["masking"]["name"],
            "test_acc": final["test_acc"],
            "val_acc": final.get("val_acc"),
            "density": final["density"],
            "flops": final["flops"],
            "epochs": final["epochs"],
            "wall_time_s": final["wall_time_s"],
            "layer_densities": final.get("layer_densities", {}),
            "run_dir": f"wandb:{path}/{run.id}",
        }
        try:
            summaries.append(check_summary(summary, summary["run_dir"]))
        except SummaryError as error:
            invalid.append(str(error))
    warn_left_out(invalid)
    return summaries
