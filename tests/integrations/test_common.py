"""The engine's take-over of optimizer.step, which both framework callbacks rely on."""

import pytest
import torch
from torch import nn

from rigl_repro.sparsity import SparseEngine, build_method

RIGL = {"name": "rigl", "density": 0.2, "distribution": "erk", "delta_t": 3, "alpha": 0.3}


def setup(method=RIGL):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    engine = SparseEngine(model, optimizer, build_method(method), 30, seed=1)
    batches = [(torch.randn(8, 10), torch.randint(0, 3, (8,))) for _ in range(9)]
    return model, optimizer, engine, batches


def test_optimizer_step_with_a_closure_is_engine_step():
    model, optimizer, engine, batches = setup()
    twin_model, twin_optimizer, twin, _ = setup()
    engine.take_over_optimizer_step()
    for inputs, targets in batches:

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
            return loss

        assert torch.is_tensor(optimizer.step(closure))
        twin_optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(twin_model(inputs), targets).backward()
        twin.step()
    assert engine.step_count == twin.step_count == len(batches)
    assert engine.topology_log == twin.topology_log and len(engine.topology_log) == 4
    for ours, theirs in zip(model.state_dict().values(), twin_model.state_dict().values()):
        assert torch.equal(ours, theirs)


def test_a_closure_that_returns_none_skips_the_step():
    model, optimizer, engine, _ = setup()
    engine.take_over_optimizer_step()
    before = [p.clone() for p in model.parameters()]
    assert optimizer.step(lambda: None) is None
    assert engine.step_count == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_engine_step_is_refused_once_the_optimizer_step_is_taken_over():
    _, _, engine, _ = setup()
    engine.take_over_optimizer_step()
    engine.take_over_optimizer_step()  # twice is once
    with pytest.raises(RuntimeError, match="call optimizer.step"):
        engine.step()


def test_a_scaler_wrapping_the_optimizer_skips_inf_steps_uncounted():
    model, optimizer, engine, batches = setup()
    engine.take_over_optimizer_step()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    for index, (inputs, targets) in enumerate(batches):
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(inputs), targets)
        if index == 2:
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        scaler.step(optimizer)  # as Lightning's and Accelerate's mixed precision call it
        scaler.update()
    assert engine.step_count == len(batches) - 1
    for layer in engine.layers:
        assert not layer.weight[~layer.mask].any()


def test_an_lr_scheduler_built_after_the_take_over_wraps_it():
    model, optimizer, engine, batches = setup()
    engine.take_over_optimizer_step()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    for inputs, targets in batches[:4]:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
        scheduler.step()
    assert engine.step_count == 4 and optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1**2)
