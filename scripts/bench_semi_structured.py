"""Time a 2:4 Linear through torch's semi-structured sparsity against the dense Linear (issue 27, item 5).

    python scripts/bench_semi_structured.py --json FILE            # on a CUDA GPU: fp16, 4096 x 4096, batch 4096
    python scripts/bench_semi_structured.py --json FILE --device cpu --features 64 --batch 32   # the rehearsal

The weight's mask is this project's 2:4 (``rigl_repro.sparsity.structure.NOfM(2, 4)``, every group of four inputs
holding two), stored and reloaded through the export's N:M layout (``rigl_repro.sparsity.layouts.NOfMSlots``) to
show the layout is the one the kernel takes. On CUDA the reloaded dense weight goes through
``torch.sparse.to_sparse_semi_structured`` and both products are timed with CUDA events (median of ``--repeats``
after warm-up); the output is compared with the dense product. Without CUDA (the kernels are CUDA-only) only the
mask and layout checks run, and the record says the timing was skipped.

The JSON record: ``device``, ``features``, ``batch``, ``dtype``, ``layout_reloads_exactly``, ``compressed_shape``,
and on CUDA ``dense_ms``, ``sparse_ms``, ``speedup`` and ``max_abs_error`` (else ``skipped``: the reason).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from rigl_repro.sparsity.layouts import NOfMSlots  # noqa: E402
from rigl_repro.sparsity.structure import NOfM  # noqa: E402


def cuda_ms(run: Any, repeats: int) -> float:
    """Median milliseconds of ``run()`` over ``repeats`` CUDA-event timings, after a warm-up."""
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure(device: str, features: int, batch: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    """The record described in the module's docstring."""
    generator = torch.Generator().manual_seed(seed)
    shape = (features, features)
    structure = NOfM(2, 4)
    mask = structure.random(shape, structure.count(shape, 0.5), generator, torch.device("cpu"))
    weight = torch.randn(shape, generator=generator) * mask
    layout = NOfMSlots(2, 4)
    reloaded = layout.decode(layout.encode(mask), shape)
    compressed = weight[reloaded].reshape(features, features // 2)  # the export's values, as the kernel keeps them
    record: dict[str, Any] = {
        "device": device, "features": features, "batch": batch,
        "layout_reloads_exactly": bool(torch.equal(reloaded, mask)),
        "compressed_shape": list(compressed.shape),
    }  # fmt: skip
    if device != "cuda" or not torch.cuda.is_available():
        record.update(dtype="float32", skipped="semi-structured sparse kernels need a CUDA device")
        return record
    dtype = torch.float16
    dense_weight = weight.to("cuda", dtype)
    x = torch.randn(batch, features, generator=generator).to("cuda", dtype)
    sparse_weight = torch.sparse.to_sparse_semi_structured(dense_weight)
    with torch.inference_mode():
        expected = F.linear(x, dense_weight)
        got = F.linear(x, sparse_weight)
        dense_ms = cuda_ms(lambda: F.linear(x, dense_weight), repeats)
        sparse_ms = cuda_ms(lambda: F.linear(x, sparse_weight), repeats)
    # Whether the kernel's own packed values begin with the export's compressed matrix (CUTLASS packs the kept
    # values row-major, then its metadata): recorded, not required, as the packing is torch's to change.
    packed = getattr(sparse_weight, "packed", None)
    record["packed_values_are_the_export_s"] = None if packed is None else bool(torch.equal(
        packed.reshape(-1)[: compressed.numel()], compressed.reshape(-1).to("cuda", dtype)))  # fmt: skip
    record.update(dtype=str(dtype).removeprefix("torch."), dense_ms=dense_ms, sparse_ms=sparse_ms,
                  speedup=dense_ms / sparse_ms, max_abs_error=float((got - expected).abs().max()))  # fmt: skip
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="where to write the record")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--features", type=int, default=4096, help="the Linear's input and output size")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    if args.features < 64 or args.features % 64:
        parser.error(f"--features={args.features}: semi-structured kernels take positive multiples of 64")
    for option, value in (("--batch", args.batch), ("--repeats", args.repeats)):
        if value < 1:
            parser.error(f"{option}={value}: expected a positive integer")
    record = measure(args.device, args.features, args.batch, args.repeats)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))
    return 0 if record["layout_reloads_exactly"] else 1


if __name__ == "__main__":
    sys.exit(main())
