"""Sparse inference on the CPU (issue 26): end-to-end forward time of a masked dense model against the same
model converted by ``rigl_repro.inference.sparsify_for_inference`` (CSR Linears and convolutions where they
are faster).

For the MLP and the small ViT of ``rigl_repro.models.examples`` (28x28x1 inputs) and WRN-22-2 (CIFAR-10,
32x32x3), at densities 0.1 and 0.05 (a uniformly random mask of exactly that density on every Linear and
convolution), batch 1 and 128, and 1 thread and all cores: the median forward milliseconds of each (after
warm-up), the speedup and the largest difference of the outputs relative to the dense output's largest value.

    python scripts/bench_inference.py --json outputs/bench_inference.json   # make bench-inference
    python scripts/bench_inference.py --quick --json FILE                  # tiny models, seconds (the test)
    python scripts/bench_inference.py --kernels torch --json FILE          # torch's CSR product only

Dense and sparse forward passes are timed in alternation, so that the machine's other load weighs on both
alike; still, run it on an otherwise idle machine for figures to quote.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rigl_repro.inference import (  # noqa: E402
    KERNELS,
    NATIVE,
    max_relative_error,
    native_kernel,
    paired_median_ms,
    sparsify_for_inference,
)
from rigl_repro.models import build_model  # noqa: E402
from rigl_repro.models.examples import mlp, vit  # noqa: E402
from rigl_repro.sparsity.masks import random_mask  # noqa: E402

KEYS = ("model", "density", "batch", "threads", "dense_ms", "sparse_ms", "speedup", "max_rel_error")
MODELS = ("mlp", "vit", "wrn22_2")


def make_model(name: str, quick: bool) -> tuple[nn.Module, tuple[int, ...]]:
    """The model and the shape of one input image."""
    if name == "mlp":
        return (mlp(hidden=(64, 64)) if quick else mlp()), (1, 28, 28)
    if name == "vit":
        return (vit(dim=32, depth=1, heads=2, patch=7) if quick else vit()), (1, 28, 28)
    if name == "wrn22_2":
        return build_model({"name": "wrn22_2", "width": 0.25 if quick else 1.0}, num_classes=10), (3, 32, 32)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def apply_random_masks(model: nn.Module, density: float, seed: int) -> None:
    """A ``weight_mask`` buffer of exactly ``round(density * size)`` random true entries on every Linear and
    Conv2d weight, and the weights zeroed outside it (what a trained static-sparse model holds)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                weight = module.weight
                k = max(1, round(density * weight.numel()))
                mask = random_mask(weight.shape, k, generator, weight.device)
                module.register_buffer("weight_mask", mask)
                weight.mul_(mask)


def bench_one(model: nn.Module, name: str, density: float, batch: int, threads: int, image: tuple[int, ...],
              repeats: int, quick: bool, kernels: list[str]) -> tuple[dict[str, Any], list[Any]]:  # fmt: skip
    """One record: the model dense and converted at ``batch`` with ``threads`` threads, CSR layers computing
    with the fastest of ``kernels``."""
    x = torch.randn(batch, *image, generator=torch.Generator().manual_seed(1))
    converted, decisions = sparsify_for_inference(model, batch, threads, example_input=x, kernels=kernels,
                                                  repeats=3 if quick else 10, warmup=1 if quick else 3)  # fmt: skip
    torch.set_num_threads(threads)
    with torch.inference_mode():
        reference, output = model(x), converted(x)
        dense_ms, sparse_ms = paired_median_ms(lambda: model(x), lambda: converted(x), warmup=1 if quick else 3,
                                               repeats=repeats)  # fmt: skip
    record = {"model": name, "density": density, "batch": batch, "threads": threads, "dense_ms": round(dense_ms, 4),
              "sparse_ms": round(sparse_ms, 4), "speedup": round(dense_ms / sparse_ms, 4),
              "max_rel_error": max_relative_error(reference, output)}  # fmt: skip
    return record, decisions


def table(records: list[dict[str, Any]]) -> str:
    lines = ["| model | density | batch | threads | dense ms | sparse ms | speedup | max rel. error |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in records:
        lines.append(f"| {r['model']} | {r['density']} | {r['batch']} | {r['threads']} | {r['dense_ms']:.3f} | "
                     f"{r['sparse_ms']:.3f} | {r['speedup']:.2f}x | {r['max_rel_error']:.1e} |")  # fmt: skip
    return "\n".join(lines)


def parse_list(text: str, kind: type) -> list[Any]:
    return [kind(item) for item in text.split(",") if item]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the records here (a JSON list)")
    parser.add_argument("--quick", action="store_true", help="tiny models, batch 2, 1 thread: a check, not timing")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--densities", default="0.1,0.05")
    parser.add_argument("--batches", default=None, help="default 1,128 (2 with --quick)")
    parser.add_argument("--threads", default=None, help="default 1 and all cores (1 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed forward passes (default 20, 3 quick)")
    parser.add_argument("--kernels", default=",".join(KERNELS),
                        help="CSR products to consider: native (the project's kernel), torch (default both)")
    parser.add_argument("--decisions", action="store_true", help="also print each layer's decision")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    batches = parse_list(args.batches or ("2" if args.quick else "1,128"), int)
    threads_list = parse_list(args.threads or ("1" if args.quick else f"1,{cores}"), int)
    threads_list = list(dict.fromkeys(threads_list))
    repeats = args.repeats or (3 if args.quick else 20)
    kernels = parse_list(args.kernels, str)
    if not kernels or any(kernel not in KERNELS for kernel in kernels):
        parser.error(f"--kernels: choose from {', '.join(KERNELS)}")
    native = native_kernel() if NATIVE in kernels else None
    print(f"CSR products: {', '.join(kernels)}" + (f" (native: {native.path})" if native else
                                                  " (native unavailable)" if NATIVE in kernels else ""))  # fmt: skip
    print(f"torch {torch.__version__}, {cores} cores, load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    records = []
    for name in parse_list(args.models, str):
        for density in parse_list(args.densities, float):
            torch.manual_seed(0)
            model, image = make_model(name, args.quick)
            model.eval()
            apply_random_masks(model, density, seed=0)
            for batch in batches:
                for threads in threads_list:
                    record, decisions = bench_one(model, name, density, batch, threads, image, repeats, args.quick,
                                                  kernels)  # fmt: skip
                    records.append(record)
                    print(f"{name} density {density} batch {batch} threads {threads}: dense {record['dense_ms']:.3f}"
                          f" ms, sparse {record['sparse_ms']:.3f} ms, {record['speedup']:.2f}x, "
                          f"{sum(d.layout == 'csr' for d in decisions)}/{len(decisions)} layers CSR", flush=True)
                    if args.decisions:
                        for d in decisions:
                            print(f"    {d.name} {d.shape} rows {d.rows} density {d.density:.3f}: dense "
                                  f"{d.dense_ms:.3f} ms, csr {d.sparse_ms:.3f} ms -> {d.layout}"
                                  f"{f' ({d.kernel})' if d.kernel else ''}"
                                  f"{f' (tiles of {d.tile} rows)' if d.tile else ''}")  # fmt: skip
    assert all(tuple(r) == KEYS for r in records)
    print(table(records))
    print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    worst = max((r["max_rel_error"] for r in records), default=0.0)
    if not math.isfinite(worst) or worst > 1e-5:
        print(f"error: outputs differ by {worst:.2e} relative (more than 1e-5)", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    return 0 if math.isfinite(worst) and worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
