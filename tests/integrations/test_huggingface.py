"""The Hugging Face Trainer callback: sparse under every method, the same run as the plain engine, exact resume
from the Trainer's own checkpoints, statistics in every log record."""

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from rigl_repro.errors import ConfigError  # noqa: E402
from rigl_repro.integrations.huggingface import ENGINE_FILE, SparseTrainingCallback  # noqa: E402
from rigl_repro.sparsity import SparseEngine, build_method  # noqa: E402
from tests.integrations import RIGL, masked_layers, short_run_options  # noqa: E402

EPOCHS, BATCHES, BATCH_SIZE = 4, 8, 16


class Examples(torch.utils.data.Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(BATCHES * BATCH_SIZE, 20, generator=generator)
        self.labels = (self.inputs[:, :4].argmax(dim=1) + (self.inputs[:, 4] > 0)) % 4

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"inputs": self.inputs[index], "labels": self.labels[index]}


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.net(inputs)
        if labels is None:
            return {"logits": logits}
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def arguments(tmp_path, **options) -> "transformers.TrainingArguments":
    options = {"save_strategy": "no", "num_train_epochs": EPOCHS, **options}
    return transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=BATCH_SIZE,
        learning_rate=0.05, lr_scheduler_type="constant", optim="sgd", weight_decay=0.0, max_grad_norm=0.0,
        logging_strategy="epoch", report_to="none", use_cpu=True, disable_tqdm=True, seed=0,
        dataloader_num_workers=0, **options,
    )  # fmt: skip


def train(tmp_path, callback, resume=None, **options) -> tuple[Classifier, "transformers.Trainer"]:
    model = Classifier()
    trainer = transformers.Trainer(model=model, args=arguments(tmp_path, **options), train_dataset=Examples(),
                                   callbacks=[callback])  # fmt: skip
    trainer.train(resume_from_checkpoint=resume)
    return model, trainer


@pytest.mark.parametrize("method", ["static", "set", "rigl", "rigl_sm", "snfs", "pruning"])
def test_every_method_keeps_the_model_sparse_at_its_density(tmp_path, method):
    options = short_run_options(method)
    callback = SparseTrainingCallback(options)
    model, _ = train(tmp_path, callback)
    engine = callback.engine
    assert engine.step_count == EPOCHS * BATCHES
    assert abs(engine.budgeted_density() - 0.2) < 0.01
    for weight, mask in masked_layers(model):
        assert not weight[~mask].any()
    if method in ("set", "rigl", "rigl_sm", "snfs"):
        assert len(engine.topology_log) > 1


def test_a_trainer_run_is_the_plain_engine_s_run_bit_for_bit(tmp_path):
    callback, examples = SparseTrainingCallback(RIGL, seed=3), RecordingExamples()
    model = Classifier()
    transformers.Trainer(model=model, args=arguments(tmp_path), train_dataset=examples, callbacks=[callback]).train()

    plain = Classifier()
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.05)
    engine = SparseEngine(plain, optimizer, build_method(RIGL), EPOCHS * BATCHES, seed=3)
    for start in range(0, len(examples.order), BATCH_SIZE):  # the Trainer's batches, in its order
        batch = examples.order[start : start + BATCH_SIZE]
        plain(examples.inputs[batch], examples.labels[batch])["loss"].backward()
        engine.step()
        optimizer.zero_grad(set_to_none=True)
    assert len(examples.order) == EPOCHS * BATCHES * BATCH_SIZE
    assert callback.engine.topology_log == engine.topology_log
    for (name, ours), theirs in zip(model.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(ours, theirs), name


class RecordingExamples(Examples):
    """The examples, recording the order the Trainer's sampler reads them in."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[int] = []

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self.order.append(index)
        return super().__getitem__(index)


def test_resuming_from_a_trainer_checkpoint_continues_bit_for_bit(tmp_path):
    straight_callback = SparseTrainingCallback(RIGL)
    straight, _ = train(tmp_path / "straight", straight_callback)

    class StopAfterTwoEpochs(transformers.TrainerCallback):  # a run cut short: its schedule is the whole run's
        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.epoch >= 2

    callbacks = [SparseTrainingCallback(RIGL), StopAfterTwoEpochs()]
    cut = transformers.Trainer(model=Classifier(), args=arguments(tmp_path / "run", save_strategy="epoch"),
                               train_dataset=Examples(), callbacks=callbacks)  # fmt: skip
    cut.train()
    assert (tmp_path / "run" / f"checkpoint-{2 * BATCHES}" / ENGINE_FILE).is_file()

    resumed_callback = SparseTrainingCallback(RIGL)
    resumed, _ = train(tmp_path / "run", resumed_callback, resume=True, save_strategy="epoch")
    assert resumed_callback.engine.step_count == straight_callback.engine.step_count == EPOCHS * BATCHES
    assert resumed_callback.engine.topology_log == straight_callback.engine.topology_log
    for (name, ours), theirs in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.equal(ours, theirs), name


def test_a_checkpoint_without_the_engine_s_state_is_refused_in_one_line(tmp_path):
    cut = transformers.Trainer(model=Classifier(), args=arguments(tmp_path, save_strategy="epoch", num_train_epochs=1),
                               train_dataset=Examples(), callbacks=[SparseTrainingCallback(RIGL)])  # fmt: skip
    cut.train()
    (tmp_path / f"checkpoint-{BATCHES}" / ENGINE_FILE).unlink()
    with pytest.raises(ConfigError, match="resume_from=FOLDER"):
        train(tmp_path, SparseTrainingCallback(RIGL), resume=True)


def test_mask_statistics_are_in_every_log_record(tmp_path):
    _, trainer = train(tmp_path, SparseTrainingCallback(RIGL))
    records = [record for record in trainer.state.log_history if "loss" in record]
    assert len(records) == EPOCHS
    assert [record["sparsity/density"] for record in records] == pytest.approx([0.2] * EPOCHS, abs=0.01)
    # every delta_t=5 steps while t < T_end = 0.75 x 32: after steps 5, 10, 15 and 20, in epochs 1, 2, 2 and 3
    assert [record["sparsity/updates"] for record in records] == [1.0, 2.0, 1.0, 0.0]
    assert {"sparsity/model_density", "sparsity/exploration", "sparsity/replaced"} <= set(records[0])


def test_the_readme_trainer_snippet_runs_as_written(tmp_path):
    from tests.sparsity.test_readme_engine import engine_section_code

    (block,) = [code for code in engine_section_code() if "integrations.huggingface" in code]
    namespace = {"model": Classifier(), "arguments": arguments(tmp_path), "dataset": Examples()}
    exec(block, namespace)
    engine = namespace["sparse"].engine
    assert engine.step_count == EPOCHS * BATCHES and abs(engine.budgeted_density() - 0.1) < 0.01
