"""Training-FLOP integration on trajectories whose answer is computed by hand."""

import pytest

from rigl_repro.flops.accounting import flop_summary
from rigl_repro.flops.training import integrate_training_flops, step_cost, topology_flops

FLOPS = {"a": 100, "b": 50}
SIZES = {"a": 10, "b": 10}
# Dense for steps 0-2; an update at step 2 halves a; another at step 5 halves b. Ten steps in all.
LOG = [(0, [10, 10]), (3, [5, 10]), (6, [5, 5])]


def test_topology_costs():
    assert topology_flops(FLOPS, SIZES, LOG) == [150, 100, 75]


@pytest.mark.parametrize(
    "dense_gradients, expected",
    [
        # 3 steps x 3 x 150 + 3 x 3 x 100 + 4 x 3 x 75
        ("never", 1350 + 900 + 900),
        # the update steps 2 and 5 cost 2 f + f_D = 450 and 350 instead of 450 and 300
        ("update_steps", 1350 + 900 + 900 + 50),
        # every step costs 2 f + 150
        ("every_step", 3 * 450 + 3 * 350 + 4 * 300),
    ],
)
def test_integration_by_hand(dense_gradients, expected):
    costs = topology_flops(FLOPS, SIZES, LOG)
    assert integrate_training_flops(costs, [0, 3, 6], 10, 150, dense_gradients) == expected


def test_rigl_cycle_average_with_constant_densities():
    # Updates at steps 10, 20, ..., 70 (T_end = 75) of 100: seven 2 f_S + f_D steps, the rest 3 f_S.
    f_s, f_d = 20.0, 100.0
    starts = [0, *range(11, 72, 10)]
    total = integrate_training_flops([f_s] * len(starts), starts, 100, f_d, "update_steps")
    assert total == 93 * step_cost(f_s, f_d, False) + 7 * step_cost(f_s, f_d, True)
    assert total == 93 * 60 + 7 * 140


def test_summary_relative_to_the_dense_1x_run_with_pretraining():
    summary = flop_summary(FLOPS, SIZES, LOG, 10, 5, reference_inference=150, dense_gradients="never", pretraining=7)
    assert summary["train_flops"] == 3150 + 7
    assert summary["train_relative"] == pytest.approx(3157 / (3 * 150 * 5))
    assert summary["inference_relative"] == 0.5
    assert summary["trajectory"] == [[0, 1.0], [3, 100 / 150], [6, 0.5]]


def test_an_unmasked_model_costs_three_forward_passes_per_step():
    summary = flop_summary(FLOPS, {}, [], 4, 4, reference_inference=300, dense_gradients="never")
    assert summary["train_flops"] == 4 * 3 * 150 and summary["train_relative"] == 0.5


def test_the_first_topology_must_start_at_step_zero():
    with pytest.raises(ValueError, match="start at step 0"):
        integrate_training_flops([1.0], [3], 10, 1.0, "never")
