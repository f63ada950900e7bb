"""Data-parallel training on the CPU (gloo): two processes train one run with the masks of one run.

The ranks are spawned here with torchrun's variables (``run_ranks``); ``main.py`` under torchrun itself is
tested in tests/test_main.py and the SLURM job of two tasks in tests/e2e/test_slurm.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from rigl_repro.launchers import Launch
from rigl_repro.run.config import RunConfig
from rigl_repro.training.batchnorm import GlobalBatchNorm
from rigl_repro.training.distributed import DataParallel, ReplicasDiverged, start_processes
from rigl_repro.training.preemption import Stopped
from rigl_repro.training.trainer import Trainer
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[2]
RUN = ["scale=smoke", "train.epochs=3", "threads=1"]  # 20 steps an epoch, an update every 8 until step 45


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def join(rank: int, world_size: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)


def train_rank(rank: int, world_size: int, port: int, run_dir: Path, overrides: list[str], stop_at: int) -> None:
    """One rank of a run: its masks after every topology update, its final state and summary, saved to
    ``run_dir/rank<N>.pt``. With ``stop_at``, rank 0 alone is told to stop (SIGUSR2) after that step."""
    if world_size > 1:
        join(rank, world_size, port)
    cfg = compose_config(*RUN, *overrides)
    config = RunConfig.from_hydra(cfg)
    replicas = start_processes(config.distributed, torch.device("cpu"), config.train.batch_size)
    masks: list[list[torch.Tensor]] = []
    summary = None
    try:
        trainer = Trainer(config, run_dir, replicas)
        engine, update, step = trainer.engine, trainer.engine.update_topology, trainer.engine.step

        def recorded_update(at: int) -> None:
            update(at)
            masks.append([layer.mask.clone() for layer in engine.layers])

        def step_then_signal() -> bool:
            updated = step()
            if engine.step_count == stop_at and rank == 0:
                signal.raise_signal(signal.SIGUSR2)
            return updated

        engine.update_topology, engine.step = recorded_update, step_then_signal
        signal.signal(signal.SIGUSR2, lambda *_: None)  # the launcher's handler, which returns
        try:
            summary = trainer.fit()
        except Stopped:
            pass
        state = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    finally:
        replicas.close()
    torch.save({"masks": masks, "summary": summary, "state": state}, run_dir / f"rank{rank}.pt")


def run_ranks(run_dir: Path, overrides: list[str], world_size: int = 2, stop_at: int = -1) -> list[dict]:
    """Train in ``world_size`` processes (in this one for a world of one); every rank's record."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if world_size == 1:
        train_rank(0, 1, 0, run_dir, overrides, stop_at)
    else:
        mp.start_processes(train_rank, args=(world_size, free_port(), run_dir, overrides, stop_at),
                           nprocs=world_size, start_method="spawn")  # fmt: skip
    return [torch.load(run_dir / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)]


@pytest.fixture(scope="module")
def rigl_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rigl")
    return run_ranks(root / "one", ["masking=rigl"], world_size=1)[0], run_ranks(root / "two", ["masking=rigl"])


def assert_same_masks_on_every_rank(records: list[dict], updates: int) -> None:
    first = records[0]["masks"]
    assert len(first) == updates
    for other in records[1:]:
        assert len(other["masks"]) == len(first)
        for update, (ours, theirs) in enumerate(zip(first, other["masks"])):
            assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), f"masks differ after update {update}"


def test_two_ranks_train_the_single_process_run_with_identical_masks(rigl_runs):
    one, two = rigl_runs
    assert_same_masks_on_every_rank(two, updates=5)  # at steps 8, 16, ..., 40 of 60
    assert all(torch.equal(two[0]["state"][k], two[1]["state"][k]) for k in two[0]["state"])  # one network

    # Against one process: the same images, augmentations and global-batch statistics, summed in another order.
    # Stated tolerance: losses within 1e-4, accuracies within one image, at most 1% of mask positions differ.
    for single, double in zip(one["masks"], two[0]["masks"]):
        differing = sum(int((a != b).sum()) for a, b in zip(single, double))
        assert differing <= 0.01 * sum(a.numel() for a in single)
    summary, parallel = one["summary"], two[0]["summary"]
    assert parallel["processes"] == 2 and summary["processes"] == 1
    for ours, theirs in zip(summary["history"], parallel["history"]):
        assert abs(ours["train_loss"] - theirs["train_loss"]) < 1e-4
        assert abs(ours["train_acc"] - theirs["train_acc"]) <= 1 / 1247 + 1e-12  # 1247 training images
        assert abs(ours["val_acc"] - theirs["val_acc"]) <= 1 / 250 + 1e-12
    assert abs(summary["test_acc"] - parallel["test_acc"]) <= 1 / 300 + 1e-12
    assert summary["density"] == parallel["density"] and summary["flops"] == parallel["flops"]
    assert two[1]["summary"]["test_acc"] == parallel["test_acc"]  # the summed counts, on every rank


@pytest.mark.parametrize("overrides", [  # SET and SRigL by default; the others (9 s each) with make test-slow
    ["masking=set"],
    ["masking=srigl"],  # a structure, with counts the ablation leaves (read once per update on every rank)
    pytest.param(["masking=rigl", "masking.structure=nm"], marks=pytest.mark.slow),
    pytest.param(["masking=snfs"], marks=pytest.mark.slow),
    pytest.param(["distributed.sync_batchnorm=false"], marks=pytest.mark.slow),
])  # fmt: skip
def test_set_snfs_and_per_process_batch_norm_keep_one_network_on_two_ranks(tmp_path, overrides):
    records = run_ranks(tmp_path, [*overrides, "train.epochs=2"])
    assert_same_masks_on_every_rank(records, updates=3)  # at steps 8, 16 and 24 of 40
    assert records[0]["summary"]["val_acc"] == records[1]["summary"]["val_acc"]
    # Batch-norm statistics too: each rank's own part normalised alone, rank 0's running statistics shared
    # before evaluation and checkpoints, as DistributedDataParallel's buffer broadcast would.
    assert all(torch.equal(records[0]["state"][k], records[1]["state"][k]) for k in records[0]["state"])


@pytest.mark.slow  # 20 s: three two-rank runs; single-process exact resume and two-rank masks are tested by default
def test_a_two_rank_run_stopped_on_one_rank_resumes_as_if_never_cut(tmp_path, rigl_runs):
    _, whole = rigl_runs
    cut = run_ranks(tmp_path, ["masking=rigl"], stop_at=27)  # mid-epoch 2, after the update at step 24
    assert all(record["summary"] is None for record in cut)  # both ranks stopped, though one was told to
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert checkpoint["engine"]["step"] == 28  # the stop agreed on one step after the signal
    assert checkpoint["epoch_in_progress"]["loss_sum"].shape == (2,)  # each rank's sum

    alone = tmp_path / "alone"  # the same checkpoint, resumed by one process: rank 0 takes both ranks' sums
    alone.mkdir()
    (alone / "checkpoint.pt").write_bytes((tmp_path / "checkpoint.pt").read_bytes())
    (single,) = run_ranks(alone, ["masking=rigl"], world_size=1)
    for ours, theirs in zip(single["summary"]["history"], whole[0]["summary"]["history"], strict=True):
        assert abs(ours["train_loss"] - theirs["train_loss"]) < 1e-4 and ours["step"] == theirs["step"]

    resumed = run_ranks(tmp_path, ["masking=rigl"])
    for rank in range(2):
        final, expected = resumed[rank]["summary"], whole[rank]["summary"]
        assert [{k: v for k, v in epoch.items() if k != "images_per_s"} for epoch in final["history"]] == [
            {k: v for k, v in epoch.items() if k != "images_per_s"} for epoch in expected["history"]
        ]
        assert (final["test_acc"], final["val_acc"]) == (expected["test_acc"], expected["val_acc"])
        assert all(torch.equal(resumed[rank]["state"][k], value) for k, value in whole[rank]["state"].items())


def batch_norm_rank(rank: int, world_size: int, port: int, result_dir: Path) -> None:
    join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    inputs = torch.randn(7, 3, 4, 4) * 3 + 1  # 7 images: parts of 3 and 4
    norm = GlobalBatchNorm.convert(nn.Sequential(nn.BatchNorm2d(3)))
    part = inputs[DataParallel(Launch(rank, world_size)).part(7)].clone().requires_grad_()
    output = norm(part)
    (output * torch.arange(output.numel()).view_as(output)).sum().backward()  # its share of a global loss
    parameter_grads = torch.stack([norm[0].weight.grad, norm[0].bias.grad])
    dist.all_reduce(parameter_grads)
    torch.save({"output": output.detach(), "grad": part.grad, "parameter_grads": parameter_grads,
                "running": (norm[0].running_mean, norm[0].running_var)}, result_dir / f"rank{rank}.pt")  # fmt: skip
    dist.destroy_process_group()


def test_global_batch_norm_on_two_ranks_is_batch_norm_on_the_whole_batch(tmp_path):
    mp.start_processes(batch_norm_rank, args=(2, free_port(), tmp_path), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]

    torch.manual_seed(0)
    inputs = (torch.randn(7, 3, 4, 4) * 3 + 1).requires_grad_()
    norm = nn.BatchNorm2d(3)
    output = norm(inputs)
    weights = torch.cat([torch.arange(3 * 48).view(3, 3, 4, 4), torch.arange(4 * 48).view(4, 3, 4, 4)])
    (output * weights).sum().backward()
    torch.testing.assert_close(torch.cat([r["output"] for r in ranks]), output.detach())
    torch.testing.assert_close(torch.cat([r["grad"] for r in ranks]), inputs.grad)
    expected = torch.stack([norm.weight.grad, norm.bias.grad])  # sums of 112 terms of ~1e3, in another order
    torch.testing.assert_close(ranks[0]["parameter_grads"], expected, rtol=1e-5, atol=0)
    for rank in ranks:
        torch.testing.assert_close(rank["running"][0], norm.running_mean)
        torch.testing.assert_close(rank["running"][1], norm.running_var)


def failing_rank(rank: int, world_size: int, port: int, run_dir: Path) -> None:
    """Rank 0 cannot write the run folder; what each rank raised goes to ``run_dir/error<N>.txt``."""
    import rigl_repro.training.processes as processes_module
    from rigl_repro.training.session import run

    join(rank, world_size, port)

    def full_disk(*_):
        raise OSError("No space left on device")

    if rank == 0:
        processes_module.save_checkpoint = full_disk  # the writing process's checkpoints
    try:
        run(compose_config(*RUN, "masking=rigl"), run_dir)
    except Exception as error:  # noqa: BLE001
        (run_dir / f"error{rank}.txt").write_text(f"{type(error).__name__}: {error}")


def test_a_rank_that_fails_stops_the_others_at_once_in_one_line(tmp_path):
    mp.start_processes(failing_rank, args=(2, free_port(), tmp_path), nprocs=2, start_method="spawn")
    assert (tmp_path / "error0.txt").read_text() == "OSError: No space left on device"
    told = (tmp_path / "error1.txt").read_text()
    assert told.startswith("ReplicasDiverged: another process of this run stopped (")
    assert told.endswith("its log says why") and "\n" not in told


def test_every_rank_but_0_draws_dropout_from_a_stream_of_its_own():
    def draws(rank: int) -> torch.Tensor:
        torch.manual_seed(7)
        DataParallel(Launch(rank, 4)).seed_own_stream(7)
        return torch.rand(8)

    single = torch.Generator().manual_seed(7)
    assert torch.equal(draws(0), torch.rand(8, generator=single))  # rank 0 keeps the single process's stream
    streams = [draws(rank) for rank in range(4)]
    assert all(not torch.equal(streams[a], streams[b]) for a in range(4) for b in range(a))


def test_per_process_batch_norm_is_a_run_of_its_own():
    from omegaconf import OmegaConf

    from rigl_repro.run.identity import run_identity

    def identity(*overrides):
        return run_identity(OmegaConf.to_container(compose_config(*overrides), resolve=True))

    assert identity() == identity("distributed.backend=gloo", "distributed.timeout_s=60")  # how, not what
    assert identity("distributed.sync_batchnorm=false") != identity()
    assert "batchnorm" not in identity()  # runs from before data-parallel training keep their identity


def diverged_rank(rank: int, world_size: int, port: int, result_dir: Path) -> None:
    join(rank, world_size, port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    replicas = DataParallel(Launch(rank, world_size), flag_group=dist.group.WORLD)
    same, differs = torch.ones(3, 3, dtype=torch.bool), torch.eye(3, dtype=torch.bool)
    differs[0, 1] = rank == 1  # one active weight more on rank 1
    try:
        replicas.check_masks({"conv.weight": same, "fc.weight": differs}, step=23)
    except ReplicasDiverged as error:
        (result_dir / f"rank{rank}.txt").write_text(str(error))
    dist.destroy_process_group()


def test_masks_that_differ_between_ranks_stop_every_rank_naming_the_layer(tmp_path):
    mp.start_processes(diverged_rank, args=(2, free_port(), tmp_path), nprocs=2, start_method="spawn")
    messages = [(tmp_path / f"rank{rank}.txt").read_text() for rank in range(2)]
    assert messages[0] == messages[1]  # every rank stops, with the same line
    assert messages[0].startswith("after the topology update at step 24 the ranks hold different masks (in fc.weight)")


@pytest.mark.parametrize(
    "environment, overrides, message",
    [({"RANK": "0", "WORLD_SIZE": "2"}, ["train.batch_size=63"],
      "train.batch_size=63 cannot be shared by 2 processes; the global batch must be a multiple of the world size, "
      "e.g. train.batch_size=62"),
     ({"RANK": "0", "WORLD_SIZE": "2"}, ["distributed.backend=nccl", "device=cpu"],
      "distributed.backend=nccl needs GPUs, but the run trains on cpu"),
     pytest.param({}, ["distributed.backend=mpi"], "distributed.backend='mpi' is not known",
                  marks=pytest.mark.slow)],  # one process refuses it by default: tests/test_bad_inputs.py
)  # fmt: skip
def test_a_set_up_that_cannot_train_is_refused_in_one_line(tmp_path, environment, overrides, message):
    command = [sys.executable, str(ROOT / "main.py"), "scale=smoke", f"output_root={tmp_path}", *overrides]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **environment})  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 2 and message in output and "Traceback" not in output
    assert not list(tmp_path.rglob("checkpoint.pt"))
