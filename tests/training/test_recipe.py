import pytest

from rigl_repro.errors import ConfigError
from rigl_repro.training.recipe import Recipe, learning_rate_factor

CIFAR10 = dict(
    epochs=250, batch_size=128, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, lr_decay_factor=0.2,
    lr_decay_every=30000, warmup_epochs=0, label_smoothing=0.0, length_multiplier=1, amp="auto",
    channels_last="auto", compile="auto", eval_batch_size=1000,
)  # fmt: skip


def test_step_decay_and_warm_up():
    assert learning_rate_factor(0, 0, 30000, 0.2) == 1.0
    assert learning_rate_factor(29999, 0, 30000, 0.2) == 1.0
    assert learning_rate_factor(30000, 0, 30000, 0.2) == pytest.approx(0.2)
    assert learning_rate_factor(60000, 0, 30000, 0.2) == pytest.approx(0.04)
    assert learning_rate_factor(0, 4, 100, 0.2) == pytest.approx(0.25)
    assert learning_rate_factor(3, 4, 100, 0.2) == 1.0


def test_length_multiplier_scales_epochs_and_decay_interval():
    recipe = Recipe.from_config({**CIFAR10, "length_multiplier": 2})
    assert recipe.total_epochs == 500 and recipe.decay_interval() == 60000


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("epochs", 0, "train.epochs=0 is invalid; expected an integer >= 1"),
        ("batch_size", 0, "train.batch_size=0 is invalid"),
        ("lr", -1, r"train.lr=-1 is out of range"),
        ("length_multiplier", 0, r"train.length_multiplier=0 is out of range"),
        ("amp", "yes", "train.amp='yes' is not known; choose one of: auto, on, off"),
        ("nesterov", 1, "train.nesterov=1 is invalid; expected true or false"),
    ],
)
def test_bad_recipe_values_name_the_option(option, value, message):
    with pytest.raises(ConfigError, match=message):
        Recipe.from_config({**CIFAR10, option: value})


def test_unknown_recipe_option_is_refused():
    with pytest.raises(ConfigError, match="train.epoch is not a training option"):
        Recipe.from_config({**CIFAR10, "epoch": 3})
