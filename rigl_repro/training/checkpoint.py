"""Checkpoints: written atomically, loaded without unpickling arbitrary objects, and validated once, right after
loading, so that the loaders of the run's parts can trust what they are given.

A checkpoint is refused, in one line naming the file, when it cannot be read, when it comes from another
configuration, when its structure is not the one ``checkpoint_layout`` declares (damaged, or written by another
version), or when its progress is inconsistent: its epoch with the recipe's number of epochs, its history with
its epoch, its epoch in progress, engine and learning-rate schedule with one another, its masks with their
counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from rigl_repro.errors import START_AFRESH, ConfigError
from rigl_repro.results import atomic_file
from rigl_repro.run.identity import describe_changes, identity_changes
from rigl_repro.sparsity.masks import MASK_BUFFER
from rigl_repro.sparsity.schedules import scaled_steps

CHECKPOINT_FILE = "checkpoint.pt"
INITIAL_WEIGHTS_FILE = "initial.pt"  # the weights at step 0, which lottery tickets start from


class CheckpointError(ConfigError):
    """A checkpoint cannot be used to resume this run."""


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_file(path) as temporary:
        try:
            torch.save(dict(state), temporary)
        except RuntimeError as error:  # torch reports a full disk as a RuntimeError from its zip writer
            raise OSError(f"torch.save failed: {str(error).splitlines()[0]}") from error


def load_checkpoint(path: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path``, after checking that it was written by the run of ``config`` (a resolved
    config, or a run's identity: ``rigl_repro.run.identity``) and that its contents are whole and consistent.
    Anything else is a one-line ``CheckpointError`` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file; {START_AFRESH}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupted or unsafe files all mean "cannot resume from this"
        raise CheckpointError(f"{path} cannot be read ({error.__class__.__name__}); {START_AFRESH}") from None
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise CheckpointError(f"{path} is not a rigl-repro checkpoint; {START_AFRESH}")
    problem = layout_problem(state)
    if problem:
        raise CheckpointError(f"{path} is damaged or of another version: {problem}; {START_AFRESH}")
    try:
        saved = json.loads(state["fingerprint"])
    except ValueError:
        raise CheckpointError(f"{path} has an unreadable fingerprint (not JSON); {START_AFRESH}") from None
    changes = identity_changes(saved, config) if isinstance(saved, Mapping) else [("fingerprint", saved, None)]
    if changes:
        raise CheckpointError(
            f"{path} belongs to a different configuration ({describe_changes(changes)}); use another output "
            "directory (hydra.run.dir=...) or move the checkpoint away"
        )
    problem = progress_problem(state, config["train"]) or topology_problem(state)
    if problem:
        raise CheckpointError(f"{path} is inconsistent: {problem}; {START_AFRESH}")
    return state


# ---------------------------------------------------------------------- the layout, declared
# A check returns what is wrong with a value, or None. Its answer starts with where, below the value, the
# problem lies ("", ".key", "[3]"), then a space and what is wrong, so that nested checks compose a path.
Check = Callable[[Any], "str | None"]


def describe(value: Any) -> str:
    """``value``'s kind in a message: ``None``, ``a str``, ``an int``."""
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def instance(*types: type, expected: str) -> Check:
    """Values of one of ``types``; a bool is an int only where ``bool`` is named (True is no epoch)."""

    def check(value: Any) -> str | None:
        if isinstance(value, types) and (bool in types or not isinstance(value, bool)):
            return None
        return f" is {describe(value)}, expected {expected}"

    return check


integer = instance(int, expected="an integer")
number = instance(int, float, expected="a number")
text = instance(str, expected="a string")
mapping = instance(Mapping, expected="a mapping")


def nullable(check: Check) -> Check:
    """None, or a value ``check`` accepts."""
    return lambda value: None if value is None else check(value)


def list_of(item: Check, at_least: int = 0) -> Check:
    """Lists (or tuples) of at least ``at_least`` items, each accepted by ``item``."""

    def check(value: Any) -> str | None:
        if not isinstance(value, (list, tuple)):
            return f" is {describe(value)}, expected a list"
        if len(value) < at_least:
            return f" has {len(value)} entries, expected at least {at_least}"
        for index, entry in enumerate(value):
            problem = item(entry)
            if problem:
                return f"[{index}]{problem}"
        return None

    return check


def sequence(*items: Check) -> Check:
    """Lists (or tuples) of exactly one item per check, in order."""

    def check(value: Any) -> str | None:
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            return f" is {describe(value)}, expected a list of {len(items)} entries"
        for index, (entry, item) in enumerate(zip(value, items)):
            problem = item(entry)
            if problem:
                return f"[{index}]{problem}"
        return None

    return check


def mapping_of(item: Check) -> Check:
    """Mappings from names to values ``item`` accepts."""

    def check(value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return f" is {describe(value)}, expected a mapping"
        for key, entry in value.items():
            if not isinstance(key, str):
                return f" has the key {key!r}, expected names"
            problem = item(entry)
            if problem:
                return f"[{key!r}]{problem}"
        return None

    return check


def record(fields: Mapping[str, Check]) -> Check:
    """Mappings holding every field, each accepted by its check (a field whose name ends in ``?`` may be
    absent: earlier layouts lack it). Other keys are allowed."""

    def check(value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return f" is {describe(value)}, expected a mapping"
        for key, field_check in fields.items():
            name = key.removesuffix("?")
            if name not in value:
                if key.endswith("?"):
                    continue
                return f".{name} is missing"
            problem = field_check(value[name])
            if problem:
                return f".{name}{problem}"
        return None

    return check


def tensor(dtype: torch.dtype | None = None, dim: int | None = None, size: int | None = None) -> Check:
    """Tensors, of ``dtype``, ``dim`` dimensions and ``size`` elements where they are given."""

    def check(value: Any) -> str | None:
        if not isinstance(value, torch.Tensor):
            return f" is {describe(value)}, expected a tensor"
        if dtype is not None and value.dtype != dtype:
            return f" is a {value.dtype} tensor, expected {dtype}"
        if dim is not None and value.dim() != dim:
            return f" has {value.dim()} dimensions, expected {dim}"
        if size is not None and value.numel() != size:
            return f" holds {value.numel()} values, expected {size}"
        return None

    return check


def random_state(device_type: str | None) -> Check:
    """A random-number generator's state on a device of ``device_type``: bytes, as many as this machine's
    generators of that device hold (unchecked where it has none: the trainer then refuses the device)."""
    known = device_type == "cpu" or (device_type == "cuda" and torch.cuda.is_available())
    size = torch.Generator(device=device_type).get_state().numel() if known else None
    return tensor(torch.uint8, dim=1, size=size)


HISTORY_ENTRY = record({  # one finished epoch, as the trainer logs it
    "epoch": integer, "step": integer, "train_loss": number, "train_acc": number, "val_acc": nullable(number),
    "lr": number, "density": number, "density_all_layers?": number, "layer_densities?": mapping_of(number),
    "mask_updates?": list_of(mapping),
    "exploration?": number, "images_per_s?": number,
})  # fmt: skip
EPOCH_IN_PROGRESS = record({
    "order": tensor(torch.long, dim=1), "loss_sum": tensor(), "correct": tensor(), "batches_done": integer,
    "seconds": number,
})  # fmt: skip


def checkpoint_layout(device_type: str | None) -> Check:
    """The layout of a checkpoint written on a device of ``device_type`` (None: unknown, earlier layouts)."""
    cpu, run, cuda = random_state("cpu"), random_state(device_type), random_state("cuda")
    return record({
        "fingerprint": text,
        "device_type?": text,
        "epoch": integer,
        "history": list_of(HISTORY_ENTRY),
        "wall_time": number,
        "epoch_in_progress?": nullable(EPOCH_IN_PROGRESS),
        "rng": record({"torch": cpu, "cuda": list_of(cuda), "order": run, "augment": run,
                       "ranks?": list_of(record({"torch": cpu, "cuda": nullable(cuda)}))}),
        "model": mapping_of(tensor()),
        "optimizer": record({"state": mapping, "param_groups": list_of(record({"params": list_of(integer)}), 1)}),
        "scheduler": record({"last_epoch": integer, "base_lrs": list_of(number, 1)}),
        "engine": record({
            "step": integer, "generator": run, "n_active": mapping_of(integer), "method": mapping,
            "topology_log": list_of(sequence(integer, list_of(integer)), 1),
            "ever_active?": list_of(tensor(torch.bool)),
            "pending_updates?": list_of(sequence(integer, list_of(integer), tensor(torch.long, dim=1))),
        }),
    })  # fmt: skip


def layout_problem(state: Mapping[str, Any]) -> str | None:
    """What in ``state`` does not have the checkpoint layout (as ``engine.n_active is missing``), or None."""
    device_type = state.get("device_type")
    problem = checkpoint_layout(device_type if isinstance(device_type, str) else None)(state)
    return problem and problem.removeprefix(".")


# ---------------------------------------------------------------------- consistency
def recipe_epochs(train: Mapping[str, Any]) -> int:
    """The epochs of the recipe ``train`` under its training-length multiplier (``Recipe.total_epochs``)."""
    return max(1, scaled_steps(train["epochs"], train.get("length_multiplier", 1.0)))


def progress_problem(state: Mapping[str, Any], train: Mapping[str, Any]) -> str | None:
    """What is inconsistent in a checkpoint's progress under the recipe ``train``: its epoch against the
    recipe's epochs, its history against its epoch, its epoch in progress against the epoch's steps, and
    the engine's and the learning-rate schedule's steps against them all; None when everything agrees."""
    epochs, epoch, history = recipe_epochs(train), state["epoch"], state["history"]
    in_progress = state.get("epoch_in_progress")
    if not 0 <= epoch <= epochs:
        return f"epoch={epoch} is not in [0, {epochs}], the recipe's epochs"
    numbers = [entry["epoch"] for entry in history]
    if numbers != list(range(1, epoch + 1)):
        return f"its history holds the epochs {numbers}, but epoch={epoch} says 1 to {epoch} are finished"
    per_epoch = history[0]["step"] if history else 0  # one epoch's steps, read from the history...
    done = 0
    if in_progress is not None:
        if epoch == epochs:
            return f"it holds an epoch in progress after the recipe's last epoch ({epochs})"
        order = in_progress["order"]
        if not torch.equal(order.sort().values, torch.arange(len(order))):
            return "the order of its epoch in progress is not a permutation of the training examples"
        batches = math.ceil(len(order) / train["batch_size"])  # ...or from the epoch in progress
        if history and batches != per_epoch:
            return f"its epoch in progress has {batches} steps, its history {per_epoch} steps an epoch"
        per_epoch, done = batches, in_progress["batches_done"]
        if not 0 <= done < per_epoch:
            return f"its epoch in progress has done {done} batches, expected a number in [0, {per_epoch - 1}]"
    steps = [entry["step"] for entry in history]
    if history and (per_epoch < 1 or steps != [per_epoch * number for number in numbers]):
        return f"its history's steps {steps} are not the ends of epochs of {per_epoch} steps"
    step = epoch * per_epoch + done
    if state["engine"]["step"] != step:
        return f"its engine is at step {state['engine']['step']}, its epochs and batches done make step {step}"
    if state["scheduler"]["last_epoch"] != step:
        return f"its learning-rate schedule is at step {state['scheduler']['last_epoch']}, expected step {step}"
    if len(state["scheduler"]["base_lrs"]) != len(state["optimizer"]["param_groups"]):
        return "its learning-rate schedule and its optimizer have different numbers of parameter groups"
    return None


def topology_problem(state: Mapping[str, Any]) -> str | None:
    """What is inconsistent between a checkpoint's masks (in its model) and its engine's record of them:
    the layers, their active counts, their topology log and their in-time exploration; None if nothing."""
    engine, model = state["engine"], state["model"]
    counts = engine["n_active"]
    masks = {name.removesuffix(MASK_BUFFER) + "weight": value for name, value in model.items()
             if name.endswith(MASK_BUFFER)}  # fmt: skip
    if sorted(masks) != sorted(counts):
        return f"its model has masks of {sorted(masks)}, its engine counts {sorted(counts)}"
    for name, count in counts.items():
        mask = masks[name]
        if mask.dtype != torch.bool:
            return f"the mask of {name} is a {mask.dtype} tensor, expected torch.bool"
        if int(mask.sum()) != count:
            return f"the mask of {name} has {int(mask.sum())} active weights, its engine counts {count}"
    if any(len(layers) != len(counts) for _, layers in engine["topology_log"]):
        return f"its engine's topology log does not have one count per masked layer ({len(counts)})"
    if list(engine["topology_log"][-1][1]) != list(counts.values()):
        return "the last topology of its engine's log is not that of its masks"
    ever = engine.get("ever_active", [masks[name] for name in counts])
    if [tuple(e.shape) for e in ever] != [tuple(masks[name].shape) for name in counts]:
        return "its engine's record of weights ever active does not have the shapes of its masks"
    return None
