"""Invariants of the engine under every configured method (each ``conf/masking/*.yaml``): exact counts,
zero masked weights and momentum, grown == dropped, determinism, and exact resumption from a checkpoint.
A new method with its YAML is checked here without touching this file."""

import io
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from rigl_repro.errors import ConfigError
from rigl_repro.models import small_cnn
from rigl_repro.sparsity import SparseEngine, available_methods
from rigl_repro.sparsity.methods import DropAndGrow
from tests.helpers import batch_for, compose_config, make_run, train

CONF = Path(__file__).resolve().parents[2] / "conf" / "masking"
# Each choice's masking node as composed (its method file with the shared conf/masking_options it lists).
CONFIGS = {
    path.stem: OmegaConf.to_container(compose_config(f"masking={path.stem}").masking, resolve=True)
    for path in sorted(CONF.glob("*.yaml"))
}
# The engine refuses small-dense, which changes the model rather than its masks (tests/sparsity/test_policy.py);
# the trainer runs the narrowed model with the dense method (tests/training/test_trainer.py).
ENGINE_STEMS = [stem for stem, config in CONFIGS.items() if config["name"] != "small_dense"]
# Options some methods need to run in a 400-step test.
RUN_OPTIONS = {"pruning": {"start_fraction": 0.1, "end_fraction": 0.8}}


@pytest.fixture
def masking_for(tmp_path):
    """The test options of a config: the composed YAML, the short-run overrides its method takes (dense has no
    alpha), and weight files for lottery tickets."""
    torch.manual_seed(123)
    torch.save(small_cnn(width=0.25).state_dict(), tmp_path / "init.pt")
    torch.save(small_cnn(width=0.25).state_dict(), tmp_path / "trained.pt")
    files = {"trained_weights": str(tmp_path / "trained.pt"), "initial_weights": str(tmp_path / "init.pt")}

    def build(stem, **overrides):
        taken = available_methods()[CONFIGS[stem]["name"]].option_names()
        overrides = {option: value for option, value in overrides.items() if option in taken}
        config = {**CONFIGS[stem], **RUN_OPTIONS.get(CONFIGS[stem]["name"], {}), **overrides}
        if config["name"] == "lottery":
            config.update(files)
        return config

    return build


def optimizer_state_tensors(opt, weight):
    return [v for v in opt.state.get(weight, {}).values() if isinstance(v, torch.Tensor) and v.shape == weight.shape]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("stem", ENGINE_STEMS)
def test_hundreds_of_updates_keep_every_invariant(stem, optimizer, masking_for):
    masking = masking_for(stem, density=0.2, delta_t=1, alpha=0.5)
    model, opt, engine = make_run(masking, total_steps=400, optimizer=optimizer)
    method = engine.method
    drop_and_grow = isinstance(method, DropAndGrow)
    constant_counts = not drop_and_grow or method.keeps_layer_densities()
    grows = drop_and_grow
    # SRigL's ablation leaves a layer floor(budget / live neurons) x live neurons: its total may shrink a little
    conserves_total = grows and not getattr(method, "dynamic_ablation", False)
    dense_state = method.dense_optimizer_state()  # the report's SNFS: the optimizer's momentum stays dense
    initial = {layer.name: layer.n_active for layer in engine.layers}
    total_active = sum(initial.values())
    updates = 0
    previous_masks = [layer.mask.clone() for layer in engine.layers]

    def check(updated):
        nonlocal updates, previous_masks
        updates += updated
        for layer, before, gradient_mask in zip(engine.layers, previous_masks, engine.gradient_masks):
            assert int(layer.mask.sum()) == layer.n_active
            assert layer.mask.dtype == torch.bool
            assert gradient_mask.dtype == layer.weight.dtype and torch.equal(gradient_mask.bool(), layer.mask)
            assert not layer.weight[~layer.mask].any(), f"{layer.name}: a masked weight is non-zero"
            for state in optimizer_state_tensors(opt, layer.weight):
                if not dense_state:
                    assert not state[~layer.mask].any(), f"{layer.name}: masked optimizer state is non-zero"
            if constant_counts and grows:
                assert layer.n_active == initial[layer.name]
            if updated and grows:
                assert not layer.weight[layer.mask & ~before].any(), "a newly grown weight is not zero"
            if not grows:
                assert not (layer.mask & ~before).any(), "a method that never grows grew a weight"
        if updated and conserves_total:
            dropped, grown = zip(*engine.last_update)
            assert sum(dropped) == sum(grown)
            if constant_counts:
                assert list(dropped) == list(grown)
        if conserves_total:
            assert sum(layer.n_active for layer in engine.layers) == total_active
        previous_masks = [layer.mask.clone() for layer in engine.layers]

    train(model, opt, engine, 400, check)
    assert updates == sum(method.is_update_step(step) for step in range(400))
    if drop_and_grow:
        assert updates == 300  # every step before T_end = 300 (update_timing: report_code)
    if dense_state:
        masked_state = [s[~layer.mask] for layer in engine.layers for s in optimizer_state_tensors(opt, layer.weight)]
        assert any(s.any() for s in masked_state)
    if method.name == "pruning":
        assert updates > 200 and engine.overall_density() == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize("stem", ENGINE_STEMS)
def test_masks_change_only_for_methods_that_update(stem, masking_for):
    model, opt, engine = make_run(masking_for(stem, density=0.2, delta_t=5), total_steps=100)
    start = [layer.mask.clone() for layer in engine.layers]
    train(model, opt, engine, 60)
    changed = any(not torch.equal(a, layer.mask) for a, layer in zip(start, engine.layers))
    assert changed == any(engine.method.is_update_step(step) for step in range(60))


def test_an_update_step_does_not_step_the_optimizer():
    masking = {"name": "rigl", "density": 0.3, "delta_t": 10, "regrown": "keep"}
    model, opt, engine = make_run(masking, total_steps=100)
    train(model, opt, engine, 9)
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


@pytest.mark.parametrize("stem", ["set", "rigl", "rigl_sm", "snfs", "pruning", "lottery"])
def test_checkpoint_round_trip_resumes_exactly(stem, masking_for):
    masking = masking_for(stem, density=0.2, delta_t=4)
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
    for layer, gradient_mask in zip(engine2.layers, engine2.gradient_masks):  # the loaded masks, not seed 99's
        assert torch.equal(gradient_mask.bool(), layer.mask)
    train(model2, opt2, engine2, 50)

    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name
    assert engine.layer_densities() == engine2.layer_densities()
    final, resumed = engine.state_dict(), engine2.state_dict()
    assert torch.equal(final["generator"], resumed["generator"]) and final["n_active"] == resumed["n_active"]
    for key, values in final["method"].items():
        assert all(torch.equal(x, y) for x, y in zip(values, resumed["method"][key])), key


def test_loading_a_checkpoint_whose_masks_disagree_with_its_counts_fails_clearly():
    model, opt, engine = make_run({"name": "rigl", "density": 0.2}, total_steps=50)
    state = engine.state_dict()
    first = engine.layers[1]
    first.mask.view(-1)[: first.size] = True
    with pytest.raises(ValueError, match="inconsistent"):
        engine.load_state_dict(state)


def test_loading_a_checkpoint_of_other_masked_layers_fails_in_one_line_naming_them():
    _, _, engine = make_run({"name": "rigl", "density": 0.2}, total_steps=50)
    state = engine.state_dict()
    state["n_active"] = {"conv.weight": 3}
    with pytest.raises(ConfigError, match=r"^the checkpoint's masked layers \(conv.weight\) are not this model's "
                       r"\(features.0.weight, .*\); delete it \(or move it away\)"):  # fmt: skip
        engine.load_state_dict(state)


def test_dense_method_attaches_no_masks_and_only_steps_the_optimizer():
    model, opt, engine = make_run({"name": "dense"}, total_steps=10)
    assert engine.layers == [] and engine.overall_density() == 1.0
    assert not any(name.endswith("weight_mask") for name in model.state_dict())
    weight = model.fc.weight.detach().clone()
    train(model, opt, engine, 1)
    assert not torch.equal(weight, model.fc.weight)


def test_every_registered_method_has_a_config_checked_here():
    from rigl_repro.sparsity import available_methods

    # a preset (rigl_sg) has its own file, which composes to the method it presets
    assert set(available_methods()) <= set(CONFIGS)
    for name, method in available_methods().items():
        assert CONFIGS[name]["name"] == (method.variant_of or name)


def test_gradient_masks_share_the_layout_of_channels_last_gradients():
    """Same dtype and strides as each gradient: the condition for CUDA's fused multi-tensor multiply."""
    model = small_cnn(width=0.25).to(memory_format=torch.channels_last)
    model, opt, engine = make_run({"name": "rigl", "density": 0.2, "delta_t": 1000}, model=model)
    inputs, targets = batch_for(0)
    nn.functional.cross_entropy(model(inputs.contiguous(memory_format=torch.channels_last)), targets).backward()
    convolutions = 0
    for layer, gradient_mask in zip(engine.layers, engine.gradient_masks):
        grad = layer.weight.grad
        assert gradient_mask.dtype == grad.dtype and gradient_mask.stride() == grad.stride(), layer.name
        convolutions += grad.dim() == 4 and grad.is_contiguous(memory_format=torch.channels_last)
    assert convolutions == 3
    assert engine.step() is False
    assert all(not layer.weight.grad[~layer.mask].any() for layer in engine.layers)


class HandWorked(DropAndGrow):
    """Two updates of one 2x4 layer whose choices are given: keep (by flat index) and grow, per update."""

    name = ""  # not a registered method
    plan_of_updates = [({0, 1}, {2, 4}), ({0, 4}, {5, 6})]

    def initial_counts(self):
        return [4]

    def initial_masks(self, counts):
        return [torch.tensor([[True, True, True, True], [False, False, False, False]])]

    def drop_counts(self, step):
        return [2]

    def grow_counts(self, step, dropped):
        return [2]

    def indicator(self, positions):
        scores = torch.zeros(8)
        scores[sorted(positions)] = 1.0
        return scores.view(2, 4)

    def drop_scores(self, layer):
        return self.indicator(self.plan_of_updates[self.done][0])

    def grow_scores(self, layer):
        scores = self.indicator(self.plan_of_updates[self.done][1])
        self.done += 1
        return scores


def test_mask_dynamics_on_a_hand_worked_example():
    model = nn.Linear(4, 2, bias=False)
    method = HandWorked(density=0.5, distribution="erk")
    method.done = 0
    engine = SparseEngine(model, torch.optim.SGD(model.parameters(), lr=0.1), method, total_steps=10)
    engine.update_topology(0)
    # Masks {0,1,2,3} -> keep {0,1}, grow {2,4} -> {0,1,2,4}: only 4 is new (2 was active before the update),
    # so 1 of the 4 active weights is replaced; 5 of the 8 weights have been active.
    engine.update_topology(1)
    # {0,1,2,4} -> keep {0,4}, grow {5,6} -> {0,4,5,6}: 2 of 4 replaced; 7 of 8 have been active.
    assert engine.read_mask_updates() == [
        {"step": 1, "replaced": 0.25, "layer_replaced": [0.25], "exploration": 0.625},
        {"step": 2, "replaced": 0.5, "layer_replaced": [0.5], "exploration": 0.875},
    ]
    assert engine.read_mask_updates() == []  # each update is read once
    assert engine.exploration() == {"weight": 0.875} and engine.overall_exploration() == 0.875


@pytest.mark.parametrize("name", ["static", "set", "rigl", "snfs", "pruning"])
def test_exploration_starts_at_the_density_and_only_grows(name, masking_for):
    model, opt, engine = make_run(masking_for(name, delta_t=10), total_steps=200)
    start = engine.overall_exploration()
    assert start == pytest.approx(engine.overall_density())
    rates = []
    train(model, opt, engine, 200, after_step=lambda updated: rates.append(engine.overall_exploration())
          if updated else None)  # fmt: skip
    updates = engine.read_mask_updates()
    assert [update["exploration"] for update in updates] == pytest.approx(rates)
    assert all(a <= b for a, b in zip([start, *rates], rates))
    assert all(0.0 <= update["replaced"] <= 1.0 for update in updates)
    if name in ("static", "pruning"):  # nothing is ever grown
        assert engine.overall_exploration() == start and all(update["replaced"] == 0 for update in updates)
    else:
        assert engine.overall_exploration() > start and max(update["replaced"] for update in updates) > 0
