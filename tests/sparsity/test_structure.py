"""Mask structures (rigl_repro.sparsity.structure): their invariants, by property, alone and under the engine."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rigl_repro.errors import ConfigError
from rigl_repro.sparsity import build_method
from rigl_repro.sparsity.methods import canonical_masking
from rigl_repro.sparsity.structure import FanIn, MaskStructure, NOfM, build_structure
from tests.helpers import make_run, train

CPU = torch.device("cpu")
shapes = st.one_of(
    st.tuples(st.integers(1, 6), st.integers(1, 13)),
    st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
)
structures = st.one_of(
    st.just(MaskStructure()),
    st.just(FanIn()),
    st.integers(2, 6).flatmap(lambda m: st.integers(1, m - 1).map(lambda n: NOfM(n, m))),
)


def group_counts(structure: NOfM, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    index, capacity = structure.layout(tuple(mask.shape), CPU)
    return structure._grouped(mask, index, False).sum(dim=1), capacity


def fan_ins(mask: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape[0], -1).sum(dim=1)


@settings(max_examples=150, deadline=None)
@given(shape=shapes, structure=structures, density=st.floats(0.05, 0.95), fraction=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_random_keep_and_grow_keep_the_structure_and_the_count(shape, structure, density, fraction, seed):
    generator = torch.Generator().manual_seed(seed)
    count = structure.count(shape, density)
    mask = structure.random(shape, count, generator, CPU)
    assert int(mask.sum()) == count and structure.violation(mask) is None
    weights = torch.randn(shape, generator=generator)
    drop = structure.legal_drop(shape, count, math.floor(fraction * count))
    assert math.floor(fraction * count) <= drop <= count
    kept = structure.keep(torch.where(mask, weights.abs(), float("-inf")), count - drop)
    assert int(kept.sum()) == count - drop and not (kept & ~mask).any()
    grown = structure.grow(kept, torch.randn(shape, generator=generator).masked_fill(kept, float("-inf")), drop)
    after = kept | grown
    assert int(grown.sum()) == drop and not (grown & kept).any()  # grown == dropped, never an active weight
    assert structure.violation(after) is None
    if isinstance(structure, NOfM):  # full again: every group exactly at its capacity
        counts, capacity = group_counts(structure, after)
        assert torch.equal(counts, capacity)
        assert count == int(capacity.sum())
    if isinstance(structure, FanIn):
        assert fan_ins(after).unique().numel() == 1
        assert count == shape[0] * int(fan_ins(after)[0])


@pytest.mark.parametrize("n, m, fan_in, expected", [(2, 4, 8, 4), (2, 4, 150, 75), (1, 4, 6, 1), (3, 8, 13, 4)])
def test_an_n_m_count_fills_every_group_and_a_short_last_group_pro_rata(n, m, fan_in, expected):
    assert NOfM(n, m).count((3, fan_in), 0.123) == 3 * expected  # the density is n/m's, whatever is asked


def test_fan_in_counts_are_a_whole_fan_in_per_neuron():
    assert FanIn().count((10, 4, 3, 3), 0.1) == 10 * 4  # round(0.1 x 36) = 4 inputs per filter
    assert FanIn().count((10, 5), 0.01) == 10  # at least one input per neuron


METHODS = [
    {"name": "static", "distribution": "erk"},
    {"name": "set", "distribution": "erk", "delta_t": 3},
    {"name": "rigl", "distribution": "erk", "delta_t": 3},
    {"name": "rigl", "distribution": "uniform", "delta_t": 3, "drop_rounding": "floor"},
    {"name": "snfs", "distribution": "erk", "delta_t": 3, "redistribution": "none"},
]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m['name']}-{m['distribution']}")
@pytest.mark.parametrize("structure", [{"structure": "fan_in", "density": 0.2},
                                       {"structure": "nm", "n": 2, "m": 4, "distribution": "uniform"},
                                       {"structure": "nm", "n": 1, "m": 3, "distribution": "uniform"}],
                         ids=["fan_in", "2:4", "1:3"])  # fmt: skip
def test_every_update_keeps_the_structure_counts_and_zeros(method, structure):
    model, opt, engine = make_run({**method, **structure}, total_steps=30)
    mask_structure = engine.method.mask_structure
    counts = engine.active_counts()
    budget = set(engine.method.budget([layer.name for layer in engine.layers]))
    seen_updates = []

    def check(updated):
        seen_updates.append(updated)
        assert engine.active_counts() == counts
        for layer in engine.layers:
            assert int(layer.mask.sum()) == layer.n_active
            assert not layer.weight[~layer.mask].any()
            if layer.name in budget and layer.n_active < layer.size:
                assert mask_structure.violation(layer.mask) is None, layer.name
                if isinstance(mask_structure, NOfM):
                    got, capacity = group_counts(mask_structure, layer.mask)
                    assert torch.equal(got, capacity), layer.name
        if updated:
            assert all(dropped == grown for dropped, grown in engine.last_update)

    train(model, opt, engine, 20, after_step=check)
    assert any(seen_updates) == (method["name"] != "static")
    if method["name"] != "static":
        assert any(dropped for dropped, _ in engine.last_update)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_gradual_pruning_under_fan_in_keeps_a_constant_fan_in_at_every_step(scope):
    masking = {"name": "pruning", "structure": "fan_in", "distribution": "erk", "density": 0.2, "delta_t": 2,
               "scope": scope, "start_fraction": 0.1, "end_fraction": 0.6}  # fmt: skip
    model, opt, engine = make_run(masking, total_steps=30)
    history = [engine.active_counts()]

    def check(updated):
        counts = engine.active_counts()
        assert all(now <= before for now, before in zip(counts, history[-1]))
        history.append(counts)
        for layer in engine.layers:
            assert int(layer.mask.sum()) == layer.n_active and not layer.weight[~layer.mask].any()
            assert FanIn().violation(layer.mask) is None, layer.name
            assert int(fan_ins(layer.mask).min()) >= 1, layer.name  # no neuron pruned to nothing

    train(model, opt, engine, 30, after_step=check)
    assert history[-1] != history[0]  # it pruned
    assert abs(engine.budgeted_density() - 0.2) < 0.05  # a whole input per neuron from the target
    if scope == "layerwise":  # each layer ends at its own count under the structure
        assert engine.active_counts() == engine.method.final_counts


@pytest.mark.parametrize("structure", [{"structure": "fan_in", "density": 0.3},
                                       {"structure": "nm", "n": 2, "m": 4}], ids=["fan_in", "2:4"])  # fmt: skip
def test_a_lottery_ticket_under_structure_keeps_the_largest_trained_weights_of_the_structure(tmp_path, structure):
    masking = {"name": "lottery", "distribution": "uniform", **structure}
    trained_model, *_ = make_run({"name": "dense"}, seed=3)
    trained, initial = tmp_path / "trained.pt", tmp_path / "initial.pt"
    torch.save(trained_model.state_dict(), trained)
    torch.save(make_run({"name": "dense"}, seed=4)[0].state_dict(), initial)
    _, _, engine = make_run({**masking, "trained_weights": str(trained), "initial_weights": str(initial)})
    mask_structure = engine.method.mask_structure
    weights = trained_model.state_dict()
    budget = set(engine.method.budget([layer.name for layer in engine.layers]))
    for layer in engine.layers:
        if layer.name in budget:
            assert mask_structure.violation(layer.mask) is None, layer.name
            expected = mask_structure.keep(weights[layer.name].abs(), layer.n_active)
            assert torch.equal(layer.mask, expected), layer.name


@pytest.mark.parametrize("masking", [
    {"name": "rigl", "distribution": "uniform", "delta_t": 3, "structure": "fan_in"},
    {"name": "rigl", "distribution": "uniform", "delta_t": 3, "structure": "nm", "n": 2, "m": 4},
    {"name": "pruning", "distribution": "erk", "density": 0.2, "delta_t": 2, "structure": "fan_in",
     "start_fraction": 0.1, "end_fraction": 0.6},
], ids=["rigl-fan_in", "rigl-2:4", "pruning-fan_in"])  # fmt: skip
def test_a_structured_run_resumes_bit_for_bit(masking):
    model, opt, engine = make_run(masking, total_steps=30)
    train(model, opt, engine, 20)

    cut_model, cut_opt, cut = make_run(masking, total_steps=30)
    train(cut_model, cut_opt, cut, 10)
    state = {"model": cut_model.state_dict(), "optimizer": cut_opt.state_dict(), "engine": cut.state_dict()}
    resumed_model, resumed_opt, resumed = make_run(masking, total_steps=30, seed=5)  # other initial masks
    resumed_model.load_state_dict(state["model"])
    resumed_opt.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["engine"])
    train(resumed_model, resumed_opt, resumed, 10)
    assert resumed.topology_log == engine.topology_log
    for (name, ours), theirs in zip(resumed_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(ours, theirs), name


@pytest.mark.parametrize("masking, message", [
    ({"name": "rigl", "structure": "nm", "distribution": "erk"}, "use masking.distribution=uniform"),
    ({"name": "snfs", "structure": "fan_in"}, "masking.redistribution=momentum moves weights between layers"),
    ({"name": "rigl", "structure": "fan_in", "redistribution": "grad"}, "use masking.redistribution=none"),
    ({"name": "pruning", "structure": "nm"}, "gradual magnitude pruning starts dense; use masking.structure=fan_in"),
    ({"name": "rigl", "structure": "nm", "n": 4, "m": 4}, "is not an N:M structure"),
    ({"name": "rigl", "structure": "blocks"}, "masking.structure='blocks' is not known"),
])  # fmt: skip
def test_what_a_structure_cannot_take_is_refused_in_one_line(masking, message):
    with pytest.raises(ConfigError, match=message) as error:
        build_method(masking)
    assert "\n" not in str(error.value)


def test_structure_options_are_in_a_run_s_identity_only_where_they_mean_something():
    base = {"name": "rigl", "density": 0.1}
    unstructured = {**base, "structure": "unstructured", "n": 2, "m": 4}
    assert canonical_masking(unstructured) == canonical_masking(base) == base  # runs from before structures
    assert canonical_masking({**base, "structure": "nm", "n": 2, "m": 4}) == {"name": "rigl", "structure": "nm",
                                                                            "n": 2, "m": 4}  # density is n/m's
    assert canonical_masking({**base, "structure": "fan_in", "n": 2, "m": 4}) == {**base, "structure": "fan_in"}


def test_the_unstructured_structure_is_the_plain_top_k_and_random_masks():
    from rigl_repro.sparsity.masks import random_mask, top_k_mask

    scores = torch.randn(7, 9)
    assert torch.equal(MaskStructure().keep(scores, 20), top_k_mask(scores, 20))
    first, second = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(MaskStructure().random((7, 9), 20, first, CPU), random_mask(torch.Size((7, 9)), 20, second, CPU))
    assert build_structure("unstructured") == MaskStructure()


def test_the_engine_s_densities_under_structure_are_what_the_counts_say():
    _, _, engine = make_run({"name": "static", "structure": "nm", "n": 2, "m": 4, "distribution": "uniform"})
    budget = set(engine.method.budget([layer.name for layer in engine.layers]))
    structured = [layer for layer in engine.layers if layer.name in budget]
    expected = sum(NOfM(2, 4).count(tuple(layer.weight.shape), 0.1) for layer in structured)
    assert structured and all(layer.n_active == layer.size for layer in engine.layers if layer.name not in budget)
    assert engine.budgeted_density() == expected / sum(layer.size for layer in structured)
    assert abs(engine.budgeted_density() - 0.5) < 0.05  # n/m, less the short groups' rounding


@pytest.mark.parametrize("overrides", [["masking=rigl", "masking.structure=nm", "masking.n=2", "masking.m=4"],
                                       ["masking=rigl", "masking.structure=fan_in", "masking.distribution=erk"],
                                       ["masking=srigl", "masking.min_salient_weights_per_neuron=0.3"]],
                         ids=["2:4", "fan_in", "srigl"])  # fmt: skip
def test_a_structured_run_trains_exports_and_reloads_exactly(tmp_path, overrides):
    import json

    from rigl_repro.export import accuracy_on_test_split, export_run, load_export
    from rigl_repro.training.session import run
    from tests.helpers import compose_config

    run(compose_config("train.epochs=2", "threads=1", *overrides), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    model, metadata = load_export(export_run(tmp_path, tmp_path / "model.safetensors").path)
    structure = build_method(summary["config"]["masking"]).mask_structure
    budget = summary["budgeted_layers"]
    masks = {name: buffer for name, buffer in model.named_buffers() if name.endswith("weight_mask")}
    assert set(budget) <= {name.removesuffix("_mask") for name in masks}
    for name in budget:
        assert structure.violation(masks[name.removesuffix("weight") + "weight_mask"]) is None, name
    assert accuracy_on_test_split(model, metadata) == summary["test_acc"]
    # The budgeted layers' masks are stored in the structure's own layout, and reload exactly.
    sparse = [name for name in budget if not masks[name + "_mask"].all()]
    layouts = metadata["mask_layouts"]
    assert sparse and {name: layouts[name].name for name in sparse} == dict.fromkeys(sparse, structure.name)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    for name, mask in masks.items():
        assert torch.equal(mask, checkpoint[name]), name


# ------------------------------------------------------------------------------------------------ SRigL
def test_srigl_keeps_a_constant_fan_in_over_live_neurons_within_each_layer_s_budget():
    masking = {"name": "srigl", "density": 0.2, "delta_t": 2, "alpha": 0.5, "min_salient_weights_per_neuron": 0.5}
    model, opt, engine = make_run(masking, total_steps=40)
    budgets = engine.method.budgets
    budget = set(engine.method.budget([layer.name for layer in engine.layers]))
    ablated = []

    def check(updated):
        for layer, limit in zip(engine.layers, budgets):
            per_neuron = fan_ins(layer.mask)
            assert int(layer.mask.sum()) == layer.n_active and not layer.weight[~layer.mask].any()
            if layer.name in budget and layer.n_active < layer.size:
                live = per_neuron[per_neuron > 0]
                assert live.unique().numel() == 1, layer.name  # one fan-in for every live neuron
                assert limit - live.numel() < layer.n_active <= limit  # floor(budget / live) x live
                ablated.append(int((per_neuron == 0).sum()))

    train(model, opt, engine, 30, after_step=check)
    assert max(ablated) > 0  # a threshold of half the fan-in ablates neurons in this small network


def test_srigl_ablates_the_neurons_without_salient_weights_and_gives_their_share_to_the_others():
    from types import SimpleNamespace

    method = build_method({"name": "srigl", "min_salient_weights_per_neuron": 0.3})
    weight = torch.randn(6, 10)
    weight[:2] = 0.0  # two neurons with nothing: no weight, no gradient
    weight.grad = torch.randn(6, 10)
    weight.grad[:2] = 0.0
    layer = SimpleNamespace(weight=weight, n_active=30)  # 5 of 10 inputs for each of 6 neurons
    targets = method.neuron_targets(layer, budget=30, n_prune=9)
    assert targets.live.tolist() == [False, False, True, True, True, True]
    assert targets.fan_in == 30 // 4  # the budget shared by the 4 live neurons


def test_srigl_refuses_another_structure_in_one_line():
    with pytest.raises(ConfigError, match="SRigL keeps a constant fan-in; use masking.structure=fan_in"):
        build_method({"name": "srigl", "structure": "nm"})


def test_srigl_on_cifar10_runs_at_smoke_scale(tmp_path, monkeypatch, local_server):
    import numpy as np

    from rigl_repro.training.session import run
    from tests.helpers import compose_config, fake_cifar

    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {name: (rng.integers(0, 256, (12, 3, 32, 32), dtype="uint8"), rng.integers(0, 10, 12)) for name in names}
    fake_cifar(monkeypatch, local_server, "cifar10", batches)
    config = compose_config("dataset=cifar10", "masking=srigl", "scale=smoke", f"dataset.root={tmp_path}/data",
                            "dataset.train_pool=60", "dataset.val_size=10", "model.width=0.25", "train.epochs=2",
                            "train.batch_size=16", "masking.delta_t=2", "threads=1")  # fmt: skip
    summary = run(config, tmp_path / "run")
    assert summary["config"]["masking"]["structure"] == "fan_in" and summary["steps"] == 8
    assert summary["density"] <= 0.1 + 1e-3 and 0.0 <= summary["test_acc"] <= 1.0
