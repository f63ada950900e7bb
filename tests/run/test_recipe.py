import pytest
import torch

from rigl_repro.errors import ConfigError
from rigl_repro.models import wrn22_2
from rigl_repro.run.recipe import Recipe, learning_rate_factor

CIFAR10 = dict(
    epochs=250, batch_size=128, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, decay_norm_and_bias=False,
    lr_decay_factor=0.2, lr_decay_every=30000, warmup_steps=0, pruning_warmup_steps=3500, label_smoothing=0.0,
    length_multiplier=1, amp="auto", channels_last="auto", compile="auto", eval_batch_size=1000,
)  # fmt: skip


def factor(step, warmup_steps=0, decay_every=30_000):
    return learning_rate_factor(step, warmup_steps, 352, decay_every, 0.2)


def test_step_decay_without_warm_up():
    assert factor(0) == 1.0 and factor(29_999) == 1.0
    assert factor(30_000) == pytest.approx(0.2)
    assert factor(60_000) == pytest.approx(0.04)


def test_cifar100_warm_up_of_1760_steps_then_decays_counted_from_its_end():
    # The report's code: WarmUpLR from 0 for 5 epochs of 352 steps, then StepLR every 20,000 of its own steps.
    assert factor(0, 1760, 20_000) == 0.0
    assert factor(880, 1760, 20_000) == pytest.approx(0.5)
    assert factor(1759, 1760, 20_000) == pytest.approx(1759 / 1760)
    assert factor(1760, 1760, 20_000) == 1.0
    assert factor(21_759, 1760, 20_000) == 1.0
    assert factor(21_760, 1760, 20_000) == pytest.approx(0.2)
    assert factor(41_760, 1760, 20_000) == pytest.approx(0.04)


def test_a_warm_up_lasts_whole_epochs_and_keeps_the_rate_it_reached():
    # CIFAR-10 pruning: 3,500 warm-up steps are 10 whole epochs (3,520 steps), which end above the base rate.
    assert factor(3519, 3500) == pytest.approx(3519 / 3500)
    assert factor(3520, 3500) == pytest.approx(3520 / 3500)
    assert factor(33_519, 3500) == pytest.approx(3520 / 3500)
    assert factor(33_520, 3500) == pytest.approx(3520 / 3500 * 0.2)


class WarmUp(torch.optim.lr_scheduler.LRScheduler):
    """The report's warm-up scheduler: base x (steps so far) / warm-up steps."""

    def __init__(self, optimizer, total):
        self.total = total
        super().__init__(optimizer)

    def get_lr(self):
        return [base * self.last_epoch / (self.total + 1e-8) for base in self.base_lrs]


def scheduled_rates(warmup_steps, decay_every, steps_per_epoch, epochs):
    """The rate of every batch as the report's main.py drives its two schedulers: a StepLR made first, the
    warm-up scheduler for the epochs before warm-up / steps per epoch, one scheduler step per batch."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    decay = torch.optim.lr_scheduler.StepLR(optimizer, decay_every, gamma=0.2)
    warm_up = WarmUp(optimizer, warmup_steps)
    rates = []
    for epoch in range(epochs):
        scheduler = decay if epoch >= warmup_steps / steps_per_epoch else warm_up
        for _ in range(steps_per_epoch):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()  # a no-op (no gradient), in the order torch expects
            scheduler.step()
    return rates


@pytest.mark.parametrize("warmup_steps, decay_every", [(1760, 20_000), (3500, 30_000)])
def test_the_factor_is_the_rate_of_the_report_codes_chained_schedulers(warmup_steps, decay_every):
    rates = scheduled_rates(warmup_steps, decay_every, 352, 190)
    ours = [0.1 * learning_rate_factor(step, warmup_steps, 352, decay_every, 0.2) for step in range(len(rates))]
    assert ours == pytest.approx(rates, rel=1e-7, abs=1e-12)


def test_length_multiplier_scales_epochs_and_decay_interval():
    recipe = Recipe.from_config({**CIFAR10, "length_multiplier": 2})
    assert recipe.total_epochs == 500 and recipe.decay_interval() == 60000


@pytest.mark.parametrize("decay_all", [False, True])
def test_weight_decay_skips_one_dimensional_parameters_unless_asked(decay_all):
    model = wrn22_2()
    groups = Recipe.from_config({**CIFAR10, "decay_norm_and_bias": decay_all}).parameter_groups(model)
    assert sum(len(group["params"]) for group in groups) == len(list(model.parameters()))
    decayed = {id(p) for group in groups if group["weight_decay"] == 5e-4 for p in group["params"]}
    for name, parameter in model.named_parameters():
        expected = decay_all or parameter.ndim > 1  # conv and fc kernels; not BatchNorm or the fc bias
        assert (id(parameter) in decayed) == expected, name
    optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    bias = model.fc.bias
    with torch.no_grad():
        bias.fill_(1.0)
    bias.grad = torch.zeros_like(bias)
    model.fc.weight.grad = torch.zeros_like(model.fc.weight)
    optimizer.step()
    assert torch.all(bias == 1.0) != decay_all  # a zero gradient moves a bias only through weight decay


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("epochs", 0, "train.epochs=0 is invalid; expected an integer >= 1"),
        ("batch_size", 0, "train.batch_size=0 is invalid"),
        ("lr", -1, r"train.lr=-1 is out of range"),
        ("length_multiplier", 0, r"train.length_multiplier=0 is out of range"),
        ("amp", "yes", "train.amp='yes' is not known; choose one of: auto, on, off"),
        ("nesterov", 1, "train.nesterov=1 is invalid; expected true or false"),
        ("warmup_steps", 2.5, r"train.warmup_steps=2.5 is invalid; expected an integer >= 0"),
        ("pruning_warmup_steps", -1, r"train.pruning_warmup_steps=-1 is invalid"),
        ("decay_norm_and_bias", "no", r"train.decay_norm_and_bias='no' is invalid; expected true or false"),
    ],
)
def test_bad_recipe_values_name_the_option(option, value, message):
    with pytest.raises(ConfigError, match=message):
        Recipe.from_config({**CIFAR10, option: value})


def test_unknown_recipe_option_is_refused():
    with pytest.raises(ConfigError, match="train.epoch is not a training option"):
        Recipe.from_config({**CIFAR10, "epoch": 3})
