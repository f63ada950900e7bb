"""The compact export (rigl_repro/export.py, scripts/export.py): real runs on the embedded digits exported and
loaded back bit for bit, their test accuracy exactly, the file's size from its layout, and one-line errors."""

import importlib.util
import json
import math
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("safetensors")  # in requirements.txt; a machine without it skips this file, not the suite

from safetensors import safe_open  # noqa: E402

from rigl_repro.export import (  # noqa: E402
    ExportError,
    accuracy_on_test_split,
    compact_state,
    dense_bytes,
    expand_state,
    export_run,
    load_export,
    pack_mask,
    unpack_mask,
    write_export,
)
from rigl_repro.models import build_model  # noqa: E402
from rigl_repro.results import OutputError  # noqa: E402
from rigl_repro.sparsity import SparseEngine, build_method  # noqa: E402
from rigl_repro.training.session import run  # noqa: E402
from tests.helpers import compose_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = {  # one epoch of 20 steps each; RigL updates its masks every 5 steps
    "rigl": ("masking=rigl", "masking.density=0.1", "masking.delta_t=5"),
    "dense": ("masking=dense",),
    "small_dense": ("masking=small_dense", "masking.density=0.1"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Finished runs by name, each in its own folder."""
    root = tmp_path_factory.mktemp("runs")
    for name, overrides in RUNS.items():
        run(compose_config("train.epochs=1", "threads=1", *overrides), root / name)  # 2 threads on 2 busy cores crawl
    return {name: root / name for name in RUNS}


def checkpoint_model(run_dir):
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def bits(tensor):
    """A tensor's bytes, so that equality is bitwise (-0.0 differs from 0.0, NaNs compare)."""
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def logits_on_test_split(model, run_dir):
    from rigl_repro.data import load_splits, normalise

    data = load_splits(summary(run_dir)["config"]["dataset"], torch.device("cpu"))
    with torch.no_grad():
        return model.eval()(normalise(data.test.images, data.mean, data.std))


# ------------------------------------------------------------------------------------------ round trips
def test_a_sparse_run_reloads_bit_for_bit_with_its_test_accuracy(runs, tmp_path):
    report = export_run(runs["rigl"], tmp_path / "rigl.safetensors")
    model, metadata = load_export(report.path)
    saved, loaded = checkpoint_model(runs["rigl"]), model.state_dict()
    assert list(loaded) == list(saved)  # the trainer's model, masks as buffers, in the same order
    masks = {key.removesuffix("_mask"): saved[key] for key in saved if key.endswith("weight_mask")}
    assert sorted(masks) == ["fc.weight", "features.0.weight", "features.3.weight", "features.6.weight"]
    initial = torch.load(runs["rigl"] / "initial.pt", weights_only=True)
    assert not torch.equal(saved["fc.weight_mask"], initial["fc.weight_mask"])  # RigL moved the masks
    for key, tensor in saved.items():
        assert loaded[key].dtype == tensor.dtype and loaded[key].shape == tensor.shape, key
        if key in masks:  # active weights bit for bit; masked-out ones exactly +0.0 (the checkpoint's are +-0.0)
            mask = masks[key]
            assert torch.equal(bits(loaded[key][mask]), bits(tensor[mask])), key
            assert torch.equal(bits(loaded[key][~mask]), bits(torch.zeros(int((~mask).sum())))), key
            assert torch.equal(loaded[key], tensor), key
        else:  # masks, biases, BatchNorm weights and statistics
            assert torch.equal(bits(loaded[key]), bits(tensor)), key
    expected = summary(runs["rigl"])
    assert accuracy_on_test_split(model, metadata) == expected["test_acc"]
    assert metadata["config"] == expected["config"] and metadata["metrics"]["test_acc"] == expected["test_acc"]
    assert metadata["metrics"]["layer_densities"] == expected["layer_densities"]
    assert "history" not in metadata["metrics"]  # per epoch: it stays in summary.json
    # The sign of a masked-out zero changes nothing: the same logits as the checkpoint's model, bit for bit.
    from_checkpoint = build_model(expected["config"]["model"], 10)
    from_checkpoint.load_state_dict({key: t for key, t in saved.items() if not key.endswith("_mask")})
    assert torch.equal(bits(logits_on_test_split(model, runs["rigl"])),
                       bits(logits_on_test_split(from_checkpoint, runs["rigl"])))  # fmt: skip


@pytest.mark.parametrize("name", ["dense", "small_dense"])
def test_dense_and_small_dense_runs_reload_bit_for_bit(runs, tmp_path, name):
    report = export_run(runs[name], tmp_path)  # a folder: the file goes inside
    assert report.path == tmp_path / "model.safetensors" and report.density is None
    model, metadata = load_export(report.path)
    saved, loaded = checkpoint_model(runs[name]), model.state_dict()
    assert list(loaded) == list(saved) and not any(key.endswith("_mask") for key in saved)
    for key, tensor in saved.items():
        assert torch.equal(bits(loaded[key]), bits(tensor)), key
    width = summary(runs[name])["width_multiplier"]
    assert metadata["width_multiplier"] == width and (width < 0.5) == (name == "small_dense")
    assert accuracy_on_test_split(model, metadata) == summary(runs[name])["test_acc"]
    assert report.ratio == pytest.approx(dense_bytes(saved) / report.path.stat().st_size)


def test_masks_pack_to_bits_and_weights_keep_only_their_active_values():
    generator = torch.Generator().manual_seed(0)
    for shape in [(1,), (7,), (8,), (9,), (5, 3, 3, 3), (10, 17)]:
        mask = torch.rand(shape, generator=generator) < 0.3
        packed = pack_mask(mask)
        assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(mask.numel() / 8)
        assert torch.equal(unpack_mask(packed, shape), mask)
    assert pack_mask(torch.tensor([True, False, False, True, False, False, False, False, True])).tolist() == [9, 1]
    weight = torch.randn(6, 4, 3, 3, generator=generator).contiguous(memory_format=torch.channels_last)
    mask = (torch.rand(6, 4, 3, 3, generator=generator) < 0.2).contiguous(memory_format=torch.channels_last)
    weight = weight * mask
    weight[0, 0, 0, 0], mask[0, 0, 0, 0] = 0.0, True  # an active weight at exactly zero (RigL grows them so)
    state = {"conv.weight": weight, "conv.weight_mask": mask, "bn.running_mean": torch.randn(6, generator=generator)}
    tensors = compact_state(state)
    assert sorted(tensors) == ["bn.running_mean", "conv.weight.values", "conv.weight_mask.bits"]
    assert torch.equal(tensors["conv.weight.values"], weight.contiguous().reshape(-1)[mask.contiguous().reshape(-1)])
    restored = expand_state(tensors, {"conv.weight": [6, 4, 3, 3]})
    assert all(torch.equal(restored[key], state[key]) for key in state)
    with pytest.raises(ExportError, match="3 values for a mask with"):
        expand_state({**tensors, "conv.weight.values": torch.zeros(3)}, {"conv.weight": [6, 4, 3, 3]})


# ------------------------------------------------------------------------------------------ sizes
def file_layout(path):
    """The header's length and the bytes of each tensor in a safetensors file."""
    header_length = struct.unpack("<Q", path.read_bytes()[:8])[0]
    with safe_open(str(path), framework="pt") as file:
        sizes = {key: file.get_tensor(key).numel() * file.get_tensor(key).element_size() for key in file.keys()}
    return header_length, sizes


def test_the_file_is_the_packed_masks_and_active_values_and_5x_smaller_than_the_dense_weights(runs, tmp_path):
    report = export_run(runs["rigl"], tmp_path / "rigl.safetensors")
    saved = checkpoint_model(runs["rigl"])
    header_length, sizes = file_layout(report.path)
    expected = {}
    for key, tensor in saved.items():
        if key.endswith("weight_mask"):
            expected[f"{key}.bits"] = math.ceil(tensor.numel() / 8)  # a bit per weight
            expected[f"{key.removesuffix('_mask')}.values"] = 4 * int(tensor.sum())  # fp32 per active weight
        elif f"{key}_mask" not in saved:
            expected[key] = tensor.numel() * tensor.element_size()
    assert sizes == expected
    assert report.export_bytes == report.path.stat().st_size == 8 + header_length + sum(expected.values())
    assert report.dense_bytes == dense_bytes(saved) == 378_560  # 94,648 fp32 values and 3 int64 counters
    # By construction: a masked layer at density d costs 1/32 + d of its dense size (0.13 at d = 0.1), the dense
    # first layer and BatchNorm their own; the header (config and metrics as JSON) stays below 8 KiB.
    assert header_length < 8192 and report.ratio >= 5
    assert report.checkpoint_bytes == (runs["rigl"] / "checkpoint.pt").stat().st_size > 2 * report.dense_bytes
    assert report.density == pytest.approx(0.1, abs=0.01)


def test_wrn22_2_at_density_0_1_is_over_7x_smaller_than_its_dense_weights(tmp_path):
    masking = compose_config("dataset=cifar10", "masking=rigl", "masking.density=0.1").masking
    torch.manual_seed(0)
    model = build_model({"name": "wrn22_2"}, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    SparseEngine(model, optimizer, build_method(dict(masking)), 100)
    state = model.state_dict()
    write_export(state, tmp_path / "wrn.safetensors", {})
    exported, dense = (tmp_path / "wrn.safetensors").stat().st_size, dense_bytes(state)
    # By construction 1/(1/32 + 0.1) = 7.62x on the masked weights; BatchNorm (0.5% of the dense bytes) stays
    # dense and the header (a name, shape and offsets per tensor) is 2% of the file: 7.20x.
    assert dense == 4_329_600 and dense / exported > 7.1
    with safe_open(str(tmp_path / "wrn.safetensors"), framework="pt") as file:
        masked = json.loads(file.metadata()["masked"])
        restored = expand_state({key: file.get_tensor(key) for key in file.keys()}, masked)
    assert len(masked) == 23 and sorted(restored) == sorted(state)  # 22 convolutions and the classifier
    assert all(torch.equal(restored[key], state[key]) for key in state)


# ------------------------------------------------------------------------------------------ errors and the script
def export_script():
    """scripts/export.py as a module, so that its errors are checked in this process (no interpreter start)."""
    spec = importlib.util.spec_from_file_location("export_script", ROOT / "scripts" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_line_error(capsys, *argv, code=2):
    """The script's stderr for ``argv``, after checking it exits with ``code``, one line and no traceback."""
    with pytest.raises(SystemExit) as exited:
        export_script().main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert exited.value.code == code and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_run_folders_and_outputs_are_one_line_errors(runs, tmp_path, capsys):
    assert one_line_error(capsys, tmp_path / "missing").startswith(f"error: {tmp_path / 'missing'} is not a folder")
    (tmp_path / "empty").mkdir()
    assert "is not a run folder (no summary.json or checkpoint.pt)" in one_line_error(capsys, tmp_path / "empty")

    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs["rigl"], unfinished)
    (unfinished / "summary.json").unlink()
    assert "is an unfinished run (no summary.json)" in one_line_error(capsys, unfinished)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(runs["rigl"], corrupt)
    payload = (corrupt / "checkpoint.pt").read_bytes()
    (corrupt / "checkpoint.pt").write_bytes(payload[: len(payload) // 2])
    assert "checkpoint.pt cannot be read" in one_line_error(capsys, corrupt)
    (corrupt / "checkpoint.pt").unlink()
    assert "has a summary.json but no checkpoint.pt" in one_line_error(capsys, corrupt)

    stale = tmp_path / "stale"
    shutil.copytree(runs["rigl"], stale)
    state = torch.load(stale / "checkpoint.pt", weights_only=True)
    torch.save({**state, "epoch": 0}, stale / "checkpoint.pt")
    assert "checkpoint.pt is from epoch 0 but the run finished at epoch 1" in one_line_error(capsys, stale)
    del state["model"]["fc.bias"]
    torch.save(state, stale / "checkpoint.pt")
    assert "checkpoint.pt does not hold the weights of its model=small_cnn" in one_line_error(capsys, stale)

    swapped = tmp_path / "swapped"
    shutil.copytree(runs["rigl"], swapped)
    shutil.copy(runs["dense"] / "checkpoint.pt", swapped / "checkpoint.pt")
    assert "belongs to another configuration than" in one_line_error(capsys, swapped)

    (tmp_path / "a-file").write_text("not a folder")
    err = one_line_error(capsys, runs["rigl"], "--out", tmp_path / "a-file" / "model.safetensors")
    assert "model.safetensors could not be written" in err
    with pytest.raises(OutputError):
        export_run(runs["rigl"], tmp_path / "a-file" / "model.safetensors")
    assert not list(runs["rigl"].glob("*.safetensors*"))  # nothing written into the run folder either

    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ExportError, match="is not a readable safetensors file"):
        load_export(tmp_path / "junk.safetensors")


def test_check_fails_in_one_line_when_the_accuracy_differs(runs, tmp_path, capsys):
    changed = tmp_path / "changed"
    shutil.copytree(runs["rigl"], changed)
    record = summary(changed)
    record["test_acc"] -= 1 / 300  # one test image
    (changed / "summary.json").write_text(json.dumps(record))
    err = one_line_error(capsys, changed, "--check", code=1)
    assert err.startswith("check failed: the export's test accuracy on cpu is ") and "summary.json says" in err


def test_the_script_exports_into_the_run_folder_and_checks_the_accuracy(runs, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["rigl"], run_dir)
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"), str(run_dir), "--check"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"wrote {run_dir / 'model.safetensors'}" and (run_dir / "model.safetensors").is_file()
    assert lines[2].startswith("dense model (fp32 weights and buffers): 369.7 KiB (378,560 bytes)")
    assert lines[3].startswith("checkpoint.pt (with optimizer state):") and lines[4].startswith("export:")
    ratio = 378_560 / (run_dir / "model.safetensors").stat().st_size
    assert lines[5].startswith(f"ratio: dense / export {ratio:.2f}x, checkpoint.pt / export ")
    accuracy = summary(run_dir)["test_acc"]
    assert lines[6] == f"check: reloaded, test accuracy {accuracy:.4f} on cpu equals summary.json's exactly"
