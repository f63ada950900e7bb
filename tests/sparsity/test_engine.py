"""Invariants of the engine under every method: exact counts, zero masked weights and momentum,
grown == dropped, determinism, and exact resumption from a checkpoint."""

import io

import pytest
import torch

from rigl_repro.sparsity import available_methods
from tests.helpers import make_run, train

DYNAMIC = ["set", "rigl", "snfs"]
# (method options, whether each layer's count stays constant)
CASES = {
    "static": ({"name": "static"}, True),
    "set": ({"name": "set"}, True),
    "rigl": ({"name": "rigl"}, True),
    "rigl_sg": ({"name": "rigl", "redistribution": "grad"}, False),
    "rigl_sm": ({"name": "rigl", "redistribution": "momentum"}, False),
    "snfs": ({"name": "snfs"}, False),
    "pruning": ({"name": "pruning", "start_fraction": 0.1, "end_fraction": 0.8}, False),
}


def optimizer_state_tensors(opt, weight):
    return [v for v in opt.state.get(weight, {}).values() if isinstance(v, torch.Tensor) and v.shape == weight.shape]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("case", list(CASES))
def test_hundreds_of_updates_keep_every_invariant(case, optimizer):
    options, constant_counts = CASES[case]
    model, opt, engine = make_run({**options, "density": 0.2, "delta_t": 1, "alpha": 0.5}, total_steps=400, optimizer=optimizer)
    initial = {layer.name: layer.n_active for layer in engine.layers}
    total_active = sum(initial.values())
    updates = 0
    previous_masks = [layer.mask.clone() for layer in engine.layers]

    def check(updated):
        nonlocal updates, previous_masks
        updates += updated
        for layer, before in zip(engine.layers, previous_masks):
            assert int(layer.mask.sum()) == layer.n_active
            assert layer.mask.dtype == torch.bool
            assert not layer.weight[~layer.mask].any(), f"{layer.name}: a masked weight is non-zero"
            for state in optimizer_state_tensors(opt, layer.weight):
                assert not state[~layer.mask].any(), f"{layer.name}: masked optimizer state is non-zero"
            if constant_counts:
                assert layer.n_active == initial[layer.name]
            if updated and case != "pruning":
                grown = layer.mask & ~before
                assert not layer.weight[grown].any(), "a newly grown weight is not zero"
        if updated and case != "pruning":
            dropped, grown = zip(*engine.last_update)
            assert sum(dropped) == sum(grown)
            if constant_counts:
                assert list(dropped) == list(grown)
        if case != "pruning":
            assert sum(layer.n_active for layer in engine.layers) == total_active
        previous_masks = [layer.mask.clone() for layer in engine.layers]

    train(model, opt, engine, 400, check)
    if case in ("static",):
        assert updates == 0
    elif case == "pruning":
        assert updates > 200
        assert engine.overall_density() == pytest.approx(0.2, abs=0.01)
    else:
        assert updates == 299  # every step in (0, T_end = 300)


@pytest.mark.parametrize("case", list(CASES))
def test_masks_change_only_for_dynamic_methods(case):
    options, _ = CASES[case]
    model, opt, engine = make_run({**options, "density": 0.2, "delta_t": 5}, total_steps=100)
    start = [layer.mask.clone() for layer in engine.layers]
    train(model, opt, engine, 60)
    changed = any(not torch.equal(a, layer.mask) for a, layer in zip(start, engine.layers))
    assert changed == (case != "static")


def test_an_update_step_does_not_step_the_optimizer():
    model, opt, engine = make_run({"name": "rigl", "density": 0.3, "delta_t": 10}, total_steps=100)
    train(model, opt, engine, 10)
    before = {layer.name: (layer.weight.detach().clone(), layer.mask.clone()) for layer in engine.layers}
    other = {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith("weight")}
    updated = []
    train(model, opt, engine, 1, updated.append)
    assert updated == [True]
    for layer in engine.layers:
        weight, mask = before[layer.name]
        still = layer.mask & mask
        assert torch.equal(layer.weight[still], weight[still])
    for name, param in model.named_parameters():
        if name in other:
            assert torch.equal(param, other[name])


def test_same_seed_same_masks_and_updates_different_seed_different_masks():
    def final_masks(seed):
        model, opt, engine = make_run({"name": "set", "density": 0.2, "delta_t": 3}, total_steps=60, seed=seed)
        train(model, opt, engine, 60)
        return [layer.mask.clone() for layer in engine.layers]

    first, again, other = final_masks(1), final_masks(1), final_masks(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def checkpoint_bytes(model, opt, engine):
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "engine": engine.state_dict()}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("case", ["set", "rigl", "rigl_sm", "snfs", "pruning"])
def test_checkpoint_round_trip_resumes_exactly(case):
    options, _ = CASES[case]
    masking = {**options, "density": 0.2, "delta_t": 4}
    model, opt, engine = make_run(masking, total_steps=80, seed=3)
    train(model, opt, engine, 30)
    saved = checkpoint_bytes(model, opt, engine)
    train(model, opt, engine, 50)

    # A fresh process: different initial weights and masks, then the checkpoint, loaded safely.
    model2, opt2, engine2 = make_run(masking, total_steps=80, seed=99)
    state = torch.load(io.BytesIO(saved), weights_only=True)
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optimizer"])
    engine2.load_state_dict(state["engine"])
    assert engine2.step_count == 30
    train(model2, opt2, engine2, 50)

    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name
    assert engine.layer_densities() == engine2.layer_densities()


def test_loading_a_checkpoint_whose_masks_disagree_with_its_counts_fails_clearly():
    model, opt, engine = make_run({"name": "rigl", "density": 0.2}, total_steps=50)
    state = engine.state_dict()
    first = engine.layers[1]
    first.mask.view(-1)[: first.size] = True
    with pytest.raises(ValueError, match="inconsistent"):
        engine.load_state_dict(state)


def test_dense_method_attaches_no_masks_and_only_steps_the_optimizer():
    model, opt, engine = make_run({"name": "dense"}, total_steps=10)
    assert engine.layers == [] and engine.overall_density() == 1.0
    assert not any(name.endswith("weight_mask") for name in model.state_dict())
    weight = model.fc.weight.detach().clone()
    train(model, opt, engine, 1)
    assert not torch.equal(weight, model.fc.weight)


def test_every_method_is_covered_by_these_tests():
    covered = {options["name"] for options, _ in CASES.values()} | {"dense", "lottery", "small_dense"}
    assert covered == set(available_methods())
