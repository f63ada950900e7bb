"""The compact export (rigl_repro/export.py, scripts/export.py): real runs on the embedded digits exported and
loaded back bit for bit, their test accuracy exactly, the file's size from its layout, and one-line errors."""

import errno
import hashlib
import importlib.util
import json
import logging
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
from safetensors.torch import save_file  # noqa: E402

from rigl_repro.export import (  # noqa: E402
    CONTENT_HASH,
    FORMAT_VERSION,
    METADATA_ENTRIES,
    REEXPORT,
    ExportError,
    accuracy_on_test_split,
    compact_state,
    content_hash,
    dense_bytes,
    expand_state,
    export_run,
    load_export,
    write_export,
)
from rigl_repro.models import build_model  # noqa: E402
from rigl_repro.results import OutputError  # noqa: E402
from rigl_repro.sparsity import SparseEngine, build_method  # noqa: E402
from rigl_repro.sparsity.layouts import packed_bits, unpacked_bits  # noqa: E402
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
        packed = packed_bits(mask)
        assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(mask.numel() / 8)
        assert torch.equal(unpacked_bits(packed, mask.numel()).reshape(shape), mask)
    assert packed_bits(torch.tensor([True, False, False, True, False, False, False, False, True])).tolist() == [9, 1]
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
    with pytest.raises(ExportError, match=r"conv.weight.values has shape \[3\]; its mask has \d+ active weights"):
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
    with pytest.raises(ExportError, match="junk.safetensors: not a readable safetensors file"):
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


# ------------------------------------------------------------------------------------------ nothing read on trust
# Family rule: whatever is wrong with an export (its metadata, its tensors' names, dtypes, shapes or values, its
# header), load_export raises one ExportError, one line, that starts with the file's path and ends with the remedy.
@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """An export of the RigL run, to copy and edit."""
    return export_run(runs["rigl"], tmp_path_factory.mktemp("exported") / "rigl.safetensors").path


def read_file(path):
    """An export's metadata and tensors, as safetensors reads them."""
    with safe_open(str(path), framework="pt") as file:
        return dict(file.metadata()), {key: file.get_tensor(key) for key in file.keys()}


def changed(metadata=lambda m: m, tensors=lambda t: t, rehash=False):
    """An edit of an export file: its metadata and tensors through these functions, saved back; ``rehash`` stores
    the content hash of the edited content, as someone who knows the format would."""

    def edit(path):
        meta, found = read_file(path)
        meta, found = metadata(meta), tensors(found)
        if rehash:
            meta[CONTENT_HASH] = content_hash(found, meta)
        save_file(found, str(path), metadata=meta)

    return edit


def without(key):
    return lambda entries: {k: v for k, v in entries.items() if k != key}


def replaced(key, value):
    """The entries with ``key`` set to ``value``, or to ``value(old)`` when it is a function."""
    return lambda entries: {**entries, key: value(entries[key]) if callable(value) else value}


def raw(function):
    """An edit of the file's bytes."""
    return lambda path: path.write_bytes(function(path.read_bytes()))


def with_nan(values):
    values = values.clone()
    values[0] = float("nan")
    return values


def metric_edited(text):
    return json.dumps({**json.loads(text), "test_acc": 1.0})


EDITS = {  # each kind of edit and what its one-line error says
    "metadata key removed": (changed(metadata=without("config")), "metadata config is missing"),
    "metadata value of the wrong type": (
        changed(metadata=replaced("width_multiplier", '"wide"')),
        """metadata width_multiplier is '"wide"', not a positive number""",
    ),
    "tensor missing": (changed(tensors=without("fc.bias")), "tensor fc.bias is missing (model=small_cnn)"),
    "tensor of the wrong shape": (changed(tensors=replaced("fc.bias", torch.zeros(3))), "tensor fc.bias has shape [3], not [10]"),
    "values of two dimensions": (
        changed(tensors=replaced("fc.weight.values", lambda t: t.reshape(1, -1))),
        "tensor fc.weight.values has shape [1, 128], not one dimension",
    ),
    "tensor added": (changed(tensors=replaced("extra", torch.zeros(1))), "tensor extra is not one of the model's"),
    "header not JSON": (raw(lambda data: data[:8] + b"!" + data[9:]), "not a readable safetensors file (Error while"),
    "header dtype edited": (raw(lambda data: data.replace(b'"F32"', b'"I32"', 1)), "is int32; the model's is float32"),
    "file truncated": (raw(lambda data: data[: len(data) // 2]), "not a readable safetensors file"),
    "file removed": (lambda path: path.unlink(), "no such file"),
    "not an export": (changed(metadata=without("format")), "not a rigl-repro export (its metadata has no format="),
    "format version unknown": (changed(metadata=replaced("format_version", "4")), "format version '4' is not one"),
    "weight edited": (
        changed(tensors=replaced("fc.weight.values", lambda t: t + 1)),
        f"its tensors or metadata do not match its {CONTENT_HASH}: it was changed after export",
    ),
    "NaN weight": (changed(tensors=replaced("fc.weight.values", with_nan)), f"do not match its {CONTENT_HASH}"),
    "metric edited": (changed(metadata=replaced("metrics", metric_edited)), f"do not match its {CONTENT_HASH}"),
    "NaN weight, hash recomputed": (
        changed(tensors=replaced("fc.weight.values", with_nan), rehash=True),
        "tensor fc.weight.values holds NaN or infinite values; a trained model's are finite",
    ),
}


def load_error(path):
    """load_export's error for ``path``, after checking the family rule: one line, the file, the remedy."""
    with pytest.raises(ExportError) as raised:
        load_export(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and message.endswith(f"; {REEXPORT}") and "\n" not in message, message
    assert raised.value.__suppress_context__ or raised.value.__context__ is None  # no chained traceback
    return message


def edited_copy(exported, tmp_path, edit):
    path = tmp_path / "edited.safetensors"
    shutil.copy(exported, path)
    edit(path)
    return path


@pytest.mark.parametrize("kind", EDITS)
def test_every_kind_of_edit_is_one_line_naming_the_file(exported, tmp_path, kind):
    edit, says = EDITS[kind]
    assert says in load_error(edited_copy(exported, tmp_path, edit))


WRONG_VALUES = {  # a value of the wrong type for every metadata entry that has a type (trained_on is any text)
    "config": ("[1]", "is a JSON list, not an object"),
    "metrics": ("3", "is a JSON int, not an object"),
    "masked": ('{"fc.weight": "x"}', "gives fc.weight the shape 'x', not a list of sizes"),
    "width_multiplier": ("-1", "is '-1', not a positive number"),
    CONTENT_HASH: ("abc", "is 'abc', not a sha256 digest"),
}


@pytest.mark.parametrize("key", [*METADATA_ENTRIES, CONTENT_HASH])
def test_every_metadata_entry_is_required_and_typed(exported, tmp_path, key):
    assert f"metadata {key} is missing" in load_error(edited_copy(exported, tmp_path, changed(metadata=without(key))))
    if key in WRONG_VALUES:  # checked before the hash: the message says what is wrong, not only "changed"
        value, says = WRONG_VALUES[key]
        path = edited_copy(exported, tmp_path, changed(metadata=replaced(key, value), rehash=key != CONTENT_HASH))
        assert f"metadata {key} {says}" in load_error(path)


def test_every_typed_metadata_entry_has_a_wrong_value_tested():
    assert set(WRONG_VALUES) == {*METADATA_ENTRIES, CONTENT_HASH} - {"trained_on"}


@pytest.mark.parametrize(
    ("tensor", "dtype"),
    [("fc.weight.values", torch.float64), ("fc.weight.values", torch.float16), ("fc.bias", torch.float64),
     ("fc.bias", torch.bfloat16), ("features.1.num_batches_tracked", torch.int32)],
)  # fmt: skip
def test_dtypes_the_export_does_not_write_are_refused_even_with_a_matching_hash(exported, tmp_path, tensor, dtype):
    expected = "int64" if "num_batches" in tensor else "float32"
    path = edited_copy(exported, tmp_path, changed(tensors=replaced(tensor, lambda t: t.to(dtype)), rehash=True))
    name = str(dtype).removeprefix("torch.")
    assert f"tensor {tensor} is {name}; the model's is {expected}" in load_error(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("tensor", ["fc.weight.values", "features.1.running_var"])
def test_non_finite_values_are_refused_on_load_and_on_export(runs, exported, tmp_path, value, tensor):
    def poisoned(values):
        values = values.clone()
        values.view(-1)[0] = value
        return values

    path = edited_copy(exported, tmp_path, changed(tensors=replaced(tensor, poisoned), rehash=True))
    assert f"tensor {tensor} holds NaN or infinite values" in load_error(path)

    run_dir = tmp_path / "diverged"  # a checkpoint that holds one: refused before anything is written
    shutil.copytree(runs["rigl"], run_dir)
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    key = tensor.removesuffix(".values")
    checkpoint["model"][key] = poisoned(checkpoint["model"][key])
    torch.save(checkpoint, run_dir / "checkpoint.pt")
    with pytest.raises(ExportError, match=f"checkpoint.pt: tensor {key} holds NaN or infinite values; the model"):
        export_run(run_dir)
    assert not list(run_dir.glob("*.safetensors*"))


def one_bit_flipped(tensor):
    """A copy of ``tensor`` with the lowest bit of its first byte flipped: the smallest edit of its content."""
    copy = tensor.clone()
    copy.reshape(-1).view(torch.uint8)[0] ^= 1
    return copy


def test_the_content_hash_covers_the_metadata_and_every_tensor(exported):
    metadata, tensors = read_file(exported)
    assert metadata["format_version"] == str(FORMAT_VERSION) == "3"
    assert metadata[CONTENT_HASH] == content_hash(tensors, metadata)
    assert load_export(exported)[1][CONTENT_HASH] == metadata[CONTENT_HASH]
    for key in sorted(tensors):  # any one tensor or metadata entry changes it
        assert content_hash({**tensors, key: one_bit_flipped(tensors[key])}, metadata) != metadata[CONTENT_HASH], key
    for key in sorted(set(metadata) - {CONTENT_HASH}):
        assert content_hash(tensors, {**metadata, key: metadata[key] + " "}) != metadata[CONTENT_HASH], key


def test_a_version_1_export_without_a_hash_still_loads_with_a_one_line_warning(exported, tmp_path, caplog):
    metadata, tensors = read_file(exported)
    old = tmp_path / "v1.safetensors"
    save_file(tensors, str(old), metadata={**without(CONTENT_HASH)(metadata), "format_version": "1"})
    with caplog.at_level(logging.WARNING, logger="rigl_repro.export"):
        model, loaded = load_export(old)
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith(f"{old}: format version 1 has no content hash") and message.endswith("to add one")
    assert "\n" not in message and REEXPORT in message and loaded["format_version"] == 1
    reference = load_export(exported)[0].state_dict()
    assert all(torch.equal(bits(t), bits(reference[key])) for key, t in model.state_dict().items())
    changed(tensors=replaced("fc.weight.values", with_nan))(old)  # no hash, but the other checks still apply
    assert "tensor fc.weight.values holds NaN or infinite values" in load_error(old)


# ------------------------------------------------------------------------------------------ written deterministically
def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_exports_of_one_run_are_the_same_bytes(runs, exported, tmp_path):
    first = export_run(runs["rigl"], tmp_path / "first.safetensors").path
    digest = sha256(first)
    for _ in range(3):  # the metadata used to come out in a random order: one repeat would rarely catch it
        assert sha256(export_run(runs["rigl"], tmp_path / "again.safetensors").path) == digest
    assert sha256(export_run(runs["rigl"], first).path) == digest == sha256(exported)
    length = struct.unpack("<Q", first.read_bytes()[:8])[0]
    header = json.loads(first.read_bytes()[8 : 8 + length], object_pairs_hook=lambda pairs: [k for k, _ in pairs])
    assert header == sorted(header) and length % 8 == 0  # sorted keys; the buffers stay 8-byte aligned


# ------------------------------------------------------------------------------------------ written atomically
def test_a_full_disk_is_one_line_exit_2_and_leaves_the_previous_export(runs, tmp_path, capsys, monkeypatch):
    previous = export_run(runs["rigl"], tmp_path / "model.safetensors").path
    before = previous.read_bytes()

    def full_disk(self, data):
        with open(self, "wb") as file:
            file.write(data[:100])  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    err = one_line_error(capsys, runs["rigl"], "--out", previous)
    assert err.startswith(f"error: {previous} could not be written (No space left on device); "), err
    with pytest.raises(OutputError):
        export_run(runs["rigl"], previous)
    assert previous.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_an_export_loads_for_sparse_inference_with_the_same_outputs(runs, exported):
    from rigl_repro.inference import CsrConv2d, CsrLinear, load_for_inference, max_relative_error, native_kernel

    dense, _ = load_export(exported)
    model, metadata, decisions = load_for_inference(exported, batch_size=4, force="csr")
    linears = [name for name, module in dense.named_modules() if type(module) is torch.nn.Linear]
    convs = [name for name, module in dense.named_modules() if type(module) is torch.nn.Conv2d]
    assert [d.name for d in decisions] == [name for name, _ in dense.named_modules() if name in linears + convs]
    assert linears and all(isinstance(model.get_submodule(name), CsrLinear) for name in linears)
    if native_kernel() is not None:  # only the native kernel computes sparse convolutions
        assert convs and all(isinstance(model.get_submodule(name), CsrConv2d) for name in convs)
        assert [layer["layout"] for layer in metadata["inference_layers"]] == ["csr"] * len(decisions)
    from rigl_repro.data import load_splits, normalise

    data = load_splits(summary(runs["rigl"])["config"]["dataset"], torch.device("cpu"))
    images = normalise(data.test.images[:4], data.mean, data.std)
    with torch.inference_mode():
        assert max_relative_error(dense(images), model(images)) <= 1e-5
    timed, _, timed_decisions = load_for_inference(exported, batch_size=4, warmup=0, repeats=1)
    assert [d.name for d in timed_decisions] == [d.name for d in decisions]
    # timed on a batch of the run's own image shape: every layer knows the rows it sees (the dense first layer,
    # kept dense by the run's Uniform distribution, is not timed)
    assert all(d.rows > 0 for d in timed_decisions)
    assert all(d.dense_ms > 0 for d in timed_decisions if d.reason is None)
    assert [d.reason for d in timed_decisions if d.reason is not None] == ["density above 0.5"]
    with torch.inference_mode():
        assert max_relative_error(dense(images), timed(images)) <= 1e-5
