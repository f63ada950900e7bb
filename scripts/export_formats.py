"""Measure the ways a sparse model could be stored: file size and the time to load it back into a dense
state dict, for a model of the report at a density, with the masks a run starts from (no training: sizes
and load times do not depend on the values). The measurement behind rigl_repro/export.py's choice of format.

    python scripts/export_formats.py                                   # WRN-22-2, CIFAR-10, RigL at 0.1
    python scripts/export_formats.py model=resnet50 masking.density=0.05 masking.distribution=erk

Formats: the dense state dict (torch.save and safetensors); this project's export (packed mask bits and
active values, safetensors; the same tensors through torch.save; under masking.structure=fan_in or nm, the
structure's own layout, rigl_repro/sparsity/layouts.py); torch's sparse COO and CSR layouts for the masked
weights (torch.save).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from rigl_repro.config import compose_config  # noqa: E402
from rigl_repro.errors import ConfigError  # noqa: E402
from rigl_repro.export import compact_state, dense_bytes, expand_state, masked_weights, run_layouts  # noqa: E402
from rigl_repro.models import build_model  # noqa: E402
from rigl_repro.sparsity import SparseEngine, build_method  # noqa: E402

REPEATS = 7


def sparse_model_state(overrides: list[str]) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict (masks included) of the configured model under its method's initial masks, with its
    label and masking config."""
    cfg = compose_config(["logger.mode=disabled", *overrides])
    torch.manual_seed(int(cfg.seed))
    model = build_model(OmegaConf.to_container(cfg.model, resolve=True), int(cfg.dataset.num_classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    masking = OmegaConf.to_container(cfg.masking, resolve=True)
    SparseEngine(model, optimizer, build_method(masking), 100)
    structure = "" if masking.get("structure", "unstructured") == "unstructured" else f" {masking['structure']}"
    label = f"{cfg.model.name}, {cfg.dataset.name}, {masking['name']} {masking.get('distribution', '')} " \
            f"{masking.get('density', '')}{structure}"
    return label, {key: tensor.detach().clone() for key, tensor in model.state_dict().items()}, masking


def torch_sparse(state: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Masked weights in a torch sparse layout whose indices are the mask's (active weights at exactly zero
    stay stored, so the mask is kept), CSR over (out, in x kernel); the other tensors dense."""
    masked = masked_weights(state)
    stored = {}
    for key, tensor in state.items():
        if key in masked:
            mask = state[masked[key]]
            matrix = tensor.reshape(tensor.shape[0], -1) if layout == "csr" else tensor
            flat_mask = mask.reshape(matrix.shape)
            coo = torch.sparse_coo_tensor(flat_mask.nonzero().T, matrix[flat_mask], matrix.shape).coalesce()
            if layout == "csr":  # own storages: to_sparse_csr's column indices are a view of twice their size
                csr = coo.to_sparse_csr()
                coo = torch.sparse_csr_tensor(csr.crow_indices().clone(), csr.col_indices().clone(),
                                              csr.values().clone(), csr.shape)  # fmt: skip
            stored[key] = coo
        elif key not in masked.values():
            stored[key] = tensor
    return stored


def from_torch_sparse(stored: dict[str, torch.Tensor], masks: dict[str, str]) -> dict[str, torch.Tensor]:
    """The dense state dict, masks included, from ``torch_sparse``'s tensors."""
    state = {}
    for key, tensor in stored.items():
        if key in masks:
            shape = tensor.shape
            pattern = torch.sparse_coo_tensor(tensor.to_sparse_coo().indices(), torch.ones(tensor.values().shape,
                                              dtype=torch.bool), shape)  # fmt: skip
            state[masks[key]] = pattern.to_dense()
            state[key] = tensor.to_dense()
        else:
            state[key] = tensor
    return state


def best_seconds(load: Callable[[], object]) -> float:
    """The least CPU time of REPEATS loads, on one thread: what the load costs, as free as can be of the
    machine's other work (which adds wall time, and with several threads, spinning)."""
    times = []
    for _ in range(REPEATS):
        start = time.process_time()
        load()
        times.append(time.process_time() - start)
    return min(times)


def main(overrides: list[str]) -> None:
    if {"-h", "--help"} & set(overrides):
        print(__doc__)
        return
    defaults = ["dataset=cifar10", "model=wrn22_2", "masking=rigl", "masking.density=0.1"]
    try:
        label, state, masking = sparse_model_state([*defaults, *overrides])
    except (ConfigError, HydraException) as error:
        sys.exit(f"error: {error}")
    torch.set_num_threads(1)
    masked = masked_weights(state)
    dense = {key: tensor for key, tensor in state.items() if key not in masked.values()}
    shapes_of_masked = {weight: list(state[weight].shape) for weight in masked}
    compact = compact_state(state)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        rows = []

        def measure(name: str, file: str, write: Callable[[Path], None], load: Callable[[Path], object]) -> None:
            write(path / file)
            rows.append((name, (path / file).stat().st_size, best_seconds(lambda: load(path / file))))

        measure("dense, torch.save", "dense.pt", lambda p: torch.save(dense, p),
                lambda p: torch.load(p, weights_only=True))  # fmt: skip
        measure("dense, safetensors", "dense.safetensors", lambda p: save_file(dense, p), load_file)
        measure("bits + values, safetensors (the export)", "export.safetensors", lambda p: save_file(compact, p),
                lambda p: expand_state(load_file(p), shapes_of_masked))  # fmt: skip
        measure("bits + values, torch.save", "export.pt", lambda p: torch.save(compact, p),
                lambda p: expand_state(torch.load(p, weights_only=True), shapes_of_masked))  # fmt: skip
        layouts = run_layouts(state, masking)
        if any(layout.name != "bits" for layout in layouts.values()):  # masking.structure=fan_in or nm
            structured = compact_state(state, layouts)
            name = next(layout.name for layout in layouts.values() if layout.name != "bits")
            measure(f"{name} layout + values, safetensors (its export)", "structured.safetensors",
                    lambda p: save_file(structured, p),
                    lambda p: expand_state(load_file(p), shapes_of_masked, layouts))  # fmt: skip
        for layout in ("coo", "csr"):
            stored = torch_sparse(state, layout)
            measure(f"torch sparse {layout.upper()} (indices = mask), torch.save", f"{layout}.pt",
                    lambda p, s=stored: torch.save(s, p),
                    lambda p: from_torch_sparse(torch.load(p, weights_only=True), masked))  # fmt: skip
    size = sum(state[weight].numel() for weight in masked)
    active = sum(int(state[mask].sum()) for mask in masked.values())
    print(f"{label}: {size:,} masked weights, {active:,} active ({active / size:.4f}); "
          f"load = CPU time to read the file and rebuild the "
          f"dense state dict, one thread, best of {REPEATS}")  # fmt: skip
    reference = dense_bytes(state)
    print(f"dense weights and buffers (fp32, the masks left out): {reference:,} bytes; ratio = those / the file")
    print(f"{'format':<52} {'bytes':>11} {'ratio':>9} {'load (ms)':>10}")
    for name, nbytes, seconds in rows:
        print(f"{name:<52} {nbytes:>11,} {reference / nbytes:>8.2f}x {1000 * seconds:>10.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
