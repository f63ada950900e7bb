"""The engine on models that are not the report's: which weights are sparse (the mask policy), Uniform's
first layer found by tracing, the densities it reports, the names of the methods, the schedule length, and
mixed precision with a GradScaler (issue 26)."""

import warnings

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from rigl_repro.errors import ConfigError
from rigl_repro.models import meta_model
from rigl_repro.sparsity import SparseEngine, build_method
from rigl_repro.sparsity.engine import DenseWeightsWarning
from rigl_repro.sparsity.masks import MaskPolicy, sparsifiable_weights, weight_shapes
from rigl_repro.sparsity.schedules import steps_for
from rigl_repro.sparsity.tracing import input_layer
from tests.helpers import compose_config


class TinyTransformer(nn.Module):
    """The issue's model: Embedding, Conv1d, MultiheadAttention, Linear and LayerNorm; the head is registered
    first, so the first module registered is not the one that reads the input."""

    def __init__(self, vocabulary: int = 64, width: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.head = nn.Linear(width, classes)
        self.embedding = nn.Embedding(vocabulary, width)
        self.mixer = nn.Conv1d(width, width, 3, padding=1)
        self.attention = nn.MultiheadAttention(width, 4, batch_first=True)
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embedding(tokens)
        h = h + self.mixer(h.transpose(1, 2)).transpose(1, 2)
        h = h + self.attention(h, h, h, need_weights=False)[0]
        return self.head(self.norm(h).mean(dim=1))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, 10))  # fmt: skip


def engine_for(model, masking, policy=MaskPolicy(), **options):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DenseWeightsWarning)
        return SparseEngine(model, optimizer, build_method(masking), 200, seed=0, policy=policy, **options), optimizer


TRANSFORMER_WEIGHTS = ["head.weight", "embedding.weight", "mixer.weight", "attention.in_proj_weight",
                       "attention.out_proj.weight"]  # fmt: skip


def test_every_weight_matrix_of_a_transformer_takes_part_and_norms_and_biases_stay_dense():
    assert list(weight_shapes(TinyTransformer())) == TRANSFORMER_WEIGHTS


def test_types_and_patterns_include_and_exclude():
    model = TinyTransformer()
    no_attention = MaskPolicy.of(exclude=[nn.MultiheadAttention])  # its output projection with it
    assert list(weight_shapes(model, no_attention)) == ["head.weight", "embedding.weight", "mixer.weight"]
    assert "embedding.weight" not in weight_shapes(model, MaskPolicy.of(exclude=["embedding.*"]))
    only_linear = MaskPolicy.of(modules=[nn.Linear])
    assert list(weight_shapes(model, only_linear)) == ["head.weight", "attention.out_proj.weight"]
    norm = MaskPolicy.of(modules=[nn.Linear], include=["norm.weight"])
    assert "norm.weight" in weight_shapes(model, norm)
    with pytest.raises(ConfigError, match="masks cover weights only"):
        weight_shapes(model, MaskPolicy.of(include=["norm.bias"]))
    with pytest.raises(ConfigError, match="sparse=True"):
        weight_shapes(nn.Sequential(nn.Embedding(10, 4, sparse=True)))


@pytest.mark.parametrize("model", ["lenet5", "small_cnn", "wrn22_2", "resnet50"])
def test_the_report_models_keep_exactly_their_conv_and_linear_masks(model):
    config = OmegaConf.to_container(compose_config(f"model={model}").model, resolve=True)
    built = meta_model(config, 10)
    before = [f"{name}.weight" for name, module in built.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    weights = weight_shapes(built)
    assert list(weights) == before
    # fx traces the report's models, and the layer that reads the input is the first registered: Uniform keeps
    # the same layer dense as before tracing existed
    assert input_layer(built, sparsifiable_weights(built)) == before[0]


def test_uniform_keeps_dense_the_layer_that_reads_the_input_found_by_tracing():
    model = TinyTransformer()
    engine, _ = engine_for(model, {"name": "static", "density": 0.1, "distribution": "uniform"})
    densities = engine.layer_densities()
    assert densities["embedding.weight"] == 1.0  # not head.weight, the first registered
    assert all(abs(density - 0.1) < 0.01 for name, density in densities.items() if name != "embedding.weight")
    named, _ = engine_for(TinyTransformer(), {"name": "static", "density": 0.1, "distribution": "uniform"},
                          first_layer="mixer.weight")  # fmt: skip
    assert named.layer_densities()["mixer.weight"] == 1.0
    run, _ = engine_for(TinyTransformer(), {"name": "static", "density": 0.1, "distribution": "uniform"},
                        example_input=torch.zeros(2, 6, dtype=torch.long))  # fmt: skip
    assert run.layer_densities()["embedding.weight"] == 1.0
    with pytest.raises(ConfigError, match="first_layer='nope' is not a masked weight"):
        engine_for(TinyTransformer(), {"name": "static", "density": 0.1}, first_layer="nope")


def test_the_engine_reports_budgeted_and_model_densities_and_warns_when_much_stays_dense():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(DenseWeightsWarning, match="stay dense"):
        engine = SparseEngine(model, optimizer, build_method({"name": "static", "distribution": "uniform"}), 10)
    assert abs(engine.budgeted_density() - 0.1) < 1e-3
    total = sum(p.numel() for p in model.parameters())
    dense = 784 * 300 + sum(p.numel() for name, p in model.named_parameters() if name.endswith("bias"))
    assert engine.model_density() == pytest.approx((dense + engine.active_counts()[1] + engine.active_counts()[2])
                                                   / total)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", DenseWeightsWarning)  # ERK budgets every layer: no warning
        SparseEngine(mlp(), torch.optim.SGD(mlp().parameters(), lr=0.1), build_method({"name": "static",
                     "distribution": "erk"}), 10)  # fmt: skip


METHODS = [
    {"name": "static"}, {"name": "set"}, {"name": "rigl"}, {"name": "rigl_sg"}, {"name": "rigl_sm"},
    {"name": "snfs"}, {"name": "pruning", "start_fraction": 0.1, "end_fraction": 0.5},
]  # fmt: skip


@pytest.mark.parametrize("masking", METHODS, ids=[m["name"] for m in METHODS])
def test_a_tiny_transformer_trains_under_every_method_at_the_density_it_asked_for(masking):
    torch.manual_seed(0)
    model = TinyTransformer()
    extra = {} if masking["name"] == "pruning" else {"delta_t": 5, "alpha": 0.3}
    if masking["name"] == "static":
        extra = {}
    engine, optimizer = engine_for(model, {**masking, "density": 0.1, "distribution": "erk", **extra})
    tokens, labels = torch.randint(0, 64, (16, 6)), torch.randint(0, 5, (16,))
    updates = 0
    for _ in range(120):
        nn.functional.cross_entropy(model(tokens), labels).backward()
        updates += engine.step()
        optimizer.zero_grad(set_to_none=True)
    assert set(engine.layer_densities()) == set(TRANSFORMER_WEIGHTS)
    assert abs(engine.budgeted_density() - 0.1) < 0.005
    for layer in engine.layers:
        assert int(layer.mask.sum()) == layer.n_active
        assert torch.count_nonzero(layer.weight * ~layer.mask) == 0
    assert updates > 0 or masking["name"] == "static"


def test_methods_have_one_name_and_the_engine_refuses_what_it_cannot_run():
    assert build_method({"name": "rigl_sg"}).redistribution == "grad"
    assert build_method({"name": "rigl_sm"}).redistribution == "momentum"
    with pytest.raises(ConfigError, match="contradicts method 'rigl_sg'"):
        build_method({"name": "rigl_sg", "redistribution": "momentum"})
    model = nn.Linear(4, 4)
    with pytest.raises(ConfigError, match="small_dense changes the model, not its masks"):
        SparseEngine(model, torch.optim.SGD(model.parameters(), lr=0.1), build_method({"name": "small_dense"}), 10)


def test_the_schedule_length_is_epochs_times_steps():
    assert steps_for(3, 469) == 1407
    for bad in ((0, 10), (2, 0), (2.5, 10), (True, 3)):
        with pytest.raises(ConfigError, match="must be a whole number >= 1"):
            steps_for(*bad)


def test_an_inf_step_under_a_grad_scaler_is_skipped_and_not_counted():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    engine, optimizer = engine_for(model, {"name": "rigl", "density": 0.5, "distribution": "erk", "delta_t": 2})
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    inputs, labels = torch.randn(4, 8), torch.randint(0, 4, (4,))

    def step(poison: bool) -> bool:
        loss = nn.functional.cross_entropy(model(inputs), labels)
        scaler.scale(loss * (float("inf") if poison else 1.0)).backward()
        result = engine.step(scaler)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return result

    assert step(False) is False and engine.step_count == 1  # step 0 steps the optimizer
    before = [p.detach().clone() for p in model.parameters()]
    masks = [layer.mask.clone() for layer in engine.layers]
    assert step(True) is False and engine.step_count == 1  # skipped: neither counted nor stepped
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert scaler.get_scale() == 2.0**7  # the scaler saw the inf
    assert step(False) is True and engine.step_count == 2  # step 1 is RigL's update (delta_t=2)
    assert any(not torch.equal(a, layer.mask) for a, layer in zip(masks, engine.layers))
    for layer in engine.layers:
        assert torch.count_nonzero(layer.weight * ~layer.mask) == 0


def test_tracing_runs_no_code_of_modules_without_masked_weights():
    class Counting(nn.Module):  # like a batch norm that reduces across processes: its forward has effects
        calls = 0

        def forward(self, x):
            Counting.calls += 1
            return x

    model = nn.Sequential(Counting(), nn.Linear(4, 4), Counting(), nn.Linear(4, 2))
    assert input_layer(model, sparsifiable_weights(model)) == "1.weight" and Counting.calls == 0
