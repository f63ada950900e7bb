"""What each method drops and grows, checked against hand-made weights and gradients."""

import json
import math

import pytest
import torch
from torch import nn

from rigl_repro.errors import ConfigError
from rigl_repro.models import small_cnn
from rigl_repro.sparsity import SparseEngine, build_method
from rigl_repro.sparsity.masks import weight_shapes
from rigl_repro.sparsity.methods.small_dense import width_for_density
from tests.helpers import make_run, train


def single_layer_run(method, weight, mask, alpha=0.3, **options):
    """A one-layer linear model with the given weights and mask, at step 1 of a very long run."""
    model = nn.Sequential(nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    density = mask.float().mean().item()
    cfg = {"name": method, "density": density, "alpha": alpha, "delta_t": 1, "t_end_fraction": 1.0, **options}
    engine = SparseEngine(model, opt, build_method(cfg), total_steps=10**6)
    layer = engine.layers[0]
    with torch.no_grad():
        layer.mask.copy_(mask)
        layer.n_active = int(mask.sum())
        layer.weight.copy_(weight * mask)
    return model, opt, engine, layer


@pytest.mark.parametrize(
    "rounding, expected",
    [  # drops ceil(0.3 * 5) = 2 (the report's code) or floor(1.5) = 1 (Evci et al.)
        ("ceil", [[True, False, True, False, True, False, True, True]]),
        ("floor", [[True, False, True, True, True, False, True, False]]),
    ],
)
def test_rigl_drops_smallest_magnitudes_and_grows_largest_gradients(rounding, expected):
    weight = torch.tensor([[5.0, -0.1, 3.0, 0.2, 4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, True, False, False, False]])
    model, opt, engine, layer = single_layer_run("rigl", weight, mask, drop_rounding=rounding)
    layer.weight.grad = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.5, -2.0, 1.0]])
    engine.update_topology(1)
    assert layer.mask.tolist() == expected
    assert layer.weight[0, 6] == 0.0 and layer.n_active == 5
    n = 2 if rounding == "ceil" else 1
    assert engine.last_update == [(n, n)]


@pytest.mark.parametrize("regrown, weight_after", [("keep", -0.1), ("zero", 0.0)])
def test_a_dropped_connection_grown_again_keeps_its_momentum_and_its_weight_unless_zeroed(regrown, weight_after):
    weight = torch.tensor([[5.0, -0.1, 3.0, 0.2, 4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, True, False, False, False]])
    model, opt, engine, layer = single_layer_run("rigl", weight, mask, regrown=regrown, drop_rounding="floor")
    momentum = torch.tensor([[0.5, 0.7, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0]])
    opt.state[layer.weight]["momentum_buffer"] = momentum.clone()
    layer.weight.grad = torch.tensor([[0.0, 9.0, 0.0, 0.0, 0.0, 0.5, 2.0, 1.0]])
    engine.update_topology(1)  # drops -0.1 (the smallest) and grows it back (the largest gradient)
    assert layer.mask.tolist() == mask.tolist()
    assert layer.weight[0, 1].item() == pytest.approx(weight_after)
    assert torch.equal(opt.state[layer.weight]["momentum_buffer"], momentum)  # the report's reset_momentum keeps it


def test_growth_never_picks_active_weights_when_few_candidates_have_a_gradient():
    weight = torch.arange(1.0, 11.0).reshape(1, 10)
    mask = torch.tensor([[True] * 6 + [False] * 4])
    model, opt, engine, layer = single_layer_run("rigl", weight, mask, alpha=0.55, drop_rounding="floor")  # drops 3
    grad = torch.zeros(1, 10)
    grad[0, 5] = 100.0  # the one large gradient sits on a kept weight
    grad[0, 8] = 1.0
    layer.weight.grad = grad
    engine.update_topology(1)
    kept = [3, 4, 5]
    assert all(layer.mask[0, i] for i in kept)
    assert layer.n_active == 6 and int(layer.mask.sum()) == 6
    # Candidates 0..2 and 6..9: index 8 has the only non-zero score; ties among zeros go to the lowest index.
    assert layer.mask[0].nonzero().flatten().tolist() == [0, 1, 3, 4, 5, 8]


def three_layer_run(method, active, **options):
    """Three 10x10 linear layers, all in the budget, with ``active`` leading weights active in each."""
    model = nn.Sequential(*(nn.Linear(10, 10, bias=False) for _ in range(3)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    densities = {f"{i}.weight": count / 100 for i, count in enumerate(active)}
    cfg = {"name": method, "distribution": "custom", "custom_densities": densities, "delta_t": 1, **options}
    engine = SparseEngine(model, opt, build_method(cfg), total_steps=10**6)
    with torch.no_grad():
        for layer, count in zip(engine.layers, active):
            layer.mask.copy_(torch.arange(100).reshape(10, 10) < count)
            layer.weight.copy_(torch.arange(1.0, 101.0).reshape(10, 10) * layer.mask)
            layer.weight.grad = torch.rand(10, 10) + 0.01
    return model, opt, engine


@pytest.mark.parametrize("adjust, first_drops", [(True, 9), (False, 27)])
def test_a_dense_layer_with_an_above_average_share_drops_at_most_its_sparsity(adjust, first_drops):
    # Shares of the active counts: 90/130 > 1/3 for the 90%-dense first layer, so it drops min(0.1, 0.3) of
    # its weights: ceil(0.1 * 90) = 9 (Masking.adjust_prune_rate); the others ceil(0.3 * 20) = 6.
    model, opt, engine = three_layer_run("rigl", [90, 20, 20], alpha=0.3, adjust_prune_rate=adjust)
    assert engine.method.drop_counts(0) == [first_drops, 6, 6]


def test_a_small_dense_layer_keeps_its_mask_but_its_smallest_weights_restart_at_zero():
    # ERK's dense layers in the report's code: a 100%-dense layer whose share is not above average drops
    # ceil(f n) weights, and the only free positions are those, so they all grow back -- at zero.
    model, opt, engine = three_layer_run("rigl", [100, 100, 100], alpha=0.3)
    engine.update_topology(0)
    first = engine.layers[0]
    assert bool(first.mask.all())
    zeroed = (first.weight == 0).flatten().nonzero().flatten().tolist()
    assert zeroed == list(range(30))  # the 30 smallest magnitudes (1 .. 30)


def test_set_grows_among_inactive_positions_only_and_exactly_as_many():
    model, opt, engine = make_run({"name": "set", "density": 0.1, "delta_t": 1}, total_steps=100)
    train(model, opt, engine, 1)
    before = [layer.mask.clone() for layer in engine.layers]
    counts = [layer.n_active for layer in engine.layers]
    train(model, opt, engine, 1)
    dropped, grown = zip(*engine.last_update)
    assert dropped == grown and sum(grown) > 0
    for layer, mask, count, n_grown in zip(engine.layers, before, counts, grown):
        assert layer.n_active == count
        newly_active = int((layer.mask & ~mask).sum())
        assert newly_active <= n_grown  # the rest were dropped and drawn again
    assert sum(int((layer.mask & ~mask).sum()) for layer, mask in zip(engine.layers, before)) > 0


def test_separate_snfs_momentum_is_dense_while_the_optimizer_momentum_stays_sparse():
    masking = {"name": "snfs", "density": 0.1, "delta_t": 50, "growth_momentum": "separate"}
    model, opt, engine = make_run(masking, total_steps=100)
    train(model, opt, engine, 5)
    layer = engine.layers[2]
    dense = engine.method.momentum(layer)
    assert dense[~layer.mask].abs().sum() > 0
    assert not opt.state[layer.weight]["momentum_buffer"][~layer.mask].any()


def test_grown_snfs_weights_carry_the_dense_momentum_that_selected_them():
    model, opt, engine = make_run({"name": "snfs", "density": 0.1, "delta_t": 50}, total_steps=1000)
    train(model, opt, engine, 49)  # the update falls on step 49 (update_timing: report_code)
    before = [(layer.mask.clone(), opt.state[layer.weight]["momentum_buffer"].clone()) for layer in engine.layers]
    updated = []
    train(model, opt, engine, 1, updated.append)
    assert updated == [True]
    grown_anywhere = []
    for layer, (mask, buffer) in zip(engine.layers, before):
        grown = layer.mask & ~mask
        momentum = opt.state[layer.weight]["momentum_buffer"]
        assert torch.equal(momentum, buffer)  # no optimizer step, no reset: the buffer is as it was
        assert not layer.weight[grown].any()  # grown weights start at zero...
        if grown.any():
            assert momentum[grown].abs().min() > 0  # ...with the momentum that selected them
        grown_anywhere.append(grown)
    assert any(g.any() for g in grown_anywhere)
    train(model, opt, engine, 1)  # the next step moves every grown weight by its momentum
    assert all(layer.weight[g].all() for layer, g in zip(engine.layers, grown_anywhere))


def test_snfs_grows_the_largest_dense_momenta_and_leaves_the_buffer_as_it_is():
    weight = torch.tensor([[5.0, -0.1, 3.0, 0.2, 4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, True, False, False, False]])
    model, opt, engine, layer = single_layer_run("snfs", weight, mask)
    momentum = torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.1, 0.3, -2.0, 1.0]])
    opt.state[layer.weight]["momentum_buffer"] = momentum.clone()
    engine.update_topology(1)  # drops ceil(0.3 * 5) = 2: -0.1 and 0.2; grows where |momentum| is largest
    assert layer.mask.tolist() == [[True, False, True, False, True, False, True, True]]
    assert layer.weight.tolist() == [[5.0, 0.0, 3.0, 0.0, 4.0, 0.0, 0.0, 0.0]]
    assert torch.equal(opt.state[layer.weight]["momentum_buffer"], momentum)


def test_redistribution_moves_density_towards_layers_with_larger_statistics():
    model, opt, engine = make_run({"name": "rigl", "redistribution": "grad", "density": 0.2, "delta_t": 1}, 100)
    train(model, opt, engine, 1)
    scores = engine.method.layer_statistics()
    assert len(scores) == len(engine.layers) and all(s >= 0 for s in scores)
    densities = [engine.layer_densities()]
    train(model, opt, engine, 20)
    densities.append(engine.layer_densities())
    assert densities[0] != densities[1]


@pytest.mark.parametrize("stem", ["rigl_sg", "rigl_sm", "snfs"])
def test_uniform_with_redistribution_never_changes_the_dense_first_layer(stem):
    from tests.sparsity.test_engine import CONFIGS

    masking = {**CONFIGS[stem], "distribution": "uniform", "density": 0.1, "delta_t": 1, "alpha": 0.5}
    model, opt, engine = make_run(masking, total_steps=400)
    first, *rest = engine.layers
    moved = []

    def check(updated):
        assert first.n_active == first.size and bool(first.mask.all())
        moved.append([layer.n_active for layer in rest])

    train(model, opt, engine, 200, check)
    assert moved[0] != moved[-1]  # the budgeted layers did trade weights
    assert sum(moved[-1]) == sum(moved[0])


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_pruning_starts_dense_reaches_the_target_and_never_grows(scope):
    options = {"density": 0.1, "distribution": "uniform", "delta_t": 5}
    window = {"start_fraction": 0.2, "end_fraction": 0.6, "scope": scope}
    model, opt, engine = make_run({"name": "pruning", **options, **window}, total_steps=100)
    assert engine.overall_density() == 1.0
    history = []
    train(model, opt, engine, 100, lambda updated: history.append(engine.overall_density()))
    assert all(a >= b for a, b in zip(history, history[1:]))
    assert history[19] == 1.0  # nothing pruned before the start (step 20)
    first, *budget = engine.layers
    assert first.density == 1.0  # Uniform's first layer is outside the budget and stays dense
    assert sum(layer.n_active for layer in budget) == round(0.1 * sum(layer.size for layer in budget))
    _, _, static_engine = make_run({"name": "static", "density": 0.1, "distribution": "uniform"}, total_steps=100)
    same_layers = engine.layer_densities() == static_engine.layer_densities()
    assert same_layers == (scope == "layerwise")  # global pruning learns its own per-layer densities


def test_global_pruning_keeps_the_globally_largest_magnitudes():
    model, opt, engine = make_run(
        {"name": "pruning", "density": 0.3, "distribution": "erk", "delta_t": 5, "start_fraction": 0.0}, 20
    )
    with torch.no_grad():
        for layer in engine.layers:
            layer.weight.normal_()
    before = [layer.weight.detach().abs().clone() for layer in engine.layers]
    engine.update_topology(engine.method.end)
    kept = torch.cat([magnitude[layer.mask] for magnitude, layer in zip(before, engine.layers)])
    pruned = torch.cat([magnitude[~layer.mask] for magnitude, layer in zip(before, engine.layers)])
    assert pruned.numel() > 0 and kept.min() >= pruned.max()
    assert engine.overall_density() == pytest.approx(0.3, abs=1e-3)


def test_lottery_mask_comes_from_trained_magnitudes_and_weights_are_rewound(tmp_path):
    torch.manual_seed(0)
    initial_model, trained_model = small_cnn(width=0.25), small_cnn(width=0.25)
    torch.save(initial_model.state_dict(), tmp_path / "init.pt")
    torch.save({"model": trained_model.state_dict(), "step": 7}, tmp_path / "trained.pt")
    model, opt, engine = make_run(
        {
            "name": "lottery",
            "density": 0.2,
            "trained_weights": str(tmp_path / "trained.pt"),
            "initial_weights": str(tmp_path / "init.pt"),
        },
        total_steps=20,
        seed=5,
    )
    trained = trained_model.state_dict()
    initial = initial_model.state_dict()
    for layer in engine.layers:
        magnitudes = trained[layer.name].abs()
        if (~layer.mask).any():
            assert magnitudes[layer.mask].min() >= magnitudes[~layer.mask].max()
        assert torch.equal(layer.weight, initial[layer.name] * layer.mask)
    masks = [layer.mask.clone() for layer in engine.layers]
    train(model, opt, engine, 20)
    assert all(torch.equal(m, layer.mask) for m, layer in zip(masks, engine.layers))


def test_lottery_without_weight_files_fails_clearly(tmp_path):
    with pytest.raises(ConfigError, match="masking.trained_weights is not set"):
        make_run({"name": "lottery", "density": 0.2}, total_steps=20)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable weights file"):
        make_run({"name": "lottery", "trained_weights": str(tmp_path / "bad.pt"), "initial_weights": "x"}, 20)


def test_small_dense_width_matches_the_parameter_budget():
    def count(width):
        return sum(torch.Size(s).numel() for s in weight_shapes(small_cnn(width=width)).values())

    method = build_method({"name": "small_dense", "density": 0.1})
    width = method.width_multiplier(count)
    assert abs(count(width) - 0.1 * count(1.0)) / count(1.0) < 0.01
    assert width_for_density(lambda w: round(1000 * w * w), 0.25) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ConfigError, match="small_dense changes the model, not its masks"):
        make_run({"name": "small_dense", "density": 0.1}, total_steps=5, model=small_cnn(width=width))
    model, opt, engine = make_run({"name": "dense"}, total_steps=5, model=small_cnn(width=width))  # as the trainer
    assert engine.layers == []


def test_global_pruning_never_empties_a_layer():
    model = nn.Sequential(nn.Linear(30, 30, bias=False), nn.Linear(30, 30, bias=False), nn.Linear(30, 10, bias=False))
    with torch.no_grad():
        model[1].weight.mul_(1e-3)  # every weight of the middle layer is smaller than all others
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = SparseEngine(
        model, opt, build_method({"name": "pruning", "density": 0.1, "distribution": "erk", "delta_t": 1}), 100
    )
    engine.update_topology(engine.method.end)
    assert [layer.n_active for layer in engine.layers][1] == 1


def test_a_pruning_window_shorter_than_delta_t_is_refused():
    with pytest.raises(ConfigError, match=r"masking.delta_t=100 is longer than the pruning window"):
        make_run({"name": "pruning", "delta_t": 100}, total_steps=100)


def test_a_re_initialised_run_starts_from_the_source_runs_final_masks(tmp_path):
    source_masking = {"name": "rigl", "density": 0.2, "delta_t": 2, "redistribution": "momentum"}
    model, opt, engine = make_run(source_masking, total_steps=40)
    train(model, opt, engine, 30)
    torch.save({"model": model.state_dict()}, tmp_path / "checkpoint.pt")
    masking = {
        "name": "rigl", "distribution": "custom", "custom_densities": engine.layer_densities(),
        "initial_mask": str(tmp_path / "checkpoint.pt"),
    }  # fmt: skip
    _, _, restarted = make_run(masking, total_steps=40, seed=7)
    for source, layer in zip(engine.layers, restarted.layers):
        assert torch.equal(source.mask, layer.mask) and layer.n_active == source.n_active
    _, _, fresh = make_run({**masking, "initial_mask": ""}, total_steps=40, seed=7)
    assert [layer.n_active for layer in fresh.layers] == [layer.n_active for layer in engine.layers]
    assert not all(torch.equal(a.mask, b.mask) for a, b in zip(engine.layers, fresh.layers))
    with pytest.raises(ConfigError, match="has .* active weights in .*, the distribution asks for"):
        make_run({**masking, "distribution": "uniform", "custom_densities": None}, total_steps=40)


def report_code_pruning_counts(total: int, final_density: float, start: int, end: int) -> list[int]:
    """Active weights after each pruning update of the report's code: its decay, in cumulative mode, asks
    for the schedule's sparsity of the previous step less the current sparsity, and
    ``global_magnitude_prune`` removes that fraction of all weights, rounded up (an exact threshold assumed)."""
    final_sparsity = 1 - final_density

    def cumulative_sparsity(step):
        if step < start:
            return 0.0
        if step < end:
            return final_sparsity + (0.0 - final_sparsity) * (1 - (step - start) / (end - start)) ** 3
        return final_sparsity

    active, counts = total, []
    for step in range(end + 200):
        if step < end and (step + 1) % 100 == 0:
            rate = max(cumulative_sparsity(step - 1) - (1 - active / total), 0)
            active -= math.ceil(rate * total)
            counts.append(active)
    return counts


@pytest.mark.parametrize("density", [0.05, 0.1, 0.2, 0.5])
def test_global_pruning_removes_what_the_report_code_removes_at_every_step(density):
    method = build_method({"name": "pruning", "density": density})
    method.plan(45_000 * 250 / 128)
    assert (method.start, method.end) == (700, 65_918)
    total = 1_075_632 - 432 + 1_280  # WRN-22-2's weights without the dense first layer
    active, ours = total, []
    for step in range(method.end + 200):
        if method.is_update_step(step):
            active = method.kept(total, active, 1 - density, step)
            ours.append(active)
    assert ours == report_code_pruning_counts(total, density, 700, 65_918)
    assert abs(ours[-1] - density * total) <= 1


def write_summary(path, engine, **fields):
    """A finished run's summary.json, as far as another run reads it: its results and final layer densities."""
    summary = {"config": {}, "test_acc": 0.5, "val_acc": None, "density": engine.overall_density(),
               "layer_densities": engine.layer_densities(), **fields}  # fmt: skip
    path.write_text(json.dumps(summary))


def test_densities_from_a_uniform_run_keep_its_dense_first_layer_out_of_every_update(tmp_path):
    model, opt, engine = make_run({"name": "rigl", "density": 0.2, "redistribution": "momentum", "delta_t": 2}, 40)
    train(model, opt, engine, 20)
    names = [layer.name for layer in engine.layers]
    write_summary(tmp_path / "summary.json", engine, budgeted_layers=names[1:])
    masking = {"name": "rigl", "distribution": "custom", "custom_densities": str(tmp_path / "summary.json"),
               "delta_t": 1, "alpha": 0.5}  # fmt: skip
    model, opt, engine = make_run(masking, total_steps=100)
    assert engine.method.updated == [False, True, True, True]
    first = engine.layers[0]
    train(model, opt, engine, 50, lambda updated: None)
    assert bool(first.mask.all()) and bool(first.weight.detach().ne(0).all())  # never dropped, never zeroed
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(ConfigError, match="^masking.custom_densities: .*summary.json is not valid JSON"):
        make_run(masking, total_steps=100)
