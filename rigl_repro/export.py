"""A finished run's trained model as one compact file: the masks as packed bits, only the active weights.

A sparse run's ``checkpoint.pt`` holds every weight, zeros included, beside its boolean masks and the
optimizer's state. ``export_run`` writes the trained model alone, in `safetensors`_ format:

- every masked weight ``W`` (a conv or linear weight with a ``W_mask`` buffer, ``rigl_repro.sparsity.masks``)
  as ``W.values``, the active weights in row-major order (one float32 each), and its mask in a layout
  (``rigl_repro.sparsity.layouts``): ``W_mask.bits``, the mask flattened row-major and packed eight to a byte,
  bit ``i`` of byte ``j`` being element ``8 j + i`` (NumPy's ``packbits(..., bitorder="little")``; ceil(n / 8)
  bytes); or, in a run of ``masking.structure=fan_in`` (SRigL's too), the condensed constant-fan-in layout
  (``W_mask.neurons`` and ``W_mask.columns``: the values are then the (live neurons, fan-in) condensed matrix);
  or, under ``masking.structure=nm``, each value's position in its group of m (``W_mask.positions``: for 2:4 the
  values are the compressed (rows, fan-in / 2) matrix of semi-structured sparsity);
- every other entry of the model's ``state_dict`` (biases, BatchNorm's weights and statistics, the layers of a
  dense or small-dense run) under its own name, as it is;
- the metadata (strings): ``format`` (``rigl-repro-sparse``), ``format_version``, ``config`` (the run's resolved
  configuration as JSON), ``metrics`` (``summary.json`` without its config and per-epoch history, as JSON),
  ``width_multiplier`` (the width the model was built at: small-dense runs narrow it), ``masked`` (JSON: each
  masked weight's shape), ``mask_layouts`` (JSON: the masks stored in a layout other than bits, and their
  layouts), ``trained_on`` (the checkpoint's device type) and ``content_sha256`` (``content_hash``:
  every other metadata entry and every tensor's name, dtype, shape and bytes).

The file is deterministic: the same run exports to the same bytes (the header's JSON has sorted keys and no
whitespace, the buffers are in safetensors' fixed order, nothing depends on the time). ``load_export`` trusts
nothing it reads: the metadata's schema, each tensor's name, dtype and shape against the model its config builds,
the content hash, and finite values; any problem is one ``ExportError`` naming the file. Files of format version 1
(before the hash) still load, with a one-line warning that their content cannot be verified, and files of
version 2 (before mask layouts: every mask as bits) load as they did.

A masked weight of density d then costs 1/8 + 4 d bytes per weight instead of 4: 7.6x smaller at d = 0.1
(1 / (1/32 + d)), whatever the mask looks like. ``load_export`` rebuilds the model as the trainer builds it
(``build_model`` at the run's width, ``attach_masks`` for a masked run) and loads the state back: the masks,
the active weights and every dense tensor equal the checkpoint's bit for bit, and the masked-out weights are
+0.0. The sign of those zeros is the one thing not kept: a checkpoint holds -0.0 at a quarter to a half of
its masked-out positions (SGD's arithmetic on masked gradients and weight decay leaves either sign). -0.0
equals 0.0 (``torch.equal``), the loaded model's logits equal the checkpoint model's bit for bit (tested), and
keeping the signs would cost another 0.9 bit per weight (6.3x instead of 7.6x at d = 0.1).

Why safetensors and this layout rather than torch's sparse layouts (``scripts/export_formats.py``, measured in
docs/export.md): on WRN-22-2 at density 0.1 the export is 7.20x smaller than the dense weights, torch's COO
layout 1.10x (an int64 index per dimension and active weight: 36 bytes each for a convolution) and CSR 3.15x
(an int64 column index per active weight); an int64 index list outweighs a 1-bit mask at any density above
1/64. Loading it back into a dense state dict takes about the CPU time that reading the dense model with
``torch.load`` takes (8.4 ms against 8.1 ms; COO 19 ms, CSR 18 ms). Safetensors is a JSON header and raw
little-endian buffers: it loads without unpickling anything, any safetensors reader opens it, and its
metadata carries the config and metrics as text; the same tensors through ``torch.save`` make a larger file
(6.92x) that loads in twice the time.

.. _safetensors: https://huggingface.co/docs/safetensors
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from rigl_repro.data import load_splits
from rigl_repro.errors import ConfigError
from rigl_repro.models import meta_model
from rigl_repro.results import SUMMARY_FILE, atomic_file, load_summary
from rigl_repro.run.build import Precision, count_correct
from rigl_repro.run.identity import identity_changes
from rigl_repro.run.recipe import enabled
from rigl_repro.sparsity.layouts import BITS, MaskLayout, choose_layout, layout_from
from rigl_repro.sparsity.masks import MASK_BUFFER, attach_masks
from rigl_repro.training.checkpoint import CHECKPOINT_FILE, INITIAL_WEIGHTS_FILE

log = logging.getLogger(__name__)

EXPORT_FILE = "model.safetensors"
FORMAT = "rigl-repro-sparse"
FORMAT_VERSION = 3  # 2 added content_sha256, 3 mask_layouts
UNHASHED_VERSIONS = (1,)  # versions written before the content hash: loaded with a warning
BITS_ONLY_VERSIONS = (1, 2)  # versions written before mask layouts: every mask as bits
READABLE_VERSIONS = (1, 2, FORMAT_VERSION)
CONTENT_HASH = "content_sha256"
MASK_LAYOUTS = "mask_layouts"  # JSON: each masked weight stored in a layout other than bits, and its layout
VALUES_SUFFIX = ".values"  # "<W>.values": W's active values in mask order
RUN_MARKERS = (CHECKPOINT_FILE, INITIAL_WEIGHTS_FILE, ".hydra")  # what an unfinished run folder holds
REEXPORT = "export its run again with scripts/export.py RUN_DIR"  # the remedy for every unloadable export

# What a tensor may be: its dtype, and its shape (None: any one-dimensional length, fixed by its mask).
Layout = Mapping[str, tuple[torch.dtype, tuple[int, ...] | None]]


class ExportError(ConfigError):
    """A run that cannot be exported, or a file that is not an export: reported in one line."""


@dataclass(frozen=True)
class ExportReport:
    """What ``export_run`` wrote and how it compares with the dense model and the checkpoint."""

    run_dir: Path
    path: Path
    dense_bytes: int  # the model's state_dict without its masks, at its own dtypes (fp32): a dense model file
    checkpoint_bytes: int  # checkpoint.pt on disk: weights with their zeros, masks, optimizer state, ...
    export_bytes: int  # the export file on disk, header and metadata included
    density: float | None  # active fraction of the masked weights; None for a model without masks

    @property
    def ratio(self) -> float:
        """How many times smaller the export is than the dense fp32 weights."""
        return self.dense_bytes / self.export_bytes

    @property
    def checkpoint_ratio(self) -> float:
        """How many times smaller the export is than ``checkpoint.pt``."""
        return self.checkpoint_bytes / self.export_bytes


# ---------------------------------------------------------------------------------------------- the format
def dense_bytes(state: Mapping[str, torch.Tensor]) -> int:
    """Bytes of a state dict's tensors without its masks: the model stored densely at its own dtypes."""
    return sum(t.numel() * t.element_size() for key, t in state.items() if not key.endswith(MASK_BUFFER))


def masked_weights(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Each masked weight's key in ``state`` and its mask's key (``W_mask`` beside ``W``)."""
    pairs = {}
    for key, tensor in state.items():
        if key.endswith(MASK_BUFFER):
            weight = key.removesuffix("_mask")
            if tensor.dtype != torch.bool or weight not in state or state[weight].shape != tensor.shape:
                raise ExportError(f"{key} is not the boolean mask of a weight of its shape")
            pairs[weight] = key
    return pairs


def mask_part(weight: str, suffix: str) -> str:
    """The name of a stored part of ``weight``'s mask: ``<W>_mask.bits``, ``<W>_mask.columns``, ..."""
    return f"{weight}_mask.{suffix}"


def compact_state(state: Mapping[str, torch.Tensor],
                  layouts: Mapping[str, MaskLayout] | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """The tensors of the export: each masked weight's mask in its layout (``layouts``, default ``bits``) and
    its active values, the rest as it is (contiguous, on the CPU)."""
    masked = masked_weights(state)
    masks = set(masked.values())
    layouts = layouts or {}
    tensors: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        tensor = tensor.detach().to("cpu")
        if key in masked:
            mask = state[masked[key]].to("cpu")
            tensors[key + VALUES_SUFFIX] = tensor[mask].contiguous()  # boolean indexing: row-major order
            for suffix, part in layouts.get(key, MaskLayout()).encode(mask).items():
                tensors[mask_part(key, suffix)] = part
        elif key not in masks:
            tensors[key] = tensor.contiguous().clone()  # a private copy: safetensors refuses shared storage
    return tensors


def compact_layout(state: Mapping[str, torch.Tensor], layouts: Mapping[str, MaskLayout] | None = None) -> Layout:
    """The dtype and shape of each tensor ``compact_state`` makes from ``state`` (meta tensors will do) with the
    mask ``layouts``: what an export of a model with this state dict holds, and all it may hold."""
    masked = masked_weights(state)
    masks = set(masked.values())
    layouts = layouts or {}
    layout: dict[str, tuple[torch.dtype, tuple[int, ...] | None]] = {}
    for key, tensor in state.items():
        if key in masked:
            layout[key + VALUES_SUFFIX] = (tensor.dtype, None)
            for suffix, part in layouts.get(key, MaskLayout()).parts(tuple(tensor.shape)).items():
                layout[mask_part(key, suffix)] = part
        elif key not in masks:
            layout[key] = (tensor.dtype, tuple(tensor.shape))
    return layout


def run_layouts(state: Mapping[str, torch.Tensor], masking: Mapping[str, Any]) -> dict[str, MaskLayout]:
    """Each masked weight's mask layout in a run of ``masking``: its structure's where the mask has it
    (``rigl_repro.sparsity.layouts.choose_layout``), ``bits`` otherwise."""
    structure = str(masking.get("structure", "unstructured"))
    n, m = int(masking.get("n", 2)), int(masking.get("m", 4))
    return {weight: choose_layout(state[mask], structure, n, m) for weight, mask in masked_weights(state).items()}


def layout_of(state: Mapping[str, torch.Tensor]) -> Layout:
    """Each tensor's dtype and shape, as they are."""
    return {key: (tensor.dtype, tuple(tensor.shape)) for key, tensor in state.items()}


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32``."""
    return str(dtype).removeprefix("torch.")


def layout_problem(tensors: Mapping[str, torch.Tensor], layout: Layout) -> str | None:
    """What is wrong with ``tensors`` against ``layout`` (a missing or unexpected tensor, a dtype or a shape),
    or None: applied to the checkpoint an export is made from and to the export read back (a checkpoint that
    resumes a run is checked by ``training.checkpoint``)."""
    missing = [key for key in layout if key not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"tensor {missing[0]}{more} is missing"
    unexpected = [key for key in tensors if key not in layout]
    if unexpected:
        return f"tensor {unexpected[0]} is not one of the model's"
    for key, (dtype, shape) in layout.items():
        tensor = tensors[key]
        if tensor.dtype != dtype:
            return f"tensor {key} is {dtype_name(tensor.dtype)}; the model's is {dtype_name(dtype)}"
        if (shape is None and tensor.dim() != 1) or (shape is not None and tuple(tensor.shape) != shape):
            wanted = "one dimension" if shape is None else str(list(shape))
            return f"tensor {key} has shape {list(tensor.shape)}, not {wanted}"
    return None


def nonfinite_problem(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The first floating-point tensor holding a NaN or an infinity, said in words, or None. A finished run's
    weights are finite (the trainer stops on a non-finite loss), so such a value means a diverged or damaged
    model: refused rather than loaded to give NaN logits later."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"tensor {key} holds NaN or infinite values"
    return None


def expand_state(tensors: Mapping[str, torch.Tensor], masked: Mapping[str, list[int]],
                 layouts: Mapping[str, MaskLayout] | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """The model's state dict from the export's tensors: each masked weight zero outside its mask (stored in its
    layout, default ``bits``) and its values, in order, inside. ``masked`` maps each masked weight to its shape."""
    layouts = layouts or {}
    shapes = {weight: tuple(shape) for weight, shape in masked.items()}
    parts = {weight: layouts.get(weight, MaskLayout()).parts(shape) for weight, shape in shapes.items()}
    expected = {f"{w}{VALUES_SUFFIX}" for w in masked} | {mask_part(w, s) for w in masked for s in parts[w]}
    missing = sorted(expected - set(tensors))
    if missing:
        raise ExportError(f"the export lacks {', '.join(missing[:3])}")
    state: dict[str, torch.Tensor] = {key: tensor for key, tensor in tensors.items() if key not in expected}
    for weight, shape in shapes.items():
        layout = layouts.get(weight, MaskLayout())
        try:
            mask = layout.decode({s: tensors[mask_part(weight, s)] for s in parts[weight]}, shape)
        except ValueError as error:
            raise ExportError(f"the {layout.name} mask of {weight}: {error}") from None
        values = tensors[f"{weight}{VALUES_SUFFIX}"]
        active = int(mask.sum())
        if values.dim() != 1 or values.numel() != active:
            raise ExportError(
                f"{weight}{VALUES_SUFFIX} has shape {list(values.shape)}; its mask has {active} active weights"
            )
        full = torch.zeros(mask.shape, dtype=values.dtype)
        full[mask] = values
        state[weight], state[f"{weight}_mask"] = full, mask
    return state


def content_hash(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """The sha256 of an export's content: every metadata entry but the hash itself, then every tensor's name,
    dtype, shape and little-endian bytes, each in name order. The metadata is covered too because it decides how
    the model is rebuilt (config, width) and what it reports (metrics)."""
    digest = hashlib.sha256()
    for key in sorted(metadata):
        if key != CONTENT_HASH:
            digest.update(json.dumps([key, metadata[key]]).encode())  # a JSON list: self-delimiting
    for key in sorted(tensors):
        tensor = tensors[key]
        digest.update(json.dumps([key, dtype_name(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file of ``tensors`` and ``metadata``, byte for byte the same for the same input: the library
    lays the buffers out in a fixed order but writes the metadata in hash-map order, so the header is written
    again as JSON with sorted keys, padded with spaces to 8 bytes as the library pads it (aligned buffers)."""
    data = save(dict(tensors), metadata=dict(metadata))
    length = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + length]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data[8 + length :]


def write_export(state: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str],
                 layouts: Mapping[str, MaskLayout] | None = None) -> None:  # fmt: skip
    """Write ``state`` compactly to ``path`` (atomically: the old file or the whole new one; a failed write is
    an OutputError), its masks in ``layouts`` (default ``bits``), with ``metadata`` (strings) beside the
    format's own entries and the content hash."""
    masked = masked_weights(state)
    layouts = layouts or {}
    structured = {weight: layout.describe() for weight, layout in layouts.items() if layout.name != BITS}
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "masked": json.dumps({weight: list(state[weight].shape) for weight in masked}),
        MASK_LAYOUTS: json.dumps(structured, sort_keys=True),
        **metadata,
    }
    tensors = compact_state(state, layouts)
    header[CONTENT_HASH] = content_hash(tensors, header)
    data = safetensors_bytes(tensors, header)
    with atomic_file(path) as temporary:  # a failed write (a full disk, no folder) is atomic_file's OutputError
        temporary.write_bytes(data)


def build_export_model(config: Mapping[str, Any], width: float, masked: bool) -> nn.Module:
    """The run's model as the trainer builds it (at ``width``, masks attached when the run had them), on the
    meta device (``rigl_repro.models.meta_model``): no memory and no random initialisation until a state is
    assigned."""
    model = meta_model(config["model"], int(config["dataset"]["num_classes"]), width)
    if masked:
        attach_masks(model)  # all-true masks like the weights: on the meta device too
    return model


# ---------------------------------------------------------------------------------------------- reading it back
def json_entry(text: str) -> Any:
    """A metadata entry's JSON value; a ValueError saying it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError("is not JSON") from None


def object_entry(text: str) -> dict[str, Any]:
    """A metadata entry holding a JSON object."""
    value = json_entry(text)
    if not isinstance(value, dict):
        raise ValueError(f"is a JSON {type(value).__name__}, not an object")
    return value


def config_entry(text: str) -> dict[str, Any]:
    """The run's config: an object with the sections the model and the evaluation are built from."""
    config = object_entry(text)
    for section in ("model", "dataset", "train"):
        if not isinstance(config.get(section), dict):
            raise ValueError(f"has no {section} section")
    classes = config["dataset"].get("num_classes")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"has dataset.num_classes={classes!r}, not a positive integer")
    return config


def shapes_entry(text: str) -> dict[str, list[int]]:
    """Each masked weight's shape: an object of lists of sizes."""
    shapes = object_entry(text)
    for weight, shape in shapes.items():
        sizes = isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        if not sizes:
            raise ValueError(f"gives {weight} the shape {shape!r}, not a list of sizes")
    return shapes


def width_entry(text: str) -> float:
    """The width multiplier: a positive finite number."""
    value = json_entry(text)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"is {text!r}, not a positive number")
    return float(value)


def layouts_entry(text: str) -> dict[str, MaskLayout]:
    """The masks stored in a layout other than bits: an object of layout descriptions (``layout_from``)."""
    layouts = {}
    for weight, description in object_entry(text).items():
        try:
            layouts[weight] = layout_from(description)
        except ValueError as error:
            raise ValueError(f"for {weight} {error}") from None
    return layouts


def hash_entry(text: str) -> str:
    """A sha256 digest in lowercase hex."""
    if re.fullmatch(r"[0-9a-f]{64}", text) is None:
        raise ValueError(f"is {text[:20]!r}, not a sha256 digest")
    return text


# The metadata an export must hold and how each entry is read (a ValueError says what is wrong with it).
METADATA_ENTRIES: dict[str, Callable[[str], Any]] = {
    "config": config_entry,
    "metrics": object_entry,
    "masked": shapes_entry,
    "width_multiplier": width_entry,
    "trained_on": str,
}


def parse_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    """The export's metadata, each entry checked and read (``METADATA_ENTRIES``; the content hash from format
    version 2 on); an ExportError names the first entry that is missing or wrong."""
    if raw.get("format") != FORMAT:
        raise ExportError(f"not a rigl-repro export (its metadata has no format={FORMAT})")
    version = raw.get("format_version")
    if version not in [str(v) for v in READABLE_VERSIONS]:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise ExportError(f"format version {version!r} is not one this code reads ({readable})")
    entries = dict(METADATA_ENTRIES)
    if int(version) not in UNHASHED_VERSIONS:
        entries[CONTENT_HASH] = hash_entry
    if int(version) not in BITS_ONLY_VERSIONS:
        entries[MASK_LAYOUTS] = layouts_entry
    metadata: dict[str, Any] = {**raw, "format_version": int(version), MASK_LAYOUTS: {}}
    for key, parse in entries.items():
        if key not in raw:
            raise ExportError(f"metadata {key} is missing")
        try:
            metadata[key] = parse(raw[key])
        except ValueError as error:
            raise ExportError(f"metadata {key} {error}") from None
    return metadata


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """A safetensors file's metadata and tensors; an ExportError if it is not a readable one."""
    if not path.is_file():
        raise ExportError("no such file")
    try:
        with safe_open(str(path), framework="pt") as file:
            return dict(file.metadata() or {}), {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        first = (str(error).splitlines() or [error.__class__.__name__])[0]
        raise ExportError(f"not a readable safetensors file ({first})") from None


def read_export(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """``load_export``'s model (on the meta device until assigned) and metadata, every part checked before use;
    an ExportError (not naming the file: ``load_export`` adds it) says what is wrong."""
    raw, tensors = read_safetensors(path)
    metadata = parse_metadata(raw)
    config, masked = metadata["config"], metadata["masked"]
    try:
        model = build_export_model(config, metadata["width_multiplier"], bool(masked))
    except ConfigError as error:
        raise ExportError(f"its config does not build a model ({error})") from None
    expected = model.state_dict()
    layouts = metadata[MASK_LAYOUTS]
    unknown = sorted(set(layouts) - set(masked))
    if unknown:
        raise ExportError(f"metadata {MASK_LAYOUTS} names {unknown[0]}, which is not a masked weight")
    problem = layout_problem(tensors, compact_layout(expected, layouts))
    if problem:
        raise ExportError(f"{problem} (model={config['model'].get('name')})")
    if masked != {weight: list(expected[weight].shape) for weight in masked_weights(expected)}:
        raise ExportError("metadata masked does not list the model's masked weights and their shapes")
    if metadata["format_version"] in UNHASHED_VERSIONS:
        log.warning("%s: format version %d has no content hash, so its content cannot be verified; %s to add one",
                    path, metadata["format_version"], REEXPORT)  # fmt: skip
    elif content_hash(tensors, raw) != metadata[CONTENT_HASH]:
        raise ExportError(f"its tensors or metadata do not match its {CONTENT_HASH}: it was changed after export")
    problem = nonfinite_problem(tensors)
    if problem:
        raise ExportError(f"{problem}; a trained model's are finite")
    try:
        model.load_state_dict(expand_state(tensors, masked, layouts), assign=True)
    except RuntimeError as error:  # the layout was checked: a guard, not an expected path
        raise ExportError(f"it does not fit model={config['model'].get('name')}: {str(error).splitlines()[0]}") from None
    return model, metadata


def load_export(path: Path | str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model in an export file, in eval mode on ``device``, and its metadata: ``config`` and ``metrics``
    (dicts), ``width_multiplier``, ``masked`` (shapes), ``mask_layouts`` (the masks not stored as bits, and
    their ``MaskLayout``), ``trained_on``, ``format``, ``format_version`` and
    ``content_sha256``. Anything wrong with the file is one ExportError naming it (``read_export``).

    The model's state dict equals the run's final checkpoint's bit for bit, but for the sign of masked-out
    zeros (see the module's docstring)."""
    path = Path(path)
    try:
        model, metadata = read_export(path)
    except ExportError as error:
        raise ExportError(f"{path}: {error}; {REEXPORT}") from None
    return model.to(device).eval(), metadata


# ---------------------------------------------------------------------------------------------- a run folder
def read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished run's summary and final checkpoint, or an ExportError saying what is wrong with the folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir} is not a folder; give a run folder (one holding summary.json)")
    summary_path, checkpoint_path = run_dir / SUMMARY_FILE, run_dir / CHECKPOINT_FILE
    if not summary_path.is_file():
        if any((run_dir / marker).exists() for marker in RUN_MARKERS):
            raise ExportError(f"{run_dir} is an unfinished run (no {SUMMARY_FILE}); let it finish or resume it first")
        raise ExportError(f"{run_dir} is not a run folder (no {SUMMARY_FILE} or {CHECKPOINT_FILE})")
    summary = load_summary(summary_path)
    if not checkpoint_path.is_file():
        raise ExportError(f"{run_dir} has a {SUMMARY_FILE} but no {CHECKPOINT_FILE}; nothing to export")
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupted or unsafe files all mean "cannot export this"
        raise ExportError(f"{checkpoint_path} cannot be read ({error.__class__.__name__}); it is corrupt") from None
    model_state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(model_state, dict) or not all(isinstance(t, torch.Tensor) for t in model_state.values()):
        raise ExportError(f"{checkpoint_path} is not a rigl-repro checkpoint (no model state)")
    try:
        fingerprint = json.loads(checkpoint["fingerprint"])
    except (KeyError, TypeError, ValueError):
        raise ExportError(f"{checkpoint_path} is not a rigl-repro checkpoint (no fingerprint)") from None
    if identity_changes(fingerprint, summary["config"]):
        raise ExportError(f"{checkpoint_path} belongs to another configuration than {summary_path}")
    if checkpoint.get("epoch") != summary.get("epochs"):
        raise ExportError(
            f"{checkpoint_path} is from epoch {checkpoint.get('epoch')} but the run finished at epoch "
            f"{summary.get('epochs')}; it is not the final model"
        )
    return summary, checkpoint


def run_metadata(summary: Mapping[str, Any], checkpoint: Mapping[str, Any]) -> dict[str, str]:
    """The export's metadata from a run: its config, its final metrics (not the per-epoch history, which
    can outweigh a small model; it stays in summary.json), the model's width and the training device."""
    metrics = {key: value for key, value in summary.items() if key not in ("config", "history")}
    return {
        "config": json.dumps(summary["config"], sort_keys=True),
        "metrics": json.dumps(metrics, sort_keys=True),
        "width_multiplier": json.dumps(summary.get("width_multiplier") or summary["config"]["model"]["width"]),
        "trained_on": str(checkpoint.get("device_type", "cpu")),
    }


def export_run(run_dir: Path, out: Path | None = None) -> ExportReport:
    """Export a finished run's final model to ``out`` (default ``RUN_DIR/model.safetensors``; a folder gets
    ``model.safetensors`` inside it) and report the sizes."""
    run_dir = Path(run_dir)
    summary, checkpoint = read_run(run_dir)
    path = run_dir / EXPORT_FILE if out is None else Path(out)
    if path.is_dir():
        path = path / EXPORT_FILE
    state = checkpoint["model"]
    metadata = run_metadata(summary, checkpoint)
    # The checkpoint must be the model the config describes: rebuilding it here catches a mismatch before
    # anything is written, not when the export is loaded.
    # The same rules as load_export's, so that nothing is written that it would refuse.
    probe = build_export_model(summary["config"], json.loads(metadata["width_multiplier"]), bool(masked_weights(state)))
    problem = layout_problem(state, layout_of(probe.state_dict()))
    if problem:
        name = summary["config"]["model"]["name"]
        raise ExportError(f"{run_dir / CHECKPOINT_FILE} does not hold the weights of its model={name}: {problem}")
    problem = nonfinite_problem(state)
    if problem:
        raise ExportError(f"{run_dir / CHECKPOINT_FILE}: {problem}; the model diverged or the file is damaged, "
                          "so there is nothing to export: train the run again")  # fmt: skip
    write_export(state, path, metadata, run_layouts(state, summary["config"].get("masking") or {}))
    masked = masked_weights(state)
    size = sum(state[weight].numel() for weight in masked)
    active = sum(int(state[mask].sum()) for mask in masked.values())
    return ExportReport(
        run_dir=run_dir,
        path=path,
        dense_bytes=dense_bytes(state),
        checkpoint_bytes=(run_dir / CHECKPOINT_FILE).stat().st_size,
        export_bytes=path.stat().st_size,
        density=active / size if size else None,
    )


# ---------------------------------------------------------------------------------------------- evaluation
@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Compute with ``count`` intra-op threads (the run's) for the block, then restore the current count."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def evaluation_device(metadata: Mapping[str, Any]) -> torch.device:
    """The device type the run was trained (and tested) on when it is here, else the CPU."""
    trained_on = metadata.get("trained_on", "cpu")
    return torch.device("cuda" if trained_on == "cuda" and torch.cuda.is_available() else "cpu")


def accuracy_on_test_split(model: nn.Module, metadata: Mapping[str, Any], device: torch.device | None = None) -> float:
    """The model's accuracy on its run's test split, computed as the trainer computes it
    (``rigl_repro.run.build.count_correct``): the run's data loading, normalisation, eval batch size, bf16
    autocast and channels_last as the run's recipe enables them on ``device``, exact counts over the split."""
    config = metadata["config"]
    device = evaluation_device(metadata) if device is None else torch.device(device)
    on_cuda = device.type == "cuda"
    train = config["train"]  # the execution options as the trainer read them; "auto" for runs that predate one
    batch_size = int(train.get("eval_batch_size", 1000))
    data = load_splits(config["dataset"], device)
    precision = Precision(device.type, enabled(train.get("amp", "auto"), on_cuda),
                          enabled(train.get("channels_last", "auto"), on_cuda))  # fmt: skip
    model = model.to(device, memory_format=precision.memory_format).eval()
    if enabled(train.get("compile", "auto"), on_cuda):
        model.compile(dynamic=False)
    with cpu_threads(metadata["metrics"].get("cpu_threads") if not on_cuda else None):
        correct = count_correct(model, data.test.images, data.test.labels, data, precision, batch_size)
    return correct.item() / len(data.test)
