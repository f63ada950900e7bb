"""What pruning saves on the Table-4 (alpha, delta_t) sweep, and whether it still finds the same best pair.

    python scripts/sweep_pruning.py                                  # 20 trials, hyperband pruner, scale=smoke
    python scripts/sweep_pruning.py --trials 30 --pruner percentile --pruner-options percentile=50 n_startup_trials=5
    python scripts/sweep_pruning.py --json sweep_pruning.json --fresh
    python scripts/sweep_pruning.py --extra variant=rigl_erk        # more overrides for both sweeps

Runs ``main.py -m experiment=sweep_alpha_dt scale=<scale> masking.density=<density> sweep_trials=<trials>``
twice, one after the other, from the repository root: once unpruned (``hydra/sweeper/pruner=none``) and once
with ``hydra/sweeper/pruner=<pruner>`` and ``hydra.sweeper.pruner.<k>=<v>`` for every ``--pruner-options``
(both with ``logger.mode=disabled``, which ``--extra logger.mode=online`` overrides).
Both use the same TPE seed, so their first proposals are the same; each has its own ``output_root`` under
``--root`` (``unpruned/`` and ``pruned-<pruner>[-<options>]/``), so neither reuses the other's runs. Each sweep
is timed (wall-clock); then both studies are read from their SQLite storages and the script prints:

- trials complete / pruned (/ failed);
- epochs trained, counted from the trials' run folders (``<output_root>/<group>/<overrides>/seed=<N>/``, found by
  the trial's parameters in each job's ``.hydra/overrides.yaml``): each seed's ``summary.json`` ``epochs``, or its
  ``pruned.json`` ``epoch`` (the epochs it trained before its trial was stopped mid-seed), a seed never started 0;
  against ``len(trial_seeds) * train.epochs`` per trial unpruned, and the fraction saved. (The study's steps are
  epochs 0..epochs-1 of the trial's mean curve over its seeds, so a trial's last step does not say how many
  seeds it trained.) A folder shared by trials of the same parameters counts once: the later one resumes it;
- each sweep's wall-clock, and the time its trials took as the storage has it (the wall-clock less the sweep's
  start-up, which pruning cannot save: at scale=smoke about 5 s of about 30);
- each best trial's (alpha, delta_t) and value, whether the pair is the same, and where the unpruned sweep's best
  trial ranks among the pruned sweep's complete trials (by its parameters when the pruned sweep proposed them
  too, and by its value);
- where the pruned trials stopped: mid-seed ("seed N, epoch E/EPOCHS": that run has a pruned.json and no
  summary) or between seeds ("after seed N": seed N finished with its summary, the next seeds never started),
  and how the pruned trials that the unpruned sweep ran to the end (same parameters) ended there: a pruner that
  stops future winners shows up here.

A re-run resumes or reuses both sweeps (their studies and run folders); a folder made by another command (other
overrides) is refused, and ``--fresh`` deletes the two folders of this command first (only those). The
wall-clock of a sweep is recorded in its folder, so a re-run that has nothing to train still reports it; one
resumed after an interruption is marked partial. Ctrl-C or SIGTERM ends the running sweep too (the same command
resumes it). Each sweep's output is appended to ``sweep.log`` and ``sweep.stderr.log`` in its folder. At
scale=smoke a 20-trial sweep takes about 30 s on 2 CPU cores; many trials reach the same validation accuracy
there, so ties are reported as such. Errors are one line on stderr (exit 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere without installing

MANIFEST = "sweep_pruning.json"  # in each sweep's folder: the command that made it and its recorded wall-clock
STDOUT_LOG, STDERR_LOG = "sweep.log", "sweep.stderr.log"
# The sweeper's error record ([HYDRA] error: ...) and a run's ([main][ERROR] - error: ...), as Hydra logs them.
SWEEPER_ERROR = re.compile(r"\]\[HYDRA\] error: (.*\S)")
RUN_ERROR = re.compile(r"\]\[ERROR\] - (?:error: )?(.*\S)")
OPTUNA_RECORD = re.compile(r"^\[[IWD] \d{4}-")  # Optuna's own log lines on stderr ("[I 2026-...] A new study")
# The default pruner: at scale=smoke and 20 trials, hyperband (its config's min_resource=1, reduction_factor=3)
# stops 6 trials at epoch 2 of their first seed, saves 22.5% of the epochs and finds the same best pair; median
# and percentile (n_startup_trials=5) save 22.5% and 31.9% but their sweeps propose other pairs after the first
# pruned trials and miss the unpruned best (0.9840 for 0.9860); successive_halving saves 30% and ties its value.
DEFAULT_PRUNER = "hyperband"
# Without --pruner-options: the pruners that judge a trial against complete ones wait for 5 of them (their
# config's own default, written out so that the folder names the setting).
DEFAULT_PRUNER_OPTIONS = {"median": ("n_startup_trials=5",), "percentile": ("n_startup_trials=5",)}
# Overrides the script sets itself: passed through --extra they would make the two sweeps differ, or put a
# study where the script does not read it.
MANAGED = ("output_root", "sweep_trials", "experiment", "scale", "masking.density", "hydra/sweeper/pruner",
           "hydra.sweeper.pruner", "hydra.sweeper.storage", "hydra.sweeper.n_trials")  # fmt: skip


class Failure(Exception):
    """An expected failure: its message is printed as one line and the script exits 2."""


@dataclass
class SweepSpec:
    """One of the two sweeps: its label, folder (its output_root) and the overrides main.py gets after ``-m``."""

    label: str
    folder: Path
    overrides: list[str]

    @property
    def identity(self) -> list[str]:
        """The overrides that define the sweep's trials: a folder holding another identity is refused. The
        folder and the number of trials are left out (a re-run may ask for more trials of the same sweep)."""
        return [item for item in self.overrides if not item.startswith(("output_root=", "sweep_trials="))]


@dataclass
class StudyFacts:
    """What the script needs from a stored study (read after its sweep)."""

    name: str
    maximize: bool
    complete: list[Any]  # optuna FrozenTrial, typed loosely so that optuna is imported only when needed
    pruned: list[Any]
    failed: list[Any]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The compute that pruning saves on the sweep_alpha_dt Optuna sweep, and whether the pruned "
        "sweep finds the same best (alpha, delta_t) as the unpruned one.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--trials", type=int, default=20, help="trials of each sweep (sweep_trials)")
    parser.add_argument("--pruner", default=DEFAULT_PRUNER, help="a pruner of conf/hydra/sweeper/pruner")
    parser.add_argument("--pruner-options", nargs="*", default=None, metavar="K=V",
                        help="passed as hydra.sweeper.pruner.K=V; default: n_startup_trials=5 for median and "
                        "percentile, none for the others; give the flag alone to keep the pruner's own defaults")
    parser.add_argument("--density", default="0.2", help="masking.density")
    parser.add_argument("--scale", default="smoke", help="scale=... (smoke | paper)")
    parser.add_argument("--root", type=Path, default=Path("outputs/sweep_pruning"),
                        help="folder of the two sweeps' output_root folders (relative to the current folder)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--extra", nargs="*", action="extend", default=[], metavar="OVERRIDE",
                        help="more overrides for both sweeps, e.g. variant=rigl_erk")
    parser.add_argument("--fresh", action="store_true",
                        help="delete this command's two sweep folders under --root first")
    return parser.parse_args(argv)


def pruner_names() -> list[str]:
    return sorted(path.stem for path in (REPO / "conf" / "hydra" / "sweeper" / "pruner").glob("*.yaml"))


def option_pairs(options: Sequence[str]) -> list[tuple[str, str]]:
    pairs = []
    for option in options:
        key, equals, value = option.partition("=")
        if not equals or not key or "." in key or "/" in key:
            raise Failure(f"--pruner-options {option!r}: expected K=V, e.g. n_startup_trials=5 (passed as "
                          "hydra.sweeper.pruner.K=V)")  # fmt: skip
        pairs.append((key, value))
    return pairs


def check_args(args: argparse.Namespace) -> None:
    if args.pruner_options is None:
        args.pruner_options = list(DEFAULT_PRUNER_OPTIONS.get(args.pruner, ()))
    if args.trials < 1:
        raise Failure(f"--trials {args.trials}: expected at least 1")
    names = pruner_names()
    if args.pruner == "none":
        raise Failure("--pruner none: the pruned sweep would be the unpruned one; choose one of "
                      + ", ".join(name for name in names if name != "none"))  # fmt: skip
    if args.pruner not in names:
        raise Failure(f"--pruner {args.pruner}: choose one of {', '.join(name for name in names if name != 'none')}")
    for item in args.extra:
        key = item.lstrip("+~").partition("=")[0]
        if item.startswith("-"):
            raise Failure(f"--extra {item}: expected key=value overrides (main.py's flags are the script's to set)")
        if any(key == managed or key.startswith(f"{managed}.") for managed in MANAGED):
            raise Failure(f"--extra {item}: {key} is set by the script (see --trials, --pruner, --pruner-options, "
                          "--density, --scale, --root)")  # fmt: skip


def slug(pruner: str, options: Sequence[tuple[str, str]]) -> str:
    """The pruned sweep's folder name, e.g. pruned-median-n_startup_trials_5: every setting gets its own folder,
    so trying several pruner settings under one --root never resumes another setting's study (they share the
    unpruned baseline). Plain characters only: the folder becomes an override's value and an SQLite URL."""
    from rigl_repro.config import folder_name

    parts = ["pruned", pruner, *(f"{key}_{value}" for key, value in options)]
    return folder_name(re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts)))


def sweep_specs(args: argparse.Namespace, root: Path) -> tuple[SweepSpec, SweepSpec]:
    common = ["experiment=sweep_alpha_dt", f"scale={args.scale}", f"masking.density={args.density}",
              f"sweep_trials={args.trials}", "logger.mode=disabled", *args.extra]  # fmt: skip
    options = option_pairs(args.pruner_options)
    unpruned_folder = root / "unpruned"
    pruned_folder = root / slug(args.pruner, options)
    unpruned = SweepSpec("unpruned", unpruned_folder,
                         [*common, f"output_root={unpruned_folder}", "hydra/sweeper/pruner=none"])  # fmt: skip
    label = args.pruner + (f" ({', '.join(f'{k}={v}' for k, v in options)})" if options else "")
    pruned = SweepSpec(label, pruned_folder, [
        *common, f"output_root={pruned_folder}", f"hydra/sweeper/pruner={args.pruner}",
        *(f"hydra.sweeper.pruner.{key}={value}" for key, value in options),
    ])  # fmt: skip
    return unpruned, pruned


def composed(spec: SweepSpec) -> Any:
    """The sweep's config as main.py composes it (with its hydra node): refused in one line, before anything
    runs, when main.py would refuse the command."""
    from hydra.errors import HydraException

    from rigl_repro.config import check_command_line, compose_config, composition_error

    problem = check_command_line(["-m", *spec.overrides])
    if problem:
        raise Failure(f"{spec.label} sweep: {problem}")
    try:
        return compose_config(spec.overrides, with_hydra=True)
    except HydraException as error:
        raise Failure(f"{spec.label} sweep: {composition_error(error)}") from None


def run_epochs(cfg: Any) -> tuple[list[int] | None, int]:
    """(seeds, epochs) of one trial: a trial trains every seed of trial_seeds (None: one run, no seed folders)."""
    seeds = cfg.trial_seeds
    return (None if seeds is None else [int(seed) for seed in seeds]), int(cfg.train.epochs)


def study_location(cfg: Any, spec: SweepSpec) -> tuple[str, Path]:
    from rigl_repro.sweeps.storage import sqlite_path

    url = str(cfg.hydra.sweeper.storage)
    database = sqlite_path(url)
    if database is None:
        raise Failure(f"{spec.label} sweep: its storage {url} is not an SQLite database; the script reads SQLite only")
    return str(cfg.hydra.sweeper.study_name), database


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        return read_json(path)
    except Failure as error:
        raise Failure(f"{error}; pass --fresh to start this sweep again") from None


def write_manifest(folder: Path, data: dict[str, Any]) -> None:
    from rigl_repro.results import OutputError, atomic_write_json

    try:
        atomic_write_json(folder / MANIFEST, data)
    except OutputError as error:
        raise Failure(str(error)) from None


def is_ours(folder: Path) -> bool:
    """Whether ``folder`` holds one of this script's sweeps, or the start of one (its logs of a sweep that failed,
    or nothing): only those are deleted or resumed."""
    if not folder.is_dir():
        return False
    marks = (MANIFEST, "optuna.db", STDOUT_LOG)
    return any((folder / mark).exists() for mark in marks) or not any(folder.iterdir())


def clear(spec: SweepSpec) -> None:
    if not spec.folder.exists():
        return
    if not is_ours(spec.folder):
        raise Failure(f"--fresh: {spec.folder} holds no sweep of this script ({MANIFEST} or optuna.db); not "
                      "deleting it: choose another --root")  # fmt: skip
    try:
        shutil.rmtree(spec.folder)
    except OSError as error:
        raise Failure(f"--fresh: cannot delete {spec.folder} ({error.strerror or error})") from None


def prepare(spec: SweepSpec, trials: int) -> dict[str, Any]:
    """The folder's record, checked against this command: a folder of another command would resume the wrong
    study (or be refused by the sweeper in a less telling line)."""
    manifest = read_manifest(spec.folder)
    if manifest is None:
        if spec.folder.exists() and not is_ours(spec.folder):
            raise Failure(f"{spec.folder} exists and holds no sweep of this script; choose another --root")
        return {"command": spec.identity, "trials": trials, "wall_s": 0.0, "timed_trials": 0, "timing_partial": False}
    if manifest.get("command") != spec.identity:
        stored, asked = set(manifest.get("command") or ()), set(spec.identity)
        differs = sorted(stored ^ asked) or ["the order of the overrides"]
        raise Failure(f"{spec.folder} holds a sweep of another command (differs in: {', '.join(differs)}); pass "
                      "--fresh to replace it, or choose another --root")  # fmt: skip
    if int(manifest.get("trials", 0)) > trials:
        raise Failure(f"{spec.folder} holds a sweep of {manifest['trials']} trials; pass --trials "
                      f"{manifest['trials']} to read it, or --fresh to run {trials}")  # fmt: skip
    return manifest


def load(name: str, database: Path) -> StudyFacts | None:
    """The stored study, or None if the database holds none of that name (a sweep that never started)."""
    if not database.exists():
        return None
    import optuna
    from optuna.trial import TrialState
    from sqlalchemy.exc import SQLAlchemyError

    from rigl_repro.sweeps.optuna_study import finished_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{database}")
    except KeyError:
        return None
    except (SQLAlchemyError, RuntimeError, ValueError) as error:  # locked or damaged: one line, not a traceback
        raise Failure(f"{database}: study {name} cannot be read ({str(error).splitlines()[0]})") from None
    if len(study.directions) != 1:
        raise Failure(f"{database}: study {name} has {len(study.directions)} objectives; pruning takes one")
    # The sweeper's own count: complete, pruned, and failed by their own run (not the stale copies it queued again).
    finished = finished_trials(study.get_trials(deepcopy=False))
    return StudyFacts(
        name=name,
        maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE,
        complete=[t for t in finished if t.state == TrialState.COMPLETE],
        pruned=[t for t in finished if t.state == TrialState.PRUNED],
        failed=[t for t in finished if t.state == TrialState.FAIL],
    )


def finished_count(facts: StudyFacts | None) -> int:
    return 0 if facts is None else len(facts.complete) + len(facts.pruned) + len(facts.failed)


def failure_line(stdout_lines: Sequence[str], stderr_path: Path, offset: int) -> str:
    """The line that says why a sweep failed. Hydra logs to stdout: the sweeper's last error record there;
    else the last line this invocation wrote to stderr (from ``offset``: a traceback's last line, or main.py's
    own refusal), Optuna's notes aside; else a run's last error record (failed trials are logged but do not end
    a sweep, so they come after a crash's traceback); else stdout's last line."""
    sweeper = [found.group(1) for line in stdout_lines if (found := SWEEPER_ERROR.search(line))]
    if sweeper:
        return sweeper[-1]
    try:
        with open(stderr_path, "rb") as stream:
            stream.seek(offset)
            text = stream.read().decode(errors="replace")
    except OSError:
        text = ""
    stderr = [line.strip() for line in text.splitlines() if line.strip() and not OPTUNA_RECORD.match(line)]
    if stderr:
        return stderr[-1]
    runs = [found.group(1) for line in stdout_lines if (found := RUN_ERROR.search(line))]
    if runs:
        return runs[-1]
    shown = [line.strip() for line in stdout_lines if line.strip()]
    return shown[-1] if shown else "no output"


def progress_line(line: str) -> str | None:
    """A trial's result as the sweeper logs it, without the log prefix; None for every other line."""
    marker = "[HYDRA] "
    if marker not in line:
        return None
    text = line.split(marker, 1)[1].strip()
    return text if text.startswith("trial ") else None


def stop(process: subprocess.Popen[str]) -> None:
    """End an interrupted sweep: left running, it would go on training unseen, and a re-run would share its study
    with it. Ctrl-C reaches it too (same process group); a SIGTERM sent to this script alone does not, so it is
    told with a SIGINT; one that still runs after that is terminated, then killed."""
    steps = ((None, 3.0), (lambda: process.send_signal(signal.SIGINT), 30.0), (process.terminate, 10.0),
             (process.kill, None))  # fmt: skip
    for action, patience in steps:
        if process.poll() is not None:
            return
        if action is not None:
            action()
        try:
            process.wait(timeout=patience)
        except subprocess.TimeoutExpired:
            continue
        return


def interrupt(number: int, frame: Any) -> None:
    """SIGTERM handler: stop as Ctrl-C does (the running sweep is ended, the same command resumes it)."""
    raise KeyboardInterrupt


def run_sweep(spec: SweepSpec) -> float:
    """Run the sweep to its end from the repository root; returns its wall-clock in seconds. Its output goes to
    the folder's logs; the trials' results are echoed as they finish."""
    spec.folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "main.py", "-m", *spec.overrides]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}  # so the trials' lines arrive as they are logged
    stdout_path, stderr_path = spec.folder / STDOUT_LOG, spec.folder / STDERR_LOG
    lines: list[str] = []
    # Appended, under a header per invocation: a re-run that only reuses the study keeps the first run's log.
    header = f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n"
    with open(stdout_path, "a") as stdout_log, open(stderr_path, "a") as stderr_log:
        stdout_log.write(header)
        stderr_log.write(header)
        stdout_log.flush()
        stderr_log.flush()
        offset = stderr_log.tell()
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=stderr_log,
                                   text=True, errors="replace")  # fmt: skip
        try:
            assert process.stdout is not None
            for line in process.stdout:
                stdout_log.write(line)
                lines.append(line)
                shown = progress_line(line)
                if shown:
                    print(f"  {spec.label}: {shown}", flush=True)
            code = process.wait()
        except KeyboardInterrupt:
            stop(process)
            raise
    elapsed = time.perf_counter() - start
    if code != 0:
        raise Failure(f"the {spec.label} sweep exited with code {code}: {failure_line(lines, stderr_path, offset)} "
                      f"(logs: {stdout_path}, {stderr_path})")  # fmt: skip
    return elapsed


def sweep(spec: SweepSpec, cfg: Any, trials: int) -> tuple[StudyFacts, dict[str, Any]]:
    """Run (or resume) one sweep (``cfg``: its composed config) and read its study: (study, folder record)."""
    name, database = study_location(cfg, spec)
    manifest = prepare(spec, trials)
    before = finished_count(load(name, database))
    if before != int(manifest.get("timed_trials", 0)):
        # Trials finished by a sweep this script did not time (killed, or run by hand): its wall-clock is partial.
        manifest["timing_partial"] = True
    print(f"{spec.label} sweep: {trials} trials in {spec.folder}"
          + (f" ({before} finished before)" if before else ""), flush=True)  # fmt: skip
    elapsed = run_sweep(spec)
    facts = load(name, database)
    if facts is None:
        raise Failure(f"the {spec.label} sweep left no study {name} in {database} (logs: {spec.folder / STDOUT_LOG})")
    after = finished_count(facts)
    trained = after > before
    if trained:  # a run with nothing left to train only reads the study: its seconds are not the sweep's
        manifest["wall_s"] = float(manifest.get("wall_s", 0.0)) + elapsed
    manifest.update(timed_trials=after, trials=trials, command=spec.identity)
    write_manifest(spec.folder, manifest)
    print(f"{spec.label} sweep: " + (f"done in {elapsed:.1f} s" if trained else "nothing left to train (reused)"),
          flush=True)  # fmt: skip
    if not facts.complete:
        raise Failure(f"no trial of the {spec.label} sweep completed ({len(facts.pruned)} pruned, {len(facts.failed)} "
                      f"failed); see {spec.folder / STDOUT_LOG}")  # fmt: skip
    return facts, manifest


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(same_value(a[key], b[key]) for key in a)


def rank_of(value: float, trials: Sequence[Any], maximize: bool) -> tuple[int, int]:
    """(rank, ties): 1 + the trials strictly better than ``value``, and how many trials have it exactly."""
    better = sum((t.value > value) if maximize else (t.value < value) for t in trials if not same_value(t.value, value))
    return 1 + better, sum(same_value(t.value, value) for t in trials)


def best_of(facts: StudyFacts) -> Any:
    """Optuna's best trial (the first of the best value, by number), computed from the trials read."""
    best_value = (max if facts.maximize else min)(t.value for t in facts.complete)
    return min((t for t in facts.complete if same_value(t.value, best_value)), key=lambda t: t.number)


@dataclass(frozen=True)
class Stop:
    """Where a pruned trial stopped: mid-seed (its run ``seed`` has a pruned.json, after ``epoch`` of ``epochs``)
    or between seeds (after ``seed`` finished, before the trial's next seeds)."""

    seed: int
    epoch: int
    epochs: int
    mid_seed: bool

    @property
    def label(self) -> str:
        return f"seed {self.seed}, epoch {self.epoch}/{self.epochs}" if self.mid_seed else f"after seed {self.seed}"


@dataclass
class Compute:
    """What a sweep's run folders say its complete and pruned trials trained."""

    epochs: int  # run-epochs trained: each seed's summary.json epochs, or its pruned.json epoch
    if_unpruned: int  # every seed's epochs for every parameter pair the trials ran
    stops: dict[int, Stop]  # pruned trial number -> where it stopped (pruned trials whose folders say it)
    missing: list[int]  # trials whose job folder was not found under the sweep's output_root
    short: list[int]  # complete trials whose runs trained fewer than all their epochs
    unfinished: list[str]  # run folders with neither summary.json nor pruned.json (counted from their checkpoint)


def job_folders(root: Path, keys: Sequence[str]) -> list[tuple[dict[str, Any], Path]]:
    """Every job folder of a sweep (``<output_root>/<group>/<overrides>/``) with its values of the searched
    ``keys``, read from the job's ``.hydra/overrides.yaml`` (the values as the sweeper passed them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    parser, found = OverridesParser.create(), []
    for path in sorted(root.glob("*/*/.hydra/overrides.yaml")):
        values: dict[str, Any] = {}
        for item in OmegaConf.to_container(OmegaConf.load(path)) or []:
            try:
                override = parser.parse_override(str(item))
            except HydraException:
                continue
            if override.key_or_group in keys:
                values[override.key_or_group] = override.value()
        if values.keys() == set(keys):
            found.append((values, path.parent.parent))
    return found


def checkpoint_epochs(path: Path) -> int:
    """Epochs a run without a summary or pruned.json saved in its checkpoint (0 without a readable one)."""
    if not path.is_file():
        return 0
    import pickle

    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError):
        return 0  # unreadable or of another layout: nothing to count


def seed_runs(folder: Path, seeds: Sequence[int] | None) -> list[tuple[int, Path]]:
    """A job folder's runs: one ``seed=<N>`` subfolder per seed of trial_seeds, or the folder itself."""
    return [(0, folder)] if seeds is None else [(seed, folder / f"seed={seed}") for seed in seeds]


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise Failure(f"{path} cannot be read ({error})") from None
    if not isinstance(data, dict):
        raise Failure(f"{path} is not a JSON object")
    return data


@dataclass(frozen=True)
class FolderRuns:
    """What one job folder's runs trained."""

    epochs: int  # run-epochs over its seeds
    pruned: Stop | None  # the run stopped mid-seed (its pruned.json), if any
    finished: int | None  # the last seed whose run finished (its summary.json)
    unfinished: tuple[str, ...]  # runs with neither file: counted from their checkpoint


def folder_runs(folder: Path, seeds: Sequence[int] | None, epochs: int) -> FolderRuns:
    """Each seed's ``summary.json`` (``epochs``), or its ``pruned.json`` (``epoch``: the epochs it trained before
    its trial was stopped mid-seed), or else its checkpoint's epochs; a seed never started trained 0."""
    from rigl_repro.results import PRUNED_FILE, SUMMARY_FILE

    trained, pruned, finished, unfinished = 0, None, None, []
    for seed, run in seed_runs(folder, seeds):
        if (run / PRUNED_FILE).exists():
            record = read_json(run / PRUNED_FILE)
            pruned = Stop(seed, int(record.get("epoch", 0)), int(record.get("epochs", epochs)), mid_seed=True)
            trained += pruned.epoch
        elif (run / SUMMARY_FILE).exists():
            trained += int(read_json(run / SUMMARY_FILE).get("epochs", 0))
            finished = seed
        elif run.exists():
            trained += checkpoint_epochs(run / "checkpoint.pt")
            unfinished.append(str(run))
    return FolderRuns(trained, pruned, finished, tuple(unfinished))


def compute(facts: StudyFacts, root: Path, seeds: Sequence[int] | None, epochs: int) -> Compute:
    """The run-epochs the sweep's complete and pruned trials trained, from their run folders (``folder_runs``).
    Trials of the same parameters share their folder (a later one resumes or reuses its runs), so each folder
    counts once. A pruned trial with a pruned.json in one of its runs stopped mid-seed; one without stopped
    between seeds, after its last finished seed."""
    trials = [*facts.complete, *facts.pruned]
    folders = job_folders(root, sorted({key for trial in trials for key in trial.params}))
    per_trial = epochs * (1 if seeds is None else len(seeds))
    read: dict[Path, FolderRuns] = {}
    result = Compute(epochs=0, if_unpruned=0, stops={}, missing=[], short=[], unfinished=[])
    for trial in trials:
        folder = next((path for values, path in folders if same_params(values, trial.params)), None)
        if folder is None:
            result.missing.append(trial.number)
            result.if_unpruned += per_trial
            continue
        if folder not in read:
            read[folder] = folder_runs(folder, seeds, epochs)
            result.if_unpruned += per_trial
        runs = read[folder]
        if trial.state.name == "COMPLETE" and runs.epochs < per_trial:
            result.short.append(trial.number)
        elif trial.state.name == "PRUNED" and runs.pruned is not None:
            result.stops[trial.number] = runs.pruned
        elif trial.state.name == "PRUNED" and runs.finished is not None:
            result.stops[trial.number] = Stop(runs.finished, epochs, epochs, mid_seed=False)
    result.epochs = sum(runs.epochs for runs in read.values())
    result.unfinished = [run for runs in read.values() for run in runs.unfinished]
    return result


def trial_seconds(trial: Any) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def shown_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{key.removeprefix('masking.')}={value:.4g}" if isinstance(value, float)
                     else f"{key.removeprefix('masking.')}={value}" for key, value in params.items())  # fmt: skip


def stop_label(spent: Compute, trial: Any) -> str | None:
    stop = spent.stops.get(trial.number)
    return None if stop is None else stop.label


def sweep_figures(facts: StudyFacts, manifest: dict[str, Any], spent: Compute) -> dict[str, Any]:
    best = best_of(facts)
    trials = [*facts.complete, *facts.pruned]
    stops = sorted(spent.stops.values(), key=lambda stop: (stop.seed, stop.epoch, not stop.mid_seed))
    return {
        "study": facts.name,
        "complete": len(facts.complete),
        "pruned": len(facts.pruned),
        "failed": len(facts.failed),
        "epochs_trained": spent.epochs,
        "epochs_if_unpruned": spent.if_unpruned,
        "wall_s": float(manifest.get("wall_s", 0.0)),
        "wall_s_partial": bool(manifest.get("timing_partial", False)),
        # The trials' own durations, as the storage has them: the sweep's wall-clock less its start-up (imports,
        # composing the config, opening the study), which pruning cannot save and which dominates at smoke scale.
        "trials_s": sum(trial_seconds(t) for t in trials),
        "best_trial": best.number,
        "best_params": dict(best.params),
        "best_value": best.value,
        "best_value_ties": rank_of(best.value, facts.complete, facts.maximize)[1],
        # Where pruned trials stopped: "seed N, epoch E/EPOCHS" mid-seed (the run's pruned.json), or "after seed N"
        # between seeds (seed N finished, the trial's next seeds never started).
        "pruned_at": dict(Counter(stop.label for stop in stops)),
        "pruned_mid_seed": sum(stop.mid_seed for stop in stops),
        "pruned_between_seeds": sum(not stop.mid_seed for stop in stops),
        "pruned_stop_unknown": sorted(t.number for t in facts.pruned if t.number not in spent.stops),
        "trials_without_folder": spent.missing,
        "complete_trials_short": spent.short,
        "unfinished_runs": spent.unfinished,
    }


def compare(unpruned: StudyFacts, pruned: StudyFacts, spent: tuple[Compute, Compute]) -> dict[str, Any]:
    """How the pruned sweep's outcome relates to the unpruned one's."""
    reference, found = best_of(unpruned), best_of(pruned)
    value_rank, value_ties = rank_of(reference.value, pruned.complete, pruned.maximize)
    match = next((t for t in [*pruned.complete, *pruned.pruned] if same_params(t.params, reference.params)), None)
    by_params: dict[str, Any] = {"state": "not proposed"}
    if match is not None and match.state.name == "COMPLETE":
        rank, ties = rank_of(match.value, pruned.complete, pruned.maximize)
        by_params = {"state": "complete", "trial": match.number, "value": match.value, "rank": rank, "ties": ties}
    elif match is not None:
        by_params = {"state": "pruned", "trial": match.number, "stopped": stop_label(spent[1], match)}
    # The pruned sweep's pruned trials that the unpruned sweep also proposed ran to the end there: their final
    # values say whether the pruner stopped trials that would have ended well.
    stopped = []
    for trial in pruned.pruned:
        twin = next((t for t in unpruned.complete if same_params(t.params, trial.params)), None)
        if twin is not None:
            rank, _ = rank_of(twin.value, unpruned.complete, unpruned.maximize)
            stopped.append({"trial": trial.number, "stopped": stop_label(spent[1], trial),
                            "final_value_unpruned": twin.value, "rank_in_unpruned": rank})  # fmt: skip
    shared = sum(any(same_params(t.params, u.params) for u in [*unpruned.complete, *unpruned.pruned])
                 for t in [*pruned.complete, *pruned.pruned])  # fmt: skip
    unpruned_epochs, pruned_epochs = spent[0].epochs, spent[1].epochs
    best_value_pruned_ties = [t for t in pruned.complete if same_value(t.value, found.value)]
    return {
        "epochs_saved": unpruned_epochs - pruned_epochs,
        "epochs_saved_fraction": (unpruned_epochs - pruned_epochs) / unpruned_epochs if unpruned_epochs else None,
        "same_best_pair": same_params(reference.params, found.params),
        "same_best_value": same_value(reference.value, found.value),
        "best_value_difference": found.value - reference.value,
        # With ties at the best value, Optuna's best is the first of them: the pair may differ by numbering alone.
        "unpruned_best_among_pruned_ties": any(same_params(t.params, reference.params) for t in best_value_pruned_ties),
        "unpruned_best_in_pruned_sweep": by_params,
        "unpruned_best_value_rank": {"rank": value_rank, "ties": value_ties, "of": len(pruned.complete)},
        "trials_proposed_by_both": shared,
        "pruned_trials_run_to_end_unpruned": stopped,
    }


def seconds(figures: dict[str, Any]) -> str:
    return f"{figures['wall_s']:.1f} s" + (" (partial)" if figures["wall_s_partial"] else "")


def table(report: dict[str, Any]) -> str:
    """The figures as a two-column table (unpruned | pruned) and the comparison under it."""
    left, right, versus = report["unpruned"], report["pruned"], report["comparison"]
    rows = [
        ("", "unpruned", report["pruner_label"]),
        ("trials complete / pruned", *(f"{side['complete']} / {side['pruned']}" for side in (left, right))),
        ("epochs trained", f"{left['epochs_trained']}", f"{right['epochs_trained']} of {right['epochs_if_unpruned']}"),
        ("wall-clock", seconds(left), seconds(right)),
        ("time in trials", *(f"{side['trials_s']:.1f} s" for side in (left, right))),
        ("best trial", f"#{left['best_trial']}", f"#{right['best_trial']}"),
        ("best (alpha, delta_t)", shown_params(left["best_params"]), shown_params(right["best_params"])),
        ("best value", *(f"{side['best_value']:.4f} ({side['best_value_ties']} tied)" for side in (left, right))),
    ]
    if left["failed"] or right["failed"]:
        rows.insert(2, ("trials failed", str(left["failed"]), str(right["failed"])))
    width = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [f"{row[0]:<{width[0]}}  {row[1]:<{width[1]}}  {row[2]}" for row in rows]
    fraction = versus["epochs_saved_fraction"]
    if versus["same_best_pair"]:
        same = "yes"
    else:
        difference = "the same" if versus["same_best_value"] else f"{versus['best_value_difference']:+.4f}"
        among = versus["unpruned_best_among_pruned_ties"]
        tied = "; the unpruned best is among the pruned sweep's tied best" if among else ""
        same = f"no (best value {difference}{tied})"
    found = versus["unpruned_best_in_pruned_sweep"]
    if found["state"] == "complete":
        where = f"trial #{found['trial']}, complete, rank {found['rank']} of {right['complete']} ({found['ties']} tied)"
    elif found["state"] == "pruned":
        where = f"trial #{found['trial']}, pruned ({found['stopped'] or 'where unknown'})"
    else:
        where = "not proposed by the pruned sweep"
    by_value = versus["unpruned_best_value_rank"]
    saved = "-" if fraction is None else f"{100 * fraction:.1f}%"
    if left["wall_s"] > 0:
        saved += f"; wall-clock saved: {100 * (1 - right['wall_s'] / left['wall_s']):.1f}%"
    if left["trials_s"] > 0:
        saved += f"; time in trials saved: {100 * (1 - right['trials_s'] / left['trials_s']):.1f}%"
    lines.append("")
    lines.append(f"epochs saved: {versus['epochs_saved']} ({saved})")
    lines.append(f"same best pair: {same}")
    lines.append(f"unpruned best in the pruned sweep: {where}; its value ranks {by_value['rank']} of "
                 f"{by_value['of']} complete trials ({by_value['ties']} with that value)")  # fmt: skip
    where_stopped = ", ".join(f"{label}: {count}" for label, count in right["pruned_at"].items()) or "none"
    if right["pruned_stop_unknown"]:
        where_stopped += f"; unknown (no run folder says): {len(right['pruned_stop_unknown'])}"
    lines.append(f"pruned at (where: trials): {where_stopped}; {right['pruned_mid_seed']} mid-seed, "
                 f"{right['pruned_between_seeds']} between seeds")  # fmt: skip
    lines.append(f"trials proposed by both sweeps: {versus['trials_proposed_by_both']}")
    stopped = versus["pruned_trials_run_to_end_unpruned"]
    if stopped:
        finals = "; ".join(f"#{s['trial']} ({s['stopped'] or 'where unknown'}) -> {s['final_value_unpruned']:.4f} "
                           f"(rank {s['rank_in_unpruned']})" for s in stopped)  # fmt: skip
        lines.append(f"pruned trials the unpruned sweep ran to the end (trial (where stopped) -> final value there): "
                     f"{finals}")  # fmt: skip
    return "\n".join(lines)


def notes(report: dict[str, Any], epochs: int) -> list[str]:
    """What makes the epoch counts less than certain: trials without their run folders, complete trials whose
    runs did not all finish, runs that neither finished nor were pruned, complete trials missing epochs."""
    found = []
    for side in ("unpruned", "pruned"):
        figures = report[side]
        if figures["trials_without_folder"]:
            found.append(f"{side} trial(s) {figures['trials_without_folder']} have no run folder under "
                         f"{report['folders'][side]}; each counted as {report['seeds_per_trial'] * epochs} epochs "
                         "if unpruned and 0 trained")  # fmt: skip
        if figures["complete_trials_short"]:
            found.append(f"{side} complete trial(s) {figures['complete_trials_short']}: their runs trained fewer "
                         "than all their epochs")  # fmt: skip
        if figures["unfinished_runs"]:
            found.append(f"{side}: {len(figures['unfinished_runs'])} run(s) with neither summary.json nor pruned.json, "
                         f"counted from their checkpoint: {', '.join(figures['unfinished_runs'])}")  # fmt: skip
    if report["complete_trials_with_missing_steps"]:
        found.append(f"complete trial(s) {report['complete_trials_with_missing_steps']} reported fewer than {epochs} "
                     "epochs")  # fmt: skip
    return found


def write_json(path: Path, report: dict[str, Any]) -> None:
    from rigl_repro.results import OutputError, atomic_write_json

    try:
        atomic_write_json(path, report)
    except OutputError as error:
        raise Failure(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    check_args(args)
    root = args.root.expanduser().resolve()  # the sweeps run from the repository root: give them absolute paths
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", str(root)):
        # It becomes output_root=... (Hydra's grammar) and sqlite:///... (a URL): plain characters keep both simple.
        raise Failure(f"--root {root}: use a path of letters, digits and . _ - / only")
    unpruned, pruned = sweep_specs(args, root)
    configs = [composed(spec) for spec in (unpruned, pruned)]  # both commands checked before either trains
    if args.fresh:
        for spec in (unpruned, pruned):
            clear(spec)
    unpruned_facts, unpruned_manifest = sweep(unpruned, configs[0], args.trials)
    pruned_facts, pruned_manifest = sweep(pruned, configs[1], args.trials)
    seeds, epochs = run_epochs(configs[0])
    spent = (compute(unpruned_facts, unpruned.folder, seeds, epochs),
             compute(pruned_facts, pruned.folder, seeds, epochs))  # fmt: skip
    report: dict[str, Any] = {
        "command": {"trials": args.trials, "pruner": args.pruner, "pruner_options": list(args.pruner_options),
                    "density": args.density, "scale": args.scale, "extra": list(args.extra), "root": str(root)},
        "pruner_label": pruned.label,
        "seeds_per_trial": 1 if seeds is None else len(seeds),
        "epochs_per_seed": epochs,
        "folders": {"unpruned": str(unpruned.folder), "pruned": str(pruned.folder)},
        "unpruned": sweep_figures(unpruned_facts, unpruned_manifest, spent[0]),
        "pruned": sweep_figures(pruned_facts, pruned_manifest, spent[1]),
        "comparison": compare(unpruned_facts, pruned_facts, spent),
    }  # fmt: skip
    # A complete trial should have reported every epoch (steps 0..epochs-1): if not, its epochs were not all
    # validated or reported.
    short = [t.number for facts in (unpruned_facts, pruned_facts) for t in facts.complete
             if t.last_step is None or t.last_step + 1 != epochs]  # fmt: skip
    report["complete_trials_with_missing_steps"] = short
    print()
    print(table(report))
    for note in notes(report, epochs):
        print(f"note: {note}")
    if args.json is not None:
        write_json(args.json, report)
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as failure:
        print(f"error: {failure}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; the same command resumes both sweeps", file=sys.stderr)
        sys.exit(130)
