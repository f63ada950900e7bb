"""The Lightning callback: sparse under every method, the same run as the plain engine, exact resume from
Lightning's own checkpoints, statistics through Lightning's logger."""

import logging

import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from rigl_repro.errors import ConfigError  # noqa: E402
from rigl_repro.integrations.lightning import SparseTraining  # noqa: E402
from rigl_repro.sparsity import SparseEngine, build_method  # noqa: E402
from tests.integrations import RIGL, masked_layers, short_run_options  # noqa: E402

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

EPOCHS, BATCHES = 4, 8


def data() -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(BATCHES * 16, 20, generator=generator)
    targets = (inputs[:, :4].argmax(dim=1) + (inputs[:, 4] > 0)) % 4
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, targets), batch_size=16)


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))


def optimizer_for(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


class Classifier(pl.LightningModule):
    def __init__(self, optimizers: int = 1) -> None:
        super().__init__()
        self.net, self.optimizers_wanted = network(), optimizers
        self.automatic_optimization = optimizers == 1  # Lightning steps several optimizers only manually

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def training_step(self, batch, batch_index):
        inputs, targets = batch
        return nn.functional.cross_entropy(self(inputs), targets)

    def configure_optimizers(self):
        if self.optimizers_wanted == 1:
            return optimizer_for(self)
        return [optimizer_for(self) for _ in range(self.optimizers_wanted)]


def trainer(tmp_path, epochs: int = EPOCHS, **options) -> pl.Trainer:
    options = {"logger": False, "enable_checkpointing": False, **options}
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, **options)  # fmt: skip


@pytest.mark.parametrize("method", ["static", "set", "rigl", "rigl_sg", "snfs", "pruning"])
def test_every_method_keeps_the_module_sparse_at_its_density(tmp_path, method):
    options = short_run_options(method)
    module, callback = Classifier(), SparseTraining(options)
    trainer(tmp_path, callbacks=[callback]).fit(module, data())
    engine = callback.engine
    assert engine.step_count == EPOCHS * BATCHES
    assert abs(engine.budgeted_density() - 0.2) < 0.01
    for weight, mask in masked_layers(module):
        assert not weight[~mask].any()
    if method in ("set", "rigl", "rigl_sg", "snfs"):
        assert len(engine.topology_log) > 1  # the topology changed during fit


def test_a_lightning_run_is_the_plain_engine_s_run_bit_for_bit(tmp_path):
    module, callback = Classifier(), SparseTraining(RIGL, seed=3)
    trainer(tmp_path, callbacks=[callback]).fit(module, data())

    model = network()
    optimizer = optimizer_for(model)
    engine = SparseEngine(model, optimizer, build_method(RIGL), EPOCHS * BATCHES, seed=3)
    for _ in range(EPOCHS):
        for inputs, targets in data():
            nn.functional.cross_entropy(model(inputs), targets).backward()
            engine.step()
            optimizer.zero_grad(set_to_none=True)
    assert callback.engine.topology_log == engine.topology_log
    for (name, ours), theirs in zip(module.net.state_dict().items(), model.state_dict().values()):
        assert torch.equal(ours, theirs), name


def test_resuming_from_a_lightning_checkpoint_continues_bit_for_bit(tmp_path):
    straight, straight_callback = Classifier(), SparseTraining(RIGL)
    trainer(tmp_path / "straight", callbacks=[straight_callback]).fit(straight, data())

    class StopAfterTwoEpochs(pl.Callback):  # a run cut short: its schedule is still the whole run's
        def on_train_epoch_end(self, trainer, pl_module):
            trainer.should_stop = trainer.current_epoch == 1

    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    cut = [SparseTraining(RIGL), StopAfterTwoEpochs(), checkpoints]
    trainer(tmp_path / "cut", enable_checkpointing=True, callbacks=cut).fit(Classifier(), data())
    assert cut[0].engine.step_count == 2 * BATCHES
    resumed, resumed_callback = Classifier(), SparseTraining(RIGL)
    trainer(tmp_path / "resumed", enable_checkpointing=True, callbacks=[resumed_callback, checkpoints]).fit(
        resumed, data(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt")
    )
    assert resumed_callback.engine.step_count == straight_callback.engine.step_count == EPOCHS * BATCHES
    assert resumed_callback.engine.topology_log == straight_callback.engine.topology_log
    for (name, ours), theirs in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.equal(ours, theirs), name


def test_mask_statistics_reach_lightning_s_logger(tmp_path):
    logger = pl.loggers.CSVLogger(tmp_path, name="run")
    module = Classifier()
    trainer(tmp_path, logger=logger, callbacks=[SparseTraining(RIGL)]).fit(module, data())
    lines = (tmp_path / "run" / "version_0" / "metrics.csv").read_text().splitlines()
    header, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    assert len(rows) == EPOCHS
    density = [float(row[header.index("sparsity/density")]) for row in rows]
    assert density == pytest.approx([0.2] * EPOCHS, abs=0.01)
    updates = [float(row[header.index("sparsity/updates")]) for row in rows]
    # every delta_t=5 steps while t < T_end = 0.75 x 32: after steps 5, 10, 15 and 20, in epochs 1, 2, 2 and 3
    assert updates == [1.0, 2.0, 1.0, 0.0]
    assert {"sparsity/model_density", "sparsity/exploration", "sparsity/replaced"} <= set(header)


def test_two_optimizers_are_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="exactly one optimizer"):
        trainer(tmp_path, callbacks=[SparseTraining(RIGL)]).fit(Classifier(optimizers=2), data())


def test_the_readme_lightning_snippet_runs_as_written(tmp_path, monkeypatch):
    from tests.sparsity.test_readme_engine import engine_section_code

    (block,) = [code for code in engine_section_code() if "integrations.lightning" in code]
    monkeypatch.chdir(tmp_path)  # Lightning writes its logs and checkpoints under the working directory
    namespace = {"module": Classifier(), "train_loader": data(), "epochs": 2}
    exec(block, namespace)
    engine = namespace["sparse"].engine
    assert engine.step_count == 2 * BATCHES and abs(engine.budgeted_density() - 0.1) < 0.01
