"""Settings that make a planned run degenerate: each refused (or warned about) in one line naming the option.

Every rule is a small function of the ``RunPlan`` (``rigl_repro.run.build``) returning its message, or None when
the run is sound. ``REFUSED`` rules stop the run before any data are read or any file is written
(``refuse_degenerate``, called by ``plan_run``); ``WARNED`` rules describe a run that trains but not as its
settings suggest, logged once when it is built (``degenerate_warnings``). A new rule is one function in one of
the two tuples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from rigl_repro.errors import ConfigError
from rigl_repro.models import meta_model
from rigl_repro.sparsity.masks import weight_shapes
from rigl_repro.sparsity.methods.base import UpdateInterval
from rigl_repro.sparsity.schedules import scaled_steps

if TYPE_CHECKING:  # the plan's module imports this one
    from rigl_repro.run.build import RunPlan

Rule = Callable[["RunPlan"], "str | None"]


def validation_beyond_data(plan: RunPlan) -> str | None:
    """A validation set that leaves no training image: checked before the batch size, which would otherwise be
    compared with a negative number of training images (``rigl_repro.data.splits.holdout`` says the same once the
    data are read)."""
    pool, size = int(plan.config.dataset.options["train_pool"]), int(plan.config.dataset.options["val_size"])
    if 0 <= size < pool:
        return None
    return f"dataset.val_size={size} must be in [0, {pool - 1}] for this dataset"


def batch_larger_than_data(plan: RunPlan) -> str | None:
    """A batch larger than the training set: every epoch is one partial batch, and the recipe's step counts
    (and the schedules that are fractions of them) no longer describe the run."""
    batch_size = plan.config.train.batch_size
    if batch_size <= plan.train_size:
        return None
    return (f"train.batch_size={batch_size} is larger than the {plan.train_size} training images; expected at most "
            "their number")  # fmt: skip


def epochs_under_one(plan: RunPlan) -> str | None:
    """``train.length_multiplier`` scaling ``train.epochs`` to 0: ``Recipe.total_epochs`` would train one whole
    epoch instead, under a learning-rate schedule scaled for a fraction of one."""
    recipe = plan.config.train
    if scaled_steps(recipe.epochs, recipe.length_multiplier) >= 1:
        return None
    return (f"train.length_multiplier={recipe.length_multiplier:g} scales train.epochs={recipe.epochs} to "
            f"{recipe.epochs * recipe.length_multiplier:.3g} epochs, which rounds to 0; expected "
            f"train.length_multiplier >= {1 / recipe.epochs:.3g} (one epoch)")  # fmt: skip


def decay_interval_under_one_step(plan: RunPlan) -> str | None:
    """A learning-rate decay interval that rounds to 0 steps under the length multiplier:
    ``Recipe.decay_interval`` would make it 1, so the rate would shrink by ``train.lr_decay_factor`` at every
    step (to 5e-16 of ``train.lr`` within an epoch of the digits)."""
    recipe = plan.config.train
    if scaled_steps(recipe.lr_decay_every, recipe.length_multiplier) >= 1:
        return None
    return (f"train.lr_decay_every={recipe.lr_decay_every} x train.length_multiplier={recipe.length_multiplier:g} "
            "rounds to 0 steps between learning-rate decays (the rate would decay at every step); expected at "
            "least one step: raise train.lr_decay_every or train.length_multiplier")  # fmt: skip


def warmup_not_shorter_than_run(plan: RunPlan) -> str | None:
    """A warm-up (whole epochs, as ``learning_rate_factor`` schedules it) as long as the run or longer: the rate
    climbs for the whole run and never reaches ``train.lr``, nor any of its decays."""
    warmup = plan.config.train.warmup_steps
    warmup_end = math.ceil(warmup / plan.steps_per_epoch) * plan.steps_per_epoch
    if warmup == 0 or warmup_end < plan.total_steps:
        return None
    return (f"train.warmup_steps={warmup} (whole epochs: {warmup_end} steps) is not shorter than the run's "
            f"{plan.total_steps} steps: the learning rate would never reach train.lr; lower train.warmup_steps or "
            "train longer (train.epochs, train.length_multiplier)")  # fmt: skip


def full_width_shapes(plan: RunPlan) -> dict[str, tuple[int, ...]]:
    """The sparsifiable weights' shapes of the model as configured, before a method narrows it."""
    if plan.width is None:
        return plan.shapes
    return weight_shapes(meta_model(plan.config.model.options, plan.config.dataset.num_classes))


def fewer_weights_than_classes(plan: RunPlan) -> str | None:
    """A target density that leaves fewer weights than classes: the classifier cannot give every class a
    weight of its own, so the run trains a network that cannot tell them apart (the masks keep one weight per
    layer, small-dense a channel per layer, whatever the density asks). Only for methods that read the
    density, by masking or narrowing the model (dense takes it and ignores it)."""
    if not plan.method.masked and plan.width is None:
        return None
    density, classes = plan.method.density, plan.config.dataset.num_classes
    weights = sum(math.prod(shape) for shape in full_width_shapes(plan).values())
    if density * weights >= classes:
        return None
    return (f"masking.density={density:g} leaves {density * weights:.3g} of the model's {weights:,} weights, fewer "
            f"than its {classes} classes; expected masking.density >= {classes / weights:.3g}")  # fmt: skip


def width_under_one_channel(plan: RunPlan) -> str | None:
    """A width multiplier that rounds some layer to under one channel: the models keep one channel there
    (``rigl_repro.models.common.scaled``), so the narrowed model is not at the density the run reports."""
    if plan.width is None:
        return None
    for name, shape in full_width_shapes(plan).items():
        narrowed = plan.shapes[name]
        # A scaled dimension of c channels becomes max(1, int(c * width)); unscaled ones (the image's channels,
        # the classes) keep their size, so a dimension shrunk to 1 from c with c * width < 1 was kept at 1.
        collapsed = [full for full, small in zip(shape, narrowed) if small == 1 < full and full * plan.width < 1]
        if collapsed:
            return (f"masking.density={plan.method.density:g} narrows the model to width {plan.width:.3g}, under "
                    f"one channel in {name} ({collapsed[0]} x {plan.width:.3g}); the layer would keep one channel "
                    "and the model would not be at that density: raise masking.density")  # fmt: skip
    return None


def no_topology_update(plan: RunPlan) -> str | None:
    """A method with an update interval (``masking.delta_t``) whose schedule has no update step in the run: its
    masks stay as they start, so RigL or SET train as Static. Warned rather than refused: short runs of a
    dynamic method (tests, the smoke scale's sweeps) are trained on purpose. Gradual pruning refuses its own
    case when planned (``GradualPruning.plan``)."""
    method = plan.config.method()  # a fresh instance: planning sets per-run state
    if not isinstance(method, UpdateInterval):
        return None
    method.plan(plan.schedule_steps)
    if any(method.is_update_step(step) for step in range(plan.total_steps)):  # stops at the first update
        return None
    return (f"masking.delta_t={method.delta_t} leaves {method.name} no topology update in this run's "
            f"{plan.total_steps} steps: its masks would stay as they start; lower masking.delta_t or train longer")


REFUSED: tuple[Rule, ...] = (
    validation_beyond_data,
    batch_larger_than_data,
    epochs_under_one,
    decay_interval_under_one_step,
    warmup_not_shorter_than_run,
    fewer_weights_than_classes,
    width_under_one_channel,
)
WARNED: tuple[Rule, ...] = (no_topology_update,)


def refuse_degenerate(plan: RunPlan) -> None:
    """Raise a one-line ConfigError for the first ``REFUSED`` rule the plan breaks."""
    for rule in REFUSED:
        message = rule(plan)
        if message is not None:
            raise ConfigError(message)


def degenerate_warnings(plan: RunPlan) -> list[str]:
    """The messages of the ``WARNED`` rules the plan breaks."""
    return [message for rule in WARNED if (message := rule(plan)) is not None]


__all__ = ["REFUSED", "WARNED", "degenerate_warnings", "refuse_degenerate"]
