"""The README's "Using the engine" code runs as written, on a model of one's own."""

import re
import textwrap
import warnings
from pathlib import Path

import torch
from torch import nn

README = Path(__file__).resolve().parents[2] / "README.md"


def engine_section_code() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Using the engine\n") : text.index("### Methods and options")]
    return [textwrap.dedent(block) for block in re.findall(r"```python\n(.*?)```", section, flags=re.S)]


def test_the_readme_engine_snippets_run_as_written():
    blocks = engine_section_code()
    assert len(blocks) >= 3  # the loop, the policy, mixed precision
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    batches = [(torch.randn(8, 12), torch.randint(0, 3, (8,))) for _ in range(6)]
    namespace = {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                 "batches": batches, "train_loader": batches, "epochs": 2, "loss_fn": nn.functional.cross_entropy,
                 "nn": nn}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small model's biases are over a tenth of it
        exec(blocks[0], namespace)
        engine = namespace["engine"]
        assert engine.step_count == len(batches) and namespace["total_steps"] == 12
        assert set(namespace["checkpoint"]) == {"model", "optimizer", "engine"}
        exec(blocks[1], namespace)
        assert [layer.name for layer in namespace["engine"].layers] == ["0.weight", "2.weight", "4.weight"]
    scaler = torch.amp.GradScaler("cpu")
    inputs, targets = batches[0]
    loss = nn.functional.cross_entropy(model(inputs), targets)
    exec(blocks[2], {**namespace, "scaler": scaler, "loss": loss, "engine": engine})
    assert engine.step_count == len(batches) + 1
