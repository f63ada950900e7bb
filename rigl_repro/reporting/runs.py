"""The runs behind a table cell or a figure point.

Every finished run's ``summary.json`` under a root is indexed by the configuration that determines its
results (dataset, model, masking, train, seed). A cell is found by composing the exact configuration its
experiment runs (``experiment=..., scale=..., variant=..., masking.density=...`` and each seed) and looking
that configuration up, so a run is never attributed to the wrong cell, and a missing run is reported as
missing instead of being replaced by a look-alike.

Readers that take the runs of a folder as they come (the mask-dynamics and demo reports, the notebook) pool
seeds by configuration too: ``group_by_configuration`` groups runs by their identity without the seed and
labels configurations that share a method and density by the options in which they differ. ``Provenance``
says whether a table's or figure's experiments trained the report's dataset and model, for its title.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from rigl_repro.config import compose_config
from rigl_repro.results import SummaryError, check_summary, collect_summaries, warn_left_out
from rigl_repro.run.identity import ABSENT, flatten, run_identity
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
        accuracy and the test accuracies of its seeds. A trial pools the seeds of one configuration only: runs
        at one (alpha, delta_t) that differ in another option (a study run again with another learning rate)
        are trials of their own."""
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
                    "configuration": configuration_id(config),
                    "val_acc": math.nan if summary["val_acc"] is None else 100 * summary["val_acc"],
                    "test_acc": 100 * summary["test_acc"],
                }
            )
        frame = pd.DataFrame(rows, columns=["alpha", "delta_t", "seed", "configuration", "val_acc", "test_acc"])
        frame = frame.drop_duplicates(["configuration", "seed"])  # a seed found twice counts once
        return frame.groupby(["alpha", "delta_t", "configuration"], as_index=False).agg(
            val_acc=("val_acc", "mean"), test_acc=("test_acc", "mean"), test_std=("test_acc", "std"),
            seeds=("seed", "count"),
        )  # fmt: skip


# The report's names of the datasets and models its tables and figures trained (config name -> its name).
REPORT_NAMES = {
    "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashion_mnist": "Fashion-MNIST",
    "wrn22_2": "WRN-22-2", "resnet50": "ResNet-50", "lenet5": "LeNet-5",
}  # fmt: skip


@dataclass(frozen=True)
class Setting:
    """A dataset and a model, by their config names (``dataset.name``, ``model.name``)."""

    dataset: str
    model: str

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        """``small_cnn on digits``; with ``names`` (e.g. ``REPORT_NAMES``), ``WRN-22-2 on CIFAR-10``."""
        names = names or {}
        return f"{names.get(self.model, self.model)} on {names.get(self.dataset, self.dataset)}"


def distinct(items: Iterable[str]) -> list[str]:
    """``items`` without repeats, in their first order."""
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class Provenance:
    """What the runs of a table or figure trained against what its design trained (the report's, for the
    report's Tables 1-5 and Figures 1-4): one pair of settings per experiment it draws on."""

    scale: str
    ran: tuple[Setting, ...]
    designed: tuple[Setting, ...]
    published: bool = True  # the design is the report's; else an experiment beyond it

    @property
    def faithful(self) -> bool:
        """Whether every experiment trained the design's dataset and model: only then do the report's numbers
        compare with ours."""
        return self.ran == self.designed

    def title(self, faithful_title: str, heading: str, subject: str = "") -> str:
        """``faithful_title`` for runs of the design; else a title that says what ran instead, e.g. ``Table 2 at
        smoke scale: small_cnn on digits (the paper: WRN-22-2 on CIFAR-10)``."""
        if self.faithful:
            return faithful_title
        ran = ", ".join(distinct(setting.describe() for setting in self.ran))
        designed = ", ".join(distinct(setting.describe(REPORT_NAMES) for setting in self.designed))
        source = "the paper" if self.published else "as designed"
        what = f"{subject}, {ran}" if subject else ran
        return f"{heading} at {self.scale} scale: {what} ({source}: {designed})"


def provenance(index: RunIndex, designs: Sequence[tuple[str, Setting]], published: bool = True) -> Provenance:
    """The provenance of a table or figure whose cells come from the experiments of ``designs``, each with the
    dataset and model it was designed for: what each experiment composes to at the index's scale."""
    ran = []
    for experiment, _ in designs:
        config = index.compose(experiment)
        ran.append(Setting(str(config.dataset.name), str(config.model.name)))
    return Provenance(index.scale, tuple(ran), tuple(design for _, design in designs), published)


def configuration(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's configuration: its identity (``run_identity``) without its seed, what the seeds whose
    statistics are pooled share."""
    identity = run_identity(config)
    identity.pop("seed", None)
    return identity


def configuration_id(config: Mapping[str, Any]) -> str:
    """A short, stable name of a run's configuration: 10 hex digits of the SHA-256 of its canonical JSON."""
    text = json.dumps(configuration(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def shown_value(value: Any) -> str:
    """An option's value in a label: strings as they are, other values as JSON, a missing option ``unset``."""
    if value is ABSENT:
        return "unset"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def differences(configs: Sequence[Mapping[str, Any]], ignore: Collection[str] = ()) -> list[str]:
    """For each of ``configs`` (resolved run configurations), the options of its configuration in which the
    configs differ, as ``masking.alpha=0.4, train.lr=0.05`` ("" where they all agree). Options named in
    ``ignore`` (dotted) are not compared. An option whose value follows from a differing ``dataset.name``,
    ``model.name`` or ``masking.name`` (one value per name, as a dataset's recipe) is left to that name, so
    the labels stay short and still tell every two configurations apart."""
    flats = [flatten(configuration(config)) for config in configs]
    keys = sorted({key for flat in flats for key in flat} - set(ignore))
    differing = [key for key in keys if len({repr(flat.get(key, ABSENT)) for flat in flats}) > 1]
    names = [key for key in ("dataset.name", "model.name", "masking.name") if key in differing]

    def follows_from_a_name(key: str) -> bool:
        for name in names:
            values: dict[str, str] = {}
            if name != key and all(
                values.setdefault(repr(flat.get(name, ABSENT)), repr(flat.get(key, ABSENT)))
                == repr(flat.get(key, ABSENT))
                for flat in flats
            ):
                return True
        return False

    shown = [key for key in differing if key in names or not follows_from_a_name(key)]
    labels = [", ".join(f"{key}={shown_value(flat.get(key, ABSENT))}" for key in shown) for flat in flats]
    # Options compared one by one miss what only the whole identity tells apart (an empty mapping against a
    # missing one): such configurations are told apart by their names.
    compared = [json.dumps(without(configuration(config), ignore), sort_keys=True, default=str) for config in configs]
    named: dict[str, set[str]] = {}
    for label, whole in zip(labels, compared):
        named.setdefault(label, set()).add(whole)
    return [
        ", ".join(filter(None, [label, f"configuration {configuration_id(config)}"])) if len(named[label]) > 1
        else label
        for label, config in zip(labels, configs)
    ]


def without(tree: Mapping[str, Any], dotted: Collection[str]) -> dict[str, Any]:
    """``tree`` (nested mappings) without the options named in ``dotted`` (``masking.density``)."""
    kept = {}
    for key, value in tree.items():
        inner = {name.removeprefix(f"{key}.") for name in dotted if name.startswith(f"{key}.")}
        if key in dotted:
            continue
        kept[key] = without(value, inner) if isinstance(value, Mapping) and inner else value
    return kept


@dataclass
class Configuration:
    """The runs of one configuration, one per seed, under the label a reader gives them (``key``) and, where
    other configurations share that label, what sets this one apart (``differs``)."""

    key: Any
    differs: str
    runs: list[Mapping[str, Any]]
    repeats: int = 0  # runs left out as a second run of a seed already counted

    def label(self, text: str) -> str:
        """``text`` (the reader's label for ``key``), followed by what differs where anything does."""
        return f"{text}, {self.differs}" if self.differs else text


def group_by_configuration(
    summaries: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], Hashable]
) -> list[Configuration]:
    """The runs of ``summaries`` grouped by configuration (identity without seed), so that statistics over a
    group pool seeds of one configuration only, never sweep trials or other learning rates that share a
    method and density. Groups come in the first order of their keys, and within a key by what differs. A seed
    met twice in one configuration (the same run in two folders) counts once, the first met; a run whose config
    has no seed is never taken for a repeat."""
    by_key: dict[Hashable, dict[str, list[Mapping[str, Any]]]] = {}
    for summary in summaries:
        text = json.dumps(configuration(summary["config"]), sort_keys=True, default=str)
        by_key.setdefault(key(summary), {}).setdefault(text, []).append(summary)
    groups = []
    for label, configurations in by_key.items():
        runs_of = list(configurations.values())
        labels = differences([runs[0]["config"] for runs in runs_of])
        found = []
        for differs, runs in zip(labels, runs_of):
            kept, seeds = [], set()
            for run in runs:
                seed = run["config"].get("seed")
                if seed is not None and seed in seeds:
                    continue
                seeds.add(seed)
                kept.append(run)
            found.append(Configuration(label, differs, kept, len(runs) - len(kept)))
        groups += sorted(found, key=lambda group: group.differs)
    return groups


def runs_frame(summaries: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: its configuration's main axes, accuracies (%), densities and FLOPs. A masking option
    the run's method does not take is None (or NaN), whichever layout its summary's config has.
    ``configuration`` names the run's configuration (``configuration_id``): the runs of one configuration are
    its seeds. ``setting`` is what sets it apart from the other configurations of its variant (its method, for
    a run outside the experiment grids) among ``summaries``, density aside ("" where nothing does): the pivot
    ``(variant, setting) x density`` counts seeds of one configuration per cell."""
    summaries = list(summaries)
    variant_of = [summary["config"].get("variant") or summary["method"] for summary in summaries]
    settings = [""] * len(summaries)
    for variant in set(variant_of):
        positions = [i for i, name in enumerate(variant_of) if name == variant]
        labels = differences([summaries[i]["config"] for i in positions], ignore=("masking.density",))
        for position, label in zip(positions, labels):
            settings[position] = label
    rows = []
    for summary, setting in zip(summaries, settings):
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
                "configuration": configuration_id(config),
                "setting": setting,
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
